/*
 * mspan.c: a span's slot bitmaps: allocation by allocCache, explicit free
 * bits, and the sweep that merges them. See malloc.c for the overview.
 *
 * Go's invariant, kept: slot i is allocated iff i < freeindex or
 * allocBits[i]. Allocation never writes a bitmap: nextFreeFast takes the
 * lowest set bit of allocCache (the complement of the 64 allocBits from
 * freeindex on) and moves freeindex past it.
 *
 * Explicit free (Go frees only by GC sweep). We use the facts sheet's
 * option B, "freed bits merged lazily", because it is the only one that
 * keeps both the allocation fast path free of atomic read-modify-writes
 * and every double free detectable:
 *   - option A (a live bitmap written on every allocation) would add a
 *     bitmap store to the allocation fast path, and an atomic one as soon
 *     as other CPUs may clear bits in the same word;
 *   - option C (an intrusive free list, Go 1.26 freegc) writes allocator
 *     data into user memory, which a user's overflow can redirect, and it
 *     cannot see a double free without a bitmap anyway.
 * So each span has two "freed since the last sweep" bitmaps besides
 * allocBits:
 *   localFree   set with a plain store by the CPU that caches the span
 *               (interrupts off, so nobody else writes it);
 *   remoteFree  set with an atomic fetch-or by any other CPU; the old
 *               value of the bit catches a second free deterministically.
 * A slot is live iff allocated (above) and in neither freed bitmap.
 *
 * Sweep (Go's name: the same moment Go turns mark bits into alloc bits):
 *   allocBits = (allocBits | slots below freeindex) & ~(localFree | XCHG(remoteFree, 0))
 *   freeindex = 0, allocCount updated, allocCache reloaded; the
 *   allocations and local frees it merged are counted into the caching
 *   CPU's mcache (the fast paths count nothing).
 * It runs when the caching CPU finds its span full (so a kmalloc/kfree
 * loop on one CPU reuses its slots without any lock), when a span is
 * uncached, and under mcentral.lock when an unswept span (one that remote
 * frees touched) is handed out or reclaimed. Remote freers read the bitmaps
 * without a lock, so a sweep is bracketed by a sequence counter
 * (sweepseq, odd while sweeping) and they retry if it moved.
 */
#include "internal.h"
#include "msize.h"

/* Never allocated from: allocCache 0 and nelems 0 fail every fast path. */
struct mspan mspan_empty = { .cachedBy = CPU_NONE };

/* Fill the fields of a fresh span of `sizeclass` (base, npages and the
 * bitmaps come from mheap_alloc_span) and publish it as INUSE. The
 * bitmaps come zeroed from their fixalloc. */
void mspan_init_small(struct mspan *s, unsigned sizeclass)
{
	s->spanclass = (uint8_t)sizeclass;
	s->elemsize = class_to_size[sizeclass];
	s->nelems = (uint16_t)obj_index(class_to_divmagic[sizeclass], s->npages * PAGE_SIZE);
	s->divMul = class_to_divmagic[sizeclass];
	s->limit = s->base + (uintptr_t)s->nelems * s->elemsize;
	/* Slots past nelems in the last word are "allocated" for good, so
	 * allocCache never offers them (see mspan_nextFreeFast). */
	unsigned nw = span_nwords(s), tail = s->nelems % 64;
	if (tail != 0)
		STORE(s->allocBits[nw - 1], ~(((uint64_t)1 << tail) - 1));
	mspan_refillAllocCache(s, 0);
	STORE(s->freeindex, 0);
	s->allocCount = 0;
	s->onlist = LIST_NONE;
	s->prev = NULL;
	s->sweepnext = NULL;
	__atomic_store_n(&s->inflight, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->queued, Q_CLEAN, __ATOMIC_RELAXED);
	__atomic_store_n(&s->nremote, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->state, SPAN_INUSE, __ATOMIC_RELEASE);
}

/* Go's refillAllocCache: the complement of allocBits word `word`. */
void mspan_refillAllocCache(struct mspan *s, unsigned word)
{
	s->allocCache = ~LOAD(s->allocBits[word]);
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
		cache = ~LOAD(s->allocBits[fi / 64]);
	while (cache == 0) {
		fi = (fi + 64) & ~63u;
		if (fi >= snelems) {
			s->allocCache = 0;
			STORE(s->freeindex, (uint16_t)snelems);
			return snelems;
		}
		cache = ~LOAD(s->allocBits[fi / 64]);
	}
	unsigned bit = (unsigned)__builtin_ctzll(cache);
	unsigned result = fi + bit;
	if (result >= snelems) { /* only padding left: cannot happen, padding is set */
		s->allocCache = 0;
		STORE(s->freeindex, (uint16_t)snelems);
		return snelems;
	}
	s->allocCache = (cache >> bit) >> 1;
	STORE(s->freeindex, (uint16_t)(result + 1));
	return result;
}

/* Merge the freed bits into allocBits (see the top comment). Returns the
 * number of slots that became free. pre: owner (the caching CPU with
 * interrupts off, or mcentral.lock for an uncached span). A freed bit on a
 * slot that was not allocated means the bitmaps were corrupted. */
