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
 *     mcentral[i].lock  ->  mheap.lock  ->  transfer[j].lock
 *
 * No code holds two mcentral or two transfer locks at once; in practice
 * nothing is taken while a transfer lock is held (a leaf). mheap.lock also
 * guards the fixallocs and the metadata commit watermarks. sys_commit may
 * run under mheap.lock (metadata growth); sys_release never runs under
 * any lock.
 */
#ifndef MM_INTERNAL_H
#define MM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h" /* mm_load_acquire, ..., LOAD/STORE */
#include "fmt.h" /* mm_fmt_*: sys_log lines */
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
 * mspan.cached_by: slot 0 holds no mcache (an id of 0 - 1 would land
 * there), so code that indexes by slot needs no bounds test. */
#define CPU_NONE 0xffffffffu /* cached_by of an uncached span */
static inline unsigned cpu_slot(unsigned cpu)
{
	return cpu + 1u;
}

/* ---- checks, in grades (like mimalloc's MI_DEBUG) ----
 * MM_CHECK     always on: corruption and misuse; reports through sys_fault
 *              as "kmalloc: <fault>: <pointer>".
 * MM_ASSERT    MM_DEBUG >= 1 (-DMM_DEBUG or -DMM_DEBUG=1): cheap internal
 *              invariants on hot paths, and lock-held assertions
 *              (MM_HELD/MM_UNLOCKED below). The fuzzer runs this grade.
 * MM_VALIDATE  MM_DEBUG >= 2: whole-structure validators (mspan_valid,
 *              pa_valid, mheap_valid), O(structure) each time; tests also
 *              call the validators directly after every step.
 * A failure names the file, line and the condition, so a report from a
 * user's machine points at one line. */
#define MM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MM_LIKELY(x) __builtin_expect(!!(x), 1)
#define MM_CHECK(cond, msg, p)                                   \
	do {                                                     \
		if (MM_UNLIKELY(!(cond)))                        \
			sys_fault((msg), (const void *)(uintptr_t)(p)); \
	} while (0)
#define MM_STR2(x) #x
#define MM_STR(x) MM_STR2(x)
#define MM_WHERE __FILE__ ":" MM_STR(__LINE__)
#if defined(MM_DEBUG) && MM_DEBUG >= 1
#define MM_ASSERT(cond) MM_CHECK(cond, "assertion failed at " MM_WHERE ": " #cond, 0)
#else
#define MM_ASSERT(cond) ((void)0)
#endif
#if defined(MM_DEBUG) && MM_DEBUG >= 2
#define MM_VALIDATE(expr) MM_CHECK(expr, "validation failed at " MM_WHERE ": " #expr, 0)
#else
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

/* A statistics counter only its CPU writes and others read racily: a plain
 * increment (one add to memory on the fast paths), a relaxed store under
 * ThreadSanitizer so the racy reads stay reported as benign. */
#if defined(__SANITIZE_THREAD__)
#define COUNT(x) STORE(x, (x) + 1)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COUNT(x) STORE(x, (x) + 1)
#endif
#endif
#ifndef COUNT
#define COUNT(x) ((x)++)
#endif

/* ---- span classes ----
 * Go's spanClass: sizeclass << 1 | noscan. Objects that hold no pointers
 * (kmalloc's KM_NOSCAN) live in spans of their own, which the leak
 * detector marks but never reads (mgcmark.c). Span classes 0 and 1 are
 * large objects (scan, noscan); every per-class array of the mcache, the
 * mcentrals and the transfer caches is indexed by span class. */
#define NUM_SPANCLASSES (2 * _NumSizeClasses)
static inline unsigned spanclass_make(unsigned sizeclass, unsigned noscan)
{
	return sizeclass << 1 | noscan;
}
static inline unsigned spanclass_size(unsigned spc)
{
	return spc >> 1;
}
static inline unsigned spanclass_noscan(unsigned spc)
{
	return spc & 1;
}

