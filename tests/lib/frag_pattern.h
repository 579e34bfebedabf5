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
 *                  the LD_PRELOAD shim, the allocator measured), and the
 *                  sizes: frag's (frag_init) or others (frag_init_sizes)
 *   frag_fill      small objects (frag: 8..512 B) until `target` bytes
 *                  are live
 *   frag_fragment  90% of them freed at random, then larger objects
 *                  (frag: 768..2048 B) until the live total is half the
 *                  peak, or until `more_bytes` bytes of them are live
 *   frag_free_all  the rest, and the arrays
 *
 * Two shapes are measured (make bench): frag's, and fragsmall's, the
 * pattern of the meshing issue (256 MiB of 16..256 B, then 128 MiB of
 * 320..2048 B), whose spans of small classes hold more slots each.
 */
#ifndef TESTS_FRAG_PATTERN_H
#define TESTS_FRAG_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "xorshift.h"

struct frag {
	void **objs, **more;     /* the small objects, then the larger ones */
	size_t *sizes;           /* objs[i]'s requested size */
	size_t n, nfree, m;      /* small objects drawn, freed at random, larger */
	size_t target;           /* bytes live at the peak, at least */
	size_t live;             /* requested bytes live now */
	size_t peak_live;        /* ... after frag_fill */
	size_t lo, span;         /* small objects: lo .. lo + span - 1 bytes */
	size_t big_lo, big_span; /* the larger ones, likewise */
	size_t more_bytes;       /* bytes of larger objects to allocate; 0: up
	                            to half the peak's live total */
	uint64_t s;              /* the xorshift64 state */
};

/* Write the first and last byte: the page is touched (RSS), the object
 * is not filled (that would measure memset). */
static inline void frag_touch(void *p, size_t n)
{
	((volatile char *)p)[0] = 1;
	((volatile char *)p)[n - 1] = 2;
}

/* Small objects of lo..hi bytes up to target live, then larger ones of
 * big_lo..big_hi: `more` bytes of them, or (0) up to half the peak. */
static inline void frag_init_sizes(struct frag *f, size_t target, size_t lo, size_t hi,
                                   size_t big_lo, size_t big_hi, size_t more)
{
	size_t cap = target / lo + 1024;
	f->objs = malloc(cap * sizeof(void *));
	f->sizes = malloc(cap * sizeof(size_t));
	f->more = NULL;
	f->target = target;
	f->n = f->nfree = f->m = f->live = f->peak_live = 0;
	f->lo = lo;
	f->span = hi - lo + 1;
	f->big_lo = big_lo;
	f->big_span = big_hi - big_lo + 1;
	f->s = 5;
	f->more_bytes = more;
}

/* frag's shape: 8..512 B, then 768..2048 B up to half the peak */
static inline void frag_init(struct frag *f, size_t target)
{
	frag_init_sizes(f, target, 8, 512, 768, 2048, 0);
}

static inline void frag_fill(struct frag *f, void *(*alloc)(size_t))
{
	while (f->live < f->target) {
		size_t sz = f->lo + xorshift64(&f->s) % f->span;
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
	/* a different size mix, until the live total is half the peak or
	 * more_bytes more are live (its array only now, where the benchmark
	 * always took it) */
	size_t want = f->more_bytes != 0 ? f->live + f->more_bytes : f->peak_live / 2;
	size_t room = f->more_bytes != 0 ? f->more_bytes : f->target / 2;
	f->more = malloc((room / f->big_lo + 1024) * sizeof(void *));
	while (f->live < want) {
		size_t sz = f->big_lo + xorshift64(&f->s) % f->big_span;
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
