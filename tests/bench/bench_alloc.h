/*
 * bench_alloc.h: the one seam between a benchmark program and the
 * allocator it measures. Each bench program calls only ba_malloc, ba_free
 * and ba_footprint, and is compiled once per allocator:
 *
 *   -DBENCH_KMALLOC   ours: kmalloc/kfree from build/host/libkmalloc.a;
 *                     footprint from kmalloc_stats
 *   (nothing)         the C library's malloc/free, or whatever malloc the
 *                     program is linked against (-ljemalloc, -ltcmalloc,
 *                     -lmimalloc: the later comparison issue only adds
 *                     link lines); footprint from mallinfo2 when that is
 *                     glibc's, else from the process's resident set
 *
 * BENCH_ALLOC_NAME names the allocator in the output (default "kmalloc"
 * or "glibc").
 */
#ifndef BENCH_ALLOC_H
#define BENCH_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* What the allocator holds, in bytes. */
struct ba_footprint {
	uint64_t held;   /* committed from the OS: what it costs in memory */
	uint64_t in_use; /* in spans / chunks in use (0 if unknown) */
};

#ifdef BENCH_KMALLOC
#include "kmalloc.h"

#ifndef BENCH_ALLOC_NAME
#define BENCH_ALLOC_NAME "kmalloc"
#endif

static inline void *ba_malloc(size_t n)
{
	return kmalloc(n, 0);
}

static inline void ba_free(void *p)
{
	kfree(p);
}

static inline void ba_footprint(struct ba_footprint *f)
{
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	f->held = st.committed;
	f->in_use = st.heap_inuse;
}

#else /* the linked malloc */
#include <malloc.h>

#ifndef BENCH_ALLOC_NAME
#define BENCH_ALLOC_NAME "glibc"
#endif

static inline void *ba_malloc(size_t n)
{
	return malloc(n);
}

static inline void ba_free(void *p)
{
	free(p);
}

static inline void ba_footprint(struct ba_footprint *f)
{
#if defined(__GLIBC__) && !defined(BENCH_OTHER_MALLOC)
	/* arena: bytes the main and thread arenas got from brk/mmap;
	 * hblkhd: bytes in mmap'd chunks; uordblks: bytes in chunks in use
	 * (with their headers). */
	struct mallinfo2 mi = mallinfo2();
	f->held = mi.arena + mi.hblkhd;
	f->in_use = mi.uordblks + mi.hblkhd;
#else
	/* Another malloc: resident pages of the whole process. */
	long pages = 0, resident = 0;
	FILE *fp = fopen("/proc/self/statm", "r");
	if (fp) {
		if (fscanf(fp, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(fp);
	}
	f->held = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
	f->in_use = 0;
#endif
}
#endif

#endif /* BENCH_ALLOC_H */
