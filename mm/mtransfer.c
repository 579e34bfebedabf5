/*
 * mtransfer.c: the transfer caches, one per span class: a bounded array
 * of free objects (struct magentry) under a spinlock, through which
 * magazines hand batches to each other (tcmalloc's transfer cache,
 * Bonwick's depot). See malloc.c for the overview, mcache.c for the
 * magazines on either side.
 *
 * A CPU whose magazine overflows puts its oldest batch here; a CPU whose
 * magazine runs dry takes the newest batch (LIFO: the objects freed last
 * are the likeliest to be in some cache). So objects freed on one CPU
 * and allocated on another (producer/consumer) move in batches, one lock
 * hold per batch, without ever going back to their spans. What does not
 * fit goes to the spans (mcentral_return); trim and out-of-memory drain
 * everything held here the same way.
 *
 * The entry array of a class is carved from the metadata area on the
 * first put (under mheap.lock, before the transfer lock: that lock is a
 * leaf), so classes that never overflow a magazine cost nothing.
 *
 * kmalloc_trim gives back the whole sys pages inside the entry arrays of
 * empty transfer caches (16 KiB for a class of up to 256 bytes; after a
 * burst of frees every small class has filled its array once):
 * TC_READY -> TC_INFLIGHT (marked under mheap.lock and the transfer
 * lock; puts refuse, so n stays 0 and no take reads an entry) ->
 * released outside every lock -> TC_RELEASED; the next put commits the
 * pages again under mheap.lock (metadata growth) and makes it TC_READY.
 *
 * Aging (mm_transfer_age, with the port's clock): the background step
 * returns the objects of a class whose transfer cache saw no put or take
 * for half the release delay to their spans.
 */
#include "internal.h"

/* Take up to `want` objects of spanclass into out. Returns how many. */
size_t mm_transfer_take(unsigned spanclass, struct magentry *out, size_t want)
{
	struct transfer *t = &mheap_.transfer[spanclass].t;
	if (LOAD(t->n) == 0)
		return 0;
	lock_transfer(t);
	size_t k = t->n < want ? t->n : want;
	__builtin_memcpy(out, t->e + t->n - k, k * sizeof(*out));
	STORE(t->n, t->n - (uint32_t)k);
	STORE(t->takes, t->takes + (k != 0));
	unlock_transfer(t);
	return k;
}

static size_t tc_bytes(const struct transfer *t) { return t->cap * sizeof(struct magentry); }

/* The sys pages of t's entry array that trim may give back: [*lo, *hi),
 * all of them if it has pages of its own (tc_carve), else none. */
static void whole_pages(const struct transfer *t, uintptr_t *lo, uintptr_t *hi)
{
	*lo = *hi = (uintptr_t)t->e;
	if (tc_bytes(t) >= sys_config.page_size)
		*hi += tc_carve(tc_bytes(t));
}

/* Commit t's entry pages trim gave back; if the port refuses, t stays
 * TC_RELEASED and its puts go to the spans. pre: mheap.lock. */
static void recommit(struct transfer *t)
{
	MM_HELD_HEAP();
	uintptr_t lo, hi;
	whole_pages(t, &lo, &hi);
	if (sys_commit((void *)lo, hi - lo) != 0)
		return;
	mheap_.meta_sys += hi - lo;
	lock_transfer(t);
	STORE(t->state, TC_READY);
	unlock_transfer(t);
}

/* Put up to n objects of spanclass; returns how many fit (the caller
 * returns the rest to their spans). */
