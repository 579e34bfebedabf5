# tests/bench.mk: hosted benchmarks of the allocator core against the C
# library's malloc, in the same run (make bench, or make bench-core).
#
#   build/bench/pair-<alloc>    instructions per malloc+free pair (callgrind);
#                               pair-kmalloc also a typed cache's pair, and
#                               both pairs' TSC cycles
#   build/bench/churn-<alloc>   small-object churn: ops/s, memory held/live
#   build/bench/markbench       the leak detector's mark throughput, MB/s
#   build/bench/sitecost        ns per kmalloc+kfree with and without site
#                               tracking (make bench-sites)
#   build/bench/statecost       cycles of a byte store vs a locked bit op
#                               per object state change (mm/malloc.c)
#   build/bench/core.md         the table run-core.sh prints
#
# Every program is built once per allocator from the same source; only
# tests/bench/bench_alloc.h differs (-DBENCH_KMALLOC or the linked malloc).
# BENCH_RUNS=n sets the churn repetitions (median reported).

# valgrind only when a benchmark is asked for, so make test never needs it.
BENCH_DEPS_GROUPS += bench

BENCH_DIR    := $(BUILD)/bench
BENCH_PROGS  := pair churn
BENCH_CFLAGS := $(CSTD) $(WARN) -O2 -g -Imm -Itests/bench -MMD -MP

$(BENCH_DIR)/%-kmalloc.o: tests/bench/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(BENCH_CFLAGS) -DBENCH_KMALLOC -c $< -o $@

$(BENCH_DIR)/%-glibc.o: tests/bench/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(BENCH_CFLAGS) -c $< -o $@

BENCH_KM_BINS := $(addprefix $(BENCH_DIR)/,$(addsuffix -kmalloc,$(BENCH_PROGS)))
BENCH_GL_BINS := $(addprefix $(BENCH_DIR)/,$(addsuffix -glibc,$(BENCH_PROGS)))

$(BENCH_KM_BINS): %: %.o $(KMALLOC_HOST_LIB)
	$(Q)$(CC) -o $@ $^ -pthread

$(BENCH_GL_BINS): %: %.o
	$(Q)$(CC) -o $@ $^

.SECONDARY: $(BENCH_KM_BINS:=.o) $(BENCH_GL_BINS:=.o)

# The cost of one state change per object (the choice in mm/malloc.c).
$(BENCH_DIR)/statecost: tests/bench/statecost.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(CSTD) $(WARN) -O2 -g $< -o $@

# The leak detector's mark throughput on two 256 MiB heaps.
$(BENCH_DIR)/markbench: tests/bench/markbench.c $(KMALLOC_HOST_LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CSTD) $(WARN) -O2 -g -Imm $^ -o $@ -pthread

# What site tracking (KMALLOC_LEAK_CHECK=1: backtraces into the stack
# depot) costs a kmalloc + kfree pair: run without and with it.
$(BENCH_DIR)/sitecost: tests/bench/sitecost.c $(KMALLOC_HOST_LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CSTD) $(WARN) -O2 -g -Imm $^ -o $@ -pthread

.PHONY: bench-sites
bench-sites: $(BENCH_DIR)/sitecost
	$(Q)nice $(BENCH_DIR)/sitecost
	$(Q)KMALLOC_LEAK_CHECK=1 nice $(BENCH_DIR)/sitecost | grep -E '^sitecost|depot_'

.PHONY: bench-core
bench-core: $(BENCH_KM_BINS) $(BENCH_GL_BINS) $(BENCH_DIR)/statecost $(BENCH_DIR)/markbench
	$(Q)nice tests/bench/run-core.sh $(BENCH_DIR)

# Not in ALL_TARGETS: pair.c needs valgrind/callgrind.h, which only the
# bench package list installs.
BENCH_TARGETS += bench-core

-include $(BENCH_KM_BINS:=.d) $(BENCH_GL_BINS:=.d)