unsigned mspan_sweep(struct mspan *s)
{
	unsigned nw = span_nwords(s), fi = s->freeindex, freed = 0, local = 0, taken = 0,
	         remote = 0;
	uint32_t seq = s->sweepseq;

	MM_ASSERT(fi <= s->nelems && s->spanclass != 0);
	__atomic_store_n(&s->sweepseq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned w = 0; w < nw; w++) {
		uint64_t below;
		if (fi >= (w + 1) * 64)
			below = ~(uint64_t)0;
		else if (fi > w * 64)
			below = ((uint64_t)1 << (fi - w * 64)) - 1;
		else
			below = 0;
		uint64_t ab = s->allocBits[w];
		/* slots taken since the last sweep (padding bits are set in
		 * allocBits, so they never count) */
		uint64_t newly = below & ~ab;
		if (newly)
			taken += mm_popcount64(newly);
		uint64_t old = ab | below;
		/* XCHG only a word that has bits: a remote free landing after
		 * the load simply waits in remoteFree for the next sweep. */
		uint64_t rf = __atomic_load_n(&s->remoteFree[w], __ATOMIC_SEQ_CST);
		if (rf != 0) {
			rf = __atomic_exchange_n(&s->remoteFree[w], 0, __ATOMIC_SEQ_CST);
			remote += mm_popcount_sparse(rf);
		}
		uint64_t lf = s->localFree[w], fr = lf | rf;
		if (fr) {
			/* lf and rf are disjoint (each kfree checks the other) */
			MM_CHECK((fr & ~old) == 0 && (lf & rf) == 0, "corrupt span bitmaps",
			         s->base);
			if (lf) {
				/* local frees come in bulk (a free loop): full count */
				local += mm_popcount64(lf);
				STORE(s->localFree[w], 0);
			}
		}
		if ((old & ~fr) != ab)
			STORE(s->allocBits[w], old & ~fr);
	}
	STORE(s->freeindex, 0);
	__atomic_store_n(&s->sweepseq, seq + 2, __ATOMIC_RELEASE);
	/* allocCount was exact at the last sweep; allocation only took
	 * slots, frees only gave them back. */
	freed = local + remote;
	STORE(s->allocCount, (uint16_t)(s->allocCount + taken - freed));
	if (remote != 0)
		__atomic_sub_fetch(&s->nremote, (int32_t)remote, __ATOMIC_RELAXED);
	if (freed)
		s->needzero = 1;
	/* Allocations and local frees are counted here, not on the fast
	 * paths: only the caching CPU allocates from a span and sets its
	 * localFree bits, and only it (or its uncache) sweeps it, so its
	 * mcache is the right place. */
	if (local != 0 || taken != 0) {
		unsigned slot = __atomic_load_n(&s->cachedBy, __ATOMIC_RELAXED);
		MM_CHECK(slot != CPU_NONE && slot != 0 && slot <= MM_MAX_CPUS,
		         "allocations on an uncached span", s->base);
		struct mcache *c = mm_mcaches[slot];
		STORE(c->frees[s->spanclass], c->frees[s->spanclass] + local);
		STORE(c->allocs[s->spanclass], c->allocs[s->spanclass] + taken);
	}
	mspan_refillAllocCache(s, 0);
	return freed;
}

/* What the next sweep will count: slots allocated and slots freed
 * locally since the last one. pre: owner. */
void mspan_pending(struct mspan *s, uint64_t *allocs, uint64_t *lfrees)
{
	unsigned nw = span_nwords(s), fi = s->freeindex;
	for (unsigned w = 0; w < nw; w++) {
		uint64_t valid = ~(uint64_t)0, below = 0;
		if ((w + 1) * 64 > s->nelems)
			valid = ((uint64_t)1 << (s->nelems - w * 64)) - 1;
		if (fi >= (w + 1) * 64)
			below = ~(uint64_t)0;
		else if (fi > w * 64)
			below = ((uint64_t)1 << (fi - w * 64)) - 1;
		*allocs += mm_popcount64(below & ~s->allocBits[w] & valid);
		*lfrees += mm_popcount64(s->localFree[w]);
	}
}

/* Whole-span check (MM_VALIDATE, tests): fields agree with the size
 * class, counts agree with the bitmaps, no freed bit on a free slot, no
 * bit beyond nelems. pre: the caller owns the span or no CPU runs. */
int mspan_valid(struct mspan *s)
{
	if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SPAN_INUSE)
		return 0;
	if (s->spanclass == 0)
		return s->nelems == 1 && s->elemsize == s->npages * PAGE_SIZE &&
		       s->limit == s->base + s->elemsize;
	if (s->spanclass >= _NumSizeClasses ||
	    s->elemsize != class_to_size[s->spanclass] ||
	    s->npages != class_to_allocnpages[s->spanclass] ||
	    s->nelems != s->npages * PAGE_SIZE / s->elemsize ||
	    s->limit != s->base + (uintptr_t)s->nelems * s->elemsize ||
	    s->freeindex > s->nelems)
		return 0;
	unsigned nw = span_nwords(s), allocated = 0;
	for (unsigned w = 0; w < nw; w++) {
		uint64_t valid = ~(uint64_t)0;
		if ((w + 1) * 64 > s->nelems)
			valid = ((uint64_t)1 << (s->nelems - w * 64)) - 1;
		uint64_t below = 0;
		if (s->freeindex >= (w + 1) * 64)
			below = ~(uint64_t)0;
		else if (s->freeindex > w * 64)
			below = ((uint64_t)1 << (s->freeindex - w * 64)) - 1;
		uint64_t ab = LOAD(s->allocBits[w]);
		uint64_t fr = LOAD(s->localFree[w]) | LOAD(s->remoteFree[w]);
		if ((ab & ~valid) != ~valid) /* padding must read allocated */
			return 0;
		if ((fr & ~valid) || (fr & ~(ab | below)))
			return 0;
		allocated += mm_popcount64((ab | below) & valid);
	}
	/* allocCount is exact (as of the last sweep) for uncached spans */
	if (__atomic_load_n(&s->cachedBy, __ATOMIC_RELAXED) == CPU_NONE &&
	    allocated != s->allocCount)
		return 0;
	return 1;
}