size_t mm_transfer_put(unsigned spanclass, const struct magentry *in, size_t n)
{
	struct transfer *t = &mheap_.transfer[spanclass].t;
	if (LOAD(t->n) >= LOAD(t->lim))
		return 0;
	/* acquire: pairs with the release store below */
	if (mm_load_acquire(&t->e) == NULL || LOAD(t->state) == TC_RELEASED) {
		lock_heap();
		if (t->e == NULL)
			mm_store_release(&t->e,
			                 meta_alloc_aligned(&mheap_.m_caches, tc_carve(tc_bytes(t)),
			                                    tc_align(tc_bytes(t))));
		else if (t->state == TC_RELEASED)
			recommit(t);
		unlock_heap();
		if (t->e == NULL)
			return 0;
	}
	lock_transfer(t);
	if (t->state != TC_READY) { /* given back, or going: to the spans */
		unlock_transfer(t);
		return 0;
	}
	size_t room = t->n < t->lim ? t->lim - t->n : 0, k = n < room ? n : room;
	__builtin_memcpy(t->e + t->n, in, k * sizeof(*in));
	STORE(t->n, t->n + (uint32_t)k);
	STORE(t->puts, t->puts + (k != 0));
	unlock_transfer(t);
	return k;
}

/* Return everything class i's transfer cache holds to its spans; how
 * many objects it held. pre: no mm lock held. */
size_t mm_transfer_drain_class(unsigned i)
{
	struct magentry buf[64];
	size_t k, n = 0;
	while ((k = mm_transfer_take(i, buf, 64)) != 0) {
		MM_TEST_HOOK(MM_HOOK_TRANSFER_HELD, buf[0].p);
		mcentral_return(&mheap_.central[i].c, buf, k);
		n += k;
	}
	return n;
}

/* Return everything the transfer caches hold to the spans.
 * pre: no mm lock held. */
void mm_transfer_drain_all(void)
{
	MM_UNLOCKED();
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
		mm_transfer_drain_class(i);
}

/* The shared caches age like the per-CPU ones (mcache_age): a class whose
 * transfer cache saw no put or take for half the release delay gives its
 * objects back to their spans, and the spare empty spans go back to the
 * mheap, so the pages behind them can age and be released. The
 * background step calls it every quarter delay. pre: no mm lock held;
 * mheap.bg_busy held (aged_ops, aged_at). */
void mm_transfer_age(uint64_t now)
{
	MM_UNLOCKED();
	bool drained = false;
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct transfer *t = &mheap_.transfer[i].t;
		uint64_t ops = LOAD(t->puts) + LOAD(t->takes);
		if (ops != t->aged_ops) {
			t->aged_ops = ops;
			t->aged_at = now;
			continue;
		}
		if (now - t->aged_at < mheap_.release_ns / 2)
			continue;
		drained |= mm_transfer_drain_class(i) != 0;
		t->aged_ops = LOAD(t->puts) + LOAD(t->takes); /* our own takes */
		drained |= mm_load_relaxed(&mheap_.central[i].c.nempty) != 0;
	}
	if (drained)
		mcentral_free_spares();
}

/* Give back the entry pages of every empty transfer cache (kmalloc_trim,
 * after the caches were drained). pre: no mm lock held. */
void mm_transfer_trim(void)
{
	MM_UNLOCKED();
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct transfer *t = &mheap_.transfer[i].t;
		uintptr_t lo, hi;
		if (mm_load_acquire(&t->e) == NULL)
			continue;
		whole_pages(t, &lo, &hi);
		if (lo == hi)
			continue;
		bool go = false;
		lock_heap();
		lock_transfer(t);
		if (t->n == 0 && t->state == TC_READY) {
			STORE(t->state, TC_INFLIGHT);
			mheap_.meta_sys -= hi - lo;
			go = true;
		}
		unlock_transfer(t);
		unlock_heap();
		if (!go)
			continue;
		sys_release((void *)lo, hi - lo);
		lock_heap();
		lock_transfer(t);
		STORE(t->state, TC_RELEASED);
		unlock_transfer(t);
		unlock_heap();
	}
}

/* Bytes of entry pages given back (the validator's count). pre:
 * mheap.lock, nothing trimming. */
size_t mm_transfer_released_bytes(void)
{
	size_t n = 0;
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct transfer *t = &mheap_.transfer[i].t;
		uintptr_t lo, hi;
		if (t->e == NULL || t->state == TC_READY)
			continue;
		whole_pages(t, &lo, &hi);
		n += hi - lo;
	}
	return n;
}
