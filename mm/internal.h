/*
 * internal.h: the allocator's shared types, constants, check macros, lock
 * order and cross-file prototypes. See malloc.c for the overview. Tests
 * include this header (and nothing else of mm/ but kmalloc.h and
 * sizeclasses.h): it is the one deliberate way into the internals, like
 * Go's export_test.go.
 *
 * Words used in one sense only:
 *   heap page  8 KiB, the unit of the page allocator and of spans
 *   sys page   sys_config.page_size (4 KiB), the unit of commit/release
 *   frame      4 KiB of physical memory (kernel port only)
 *   chunk      512 heap pages (4 MiB), the unit of heap growth and of the
 *              page allocator's bitmaps
 *   arena      the part of the reserved region that holds heap pages
 *
 * Lock order (take left before right, never the reverse):
 *
 *     mcentral[i].lock  ->  mheap.lock
 *
 * No code holds two mcentral locks at once. mheap.lock also guards the
 * fixallocs and the metadata commit watermarks. sys_commit may run under
 * mheap.lock (metadata growth); sys_release never runs under any lock.
 */
#ifndef MM_INTERNAL_H
#define MM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmalloc.h"
#include "msize.h"
#include "sizeclasses.h"
#include "sys.h"

/* Nothing below is part of the library's interface: hidden visibility lets
 * the fast path reach mheap_ and mm_mcaches without a GOT load when the
 * objects are built -fPIC (host library, LD_PRELOAD shim). */
#pragma GCC visibility push(hidden)

/* ---- constants ---- */

#define PAGE_SHIFT _PageShift
#define PAGE_SIZE ((uintptr_t)1 << PAGE_SHIFT)
#define CHUNK_PAGES 512
#define CHUNK_SHIFT (PAGE_SHIFT + 9)
#define CHUNK_BYTES ((uintptr_t)1 << CHUNK_SHIFT)
#define CHUNK_WORDS (CHUNK_PAGES / 64)
#define SPAN_MAX_WORDS (_MaxObjsPerSpan / 64) /* allocBits words, 8 B class */
/* CPUs are named by their slot, id + 1, in mm_mcaches and in
 * mspan.cachedBy: slot 0 is what SYS_CPU_UNKNOWN maps to (unsigned wrap)
 * and holds no mcache, so the fast path needs no bounds test. */
#define CPU_NONE 0xffffffffu /* cachedBy of an uncached span */
static inline unsigned cpu_slot(unsigned cpu)
{
	return cpu + 1u;
}

/* ---- checks (style.md: graded) ----
 * MM_CHECK     always on: corruption and misuse; reports through sys_fault.
 * MM_ASSERT    debug builds (-DMM_DEBUG): internal invariants on hot paths.
 * MM_VALIDATE  debug builds: whole-structure validators (mheap_valid),
 *              which tests also call directly after every step. */
#define MM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MM_LIKELY(x) __builtin_expect(!!(x), 1)
#define MM_CHECK(cond, msg, p)                                   \
	do {                                                     \
		if (MM_UNLIKELY(!(cond)))                        \
			sys_fault((msg), (const void *)(uintptr_t)(p)); \
	} while (0)
#ifdef MM_DEBUG
#define MM_ASSERT(cond) MM_CHECK(cond, "assertion failed: " #cond, 0)
#define MM_VALIDATE(expr) MM_CHECK(expr, "validation failed: " #expr, 0)
#else
#define MM_ASSERT(cond) ((void)0)
#define MM_VALIDATE(expr) ((void)0)
#endif

/* An out-of-line function the compiler must treat as opaque: GCC would
 * otherwise see that it never returns and give its caller a stack frame
 * for the call (noipa is GCC's; clang does not do that analysis). */
#if defined(__GNUC__) && !defined(__clang__)
#define MM_OUTLINE __attribute__((noipa))
#else
#define MM_OUTLINE __attribute__((noinline))
#endif

/* Population count without libgcc's __popcountdi2 (the kernel build has
 * no -mpopcnt and links no libgcc). */
