# tests/api.mk: API-level tests of the allocator core on the host, written
# against mm/kmalloc.h only (plus the host port's commit-limit knob), and
# the same tests rebuilt under sanitizers.
#
#   build/api/api_test     every promise of kmalloc.h, one Check test each
#   build/api/api_model    randomized model test against a shadow table
#   build/api/api_stress   threads as CPUs: cross-thread frees, thread exit
#   build/api/api_misuse   bad pointers: forked child, SIGABRT, exact message
#   build/api/api_leak     the leak detector: what nothing points to, exactly
#   build/api/api_mesh     meshing on the memfd arena (KMALLOC_MESH=1): contents,
#                          misuse on both halves, fork, writers, leak scan
#   build/api/api_mesh_runs  runs of adjacent spans mesh into few of the
#                          host's mappings (/proc/self/maps counted)
#   build/api/api_leak_threads  the same with other threads stopped for the
#                          scan: their stacks, registers and TLS are roots;
#                          storms, thread churn, fork, blocked calls
#                          (not under the sanitizers: the scan reads whole
#                          stacks, ASan's redzones included, and TSan
#                          delays signals to a spinning thread forever)
#   build/asan/...         MM_SRCS + HOST_SRCS (-DMM_DEBUG=2) + tests, clang ASan+UBSan
#   build/tsan/...         the same under TSan, for api_stress
#
# make test-api runs them all (about 30 s of CPU on two cores), each one
# even when an earlier one failed. Knobs:
#   API_MODEL_OPS=n        model operations (default 2000000; a tenth under ASan)
#   API_STRESS_ITERS=n     stress iterations per thread (default 200000; a
#                          quarter under ASan, a tenth under TSan)
#   KMALLOC_MODEL_SEED=n   replay a model run (the seed is printed)
#   KMALLOC_STRESS_SEED=n  replay a stress run
#   KMALLOC_STRESS_THREADS=n  stress workers, 2..16 (default 4)
#
# The allocator reserves its whole region (64 GiB arena plus metadata) as
# PROT_NONE up front; that coexists with ASan's and TSan's shadow memory on
# x86-64 Linux (the region lands in the ordinary mmap area, which both
# sanitizers treat as application memory), so no run is dropped.
#
# Needs the core's fragments: MM_SRCS, HOST_SRCS, MM_HOST_CFLAGS and
# KMALLOC_HOST_LIB (mm/build.mk, arch/host/build.mk).

DEPS_GROUPS += sanitize

API_DIR  := $(BUILD)/api
ASAN_DIR := $(BUILD)/asan
TSAN_DIR := $(BUILD)/tsan

API_PROGS := api_test api_model api_stress api_misuse api_leak api_leak_threads api_mesh \
	api_mesh_runs
# Tests that make no deliberate misuse run under the sanitizers too.
ASAN_PROGS := api_test api_model api_stress api_mesh api_mesh_runs
TSAN_PROGS := api_stress api_mesh

API_MODEL_OPS ?= 2000000
API_STRESS_ITERS ?= 200000

# Recursive (=): pkg-config must run after scripts/install-deps put Check
# there, i.e. when a rule runs, not when this file is read.
API_CHECK_CFLAGS = $(shell pkg-config --cflags check)
API_CHECK_LIBS   = $(shell pkg-config --libs check)

# Tests see the public header, the host knobs (arch/host/host.h) and, for
# the arena size only, mm/sys.h.
API_INC    := -Imm -Iarch/host -Itests/api
API_CFLAGS  = $(CSTD) $(WARN) -O2 -g $(API_INC) $(API_CHECK_CFLAGS) -MMD -MP
API_LDLIBS  = $(API_CHECK_LIBS) -pthread

API_SAN_COMMON := -O1 -g -fno-omit-frame-pointer
ASAN_FLAGS := $(API_SAN_COMMON) -fsanitize=address,undefined -fno-sanitize-recover=all
TSAN_FLAGS := $(API_SAN_COMMON) -fsanitize=thread

# ---- plain (gcc, the library the core builds) ----
$(API_DIR)/%.o: tests/api/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(API_CFLAGS) -c $< -o $@