/* ---- mspan ---- */

/* Low three bits of mspan.state; the bits above count the record's
 * incarnations (see span_publish). INUSE is the only odd state, so the
 * fast path tests one bit. */
enum mspan_state {
	SPAN_DEAD = 0,    /* record free, or span returned to the mheap */
	SPAN_INUSE = 1,   /* small span of objects, or a live large object */
	SPAN_FREEING = 2, /* large object being freed (kfree won the CAS) */
	SPAN_CACHED = 4,  /* large span freed into a CPU's large cache */
};
#define SPAN_STATE_MASK 7u
#define SPAN_GEN_ONE 8u

/* A run of heap pages: either a small-object span of one size class
 * (spanclass = sizeclass << 1 | noscan) or a large object (spanclass 0,
 * or 1 if noscan). Records come from a fixalloc, so a stale
 * pointer from the page->span map points at some mspan record (readers
 * check state and range) unless kmalloc_trim released its block: see
 * mfixalloc.c for what such a reader then sees.
 *
 * Guards: "owner" = the CPU in cached_by, with interrupts off; when the span
 * is uncached (cached_by == CPU_NONE) the owner is whoever holds its
 * mcentral's lock. "init" = written by mheap_alloc_span before state turns
 * INUSE, immutable while INUSE (a large object's npages, elemsize and
 * limit also change in krealloc's in-place growth, by the object's owner).
 * The fields kfree and kmalloc's fast paths read come first: one cache
 * line. */
struct mspan {
	uint64_t allocCache;   /* owner: ~allocBits from freeindex on; first
	                          word, which a fixalloc free list overwrites,
	                          because no stale reader looks at it */
	uintptr_t base;        /* init: first byte */
	uintptr_t elemsize;    /* init: class size, or npages*8K if large */
	uint64_t div_exact;     /* init: slot_magic(elemsize), 0 if large */
	uint32_t nbytes;       /* init: nelems * elemsize, set last (release)
	                          and cleared first when the span dies; 0 if
	                          large: kfree's fast slot test fails then */
	uint16_t freeindex;    /* owner */
	uint16_t nelems;       /* init */
	uint32_t state;        /* atomic: generation << 3 | mspan_state */
	uint8_t spanclass;     /* init: span class; < 2 = large */
	uint8_t needzero;      /* owner: free slots may hold old data */
	uint16_t allocCount;   /* owner: slots out of the span (live or in
	                          a cache) as of the last sweep; slots above
	                          freeindex taken since then are not counted
	                          (see mspan_nextFreeFast) */
	uint8_t liveshift;     /* init: log2 of the largest power of two <=
	                          elemsize: slot starts are at least that far
	                          apart, so off >> liveshift names one slot's
	                          live byte without a division */
	/* ---- end of the fast paths' cache line ---- */
	uint32_t divMul;       /* init: Go's class_to_divmagic, 0 if large */
	struct mspan *next;    /* mcentral list (mcentral.lock) */
	uint32_t cached_by;     /* atomic: slot (cpu_slot) of the CPU caching
	                          it, or CPU_NONE; written under mcentral.lock */
	uint8_t onlist;        /* mcentral.lock: enum mcentral_list */
	uint16_t vcount;       /* scratch of mheap_valid (no CPU running) */
	uintptr_t limit;       /* init: base + nelems*elemsize */
	size_t npages;         /* init */
	struct mspan *prev;    /* mcentral.lock: list back link */
	/* Out-of-band bitmaps, 1 bit per slot, nwords = ceil(nelems/64) words
	 * each, in the span's own record after the live bytes (NULL for large
	 * spans). Nothing the allocator needs is ever stored in user memory. */
	uint64_t *allocBits;   /* owner; out of the span as of the last
	                          sweep, together with "index < freeindex" */
	uint64_t *free_bits;    /* atomic OR by mcentral_return (under the
	                          mcentral lock); swept with XCHG by the owner */
	/* The leak detector (mgcmark.c), with the world stopped: */
	uint64_t *gcmarkBits;  /* reached in this scan; large: &gcmark1 */
	uintptr_t *sites;      /* allocation site per slot when tracked, set
	                          by the allocating CPU; large: &site1 */
	uint64_t gcmark1;      /* a large span's mark bit */
	uintptr_t site1;       /* a large object's allocation site */
	uint8_t gcrescan;      /* marked objects left unscanned (grey stack
	                          overflow) */
};
/* A small span's record goes on past the struct: its live bytes (the
 * slot at byte offset off has byte mspan_livebytes(s)[off >> liveshift]:
 * 1 = the user's (live), 0 = free in the span or held by a cache, written
 * with plain stores by whoever frees or hands out that slot, malloc.c),
 * then allocBits and free_bits. Right behind the record, so kfree can load
 * the span's fields and the live byte at once, both from s, instead of
 * one after the other (a cache miss less on a random free). */
