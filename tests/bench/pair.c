/*
 * pair.c: instructions per malloc+free pair, for callgrind.
 *
 *   valgrind --tool=callgrind pair-kmalloc 16 64 256 1024 8192 65536
 *
 * Method. For each size the program warms the path up (WARM pairs, so the
 * mcache holds a span of the class and one-time costs are out), then
 * zeroes callgrind's counters, runs N pairs in a loop, and dumps the
 * counters under the name "pair SIZE". It then does the same for an empty
 * loop that differs only by not calling the allocator ("empty"). The
 * runner (run-core.sh) subtracts the empty loop's count from each pair
 * loop's and divides by N: what is left is the allocator's instructions
 * plus the call sites (argument moves, call, ret) that any caller pays;
 * the loop counter and the store of the pointer are netted out. It also
 * reports the 64 B dump alone divided by N, "including the loop" (about
 * four more instructions: counter, store, compare, branch), because that
 * is how the project states the budget for calling the core directly (48).
 * Callgrind counts instructions executed (Ir), not time: the numbers are
 * exact and repeatable, and say nothing about cache misses.
 *
 * Run without valgrind it prints ns per pair instead (a rough sanity
 * check, not the reported figure).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <valgrind/callgrind.h>

#include "bench_alloc.h"
#include "../mono_time.h"

enum { WARM = 10000, N = 100000 };

/* Keeps the compiler from dropping the allocation. */
static void *volatile sink;

__attribute__((noinline)) static void pairs(size_t size, long n)
{
	for (long i = 0; i < n; i++) {
		void *p = ba_malloc(size);
		sink = p;
		ba_free(p);
	}
}

__attribute__((noinline)) static void empty(size_t size, long n)
{
	for (long i = 0; i < n; i++)
		sink = (void *)size;
}

int main(int argc, char **argv)
{
	char name[64];

	if (argc < 2) {
		fprintf(stderr, "usage: %s SIZE...\n", argv[0]);
		return 2;
	}
	for (int a = 1; a < argc; a++) {
		size_t size = strtoull(argv[a], NULL, 0);
		double t0, t1;

		pairs(size, WARM);
		CALLGRIND_ZERO_STATS;
		t0 = mono_seconds();
		pairs(size, N);
		t1 = mono_seconds();
		snprintf(name, sizeof name, "pair %zu", size);
		CALLGRIND_DUMP_STATS_AT(name);
		if (!RUNNING_ON_VALGRIND)
			printf("%s %s: %.1f ns/pair\n", BENCH_ALLOC_NAME, name,
			       (t1 - t0) * 1e9 / N);
	}
	empty(0, WARM);
	CALLGRIND_ZERO_STATS;
	empty(0, N);
	CALLGRIND_DUMP_STATS_AT("empty");
	printf("%s: %d pairs per size\n", BENCH_ALLOC_NAME, N);
	return 0;
}