# The shared test library's one object (tests/lib/child_util.c), built
# beside the programs with their flags.
$(API_DIR)/%.o: tests/lib/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(API_CFLAGS) -c $< -o $@

# Every program links the shared helpers: api_util.o and child_util.o.
API_UTIL_OBJS = $(addprefix $(1)/,api_util.o child_util.o)

# Static pattern: a plain $(API_DIR)/api_% rule would also match api_x.o.
$(addprefix $(API_DIR)/,$(API_PROGS)): $(API_DIR)/%: $(API_DIR)/%.o $(call API_UTIL_OBJS,$(API_DIR)) $(KMALLOC_HOST_LIB)
	$(Q)$(CC) -o $@ $^ $(API_LDLIBS)

# The leak tests name their own functions through dladdr.
$(API_DIR)/api_leak: API_LDLIBS += -rdynamic

# ---- sanitized (clang; the core's sources rebuilt with the sanitizer) ----
API_CORE_SRCS = $(MM_SRCS) $(HOST_SRCS)

# The sanitized core is also the debug core (-DMM_DEBUG=2: internal
# assertions, whole-structure validation after span operations, lock-order
# checks), so a broken invariant stops the API tests where it happens.
API_CLANG_CORE_FLAGS := -DMM_DEBUG=2

# $(1): the programs, $(2): their directory, $(3): the sanitizer flags
define api_san_rules
$(2)/core/%.o: %.c
	@mkdir -p $$(@D)
	$$(Q)$$(CLANG) $$(CSTD) $$(WARN) $$(MM_HOST_CFLAGS) $$(API_CLANG_CORE_FLAGS) $(3) -MMD -MP -c $$< -o $$@

$(2)/libkmalloc.a: $$(patsubst %.c,$(2)/core/%.o,$$(API_CORE_SRCS))
	$$(archive)

$(2)/%.o: tests/api/%.c
	@mkdir -p $$(@D)
	$$(Q)$$(CLANG) $$(API_CFLAGS) $(3) -c $$< -o $$@

$(2)/%.o: tests/lib/%.c
	@mkdir -p $$(@D)
	$$(Q)$$(CLANG) $$(API_CFLAGS) $(3) -c $$< -o $$@

$(addprefix $(2)/,$(1)): $(2)/%: $(2)/%.o $(call API_UTIL_OBJS,$(2)) $(2)/libkmalloc.a
	$$(Q)$$(CLANG) $(3) -o $$@ $$^ $$(API_LDLIBS)
endef
$(eval $(call api_san_rules,$(ASAN_PROGS),$(ASAN_DIR),$(ASAN_FLAGS)))
$(eval $(call api_san_rules,$(TSAN_PROGS),$(TSAN_DIR),$(TSAN_FLAGS)))

API_BINS := $(addprefix $(API_DIR)/,$(API_PROGS)) \
	    $(addprefix $(ASAN_DIR)/,$(ASAN_PROGS)) \
	    $(addprefix $(TSAN_DIR)/,$(TSAN_PROGS))

API_UTIL_ALL := $(foreach d,$(API_DIR) $(ASAN_DIR) $(TSAN_DIR),$(call API_UTIL_OBJS,$(d)))

.SECONDARY: $(API_BINS:=.o) $(API_UTIL_ALL)