static inline unsigned mm_popcount64(uint64_t x)
{
	x = x - ((x >> 1) & 0x5555555555555555ull);
	x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

/* Population count of a word with few bits set (a sweep's freed bits):
 * one step per bit instead of the full reduction. */
static inline unsigned mm_popcount_sparse(uint64_t x)
{
	unsigned n = 0;
	for (; x != 0; x &= x - 1)
		n++;
	return n;
}

/* Relaxed atomic load/store of plain fields that one side writes while
 * another reads (plain mov on x86-64; keeps the compiler and TSan honest). */
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* ---- mspan ---- */

enum mspan_state {
	SPAN_DEAD = 0,    /* record free, or span returned to the mheap */
	SPAN_INUSE = 1,   /* small span of objects, or a live large object */
	SPAN_FREEING = 2, /* large object being freed (kfree won the CAS) */
};

/* A run of heap pages: either a small-object span of one size class
 * (spanclass = sizeclass, there is no scan/noscan split without a GC) or a
 * large object (spanclass 0). Records come from a fixalloc, so a stale
 * pointer from the page->span map points at some mspan record (readers
 * check state and range) unless kmalloc_trim released its block: see
 * mfixalloc.c for what such a reader then sees.
 *
 * Guards: "owner" = the CPU in cachedBy, with interrupts off; when the span
 * is uncached (cachedBy == CPU_NONE) the owner is whoever holds its
 * mcentral's lock. "init" = written by mheap_alloc_span before state turns
 * INUSE, immutable while INUSE. */
struct mspan {
	struct mspan *next;    /* mcentral list (mcentral.lock), or fixalloc
	                          free list (mheap.lock); first word so the
	                          fixalloc link never overlaps fields stale
	                          readers look at */
	uint64_t allocCache;   /* owner: ~allocBits from freeindex on */
	uintptr_t base;        /* init: first byte */
	uintptr_t elemsize;    /* init: class size, or npages*8K if large */
	uint16_t freeindex;    /* owner (STORE; remote freers LOAD it) */
	uint16_t nelems;       /* init */
	uint16_t allocCount;   /* owner: allocated slots as of the last sweep
	                          (slots above freeindex taken since then are
	                          not counted; see mspan_nextFreeFast) */
	uint8_t spanclass;     /* init: size class, 0 = large */
	uint8_t needzero;      /* owner: free slots may hold old data */
	uint32_t divMul;       /* init: class_to_divmagic */
	uint32_t state;        /* atomic: enum mspan_state */
	uint32_t cachedBy;     /* atomic: slot (cpu_slot) of the CPU caching
	                          it, or CPU_NONE;
	                          written under mcentral.lock */
	uint32_t inflight;     /* atomic: remote frees in progress */
	uint32_t sweepseq;     /* owner writes (seqlock, odd = sweeping);
	                          remote freers read */
	uint32_t queued;       /* atomic: Q_CLEAN, Q_STACKED (on its
	                          mcentral's sweep stack), Q_PARKED (popped,
	                          known to need a sweep); see mcentral.c */
	uint8_t onlist;        /* mcentral.lock: enum mcentral_list */
	int32_t nremote;       /* atomic: remote frees not merged by a sweep
	                          yet (off by the frees in flight, briefly);
	                          tells a remote freer it emptied the span */
	uintptr_t limit;       /* init: base + nelems*elemsize */
	size_t npages;         /* init */
	struct mspan *prev;    /* mcentral.lock: list back link */
	struct mspan *sweepnext; /* sweep stack link (see mcentral.c) */
	/* Out-of-band bitmaps, 1 bit per slot, nwords = ceil(nelems/64) words
	 * each, from a fixalloc (NULL for large spans). Nothing the allocator
	 * needs is ever stored in user memory. */
	uint64_t *allocBits;   /* owner; allocated as of the last sweep,
	                          together with "index < freeindex" */
	uint64_t *localFree;   /* owner (STORE): freed by the caching CPU */
	uint64_t *remoteFree;  /* atomic OR by any CPU; swept with XCHG */
};

/* The sentinel in every empty mcache slot: allocCache 0, nelems 0, so the
 * fast path fails without a NULL check. */
extern struct mspan mspan_empty;

static inline unsigned span_nwords(const struct mspan *s)
{
	return ((unsigned)s->nelems + 63) / 64;
}

/* Owner only. Go's nextFreeFast: the next free slot from allocCache, or
 * NULL when the cache word is used up.
 * Differences from Go, both to keep the fast path short: allocBits beyond
 * nelems are set (permanently "allocated"), so the cache never offers a
 * slot past the end and there is no `idx < nelems` test; and when the last
 * bit of a cache word is taken the cache is simply left at 0 with
 * freeindex on the word boundary, and nextFreeIndex refills it lazily,
 * instead of testing for the boundary on every allocation. allocCount is
 * not maintained here either: it is recomputed by every sweep, the only
 * time it is read. */
static inline void *mspan_nextFreeFast(struct mspan *s)
{
	uint64_t cache = s->allocCache;
	if (MM_UNLIKELY(cache == 0))
		return NULL;
	unsigned b = (unsigned)__builtin_ctzll(cache);
	unsigned idx = s->freeindex + b;
	s->allocCache = (cache >> b) >> 1;
	STORE(s->freeindex, (uint16_t)(idx + 1));
	return (void *)(s->base + (uintptr_t)idx * s->elemsize);
}

unsigned mspan_nextFreeIndex(struct mspan *s);
void mspan_refillAllocCache(struct mspan *s, unsigned word);
unsigned mspan_sweep(struct mspan *s);
void mspan_pending(struct mspan *s, uint64_t *allocs, uint64_t *lfrees);
void mspan_init_small(struct mspan *s, unsigned sizeclass);
int mspan_valid(struct mspan *s);
/* Index of the slot starting exactly at p, or -1. pre: s small. */
static inline long mspan_slot_of(const struct mspan *s, uintptr_t p)
{
	uintptr_t off = p - s->base;
	if (p < s->base || p >= s->limit)
		return -1;
	unsigned idx = obj_index(s->divMul, off);
	if (s->base + (uintptr_t)idx * s->elemsize != p)
		return -1;
	return idx;
}

/* Is slot idx live (allocated and not freed)? Safe from any CPU: reads the
 * bitmaps under the sweep sequence counter. *freed_before tells a double
 * free (slot in a freed bitmap, or free) from a live slot. */
static inline bool mspan_slot_live(struct mspan *s, unsigned idx, bool *freed_before)
{
	unsigned w = idx / 64;
	uint64_t bit = (uint64_t)1 << (idx % 64);
	uint32_t s1, s2;
	unsigned fi;
	uint64_t ab, lf, rf;

	for (;;) {
		s1 = __atomic_load_n(&s->sweepseq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue; /* a sweep is running: a few hundred cycles */
		fi = LOAD(s->freeindex);
		ab = LOAD(s->allocBits[w]);
		lf = LOAD(s->localFree[w]);
		rf = LOAD(s->remoteFree[w]);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&s->sweepseq, __ATOMIC_RELAXED);
		if (s1 == s2)
			break;
	}
	bool allocated = idx < fi || (ab & bit);
	bool freed = ((lf | rf) & bit) != 0;
	if (freed_before)
		*freed_before = !allocated || freed;
	return allocated && !freed;
}



/* ---- page allocator (mpagealloc.c) ---- */

/* Free-run summary of a chunk or of a subtree of chunks, in heap pages:
 * free pages at the start, the longest free run, free pages at the end. */
struct psum {
	uint32_t start, max, end;
};

/* Per chunk: 1 = page allocated (or not grown); scav 1 = page free and
 * released to the port (Reserved). A page is never both. */
struct pchunk {
	uint64_t alloc[CHUNK_WORDS];
	uint64_t scav[CHUNK_WORDS];
};

#define PA_MAX_LEVELS 8
#define PA_FANOUT 8

struct pagealloc {
	struct pchunk *chunks;               /* [cap_chunks] */
	struct psum *sum[PA_MAX_LEVELS];     /* sum[0]: one per chunk;
	                                        sum[k]: one per 8^k chunks */
	size_t level_len[PA_MAX_LEVELS];
	unsigned nlevels;                    /* sum[nlevels-1] has 1 entry */
	size_t cap_chunks;                   /* chunks the arena can hold */
	size_t nchunks;                      /* chunks grown so far */
};

size_t pa_level_len(size_t cap_chunks, unsigned level, unsigned *nlevels);
void pa_init(struct pagealloc *pa, size_t cap_chunks);
void pa_grow(struct pagealloc *pa, size_t new_nchunks);
long pa_find(const struct pagealloc *pa, size_t npages);
void pa_set_alloc(struct pagealloc *pa, size_t pg, size_t n, bool alloc);
size_t pa_scav_count(const struct pagealloc *pa, size_t pg, size_t n);
void pa_set_scav(struct pagealloc *pa, size_t pg, size_t n, bool scav);
bool pa_scav_next_run(const struct pagealloc *pa, size_t pg, size_t n,
                      size_t *run_pg, size_t *run_n);
bool pa_highest_unscav_free(const struct pagealloc *pa, size_t *pg,
                            size_t *n);
bool pa_is_alloc(const struct pagealloc *pa, size_t pg);
bool pa_is_scav(const struct pagealloc *pa, size_t pg);
struct psum pa_chunk_sum(const struct pchunk *c);
int pa_valid(const struct pagealloc *pa);

/* ---- fixalloc (mfixalloc.c): metadata records, under mheap.lock ---- */

struct fixalloc {
	size_t size;      /* bytes per record */
	bool zero;        /* hand out zeroed records */
	void *list;       /* free records, linked through their first word;
	                     FIFO so a freed record keeps its old contents as
	                     long as possible (a repeated kfree of a large
	                     object then still finds it and says "double free") */
	void *tail;
	uintptr_t chunk;  /* bump pointer into the current block */
	uintptr_t end;
	size_t inuse;     /* records handed out */
};

void fixalloc_init(struct fixalloc *f, size_t size, bool zero);
void *fixalloc_alloc(struct fixalloc *f);
void fixalloc_free(struct fixalloc *f, void *p);
void fixalloc_trim(void);

/* The fixalloc area is carved in FIX_BLOCK blocks, one fixalloc each.
 * Per block (in mheap.m_fixblk, mheap.lock): how many of its records are
 * handed out, and whether its memory is there (see mfixalloc.c). */
#define FIX_BLOCK ((size_t)16 << 10)
/* READY -> RELEASING (idle, off every list) -> INFLIGHT (one trim is
 * releasing it, outside the lock) -> RELEASED (on mheap.fix_released)
 * -> READY (a refill committed it again). */
enum fixblk_state { FB_READY = 0, FB_RELEASING = 1, FB_INFLIGHT = 2, FB_RELEASED = 3 };
struct fixblk {
	uint16_t live;      /* records of this block handed out */
	uint16_t state;     /* enum fixblk_state */
	uint32_t next;      /* FB_RELEASED: next released block + 1, 0 = end */
};

/* ---- metadata area: bump allocation of reserved space, committed on
 * demand (mheap.lock) ---- */

struct metaarr {
	uintptr_t base;
	size_t size;      /* reserved bytes */
	size_t committed; /* bytes from base that are Ready */
	size_t used;      /* bump pointer (fixalloc area only) */
};
int meta_ensure(struct metaarr *m, size_t bytes);

/* ---- mcache (mcache.c) ---- */

/* Per CPU; only that CPU touches it, with interrupts off, except that
 * kmalloc_stats reads the counters (written with STORE, read with LOAD).
 * The counters are brought up to date by each sweep of a span this CPU
 * caches (and so by every uncache and flush), not on the fast path: see
 * mstats.c. */
struct mcache {
	struct mspan *alloc[_NumSizeClasses]; /* cached span per class,
	                                         or &mspan_empty */
	uint64_t allocs[_NumSizeClasses];     /* objects allocated here */
	uint64_t frees[_NumSizeClasses];      /* local frees done here */
};

struct mcache *mcache_get(unsigned cpu);
void *mcache_refill_alloc(struct mcache *c, unsigned sizeclass);
void mcache_flush(struct mcache *c);

/* ---- mcentral (mcentral.c) ---- */

enum mcentral_list { LIST_NONE = 0, LIST_PARTIAL = 1, LIST_FULL = 2, LIST_UNSWEPT = 3 };
enum mspan_queued { Q_CLEAN = 0, Q_STACKED = 1, Q_PARKED = 2 };

/* A list of spans linked through mspan.next/prev, used as a stack (see
 * mcentral.c). mcentral.lock. */
struct spanlist {
	struct mspan *head, *tail;
	uint64_t len;
};

struct mcentral {
	struct sys_lock lock;
	unsigned spanclass;      /* immutable */
	struct spanlist partial; /* lock: swept uncached spans with a free slot */
	struct spanlist full;    /* lock: swept uncached spans without */
	struct spanlist unswept; /* lock: uncached spans with remote frees
	                            not merged yet */
	uint32_t parked_hint;    /* atomic: some listed span may be PARKED
	                            (for lock-free "anything to reclaim?") */
	struct mspan *sweepq;    /* atomic push (remote freers); drained
	                            with XCHG under lock */
	uint64_t nspans;         /* lock: spans of this class in use */
	uint64_t remote_frees;   /* atomic: frees by non-caching CPUs */
};

/* Go pads mheap.central entries to a cache line so CPUs working on
 * different classes do not share lines. */
struct mcentral_padded {
	struct mcentral c;
	char pad[(64 - sizeof(struct mcentral) % 64) % 64];
} __attribute__((aligned(64)));

struct mspan *mcentral_cacheSpan(struct mcentral *c, unsigned cpu);
struct mspan *mcentral_refill(struct mcentral *c, struct mspan *old, bool old_swept,
                              unsigned cpu);
bool mcentral_reclaim_pending(void);
void mcentral_uncacheSpan(struct mcentral *c, struct mspan *s);
void mcentral_reclaim(struct mcentral *c);
void mcentral_reclaim_all(void);
void mcentral_note_remote_free(struct mcentral *c, struct mspan *s, int32_t pending);

/* ---- mheap (mheap.c) ---- */

struct mheap {
	struct sys_lock lock;
	/* immutable after kmalloc_init */
	uintptr_t region;          /* sys_reserve'd base */
	size_t region_size;
	uintptr_t arena_start;     /* CHUNK_BYTES-aligned */
	uintptr_t arena_end;
	struct mspan **spans;      /* page -> span map, one per arena page;
	                              entries written under lock (release),
	                              read lock-free; stale on free pages */
	/* mheap.lock */
	uintptr_t arena_used;      /* end of grown arena (atomic for readers) */
	uintptr_t arena_used_bytes; /* arena_used - arena_start (atomic) */
	struct pagealloc pages;
	struct metaarr m_spans, m_chunks, m_sum[PA_MAX_LEVELS], m_fix, m_fixblk;
	struct fixalloc spanalloc, cachealloc, bitsalloc[5];
	uint32_t fix_released;     /* released fixalloc blocks: index + 1 of
	                              the first (struct fixblk.next), 0 = none */
	uint64_t pages_inuse;      /* in spans */
	uint64_t pages_free;       /* free, committed */
	uint64_t pages_released;   /* free, Reserved (includes in-flight
	                              scavenging) */
	uint64_t pages_sys;        /* grown */
	uint64_t meta_sys;         /* committed metadata bytes */
	uint64_t large_allocs, large_frees, large_live, large_pages;
	int scav_pending;          /* free pages above the retain goal */
	int inited;
	struct mcentral_padded central[_NumSizeClasses];
};

extern struct mheap mheap_;

/* Locks go through these so a debug build (-DMM_DEBUG) can check the lock
 * order written at the top of this file, like Go's lockrank: taking a
 * lock while holding one of equal or higher rank is a fault. The check
 * assumes a CPU does not migrate while it holds an mm lock (true on both
 * ports: the kernel's sys_lock keeps interrupts off, a host "CPU" is a
 * thread). */
enum mm_lockrank { RANK_MCENTRAL = 1, RANK_MHEAP = 2 };
#ifdef MM_DEBUG
void mm_lockrank_acquire(enum mm_lockrank r);
void mm_lockrank_release(enum mm_lockrank r);
#else
static inline void mm_lockrank_acquire(enum mm_lockrank r) { (void)r; }
static inline void mm_lockrank_release(enum mm_lockrank r) { (void)r; }
#endif
static inline void lock_heap(void)
{
	mm_lockrank_acquire(RANK_MHEAP);
	sys_lock(&mheap_.lock);
}
static inline void unlock_heap(void)
{
	sys_unlock(&mheap_.lock);
	mm_lockrank_release(RANK_MHEAP);
}
static inline void lock_central(struct mcentral *c)
{
	mm_lockrank_acquire(RANK_MCENTRAL);
	sys_lock(&c->lock);
}
static inline void unlock_central(struct mcentral *c)
{
	sys_unlock(&c->lock);
	mm_lockrank_release(RANK_MCENTRAL);
}

/* Per-CPU mcache pointers, indexed by cpu_slot (entry 0 stays NULL),
 * published by their CPU, read by it and by kmalloc_stats. A static
 * array (not metadata) so the fast path works before kmalloc_init: a NULL
 * entry sends it to the slow path, which initialises the heap on the
 * host. sys_config.max_cpus must not exceed MM_MAX_CPUS. */
#define MM_MAX_CPUS 1024
extern struct mcache *mm_mcaches[MM_MAX_CPUS + 1];

/* This CPU's mcache for kmalloc's fast path, or NULL (then the slow path
 * finds or makes it and calls mcache_fast_set). pre: interrupts off. */
#if defined(SYS_MCACHE_GET)
static inline struct mcache *mcache_fast(void)
{
	return SYS_MCACHE_GET();
}
static inline void mcache_fast_set(struct mcache *c)
{
	SYS_MCACHE_SET(c);
}
#elif defined(SYS_MCACHE_SLOT)
static inline struct mcache *mcache_fast(void)
{
	return SYS_MCACHE_SLOT();
}
static inline void mcache_fast_set(struct mcache *c)
{
	SYS_MCACHE_SLOT() = c;
}
#else
static inline struct mcache *mcache_fast(void)
{
	return mm_mcaches[cpu_slot(SYS_CPU_ID_FAST())];
}
static inline void mcache_fast_set(struct mcache *c)
{
	(void)c;
}
#endif

int mheap_init(void);
struct mspan *mheap_alloc_span(size_t npages, unsigned spanclass,
                               size_t align_pages);
void mheap_free_span(struct mspan *s);
static inline struct mspan *spanOf(uintptr_t p)
{
	/* unsigned wrap makes p < arena_start fail the same test */
	if (p - mheap_.arena_start >= LOAD(mheap_.arena_used_bytes))
		return NULL;
	return __atomic_load_n(&mheap_.spans[(p - mheap_.arena_start) >> PAGE_SHIFT],
	                       __ATOMIC_ACQUIRE);
}

/* ---- scavenger (mscavenge.c) ---- */

/* Release free committed pages until at most keep_bytes stay committed
 * free. pre: no mm lock held. */
void mheap_scavenge(uint64_t keep_bytes);
/* Scavenge down to the retain goal if a free pushed past it. */
void mheap_scavenge_maybe(void);
uint64_t mheap_retain_goal(void);

/* ---- validation and census (mstats.c) ---- */

struct mm_census {
	uint64_t spans_cached;   /* small spans in some mcache */
	uint64_t spans_partial;  /* on mcentral partial lists */
	uint64_t spans_unswept;  /* on mcentral unswept lists */
	uint64_t spans_full;     /* on mcentral full lists */
	uint64_t spans_large;    /* live large objects */
	uint64_t spans_small;    /* every small span in use */
	uint64_t pages_inuse;    /* pages of in-use spans (page map walk) */
	uint64_t pages_free;     /* free committed pages (bitmap walk) */
	uint64_t pages_released; /* free released pages (bitmap walk) */
};
void mm_census(struct mm_census *out);
int mheap_valid(void);

/* ---- malloc.c helpers ---- */

void *mm_alloc_class(unsigned sizeclass, unsigned flags);
void *mm_alloc_large(size_t size, size_t align, unsigned flags);
/* Tiny formatter for sys_log lines: appends to buf, returns new length. */
size_t mm_fmt_str(char *buf, size_t n, size_t cap, const char *s);
size_t mm_fmt_u64(char *buf, size_t n, size_t cap, uint64_t v, int width);

#pragma GCC visibility pop

#endif /* MM_INTERNAL_H */
