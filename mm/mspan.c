/*
 * mspan.c: a span's slot bitmaps: allocation by allocCache, the free_bits
 * through which objects come back to the span, and the sweep that merges
 * them. See malloc.c for the overview.
 *
 * Go's invariant, kept: slot i is out of the span (handed to a user or to
 * a cache) iff i < freeindex or allocBits[i]. Allocation never writes a
 * bitmap: nextFreeFast takes the lowest set bit of allocCache (the
 * complement of the 64 allocBits from freeindex on) and moves freeindex
 * past it.
 *
 * Explicit free (Go frees only by GC sweep). kfree does not come here: it
 * marks the slot's live byte 0 and puts the object in a per-CPU magazine
 * (malloc.c, mcache.c). Objects come back to their span only in batches,
 * when caches overflow or drain (mcentral_return), which sets their
 * free_bits with one atomic OR per word; the span's owner, which may be
 * allocating from it at that moment without a lock, merges them when it
 * sweeps:
 *
 *   allocBits = (allocBits | slots below freeindex) & ~XCHG(free_bits, 0)
 *   freeindex = 0, allocCount updated, allocCache reloaded.
 *
 * It runs when the caching CPU finds its span full, when a span is
 * uncached, and under mcentral.lock when a batch comes back to an
 * uncached span. A freed bit on a slot that is not out of the span is a
 * second copy of an object freed twice at once on two CPUs: "double
 * free".
 *
 * The live bytes are not the sweep's business: a slot is live iff its
 * byte is 1 (kmalloc wrote it), whatever the bitmaps say; a slot out of
 * the span with byte 0 sits in a cache.
 */
#include "internal.h"
#include "msize.h"

/* Never allocated from or freed to: allocCache 0 and nelems 0 fail
 * kmalloc's fast path (the empty mcache slot), state DEAD and nbytes 0
 * kfree's slow path (what the page map holds for pages outside every
 * span; their page descriptors are 0). */
struct mspan mspan_none = { .cached_by = CPU_NONE };

/* Fill the fields of a fresh span of `spanclass` (base, npages and the
 * bitmaps come from mheap_alloc_span) and publish it as INUSE. The
 * bitmaps and live bytes come zeroed from mheap_alloc_span. */
void mspan_init_small(struct mspan *s, unsigned spanclass)
{
	s->spanclass = (uint8_t)spanclass;
	s->elemsize = spanclass_elemsize(spanclass);
	s->divMul = spanclass_divmagic(spanclass);
	s->nelems = (uint16_t)obj_index(s->divMul, s->npages * PAGE_SIZE);
	s->div_exact = slot_magic(s->elemsize);
	s->liveshift = liveshift_of(s->elemsize);
	s->limit = s->base + (uintptr_t)s->nelems * s->elemsize;
	/* Slots past nelems in the last word are "allocated" for good, so
	 * allocCache never offers them (see mspan_nextFreeFast). */
	unsigned nw = span_nwords(s), tail = s->nelems % 64;
	if (tail != 0)
		s->allocBits[nw - 1] = ~(((uint64_t)1 << tail) - 1);
	mspan_refillAllocCache(s, 0);
	s->freeindex = 0;
	s->allocCount = 0;
	s->onlist = LIST_NONE;
	s->prev = NULL;
	/* last, after live and the rest: see live_byte (malloc.c) */
	mm_store_release(&s->nbytes, (uint32_t)(s->nelems * s->elemsize)); /* pairs: live_byte */
	span_publish(s);
}

/* Go's refillAllocCache: the complement of allocBits word `word`. */
void mspan_refillAllocCache(struct mspan *s, unsigned word)
{
	s->allocCache = ~s->allocBits[word];
}

/* Go's nextFreeIndex: the next free slot at or after freeindex, or nelems
 * if there is none; advances freeindex past it. Owner only.
 * allocCache covers the slots from freeindex to the end of its 64-slot
 * word; when the fast path used up a word it leaves the cache at 0 with
 * freeindex on the next word boundary, so an empty cache on a boundary
 * means "not loaded yet" and is refilled here before moving on. */
unsigned mspan_nextFreeIndex(struct mspan *s)
{
	unsigned fi = s->freeindex, snelems = s->nelems;
	if (fi >= snelems)
		return snelems;
	uint64_t cache = s->allocCache;
	if (cache == 0 && fi % 64 == 0)
		cache = ~s->allocBits[fi / 64];
	while (cache == 0) {
		fi = (fi + 64) & ~63u;
		if (fi >= snelems) {
			s->allocCache = 0;
			s->freeindex = (uint16_t)snelems;
			return snelems;
		}
		cache = ~s->allocBits[fi / 64];
	}
	unsigned bit = (unsigned)__builtin_ctzll(cache);
	unsigned result = fi + bit;
	if (result >= snelems) { /* only padding left: cannot happen, padding is set */
		s->allocCache = 0;
		s->freeindex = (uint16_t)snelems;
		return snelems;
	}
	s->allocCache = (cache >> bit) >> 1;
	s->freeindex = (uint16_t)(result + 1);
	return result;
}

