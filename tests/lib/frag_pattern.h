/*
 * frag_pattern.h: the fragmentation workload's allocation pattern, one
 * copy for the two programs that run it: the frag workload of make bench
 * (tests/benchpeers/workloads.c: any malloc, RSS against live bytes) and
 * the heap make heapmap draws (tests/heapmap/frag.c: kmalloc, dumped at
 * each step). Header-only, static inline, libc only; the object
 * allocator comes in as two functions, so the benchmark's calls compile
 * to direct calls of malloc and free.
 *
 * Steps, each drawing from one xorshift64 stream (seed 5), so both
 * programs and every run make the same heap:
 *   frag_init      the arrays that remember the objects (malloc: under
 *                  the LD_PRELOAD shim, the allocator measured)
 *   frag_fill      8..512 B objects until `target` bytes are live
 *   frag_fragment  90% of them freed at random, then 768..2048 B
 *                  objects until the live total is half the peak
 *   frag_free_all  the rest, and the arrays
 */
#ifndef TESTS_FRAG_PATTERN_H
#define TESTS_FRAG_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "xorshift.h"

struct frag {
	void **objs, **more; /* the small objects, then the larger ones */
	size_t *sizes;       /* objs[i]'s requested size */
	size_t n, nfree, m;  /* small objects drawn, freed at random, larger */
	size_t target;       /* bytes live at the peak, at least */
	size_t live;         /* requested bytes live now */
	size_t peak_live;    /* ... after frag_fill */
	uint64_t s;          /* the xorshift64 state */
};

/* Write the first and last byte: the page is touched (RSS), the object
 * is not filled (that would measure memset). */
static inline void frag_touch(void *p, size_t n)
{
	((volatile char *)p)[0] = 1;
	((volatile char *)p)[n - 1] = 2;
}

static inline void frag_init(struct frag *f, size_t target)
{
	size_t cap = target / 8 + 1024;
	f->objs = malloc(cap * sizeof(void *));
	f->sizes = malloc(cap * sizeof(size_t));
	f->more = NULL;
	f->target = target;
	f->n = f->nfree = f->m = f->live = f->peak_live = 0;
	f->s = 5;
}

static inline void frag_fill(struct frag *f, void *(*alloc)(size_t))
{
	while (f->live < f->target) {
		size_t sz = 8 + xorshift64(&f->s) % 505;
		f->objs[f->n] = alloc(sz);
		frag_touch(f->objs[f->n], sz);
		f->sizes[f->n++] = sz;
		f->live += sz;
	}
	f->peak_live = f->live;
}

static inline void frag_fragment(struct frag *f, void *(*alloc)(size_t), void (*dealloc)(void *))
{
	/* free 90% at random: a random permutation's prefix */
	for (size_t i = f->n - 1; i > 0; i--) {
		size_t j = xorshift64(&f->s) % (i + 1);
		void *tp = f->objs[i];
		size_t ts = f->sizes[i];
		f->objs[i] = f->objs[j];
		f->sizes[i] = f->sizes[j];
		f->objs[j] = tp;
		f->sizes[j] = ts;
	}
	f->nfree = f->n / 10 * 9;
	for (size_t i = 0; i < f->nfree; i++) {
		dealloc(f->objs[i]);
		f->live -= f->sizes[i];
	}
	/* a different size mix, until the live total is half the peak (its
	 * array only now, where the benchmark always took it) */
	f->more = malloc((f->target / 2 / 768 + 1024) * sizeof(void *));
	while (f->live < f->peak_live / 2) {
		size_t sz = 768 + xorshift64(&f->s) % 1281;
		f->more[f->m] = alloc(sz);
		frag_touch(f->more[f->m], sz);
		f->m++;
		f->live += sz;
	}
}

static inline void frag_free_all(struct frag *f, void (*dealloc)(void *))
{
	for (size_t i = f->nfree; i < f->n; i++)
		dealloc(f->objs[i]);
	for (size_t i = 0; i < f->m; i++)
		dealloc(f->more[i]);
	f->live = 0;
	free(f->objs);
	free(f->sizes);
	free(f->more);
}

#endif /* TESTS_FRAG_PATTERN_H */
