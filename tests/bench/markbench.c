/*
 * markbench.c: how fast the leak detector's mark phase reads a heap
 * (kmalloc_leak_scan, mm/mgcmark.c), for `make bench-core`. Two heaps of
 * about 256 MiB each, every object reachable from one registered root:
 *
 *   nodes  64-byte nodes in one singly linked list, allocated in order
 *          (the list runs through memory the way the allocator laid it)
 *   mixed  objects of 16 B .. 4 KiB (log-uniform), each pointing to the
 *          next, in random order: links jump across the heap
 *
 * For each, the best of RUNS scans: wall time, bytes scanned (roots and
 * objects), MB/s, objects marked. Output, one line per heap:
 *   markbench: nodes MB 268 objects 4194304 ms 152.3 MB/s 1762
 * Exits non-zero if a scan reports a leak or misses an object.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kmalloc.h"
#include "../lib/mono_time.h"
#include "../lib/xorshift.h"

enum { RUNS = 3 };
#define HEAP_BYTES ((size_t)256 << 20)

static void *root;

static int measure(const char *name, uint64_t nobj)
{
	double best = 1e9;
	struct kmalloc_leaks l = { 0 };
	for (int r = 0; r < RUNS; r++) {
		double t0 = mono_seconds();
		kmalloc_leak_scan(&l, NULL, NULL);
		double t = mono_seconds() - t0;
		if (t < best)
			best = t;
		if (l.leaks != 0 || l.marked != nobj) {
			fprintf(stderr, "markbench: %s: %llu leaks, %llu of %llu objects marked\n",
			        name, (unsigned long long)l.leaks, (unsigned long long)l.marked,
			        (unsigned long long)nobj);
			return 1;
		}
	}
	printf("markbench: %s MB %.0f objects %llu ms %.1f MB/s %.0f\n", name,
	       (double)l.scanned_bytes / 1e6, (unsigned long long)nobj, best * 1e3,
	       (double)l.scanned_bytes / 1e6 / best);
	return 0;
}

static void free_list(void)
{
	for (void **p = root; p != NULL;) {
		void **next = p[0];
		kfree(p);
		p = next;
	}
	root = NULL;
}

int main(void)
{
	if (kmalloc_add_root(&root, sizeof root) != 0)
		return 1;
	int bad = 0;

	/* nodes */
	uint64_t n = HEAP_BYTES / 64;
	void **prev = NULL;
	for (uint64_t i = 0; i < n; i++) {
		void **o = kmalloc(64, 0);
		if (o == NULL)
			return 1;
		o[0] = prev;
		o[1] = o[2] = o[3] = NULL;
		prev = o;
	}
	root = prev;
	prev = NULL;
	bad |= measure("nodes", n);
	free_list();

	/* mixed: sizes log-uniform in [16, 4096], linked in a random order */
	uint64_t s = 42, bytes = 0, cap = HEAP_BYTES / 16;
	void **objs = malloc(cap * sizeof(void *));
	n = 0;
	while (bytes < HEAP_BYTES && n < cap) {
		size_t sz = (size_t)16 << (xorshift64(&s) % 9);
		sz += xorshift64(&s) % sz;
		if (sz > 4096)
			sz = 4096;
		void **o = kmalloc(sz, 0);
		if (o == NULL)
			return 1;
		for (size_t k = 0; k < sz / sizeof(void *); k++)
			o[k] = NULL;
		objs[n++] = o;
		bytes += sz;
	}
	for (uint64_t i = n - 1; i > 0; i--) { /* shuffle, then link */
		uint64_t j = xorshift64(&s) % (i + 1);
		void **t = objs[i];
		objs[i] = objs[j];
		objs[j] = t;
	}
	for (uint64_t i = 0; i + 1 < n; i++)
		((void **)objs[i])[0] = objs[i + 1];
	root = objs[0];
	free(objs);
	bad |= measure("mixed", n);
	free_list();
	return bad;
}