static inline uint8_t *mspan_livebytes(const struct mspan *s)
{
	return (uint8_t *)(uintptr_t)(s + 1);
}

/* The sentinel in every empty mcache slot: allocCache 0, nelems 0, so the
 * fast path fails without a NULL check. */
extern struct mspan mspan_empty;

static inline bool span_is_large(const struct mspan *s)
{
	return s->spanclass < 2;
}

static inline unsigned span_nwords(const struct mspan *s)
{
	return ((unsigned)s->nelems + 63) / 64;
}

/* The state word, and a new incarnation of it: every time a record turns
 * INUSE its generation moves on, so a lock-free reader that loads the
 * word before and after reading other fields knows whether they all
 * belong to one incarnation (kfree's fast path, see malloc.c). */
static inline uint32_t span_state_word(const struct mspan *s)
{
	return mm_load_acquire(&s->state); /* pairs: span_set_state, span_publish */
}
static inline unsigned span_state(const struct mspan *s)
{
	return span_state_word(s) & SPAN_STATE_MASK;
}
static inline void span_set_state(struct mspan *s, enum mspan_state st)
{
	uint32_t w = mm_load_relaxed(&s->state);
	mm_store_release(&s->state, (w & ~SPAN_STATE_MASK) | st); /* the record first */
}
static inline void span_publish(struct mspan *s)
{
	uint32_t w = mm_load_relaxed(&s->state);
	/* release: every field of the new incarnation before its state */
	mm_store_release(&s->state, ((w & ~SPAN_STATE_MASK) + SPAN_GEN_ONE) | SPAN_INUSE);
}

/* Owner only. Go's nextFreeFast: the next free slot from allocCache, or
 * -1 when the cache word is used up.
 * Differences from Go, both to keep the fast path short: allocBits beyond
 * nelems are set (permanently "allocated"), so the cache never offers a
 * slot past the end and there is no `idx < nelems` test; and when the last
 * bit of a cache word is taken the cache is simply left at 0 with
 * freeindex on the word boundary, and nextFreeIndex refills it lazily,
 * instead of testing for the boundary on every allocation. allocCount is
 * not maintained here either: it is recomputed by every sweep, the only
 * time it is read. */
static inline long mspan_nextFreeFast(struct mspan *s)
{
	uint64_t cache = s->allocCache;
	if (MM_UNLIKELY(cache == 0))
		return -1;
	unsigned b = (unsigned)__builtin_ctzll(cache);
	unsigned idx = s->freeindex + b;
	s->allocCache = (cache >> b) >> 1;
	s->freeindex = (uint16_t)(idx + 1);
	return idx;
}

static inline void *mspan_slot_addr(const struct mspan *s, unsigned idx)
{
	return (void *)(s->base + (uintptr_t)idx * s->elemsize);
}

/* The live byte of slot idx. */
static inline uint8_t *mspan_live(const struct mspan *s, unsigned idx)
{
	return &mspan_livebytes(s)[((uintptr_t)idx * s->elemsize) >> s->liveshift];
}

