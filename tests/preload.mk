# tests/preload.mk: the LD_PRELOAD shim (build/host/libkmalloc_preload.so)
# under test, `make test-preload`:
#   1. semantics     glibc's malloc contract through the shim (errno,
#                    alignment rules, realloc(p, 0), overflow, misuse aborts)
#   2. threads_fork  3000 short-lived threads and 100 forks under churn
#   3. early         allocations from a constructor that runs before the
#                    shim's own (LD_PRELOAD="shim early")
#   4. leak check    KMALLOC_LEAK_CHECK=1 on tests/preload/leaky.c: exactly
#                    the one planted leak, named by its function; none
#                    when the program frees it. The same on
#                    leaky_threads.c, which exits with other threads
#                    alive and allocating: 10 runs with 4 threads, one
#                    with 1,000, 100 with 16 all allocating
#   4b. kfence      KMALLOC_KFENCE=10 on tests/preload/kfence_loop.c:
#                    overflow, underflow and use-after-free loops each end
#                    in kfence's report and SIGABRT (bounded at 60 s; the
#                    target is 2 s, printed); without the variable the
#                    overflow loop runs its 10 million rounds unreported
#   5. limits        a process's limits (tests/preload/run-limits, each
#                    case its own process): vm.max_map_count, 10,000 live
#                    threads, 100,000 thread lifetimes, fork children of a
#                    1,000-thread parent, ENOMEM for impossible and
#                    larger-than-RAM+swap sizes, ulimit -v 1000000 and
#                    50000 against glibc (about 20 s)
#   6. run-programs  python3, gcc, sqlite3 and git, each compared with a
#                    run on glibc's malloc (tests/preload/run-programs)

PRELOAD_TEST_DIR := $(BUILD)/host/preload/tests
# The tests call malloc with sizes gcc knows are absurd and free what gcc
# knows is not heap memory: that is the point, so those warnings are off,
# and -fno-builtin keeps gcc from folding malloc/free pairs away.
PRELOAD_TEST_CFLAGS := $(CSTD) $(WARN) -O1 -g -fno-builtin \
	-Wno-alloc-size-larger-than -Wno-use-after-free -Wno-free-nonheap-object \
	-Wno-format-truncation -MMD -MP
PRELOAD_TEST_BINS := $(PRELOAD_TEST_DIR)/semantics $(PRELOAD_TEST_DIR)/threads_fork \
	$(PRELOAD_TEST_DIR)/leaky $(PRELOAD_TEST_DIR)/leaky_threads $(PRELOAD_TEST_DIR)/limits \
	$(PRELOAD_TEST_DIR)/kfence_loop
PRELOAD_EARLY := $(PRELOAD_TEST_DIR)/libearly.so

$(PRELOAD_TEST_DIR)/%: tests/preload/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PRELOAD_TEST_CFLAGS) $< -o $@ -ldl -lpthread

# semantics forks its misuse children with run_in_child and checks their
# fault line with misuse_mismatch (tests/lib/child_util.c), as the API
# tests do. The helper is an object of its own: a compiler run with one
# source names its -MMD file after the output (semantics.d, included below).
PRELOAD_CHILD_UTIL := $(PRELOAD_TEST_DIR)/child_util.o

$(PRELOAD_CHILD_UTIL): tests/lib/child_util.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PRELOAD_TEST_CFLAGS) -c $< -o $@

$(PRELOAD_TEST_DIR)/semantics: tests/preload/semantics.c $(PRELOAD_CHILD_UTIL)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PRELOAD_TEST_CFLAGS) $^ -o $@ -ldl -lpthread

# -rdynamic: the leak report names the program's functions (dladdr).
$(PRELOAD_TEST_DIR)/leaky: tests/preload/leaky.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PRELOAD_TEST_CFLAGS) -rdynamic $< -o $@

$(PRELOAD_TEST_DIR)/kfence_loop: tests/preload/kfence_loop.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PRELOAD_TEST_CFLAGS) -rdynamic $< -o $@

$(PRELOAD_TEST_DIR)/leaky_threads: tests/preload/leaky_threads.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PRELOAD_TEST_CFLAGS) -rdynamic $< -o $@ -lpthread

$(PRELOAD_EARLY): tests/preload/early.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PRELOAD_TEST_CFLAGS) -fPIC -shared $< -o $@

.PHONY: test-preload
test-preload: $(KMALLOC_PRELOAD) $(PRELOAD_TEST_BINS) $(PRELOAD_EARLY)
	@echo "== preload: glibc semantics through the shim"
	$(Q)LD_PRELOAD=$(abspath $(KMALLOC_PRELOAD)) nice timeout 120 $(PRELOAD_TEST_DIR)/semantics
	@echo "== preload: threads and fork"
	$(Q)LD_PRELOAD=$(abspath $(KMALLOC_PRELOAD)) nice timeout 120 $(PRELOAD_TEST_DIR)/threads_fork
	@echo "== preload: threads and fork, the background scavenger running (5 ms delay)"
	$(Q)KMALLOC_BACKGROUND=1 KMALLOC_RELEASE_MS=5 LD_PRELOAD=$(abspath $(KMALLOC_PRELOAD)) \
		nice timeout 120 $(PRELOAD_TEST_DIR)/threads_fork
	@echo "== preload: allocation before the shim's constructor"
	$(Q)LD_PRELOAD="$(abspath $(KMALLOC_PRELOAD)) $(abspath $(PRELOAD_EARLY))" \
		nice timeout 60 $(PRELOAD_TEST_DIR)/semantics > /dev/null
	@echo "== preload: leak check at exit (KMALLOC_LEAK_CHECK=1)"
	$(Q)nice timeout 600 tests/preload/check-leaks $(abspath $(KMALLOC_PRELOAD)) $(PRELOAD_TEST_DIR)/leaky \
		$(PRELOAD_TEST_DIR)/leaky_threads
	@echo "== preload: guarded sampling (KMALLOC_KFENCE=10): issue 22's loops stopped with a report"
	$(Q)nice tests/preload/check-kfence $(abspath $(KMALLOC_PRELOAD)) $(PRELOAD_TEST_DIR)/kfence_loop
	@echo "== preload: the limits of a process"
	$(Q)nice tests/preload/run-limits $(KMALLOC_PRELOAD) $(PRELOAD_TEST_DIR)/limits
	@echo "== preload: real programs, with and without the shim"
	$(Q)nice timeout 600 tests/preload/run-programs $(KMALLOC_PRELOAD) $(BUILD)/host/preload/programs

TEST_TARGETS += test-preload

-include $(PRELOAD_TEST_BINS:=.d) $(PRELOAD_CHILD_UTIL:.o=.d)
