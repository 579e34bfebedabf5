/*
 * mcache.c: the per-CPU span cache: the slow half of kmalloc. See malloc.c
 * for the overview; the fast half (nextFreeFast on the cached span) is
 * inlined into kmalloc itself.
 *
 * Each CPU has one mcache, created on its first allocation from a
 * fixalloc, holding one cached span per size class (alloc[]; empty
 * classes point at mspan_empty so the fast path needs no NULL test) and
 * per-class counters. Only its CPU touches it, always with interrupts off,
 * so nothing here takes a lock except when it goes to the mcentral.
 *
 * There is no tiny allocator: Go packs several sub-16-byte objects into
 * one 16-byte block and frees the block only when the GC finds all of
 * them dead; with explicit free we could not tell which parts of a block
 * are still in use, so every object has its own slot.
 */
#include "internal.h"

/* This CPU's mcache, creating it (and the heap, on the host's first
 * allocation) if needed. NULL if the heap cannot be set up.
 * pre: interrupts off, cpu == sys_cpu_id(). */
struct mcache *mcache_get(unsigned cpu)
{
	MM_ASSERT(cpu < sys_config.max_cpus);
	struct mcache *c = __atomic_load_n(&mm_mcaches[cpu_slot(cpu)], __ATOMIC_ACQUIRE);
	if (c != NULL)
		return c;
	if (mheap_init() != 0)
		return NULL;
	lock_heap();
	c = fixalloc_alloc(&mheap_.cachealloc);
	unlock_heap();
	if (c == NULL)
		return NULL;
	for (unsigned i = 0; i < _NumSizeClasses; i++)
		c->alloc[i] = &mspan_empty;
	__atomic_store_n(&mm_mcaches[cpu_slot(cpu)], c, __ATOMIC_RELEASE);
	return c;
}

/* The fast path failed for sizeclass: find a slot in the cached span the
 * slow way, or sweep it, or trade it for another span from the mcentral.
 * Returns the object, or NULL when memory is exhausted.
 * pre: interrupts off; c is this CPU's mcache; sizeclass >= 1. */
void *mcache_refill_alloc(struct mcache *c, unsigned sizeclass)
{
	for (;;) {
		struct mspan *s = c->alloc[sizeclass];
		if (s != &mspan_empty) {
			MM_ASSERT(s->cachedBy == cpu_slot(sys_cpu_id()) &&
			          s->spanclass == sizeclass);
			void *v = mspan_nextFreeFast(s);
			if (v != NULL)
				return v;
			unsigned idx = mspan_nextFreeIndex(s);
			if (idx < s->nelems)
				return (void *)(s->base + (uintptr_t)idx * s->elemsize);
			/* Full as far as freeindex knows: merge the frees since
			 * the last sweep and keep the span if that freed enough
			 * slots (an eighth of it, at least one): a malloc/free
			 * loop on one CPU then runs without ever taking a lock,
			 * while a span with a stray free slot or two is traded
			 * for one that had time to collect more. */
			unsigned freed = mspan_sweep(s);
			if (freed != 0 && freed >= s->nelems / 8u)
				continue;
		}
		struct mspan *old = s == &mspan_empty ? NULL : s;
		c->alloc[sizeclass] = &mspan_empty;
		s = mcentral_refill(&mheap_.central[sizeclass].c, old, old != NULL, sys_cpu_id());
		if (s == NULL)
			return NULL;
		c->alloc[sizeclass] = s;
	}
}

/* Give every cached span back to its mcentral (Go's releaseAll).
 * pre: interrupts off; c is this CPU's mcache. */
void mcache_flush(struct mcache *c)
{
	for (unsigned i = 1; i < _NumSizeClasses; i++) {
		struct mspan *s = c->alloc[i];
		if (s == &mspan_empty)
			continue;
		c->alloc[i] = &mspan_empty;
		mcentral_uncacheSpan(&mheap_.central[i].c, s);
	}
}
