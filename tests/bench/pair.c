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
 *
 * Built for kmalloc, it also measures a typed cache's pair
 * (kmem_cache_alloc + kmem_cache_free, a cache of exactly SIZE bytes, up
 * to 32 KiB) the same way, dumped as "cache SIZE"; and without valgrind
 * it prints "cachepair SIZE: cache C kmalloc K", TSC cycles per pair of
 * each (loop included), the figure SLUB's fast path is published in
 * (42-43 cycles per kmem_cache pair): the cheapest of BATCHES batches of
 * N pairs, the two interleaved, so a shared machine's other load only
 * adds time and hits both.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <valgrind/callgrind.h>

#include "bench_alloc.h"
#include "../lib/mono_time.h"

enum { WARM = 10000, N = 100000, BATCHES = 15 };

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

#ifdef BENCH_KMALLOC
#include <x86intrin.h>

__attribute__((noinline)) static void cache_pairs(struct kmem_cache *c, long n)
{
	for (long i = 0; i < n; i++) {
		void *p = kmem_cache_alloc(c, 0);
		sink = p;
		kmem_cache_free(c, p);
	}
}

/* Cycles per pair of the cheapest of BATCHES batches: of the cache's
 * pair if c, else of kmalloc's. */
static double cycles(struct kmem_cache *c, size_t size)
{
	uint64_t best = UINT64_MAX;
	for (int b = 0; b < BATCHES; b++) {
		uint64_t t0 = __rdtsc();
		if (c != NULL)
			cache_pairs(c, N);
		else
			pairs(size, N);
		uint64_t t = __rdtsc() - t0;
		best = t < best ? t : best;
	}
	return (double)best / N;
}

/* The cache pair of `size`: dumped under callgrind, else cycles next to
 * kmalloc's. */
static void cache_pair(size_t size)
{
	char name[64];
	struct kmem_cache *c = kmem_cache_create("bench", size, 0, 0, NULL);
	if (c == NULL) {
		fprintf(stderr, "pair: no cache of %zu bytes\n", size);
		exit(1);
	}
	cache_pairs(c, WARM);
	if (RUNNING_ON_VALGRIND) {
		CALLGRIND_ZERO_STATS;
		cache_pairs(c, N);
		snprintf(name, sizeof name, "cache %zu", size);
		CALLGRIND_DUMP_STATS_AT(name);
	} else {
		double cc = 1e18, kc = 1e18;
		for (int r = 0; r < 3; r++) {
			double x = cycles(c, 0), y = cycles(NULL, size);
			cc = x < cc ? x : cc;
			kc = y < kc ? y : kc;
		}
		printf("cachepair %zu: cache %.1f kmalloc %.1f\n", size, cc, kc);
	}
	if (kmem_cache_destroy(c) != 0)
		exit(1);
}
#endif

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
#ifdef BENCH_KMALLOC
		if (size <= KMALLOC_MAX_SMALL)
			cache_pair(size);
#endif
	}
	empty(0, WARM);
	CALLGRIND_ZERO_STATS;
	empty(0, N);
	CALLGRIND_DUMP_STATS_AT("empty");
	printf("%s: %d pairs per size\n", BENCH_ALLOC_NAME, N);
	return 0;
}
