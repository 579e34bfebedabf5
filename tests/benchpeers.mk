# tests/benchpeers.mk: `make bench-peers` (part of `make bench`, not of
# `make test`): our allocator as a drop-in malloc against glibc, jemalloc,
# tcmalloc and mimalloc (Debian's builds) on the workloads of
# tests/benchpeers/workloads.c (and workloads_mt.c), plus callgrind instruction counts per
# malloc+free pair and per iteration of a 64-object FIFO, including and
# net of the benchmark loop, with each allocator linked directly
# (tests/benchpeers/pair.c). tests/benchpeers/run-bench runs them in
# rotating order, BENCH_RUNS times each (default 5), and prints the table;
# it also lands in build/bench/results.md, with build/bench/throughput.png
# and build/bench/memory.png. `make bench-peers-publish` copies those three
# into tests/benchpeers/results/, the copy the README shows (commit it).

BENCHPEERS_DIR := $(BUILD)/bench/peers
BENCH_RUNS ?= 5
BENCHPEERS_CFLAGS := $(CSTD) $(WARN) -O2 -g -fno-builtin-malloc -fno-builtin-free \
	-fno-builtin-realloc -fno-builtin-calloc
BENCHPEERS_LIBDIR := /usr/lib/x86_64-linux-gnu
# allocator name -> what pair-<name> links against
BENCHPEERS_LINK_kmalloc := -L$(BUILD)/host -l:libkmalloc_preload.so \
	-Wl,-rpath,$(abspath $(BUILD)/host)
BENCHPEERS_LINK_glibc :=
BENCHPEERS_LINK_jemalloc := $(BENCHPEERS_LIBDIR)/libjemalloc.so.2
BENCHPEERS_LINK_tcmalloc := $(BENCHPEERS_LIBDIR)/libtcmalloc_minimal.so.4
BENCHPEERS_LINK_mimalloc := $(BENCHPEERS_LIBDIR)/libmimalloc.so.2
BENCHPEERS_PAIRS := $(foreach a,kmalloc glibc jemalloc tcmalloc mimalloc,$(BENCHPEERS_DIR)/pair-$(a))

BENCH_DEPS_GROUPS += benchpeers

$(BENCHPEERS_DIR)/workloads: tests/benchpeers/workloads.c tests/benchpeers/workloads_mt.c \
		tests/benchpeers/workloads.h tests/lib/frag_pattern.h tests/lib/xorshift.h
	@mkdir -p $(@D)
	$(Q)$(CC) $(BENCHPEERS_CFLAGS) $(filter %.c,$^) -o $@ -lpthread -ldl

$(BENCHPEERS_DIR)/pair-kmalloc: $(KMALLOC_PRELOAD)
$(BENCHPEERS_DIR)/pair-%: tests/benchpeers/pair.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(BENCHPEERS_CFLAGS) $< -o $@ $(BENCHPEERS_LINK_$*)

.PHONY: bench-peers
bench-peers: $(KMALLOC_PRELOAD) $(BENCHPEERS_DIR)/workloads $(BENCHPEERS_PAIRS)
	tests/benchpeers/run-bench $(KMALLOC_PRELOAD) $(BENCHPEERS_DIR) $(BUILD)/bench $(BENCH_RUNS)

.PHONY: bench-peers-publish
bench-peers-publish:
	@test -f $(BUILD)/bench/results.md || { echo "run make bench-peers first"; exit 1; }
	@mkdir -p tests/benchpeers/results
	cp $(BUILD)/bench/results.md $(BUILD)/bench/throughput.png $(BUILD)/bench/memory.png \
		tests/benchpeers/results/

BENCH_TARGETS += bench-peers

