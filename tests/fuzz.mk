# tests/fuzz.mk: libFuzzer over the allocator core (tests/fuzz/fuzz_kmalloc.c:
# operation sequences checked against a shadow model, on three threads,
# plus misuse checked in forked children), built with clang + ASan + UBSan
# and the core's checks at their highest grade (-DMM_DEBUG=2: MM_ASSERT,
# the whole-structure validators after span operations, the lock-order
# checks and the test hooks) as build/fuzz/fuzz_kmalloc. Grade 2 costs
# about a third of the executions: 269 exec/s against 391 at grade 1 in
# make test-fuzz's 30 s on a loaded 2-core machine (2026-12-07).
#
#   make fuzz              fuzz for FUZZ_TIME seconds (default 600), growing
#                          build/fuzz/corpus from the saved tests/fuzz/corpus;
#                          prints the executions per second at the end.
#                          FUZZ_THOROUGH=1: the slow nightly mode (every
#                          byte checked, 256 MiB live, heap validated after
#                          every input)
#   make fuzz-merge        add the inputs of build/fuzz/corpus that reach new
#                          coverage to tests/fuzz/corpus (then commit them)
#   make test-fuzz         (part of make test) the misuse seeds in thorough
#                          mode (each must fork a child that dies with the
#                          exact fault), replay every saved input, then
#                          fuzz for FUZZ_TEST_TIME seconds (default 30) and
#                          report executions per second
# A crash leaves its input in build/fuzz/crash-*; replay it with
# build/fuzz/fuzz_kmalloc build/fuzz/crash-<hash>.

FUZZ_DIR := $(BUILD)/fuzz
FUZZ_BIN := $(FUZZ_DIR)/fuzz_kmalloc
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS := $(MM_HOST_CFLAGS) -DMM_DEBUG=2 -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -MMD -MP
# child_util.c: the forked misuse child and its exact-line check, shared
# with the API and core tests.
FUZZ_OBJS := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(MM_SRCS) $(HOST_SRCS) tests/fuzz/fuzz_kmalloc.c \
	tests/lib/child_util.c)
FUZZ_CORPUS := tests/fuzz/corpus
FUZZ_TIME ?= 600
FUZZ_TEST_TIME ?= 30
FUZZ_SEED ?= 1
FUZZ_THOROUGH ?= 0
FUZZ_ENV := FUZZ_THOROUGH=$(FUZZ_THOROUGH)
# The last status line libFuzzer prints has exec/s; -print_final_stats gives
# the totals. One line for the log: "fuzz: N runs in T s = R exec/s".
FUZZ_RATE = awk '/^stat::number_of_executed_units/ {n=$$2} /^stat::average_exec_per_sec/ {r=$$2} \
	END {printf "fuzz: %s executions, %s exec/s (FUZZ_THOROUGH=$(FUZZ_THOROUGH))\n", n, r}' $(1)
# -max_len: long enough for programs of a few hundred operations.
FUZZ_FLAGS := -max_len=1024 -timeout=60 -rss_limit_mb=3072 \
	-artifact_prefix=$(FUZZ_DIR)/ -print_final_stats=1

DEPS_GROUPS += fuzz

$(FUZZ_DIR)/obj/%.o: %.c tests/fuzz.mk
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BIN): $(FUZZ_OBJS)
	$(Q)$(CLANG) $(FUZZ_SAN) $^ -o $@ -lpthread

.PHONY: fuzz fuzz-merge test-fuzz
fuzz: $(FUZZ_BIN)
	@mkdir -p $(FUZZ_DIR)/corpus
	{ $(FUZZ_ENV) nice $(FUZZ_BIN) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_TIME) \
		$(FUZZ_DIR)/corpus $(FUZZ_CORPUS); echo $$? > $(FUZZ_DIR)/fuzz.rc; } 2>&1 | tee $(FUZZ_DIR)/fuzz.log; \
		exit $$(cat $(FUZZ_DIR)/fuzz.rc)
	@$(call FUZZ_RATE,$(FUZZ_DIR)/fuzz.log)

fuzz-merge: $(FUZZ_BIN)
	$(FUZZ_BIN) -merge=1 $(FUZZ_FLAGS) $(FUZZ_CORPUS) $(FUZZ_DIR)/corpus

test-fuzz: $(FUZZ_BIN)
	@echo "== fuzz: the misuse seeds (tests/fuzz/misuse: double, interior, last-word, outside-heap frees)"
	$(Q)FUZZ_THOROUGH=1 nice timeout 120 $(FUZZ_BIN) $(FUZZ_FLAGS) $(wildcard tests/fuzz/misuse/*) \
		> $(FUZZ_DIR)/misuse.log 2>&1 || { tail -20 $(FUZZ_DIR)/misuse.log; exit 1; }
	@echo "== fuzz: replay the $(words $(wildcard $(FUZZ_CORPUS)/*)) saved inputs"
	$(Q)$(FUZZ_ENV) nice timeout 600 $(FUZZ_BIN) $(FUZZ_FLAGS) $(wildcard $(FUZZ_CORPUS)/*) \
		> $(FUZZ_DIR)/replay.log 2>&1 || { tail -40 $(FUZZ_DIR)/replay.log; exit 1; }
	@echo "== fuzz: $(FUZZ_TEST_TIME) s of new inputs (seed $(FUZZ_SEED))"
	$(Q)rm -rf $(FUZZ_DIR)/test-corpus && mkdir -p $(FUZZ_DIR)/test-corpus
	$(Q)$(FUZZ_ENV) nice timeout $$(( $(FUZZ_TEST_TIME) + 120 )) $(FUZZ_BIN) $(FUZZ_FLAGS) \
		-seed=$(FUZZ_SEED) -max_total_time=$(FUZZ_TEST_TIME) \
		$(FUZZ_DIR)/test-corpus $(FUZZ_CORPUS) > $(FUZZ_DIR)/short.log 2>&1 \
		|| { tail -40 $(FUZZ_DIR)/short.log; exit 1; }
	$(Q)grep -E '^stat::number_of_executed_units|^#[0-9]+ *DONE' $(FUZZ_DIR)/short.log | tail -2
	@$(call FUZZ_RATE,$(FUZZ_DIR)/short.log)

TEST_TARGETS += test-fuzz

-include $(FUZZ_OBJS:.o=.d)