/* Live bytes a span of size class c needs (one per 2^liveshift bytes). */
static inline size_t live_bytes_of(unsigned sizeclass, size_t npages)
{
	unsigned shift = 63 - (unsigned)__builtin_clzll(class_to_size[sizeclass]);
	return (npages * PAGE_SIZE) >> shift;
}

unsigned mspan_nextFreeIndex(struct mspan *s);
void mspan_refillAllocCache(struct mspan *s, unsigned word);
unsigned mspan_sweep(struct mspan *s);
void mspan_init_small(struct mspan *s, unsigned spanclass);
unsigned mspan_out_count(const struct mspan *s);
int mspan_valid(const struct mspan *s);
/* Index of the slot starting exactly at p, or -1. */
static inline long mspan_slot_of(const struct mspan *s, uintptr_t p)
{
	uintptr_t off = p - s->base;
	if (!slot_exact(s->div_exact, off) || off >= s->nbytes)
		return -1;
	return obj_index(s->divMul, off);
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
	uint32_t touched;  /* pagealloc.epoch of its last allocation or free
	                      (the scavenger releases cold chunks first) */
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
	uint32_t epoch;                      /* the scavenger's epoch count */
};

size_t pa_level_len(size_t cap_chunks, unsigned level, unsigned *nlevels);
void pa_init(struct pagealloc *pa, size_t cap_chunks);
void pa_grow(struct pagealloc *pa, size_t new_nchunks);
long pa_find(const struct pagealloc *pa, size_t npages);
void pa_set_alloc(struct pagealloc *pa, size_t pg, size_t n, bool alloc);
void pa_set_alloc_quiet(struct pagealloc *pa, size_t pg, size_t n, bool alloc);
size_t pa_scav_count(const struct pagealloc *pa, size_t pg, size_t n);
void pa_set_scav(struct pagealloc *pa, size_t pg, size_t n, bool scav);
bool pa_scav_next_run(const struct pagealloc *pa, size_t pg, size_t n,
                      size_t *run_pg, size_t *run_n);
bool pa_highest_unscav_free(const struct pagealloc *pa, uint32_t min_age, size_t *pg,
                            size_t *n);
bool pa_is_alloc(const struct pagealloc *pa, size_t pg);
bool pa_range_free(const struct pagealloc *pa, size_t pg, size_t n);
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
	size_t used;      /* bump pointer (fixalloc area, m_caches) */
};
int meta_ensure(struct metaarr *m, size_t bytes);
void *meta_alloc(struct metaarr *m, size_t bytes);

/* ---- per-CPU object caches (mcache.c) and transfer caches ----
 *
 * A magazine (Bonwick's word) is a bounded stack of free objects of one
 * class, per CPU; the transfer cache is a bounded array of free objects of
 * one class shared by all CPUs, which moves them between CPUs in batches
 * (tcmalloc's transfer cache, Bonwick's depot). An entry carries the
 * object and its live byte, so popping it marks it live without finding
 * its span. Bounds are in bytes (see mm_cache_init): */
#define MAG_BYTES ((size_t)16 << 10)  /* per CPU and class */
#define MAG_MIN 4
#define MAG_MAX 128
#define TC_BYTES ((size_t)64 << 10)   /* per class, shared */
#define TC_MAX 1024

struct magentry {
	void *p;        /* a free object, held by this cache */
	uint8_t *live;  /* its live byte (0 while cached) */
};

/* One class of one CPU's mcache: only that CPU touches it, with
 * interrupts off, except that kmalloc_stats reads the counters (written
 * with COUNT, read with LOAD). [base, top) are the entries held. One
 * cache line. The entries are carved on the class's first slow path
 * (mcache_mag_ready): until then all three pointers are NULL, which
 * fails both fast paths, so a CPU pays only for the classes it uses. */
