/*
 * cachepair.c: a typed cache's kmem_cache_alloc + kmem_cache_free pair
 * against kmalloc + kfree of the same size, in instructions (callgrind)
 * and TSC cycles, the figure SLUB's fast path is published in (42-43
 * cycles per kmem_cache pair).
 *
 *   valgrind --tool=callgrind cachepair 64 200 1000    instructions
 *   cachepair 64 200 1000                                cycles
 *
 * Method as pair.c's: per size, WARM pairs first (the CPU caches a span
 * and a magazine of the class), then N pairs with callgrind's counters
 * zeroed before and dumped after, named "cache SIZE" and "kmalloc SIZE",
 * and an "empty" loop run-core.sh subtracts. Without valgrind each
 * measure is BATCHES batches of N pairs timed with rdtsc, and the
 * cheapest batch counts: a shared machine's other load only adds time.
 * Output: one line "cachepair SIZE: cache C kmalloc K" (cycles per pair).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <valgrind/callgrind.h>
#include <x86intrin.h>

#include "kmalloc.h"

enum { WARM = 10000, N = 100000, BATCHES = 15 };

static void *volatile sink;

__attribute__((noinline)) static void cache_pairs(struct kmem_cache *c, long n)
{
	for (long i = 0; i < n; i++) {
		void *p = kmem_cache_alloc(c, 0);
		sink = p;
		kmem_cache_free(c, p);
	}
}

__attribute__((noinline)) static void kmalloc_pairs(size_t size, long n)
{
	for (long i = 0; i < n; i++) {
		void *p = kmalloc(size, 0);
		sink = p;
		kfree(p);
	}
}

__attribute__((noinline)) static void empty(long n)
{
	for (long i = 0; i < n; i++)
		sink = (void *)i;
}

/* Cycles per pair of the cheapest batch. */
static double cycles(struct kmem_cache *c, size_t size)
{
	uint64_t best = UINT64_MAX;
	for (int b = 0; b < BATCHES; b++) {
		uint64_t t0 = __rdtsc();
		if (c != NULL)
			cache_pairs(c, N);
		else
			kmalloc_pairs(size, N);
		uint64_t t = __rdtsc() - t0;
		if (t < best)
			best = t;
	}
	return (double)best / N;
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
		struct kmem_cache *c = kmem_cache_create("bench", size, 0, 0, NULL);
		if (c == NULL) {
			fprintf(stderr, "cachepair: no cache of %zu bytes\n", size);
			return 1;
		}
		cache_pairs(c, WARM);
		kmalloc_pairs(size, WARM);
		if (RUNNING_ON_VALGRIND) {
			CALLGRIND_ZERO_STATS;
			cache_pairs(c, N);
			snprintf(name, sizeof name, "cache %zu", size);
			CALLGRIND_DUMP_STATS_AT(name);
			CALLGRIND_ZERO_STATS;
			kmalloc_pairs(size, N);
			snprintf(name, sizeof name, "kmalloc %zu", size);
			CALLGRIND_DUMP_STATS_AT(name);
		} else {
			/* interleaved, so a change of load hits both */
			double cc = 1e18, kc = 1e18;
			for (int r = 0; r < 3; r++) {
				double x = cycles(c, size), y = cycles(NULL, size);
				cc = x < cc ? x : cc;
				kc = y < kc ? y : kc;
			}
			printf("cachepair %zu: cache %.1f kmalloc %.1f\n", size, cc, kc);
		}
		if (kmem_cache_destroy(c) != 0)
			return 1;
	}
	empty(WARM);
	CALLGRIND_ZERO_STATS;
	empty(N);
	CALLGRIND_DUMP_STATS_AT("empty");
	return 0;
}
