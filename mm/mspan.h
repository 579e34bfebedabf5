/*
 * mspan.h: span classes and the span record (struct mspan) with the inline
 * helpers the fast paths use (nextFreeFast, slot and live-byte lookups).
 * Part of internal.h, which includes it at its place; include internal.h,
 * not this file.
 */
#ifndef MM_MSPAN_H
#define MM_MSPAN_H

/* ---- span classes ----
 * Go's spanClass: sizeclass << 1 | noscan. Objects that hold no pointers
 * (kmalloc's KM_NOSCAN) live in spans of their own, which the leak
 * detector marks but never reads (mgcmark.c). Span classes 0 and 1 are
 * large objects (scan, noscan); every per-class array of the mcache, the
 * mcentrals and the transfer caches is indexed by span class. */
#define KMALLOC_SPANCLASSES (2 * _NumSizeClasses) /* kmalloc's: 0 .. 143 */
/* Span classes from KMALLOC_SPANCLASSES up belong to typed caches
 * (mkmemcache.c), each a class of its own with the cache's exact object
 * size, of the noscan parity its flags ask for. 256 because span classes
 * are bytes in struct mspan and in page descriptors (internal.h): that
 * leaves 56 scanned and 56 noscan caches. */
#define NUM_SPANCLASSES 256
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
 * mfixalloc.c for what such a reader then sees; or it is NULL where trim
 * gave back the map's words (mmeta.c).
 *
 * Guards: "owner" = the CPU in cached_by, with interrupts off; when the span
 * is uncached (cached_by == CPU_NONE) the owner is whoever holds its
 * mcentral's lock. "init" = written by mheap_alloc_span before state turns
 * INUSE, immutable while INUSE (a large object's npages, elemsize and
 * limit also change in krealloc's in-place growth, by the object's owner).
 * The fields kmalloc's fast path reads come first: one cache
 * line. */
struct mspan {
	uint64_t allocCache;   /* owner: ~allocBits from freeindex on; first
	                          word, which a fixalloc free list overwrites,
	                          because no stale reader looks at it */
	uintptr_t base;        /* init: first byte */
	uintptr_t elemsize;    /* init: class size; large: the object, whole
	                          pages, npages*8K less its growth room */
	uint64_t div_exact;     /* init: slot_magic(elemsize), 0 if large */
	uint32_t nbytes;        /* init: nelems * elemsize, set last (release)
	                          and cleared first when the span dies; 0 if
	                          large: mspan_slot_of fails then */
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
	/* Two cold bytes in what would be padding: without them the struct
	 * is 168 bytes, not 176, so a record of a span of up to 64 slots
	 * (struct, 64 live bytes, three one-word bitmaps) fills 256 bytes,
	 * not 320 of its fixalloc's whole lines: 20% less record memory in
	 * the commonest bucket (fragsmall after trim: 42,600 such records). */
	/* marked objects left unscanned (grey stack overflow) */
	uint8_t gcrescan;
	/* mcentral.lock (mmesh.c): the mesh pass that last looked at it */
	uint8_t mesh_seen;
	/* ---- end of the fast paths' cache line ---- */
	uint32_t divMul;       /* init: Go's class_to_divmagic, 0 if large */
	struct mspan *next;    /* mcentral list (mcentral.lock) */
	uint32_t cached_by;     /* atomic: slot (cpu_slot) of the CPU caching
	                          it, or CPU_NONE; written under mcentral.lock */
	uint8_t onlist;        /* mcentral.lock: enum mcentral_list */
	uint8_t nalias;        /* mcentral.lock: aliases mapping this span's
	                          frames (mmesh.c): it is never given back
	                          while any is left */
	uint16_t vcount;       /* scratch of mheap_valid (no CPU running) */
	uintptr_t limit;       /* init: base + nelems*elemsize */
	size_t npages;         /* init */
	struct mspan *prev;    /* mcentral.lock: list back link */
	/* Out-of-band bitmaps, 1 bit per slot, nwords = ceil(nelems/64) words
	 * each, in the span's own record after the live bytes (NULL for large
	 * spans). Nothing the allocator needs is ever stored in user memory. */
	uint64_t *allocBits;   /* owner; out of the span as of the last
	                          sweep, together with "index < freeindex" */
	uint64_t *free_bits;   /* atomic OR by mcentral_return (under the
	                          mcentral lock) into a cached span or an
	                          alias; swept with XCHG by the owner (an
	                          uncached span's returns clear allocBits) */
	uint64_t *gcmarkBits;  /* the leak detector (mgcmark.c), with the
	                          world stopped: reached in this scan;
	                          large: &gcmark1 */
	struct mspan *mesh_dst; /* mcentral.lock (mmesh.c): set, this span
	                          is (or is becoming) an alias, its pages map
	                          mesh_dst's frames; written atomically
	                          (kmalloc_heapmap reads it under mheap.lock
	                          only) */
	/* ---- end of the second line: with mesh_dst and nalias in it, a
	 * span that objects come back to (mcentral_return, mcentral_place)
	 * is read in two lines, not three (cachegrind on fragsmall: the
	 * third line was a first-level miss for 1.75M of 2.4M returns, and
	 * a third of mcentral_return's perf samples in frag) ---- */
	uintptr_t *sites;      /* the leak detector: a word per slot when
	                          sites are tracked: its backtrace's depot
	                          handle, set by the allocating CPU, and its
	                          leak flags, OR'd by its owner (internal.h,
	                          LEAK_*); large: &site1 */
	uint64_t gcmark1;      /* a large span's mark bit */
	uintptr_t site1;       /* a large object's word, as sites[] */
	/* Meshing (mmesh.c), all under the class's mcentral lock: */
	struct mspan *mesh_aliases; /* its aliases, through mesh_next */
	struct mspan *mesh_next;
};
_Static_assert(__builtin_offsetof(struct mspan, mesh_dst) < 128 &&
                       __builtin_offsetof(struct mspan, nalias) < 128,
               "what mcentral_place reads is in the record's first two lines");