struct magazine {
	struct magentry *top;   /* next free entry */
	struct magentry *base;  /* [mm_cache.mag_cap[class]], once set */
	struct magentry *limit; /* base + capacity */
	uint64_t allocs;        /* objects handed out on this CPU */
	uint64_t frees;         /* objects freed on this CPU */
	uint64_t pad[3];
};

static inline uint32_t mag_count(const struct magazine *m)
{
	return (uint32_t)(m->top - m->base);
}

/* Freed large spans kept per CPU for reuse without mheap.lock (see
 * mlarge.c). At most LARGE_CACHE_N spans and LARGE_CACHE_BYTES. */
#define LARGE_CACHE_N 32
#define LARGE_CACHE_BYTES ((size_t)2 << 20)
#define LARGE_CACHE_MAXPAGES 32 /* spans up to 256 KiB are cached */

/* Per CPU; only that CPU touches it, with interrupts off, except the
 * counters kmalloc_stats reads (LOAD/STORE) and drain_seen (atomic). */
struct mcache {
	struct magazine mag[NUM_SPANCLASSES];
	struct mspan *alloc[NUM_SPANCLASSES]; /* cached span per class,
	                                         or &mspan_empty */
	struct mspan *lbin[LARGE_CACHE_MAXPAGES + 1]; /* cached large spans
	                                         by page count, linked through
	                                         mspan.next */
	uint32_t nlarge;                      /* spans in lbin */
	uint64_t large_cached_bytes;
	uint64_t large_allocs, large_frees;   /* large objects, this CPU */
	uint64_t large_alloc_bytes, large_free_bytes;
	uint64_t drain_seen;                  /* atomic: the mheap.drain_gen
	                                         this CPU last drained at */
	uint32_t polls;                       /* atomic: the port calls
	                                         kmalloc_safepoint here */
	uint32_t cpu;                         /* immutable: its CPU id */
};

/* The transfer cache of one class. */
struct transfer {
	struct sys_lock lock;
	uint32_t n;            /* lock: entries held */
	uint32_t cap;          /* immutable: mm_cache.tc_cap[class] */
	struct magentry *e;    /* lock: [cap], set on first use */
	uint64_t puts, takes;  /* lock (read racily): batches moved, for
	                          tests and reports */
};
struct transfer_padded {
	struct transfer t;
	char pad[(64 - sizeof(struct transfer) % 64) % 64];
} __attribute__((aligned(64)));

/* Immutable after mheap_init: per-class cache sizes. */
struct mm_cache_sizes {
	uint16_t mag_cap[NUM_SPANCLASSES];  /* magazine capacity */
	uint16_t batch[NUM_SPANCLASSES];    /* objects moved at once */
	uint16_t tc_cap[NUM_SPANCLASSES];   /* transfer cache capacity */
	size_t mcache_bytes;                /* an mcache without entries */
	size_t mcache_max_bytes;            /* ... with every magazine's */
	size_t tc_bytes;                    /* every transfer cache's entries */
};

struct mcache *mcache_get(unsigned cpu);
void *mcache_refill_alloc(struct mcache *c, unsigned spanclass, bool *needzero);
void *mcache_alloc_slow(struct mcache *c, unsigned spanclass, bool *needzero);
void mcache_spill(struct mcache *c, unsigned spanclass);
bool mcache_mag_ready(struct mcache *c, unsigned spanclass);
void mcache_drain(struct mcache *c, bool keep_spans);
void mcache_poll(struct mcache *c);
void mm_cache_init(void);
size_t mm_transfer_take(unsigned spanclass, struct magentry *out, size_t want);
size_t mm_transfer_put(unsigned spanclass, const struct magentry *in, size_t n);
void mm_transfer_drain_all(void);
bool mm_drain_all(bool wait);

/* ---- mcentral (mcentral.c) ---- */

