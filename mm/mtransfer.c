/*
 * mtransfer.c: the transfer caches, one per size class: a bounded array
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

/* Put up to n objects of spanclass; returns how many fit (the caller
 * returns the rest to their spans). */
size_t mm_transfer_put(unsigned spanclass, const struct magentry *in, size_t n)
{
	struct transfer *t = &mheap_.transfer[spanclass].t;
	if (t->cap == 0 || LOAD(t->n) >= t->cap)
		return 0;
	if (mm_load_acquire(&t->e) == NULL) { /* pairs with the store below */
		lock_heap();
		if (t->e == NULL)
			mm_store_release(&t->e,
			                 meta_alloc(&mheap_.m_caches, t->cap * sizeof(struct magentry)));
		unlock_heap();
		if (t->e == NULL)
			return 0;
	}
	lock_transfer(t);
	size_t room = t->cap - t->n, k = n < room ? n : room;
	__builtin_memcpy(t->e + t->n, in, k * sizeof(*in));
	STORE(t->n, t->n + (uint32_t)k);
	STORE(t->puts, t->puts + (k != 0));
	unlock_transfer(t);
	return k;
}

/* Return everything the transfer caches hold to the spans.
 * pre: no mm lock held. */
void mm_transfer_drain_all(void)
{
	MM_UNLOCKED();
	struct magentry buf[64];
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		size_t k;
		while ((k = mm_transfer_take(i, buf, 64)) != 0)
			mcentral_return(&mheap_.central[i].c, buf, k);
	}
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
	struct magentry buf[64];
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
		size_t k;
		while ((k = mm_transfer_take(i, buf, 64)) != 0) {
			mcentral_return(&mheap_.central[i].c, buf, k);
			drained = true;
		}
		t->aged_ops = LOAD(t->puts) + LOAD(t->takes); /* our own takes */
		drained |= mm_load_relaxed(&mheap_.central[i].c.nempty) != 0;
	}
	if (drained)
		mcentral_free_spares();
}