/* Slots below freeindex within word w, as a mask. */
static inline uint64_t below_mask(unsigned fi, unsigned w)
{
	if (fi >= (w + 1) * 64)
		return ~(uint64_t)0;
	if (fi > w * 64)
		return ((uint64_t)1 << (fi - w * 64)) - 1;
	return 0;
}

/* Merge the freed bits into allocBits (see the top comment). Returns the
 * number of slots that came back. pre: owner (the caching CPU with
 * interrupts off, or mcentral.lock for an uncached span). */
unsigned mspan_sweep(struct mspan *s)
{
	unsigned nw = span_nwords(s), fi = s->freeindex, freed = 0, taken = 0;

	MM_ASSERT(fi <= s->nelems && !span_is_large(s));
	for (unsigned w = 0; w < nw; w++) {
		uint64_t below = below_mask(fi, w);
		uint64_t ab = s->allocBits[w];
		/* slots taken since the last sweep (padding bits are set in
		 * allocBits, so they never count) */
		uint64_t newly = below & ~ab;
		if (newly)
			taken += mm_popcount64(newly);
		uint64_t old = ab | below;
		/* XCHG only a word that has bits: a return landing after the
		 * load simply waits in free_bits for the next sweep. */
		uint64_t fr = mm_load_acquire(&s->free_bits[w]); /* pairs: mark_returned */
		if (fr != 0) {
			fr = mm_exchange_acq_rel(&s->free_bits[w], 0); /* takes them, as above */
			/* Only cache returns set free_bits, so a slot coming back
			 * that is not out of the span is the second copy of an
			 * object two CPUs freed at the same instant (the one
			 * double free the live bytes can miss, malloc.c). */
			if (MM_UNLIKELY(fr & ~old))
				sys_fault("double free",
				          mspan_slot_addr(s, w * 64 +
				                             (unsigned)__builtin_ctzll(fr & ~old)));
			freed += mm_popcount64(fr);
		}
		if ((old & ~fr) != ab)
			s->allocBits[w] = old & ~fr;
	}
	s->freeindex = 0;
	/* allocCount was exact at the last sweep; allocation only took
	 * slots, returns only gave them back. */
	s->allocCount = (uint16_t)(s->allocCount + taken - freed);
	if (freed)
		s->needzero = 1;
	mspan_refillAllocCache(s, 0);
	return freed;
}

/* Slots out of the span (live or cached), counting returns not swept yet
 * as back. pre: the caller owns the span or no CPU runs. */
unsigned mspan_out_count(const struct mspan *s)
{
	unsigned nw = span_nwords(s), n = 0;
	for (unsigned w = 0; w < nw; w++) {
		uint64_t out = (s->allocBits[w] | below_mask(s->freeindex, w)) &
		               ~mm_load_relaxed(&s->free_bits[w]);
		n += mm_popcount64(out & mspan_slot_mask(s, w));
	}
	return n;
}

/* Slots users hold (live byte 1). Reads the bytes racily: exact while
 * nobody allocates from or frees into s. pre: s is a small span that
 * stays INUSE (its owner, mheap.lock, or no CPU runs). */
unsigned mspan_live_count(const struct mspan *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->nelems; i++)
		n += LOAD(*mspan_live(s, i));
	return n;
}

/* Whole-span check (MM_VALIDATE, tests): fields agree with the size
 * class, counts agree with the bitmaps, no freed bit on a slot that is
 * not out, no live byte on a slot that is not out, no bit beyond nelems.
 * pre: the caller owns the span or no CPU runs. */
int mspan_valid(const struct mspan *s)
{
	if (span_state(s) != SPAN_INUSE)
		return 0;
	if (span_is_large(s))
		return s->nelems == 1 && s->elemsize != 0 && s->elemsize % PAGE_SIZE == 0 &&
		       s->elemsize <= s->npages * PAGE_SIZE && s->limit == s->base + s->elemsize;
	if (s->elemsize != spanclass_elemsize(s->spanclass) ||
	    s->npages != spanclass_npages(s->spanclass) ||
	    s->nelems != s->npages * PAGE_SIZE / s->elemsize ||
	    s->limit != s->base + (uintptr_t)s->nelems * s->elemsize || s->freeindex > s->nelems)
		return 0;
	unsigned nw = span_nwords(s), allocated = 0;
	for (unsigned w = 0; w < nw; w++) {
		uint64_t valid = mspan_slot_mask(s, w);
		uint64_t below = below_mask(s->freeindex, w);
		uint64_t ab = s->allocBits[w];
		uint64_t fr = mm_load_relaxed(&s->free_bits[w]);
		if ((ab & ~valid) != ~valid) /* padding must read allocated */
			return 0;
		if ((fr & ~valid) || (fr & ~(ab | below)))
			return 0;
		uint64_t out = (ab | below) & ~fr & valid;
		for (unsigned b = 0; b < 64 && w * 64 + b < s->nelems; b++) {
			uint8_t lv = LOAD(*mspan_live(s, w * 64 + b));
			if (lv > 1 || (lv == 1 && !((out >> b) & 1)))
				return 0;
		}
		allocated += mm_popcount64((ab | below) & valid);
	}
	/* allocCount is exact (as of the last sweep) for uncached spans */
	if (mm_load_relaxed(&s->cached_by) == CPU_NONE &&
	    allocated != s->allocCount)
		return 0;
	return 1;
}