/* A small span's record goes on past the struct: its live bytes (the
 * slot at byte offset off has byte mspan_livebytes(s)[off >> liveshift]:
 * 1 = the user's (live), 0 = free in the span or held by a cache, written
 * with plain stores by whoever frees or hands out that slot, malloc.c),
 * then allocBits and free_bits. Right behind the record, so the page
 * descriptor that names a record names its live bytes too, and kfree's
 * fast path reads no field of the record (internal.h). */
static inline uint8_t *mspan_livebytes(const struct mspan *s)
{
	return (uint8_t *)(uintptr_t)(s + 1);
}

/* A class's slot geometry, shared by the span's fields (mspan_init_small)
 * and the copies kfree's fast path reads (the magazines, mcache.c): the
 * slots of size class c in npages heap pages, and the live-byte shift of
 * slots of `size` bytes (struct mspan.liveshift). */
static inline unsigned class_nelems(unsigned c, size_t npages)
{
	return obj_index(class_to_divmagic[c], npages * PAGE_SIZE);
}

static inline uint8_t liveshift_of(uintptr_t size) { return (uint8_t)(63 - __builtin_clzll(size)); }

/* "No span": the sentinel in every empty mcache slot and in the page ->
 * span map of pages in no span (allocCache 0, nelems 0, state dead), so
 * the fast path fails without a NULL check. Not an "empty span", which
 * is a span with no object out. */
extern struct mspan mspan_none;

static inline bool span_is_large(const struct mspan *s)
{
	return s->spanclass < 2;
}

static inline unsigned span_nwords(const struct mspan *s)
{
	return ((unsigned)s->nelems + 63) / 64;
}

/* The slots of bitmap word w (< span_nwords) of s: all bits but the
 * padding past nelems in the last word. */
static inline uint64_t mspan_slot_mask(const struct mspan *s, unsigned w)
{
	if ((w + 1) * 64 > s->nelems)
		return ((uint64_t)1 << (s->nelems - w * 64)) - 1;
	return ~(uint64_t)0;
}

/* The state word, and a new incarnation of it: every time a record turns
 * INUSE its generation moves on, so a lock-free reader that loads the
 * word before and after reading other fields knows whether they all
 * belong to one incarnation (live_byte in malloc.c: ksize, krealloc and
 * kfree's slow path; page descriptors carry its low bits for kfree's fast
 * path). */
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
unsigned mspan_live_count(const struct mspan *s);
int mspan_valid(const struct mspan *s);
/* Index of the slot starting exactly at p, or -1. */
static inline long mspan_slot_of(const struct mspan *s, uintptr_t p)
{
	uintptr_t off = p - s->base;
	if (!slot_exact(s->div_exact, off) || off >= s->nbytes)
		return -1;
	return obj_index(s->divMul, off);
}


#endif /* MM_MSPAN_H */