enum mcentral_list { LIST_NONE = 0, LIST_PARTIAL = 1, LIST_FULL = 2 };

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
	uint64_t nspans;         /* lock: spans of this class in use */
	uint64_t returned;       /* lock: objects given back to spans */
	uint32_t nempty;         /* lock (read racily as a hint): spare
	                            empty spans at the tail of partial */
};
#define MCENTRAL_SPARE 1         /* empty spans a class keeps */

/* Go pads mheap.central entries to a cache line so CPUs working on
 * different classes do not share lines. */
struct mcentral_padded {
	struct mcentral c;
	char pad[(64 - sizeof(struct mcentral) % 64) % 64];
} __attribute__((aligned(64)));

struct mspan *mcentral_cacheSpan(struct mcentral *c, unsigned cpu);
struct mspan *mcentral_refill(struct mcentral *c, struct mspan *old, unsigned cpu);
void mcentral_uncacheSpan(struct mcentral *c, struct mspan *s);
void mcentral_return(struct mcentral *c, struct magentry *e, size_t n);
void mcentral_free_spares(void);

/* ---- mheap (mheap.c) ---- */

#define SCAV_EPOCHS 4 /* epochs the scavenger's recent peak spans */
#define SCAV_COLD 2   /* epochs a chunk stays untouched before the paced
                         scavenger releases from it */

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
	struct mm_cache_sizes cs;
	/* mheap.lock */
	uintptr_t arena_used;      /* end of grown arena (atomic for readers) */
	uintptr_t arena_used_bytes; /* arena_used - arena_start (atomic) */
	struct pagealloc pages;
	struct metaarr m_spans, m_chunks, m_sum[PA_MAX_LEVELS], m_fix, m_fixblk, m_caches;
	struct fixalloc greyalloc;    /* the leak detector's grey blocks */
	struct fixalloc spanalloc[6]; /* span records: [0] large, [1 + b]
	                                 small with bitmap bucket b */
	uint32_t fix_released;     /* released fixalloc blocks: index + 1 of
	                              the first (struct fixblk.next), 0 = none */
	uint64_t pages_inuse;      /* in spans (including large spans held
	                              by CPUs' large caches) */
	uint64_t pages_free;       /* free, committed */
	uint64_t pages_released;   /* free, Reserved (includes in-flight
	                              scavenging) */
	uint64_t pages_sys;        /* grown */
	uint64_t meta_sys;         /* committed metadata bytes */
	uint64_t large_pages;      /* pages of large spans (live or cached) */
	/* scavenger pacing (mscavenge.c), mheap.lock */
	uint64_t scav_peaks[SCAV_EPOCHS]; /* highest pages_inuse in this
	                              epoch ([0]) and the ones before */
	uint64_t scav_epoch_alloc; /* pages allocated this epoch */
	int scav_pending;          /* atomic: free pages above the goal */
	int inited;
	bool track_sites;          /* immutable after init: record where each
	                              object was allocated (sys_config) */
	uint64_t drain_gen;        /* atomic: drain requests (mm_drain_all) */
	struct mcentral_padded central[NUM_SPANCLASSES];
	struct transfer_padded transfer[NUM_SPANCLASSES];
};

extern struct mheap mheap_;

/* Locks go through these so a debug build (MM_DEBUG >= 1) can check the
 * lock order written at the top of this file, like Go's lockrank: taking
 * a lock while holding one of equal or higher rank is a fault. It also
 * remembers which lock of each rank a CPU holds, so a function that must
 * run under a lock says so with MM_HELD(&lock) and one that must run with
 * none (it may commit, release or take a lock) says MM_UNLOCKED(). The
 * check assumes a CPU does not migrate while it holds an mm lock (true on
 * both ports: the kernel's sys_lock keeps interrupts off, a host "CPU" is
 * a thread). */