# KMALLOC_KFENCE=1: guarded sampling every millisecond (mm/mkfence.c) under
# TSan and ASan, threads sampling and freeing samples at once (not the
# model: it tells an object's class by its ksize, and a sample's ksize is
# its request, 24 B for the 32 B class that counts it).
# The second ASan and TSan runs have the background scavenger thread from the start
# and a 5 ms release delay, so it releases and ages caches while the
# workers allocate (arch/host/background.c).
# CK_FORK stays on (each Check test in its own process); sanitizer runtime
# options make any report fatal and say which build printed it.
API_ASAN_ENV := ASAN_OPTIONS=abort_on_error=0:detect_leaks=0:halt_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
API_TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
# Meshing write-protects a span and waits in its own SIGSEGV handler;
# ASan keeps SIGSEGV to itself unless told (arch/host/mesh.c).
API_ASAN_ENV_MESH := ASAN_OPTIONS=abort_on_error=0:detect_leaks=0:halt_on_error=1:allow_user_segv_handler=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Every program runs even when an earlier one failed, so one run shows all
# that is wrong; the target fails at the end if any did.
.PHONY: test-api
test-api: $(API_BINS)
	$(Q)fail=0; \
	run() { echo "== test-api: $$*"; "$$@" || { echo "test-api: FAILED: $$*"; fail=$$((fail + 1)); }; }; \
	run $(API_DIR)/api_test; \
	run $(API_DIR)/api_model $(API_MODEL_OPS); \
	run $(API_DIR)/api_stress $(API_STRESS_ITERS); \
	run $(API_DIR)/api_misuse; \
	run $(API_DIR)/api_leak; \
	run $(API_DIR)/api_mesh; \
	run $(API_DIR)/api_mesh_runs; \
	run env KMALLOC_MESH=1 $(API_DIR)/api_model $(API_MODEL_OPS); \
	run env KMALLOC_MESH=1 KMALLOC_BACKGROUND=1 KMALLOC_RELEASE_MS=5 \
	    $(API_DIR)/api_stress $$(( $(API_STRESS_ITERS) / 10 )); \
	run $(API_DIR)/api_leak_threads; \
	run env $(API_ASAN_ENV) $(ASAN_DIR)/api_test; \
	run env $(API_ASAN_ENV) $(ASAN_DIR)/api_model $$(( $(API_MODEL_OPS) / 10 )); \
	run env $(API_ASAN_ENV) $(ASAN_DIR)/api_stress $$(( $(API_STRESS_ITERS) / 4 )); \
	run env $(API_ASAN_ENV_MESH) $(ASAN_DIR)/api_mesh; \
	run env $(API_ASAN_ENV_MESH) $(ASAN_DIR)/api_mesh_runs; \
	run env $(API_ASAN_ENV_MESH) KMALLOC_MESH=1 $(ASAN_DIR)/api_model $$(( $(API_MODEL_OPS) / 10 )); \
	run env $(API_ASAN_ENV) KMALLOC_BACKGROUND=1 KMALLOC_RELEASE_MS=5 \
	    $(ASAN_DIR)/api_stress $$(( $(API_STRESS_ITERS) / 10 )); \
	run env $(API_TSAN_ENV) $(TSAN_DIR)/api_stress $$(( $(API_STRESS_ITERS) / 10 )); \
	run env $(API_TSAN_ENV) KMALLOC_BACKGROUND=1 KMALLOC_RELEASE_MS=5 \
	    $(TSAN_DIR)/api_stress $$(( $(API_STRESS_ITERS) / 10 )); \
	run env $(API_TSAN_ENV) $(TSAN_DIR)/api_mesh; \
	run env $(API_TSAN_ENV) KMALLOC_KFENCE=1 $(TSAN_DIR)/api_stress $$(( $(API_STRESS_ITERS) / 10 )); \
	run env $(API_ASAN_ENV_MESH) KMALLOC_KFENCE=1 $(ASAN_DIR)/api_stress $$(( $(API_STRESS_ITERS) / 4 )); \
	run env $(API_TSAN_ENV) KMALLOC_MESH=1 KMALLOC_BACKGROUND=1 KMALLOC_RELEASE_MS=5 \
	    $(TSAN_DIR)/api_stress $$(( $(API_STRESS_ITERS) / 10 )); \
	if [ $$fail -ne 0 ]; then echo "test-api: $$fail program(s) failed"; exit 1; fi; \
	echo "test-api: passed"

# Before the core is merged there is nothing to test; once mm/build.mk is
# there, a missing variable is an error rather than a silent skip.
ifneq ($(KMALLOC_HOST_LIB),)
ALL_TARGETS  += $(addprefix $(API_DIR)/,$(API_PROGS))
TEST_TARGETS += test-api
else ifneq ($(wildcard mm/build.mk),)
$(error tests/api.mk: mm/build.mk does not define KMALLOC_HOST_LIB)
endif

-include $(API_BINS:=.d) $(API_UTIL_ALL:.o=.d)
-include $(shell find $(ASAN_DIR)/core $(TSAN_DIR)/core -name '*.d' 2>/dev/null)