enum mm_lockrank { RANK_MCENTRAL = 1, RANK_MHEAP = 2, RANK_TRANSFER = 3, RANK_N };
#ifdef MM_DEBUG
void mm_lockrank_acquire(enum mm_lockrank r, const struct sys_lock *l);
void mm_lockrank_release(enum mm_lockrank r);
bool mm_lock_held(enum mm_lockrank r, const struct sys_lock *l);
bool mm_no_lock_held(void);
#define MM_HELD(r, l) MM_ASSERT(mm_lock_held((r), (l)))
#define MM_UNLOCKED() MM_ASSERT(mm_no_lock_held())
#else
static inline void mm_lockrank_acquire(enum mm_lockrank r, const struct sys_lock *l)
{
	(void)r;
	(void)l;
}
static inline void mm_lockrank_release(enum mm_lockrank r) { (void)r; }
#define MM_HELD(r, l) ((void)0)
#define MM_UNLOCKED() ((void)0)
#endif
#define MM_HELD_HEAP() MM_HELD(RANK_MHEAP, &mheap_.lock)
#define MM_HELD_CENTRAL(c) MM_HELD(RANK_MCENTRAL, &(c)->lock)
static inline void mm_lock(enum mm_lockrank r, struct sys_lock *l)
{
	mm_lockrank_acquire(r, l);
	sys_lock(l);
}
static inline void mm_unlock(enum mm_lockrank r, struct sys_lock *l)
{
	sys_unlock(l);
	mm_lockrank_release(r);
}
#define lock_heap() mm_lock(RANK_MHEAP, &mheap_.lock)
#define unlock_heap() mm_unlock(RANK_MHEAP, &mheap_.lock)
#define lock_central(c) mm_lock(RANK_MCENTRAL, &(c)->lock)
#define unlock_central(c) mm_unlock(RANK_MCENTRAL, &(c)->lock)
#define lock_transfer(t) mm_lock(RANK_TRANSFER, &(t)->lock)
#define unlock_transfer(t) mm_unlock(RANK_TRANSFER, &(t)->lock)

/* Per-CPU mcache pointers, indexed by cpu_slot (entry 0 stays NULL),
 * published by their CPU, read by it and by kmalloc_stats. A static
 * array (not metadata) so the fast path works before kmalloc_init: a NULL
 * entry sends it to the slow path, which initialises the heap on the
 * host. sys_config.max_cpus must not exceed MM_MAX_CPUS: 32768, what a
 * Linux process reaches with its default limits (vm.max_map_count allows
 * about 32,000 thread stacks; the host port's CPUs are threads). The
 * array costs 256 KiB of zero pages, touched as CPUs appear. */
#define MM_MAX_CPUS 32768
extern struct mcache *mm_mcaches[MM_MAX_CPUS + 1];
/* The mcache published at slot, or NULL. Acquire: pairs with mcache_get's
 * release store, so the mcache's fields are initialised when seen. */
static inline struct mcache *mcache_at(unsigned slot)
{
	return mm_load_acquire(&mm_mcaches[slot]);
}

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
#else
/* The port has no slot of its own: a second table, filled only through
 * mcache_fast_set, so that it can stay empty (site tracking). */
extern struct mcache *mm_fast_mcaches[MM_MAX_CPUS + 1];
static inline struct mcache *mcache_fast(void)
{
	return mm_fast_mcaches[cpu_slot(sys_cpu_id())];
}
static inline void mcache_fast_set(struct mcache *c)
{
	mm_fast_mcaches[cpu_slot(sys_cpu_id())] = c;
}
#endif

int mheap_init(void);
/* Whether mheap_init has run. Acquire: pairs with the release store that
 * ends mheap_init, so every field it set is visible. */
static inline bool mheap_inited(void)
{
	return mm_load_acquire(&mheap_.inited);
}
/* mheap_init, inline when it already ran. */
static inline int mheap_ready(void)
{
	if (MM_LIKELY(mheap_inited()))
		return 0;
	return mheap_init();
}
/* This CPU's mcache: the port's fast slot, else mcache_get (which may
 * create it). pre: interrupts off. */
static inline struct mcache *mcache_this(void)
{
	struct mcache *c = mcache_fast();
	if (MM_LIKELY(c != NULL))
		return c;
	c = mcache_get(sys_cpu_id());
	/* With allocation sites tracked the fast slot stays empty, so every
	 * kmalloc and kfree takes the slow path, which records them. */
	if (c != NULL && !mheap_.track_sites)
		mcache_fast_set(c);
	return c;
}
struct mspan *mheap_alloc_span(size_t npages, unsigned spanclass,
                               size_t align_pages);
void mheap_free_span(struct mspan *s, bool released);
bool mheap_extend_span(struct mspan *s, size_t npages);
static inline struct mspan *spanOf(uintptr_t p)
{
	/* unsigned wrap makes p < arena_start fail the same test */
	if (p - mheap_.arena_start >= LOAD(mheap_.arena_used_bytes))
		return NULL;
	/* acquire: pairs with mheap_alloc_span's store of the entry */
	return mm_load_acquire(&mheap_.spans[(p - mheap_.arena_start) >> PAGE_SHIFT]);
}

/* ---- large objects (mlarge.c) ---- */

void *mm_alloc_large(size_t size, size_t align, unsigned flags, uintptr_t site);
void kfree_large(struct mspan *s, uintptr_t p);
void *mm_realloc_large(struct mspan *s, void *p, size_t size, unsigned flags, uintptr_t site);
void mlarge_drain(struct mcache *c);

/* ---- scavenger (mscavenge.c) ---- */

/* Release free committed pages until at most keep_bytes stay committed
 * free. pre: no mm lock held. */
void mheap_scavenge(uint64_t keep_bytes);
/* A bounded step toward the retain goal, if the free pages exceed it.
 * pre: no mm lock held. */
void mheap_scavenge_paced(void);
uint64_t mheap_retain_goal(void);
uint64_t mheap_recent_peak(void);
/* Account npages just taken from the page allocator. pre: mheap.lock. */
void mheap_scav_note_alloc(size_t npages);

/* ---- validation and census (mstats.c) ---- */

struct mm_census {
	uint64_t spans_cached;   /* small spans in some mcache */
	uint64_t spans_partial;  /* on mcentral partial lists */
	uint64_t spans_full;     /* on mcentral full lists */
	uint64_t spans_large;    /* large spans (live or in a large cache) */
	uint64_t spans_small;    /* every small span in use */
	uint64_t pages_inuse;    /* pages of in-use spans (page map walk) */
	uint64_t pages_free;     /* free committed pages (bitmap walk) */
	uint64_t pages_released; /* free released pages (bitmap walk) */
	uint64_t objs_cached;    /* objects in magazines and transfer caches */
};
void mm_census(struct mm_census *out);
int mheap_valid(void);

/* ---- malloc.c helpers ---- */

/* NULL for "out of memory or impossible size", told to the port first
 * (sys_config.nomem). pre: no mm lock held. */
static inline void *mm_nomem(void)
{
	if (sys_config.nomem != NULL)
		sys_config.nomem();
	return NULL;
}

void *mm_alloc_class(unsigned spanclass, unsigned flags, uintptr_t site);

/* ---- leak detector (mgcmark.c) ---- */

/* A grey block: fixed size, from mheap.greyalloc (one per fixalloc
 * block), chained. */
#define GREY_BLOCK FIX_BLOCK
#define GREY_N ((GREY_BLOCK - 2 * sizeof(void *)) / sizeof(uintptr_t))
#define GREY_MAX_BLOCKS 64 /* then marked objects wait for a rescan */
struct greyblk {
	struct greyblk *next;
	size_t n;
	uintptr_t obj[GREY_N];
};
#define MAX_ROOTS 64 /* kmalloc_add_root ranges */
void mm_record_site(void *v, uintptr_t site);

#pragma GCC visibility pop

#endif /* MM_INTERNAL_H */
