/*
 * mcentral.c: per-size-class pools of spans that no CPU caches. See
 * malloc.c for the overview.
 *
 * One mcentral per size class (68, padded to a cache line each, as Go
 * pads mheap.central). Each holds, under its spinlock:
 *   partial  uncached spans with at least one free slot (swept);
 *   full     uncached spans without one;
 * and, lock-free, a "sweep stack" of spans that remote frees touched.
 *
 * We use Go's pre-1.15 design, a lock and two doubly-linked lists, not
 * Go's current lock-free spanSets: explicit free must move an arbitrary
 * span from full to partial (or to the mheap) when a free lands on it,
 * which a list does in O(1) and a spanSet cannot do at all.
 *
 * Flow:
 *   cacheSpan (mcache refill): drain the sweep stack, then hand out the
 *     first partial span; else grow: a fresh span from mheap_alloc_span
 *     (taken without holding this lock, as Go's mcentral.grow).
 *   uncacheSpan (mcache full span or flush): sweep, mark uncached, file
 *     under partial/full, or give it back to the mheap when empty.
 *   remote kfree: sets the slot's remoteFree bit, then pushes the span
 *     here once (its needsweep flag guards against pushing twice). A
 *     drain pops the whole stack with one XCHG (single consumer under the
 *     lock, so no ABA), sweeps uncached spans and refiles them; cached
 *     ones are skipped, their owner sweeps them.
 *
 * Span lifetime against remote frees: a remote freer increments the
 * span's `inflight` before it looks at the span and decrements it after
 * it pushed the span. A span goes back to the mheap only from here, under
 * the lock, and only after: uncached, swept empty, state set DEAD, and
 * then inflight == 0 and needsweep == 0 (seq_cst on both sides, so either
 * the freer sees DEAD and reports its free as invalid -- a free on an
 * empty span cannot be valid -- or we see its inflight and keep the span).
 */
#include "internal.h"

static void list_remove(struct mcentral *c, struct mspan *s)
{
	struct mspan **head = s->onlist == LIST_PARTIAL ? &c->partial : &c->full;
	if (s->onlist == LIST_NONE)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->onlist = LIST_NONE;
}

static void list_insert(struct mcentral *c, struct mspan *s, enum mcentral_list l)
{
	struct mspan **head = l == LIST_PARTIAL ? &c->partial : &c->full;
	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
	s->onlist = (uint8_t)l;
}

/* Give an empty, uncached span back to the mheap if no remote free is
 * looking at it. pre: c->lock. Returns true if it went. */
static bool try_free(struct mcentral *c, struct mspan *s)
{
	__atomic_store_n(&s->state, SPAN_DEAD, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST) != 0 ||
	    __atomic_load_n(&s->needsweep, __ATOMIC_SEQ_CST) != 0) {
		__atomic_store_n(&s->state, SPAN_INUSE, __ATOMIC_SEQ_CST);
		return false;
	}
	list_remove(c, s);
	c->nspans--;
	mheap_free_span(s); /* takes mheap.lock: allowed after mcentral.lock */
	return true;
}

/* File a swept, uncached span. pre: c->lock. */
static void place(struct mcentral *c, struct mspan *s)
{
	MM_VALIDATE(mspan_valid(s));
	if (s->allocCount == 0 && try_free(c, s))
		return;
	enum mcentral_list want = s->allocCount == s->nelems ? LIST_FULL : LIST_PARTIAL;
	if (s->onlist != want) {
		list_remove(c, s);
		list_insert(c, s, want);
	}
}

/* Sweep the spans remote frees pushed. pre: c->lock. */
static void drain(struct mcentral *c)
{
	struct mspan *s = __atomic_exchange_n(&c->sweepq, NULL, __ATOMIC_ACQUIRE);
	while (s != NULL) {
		struct mspan *next = s->sweepnext;
		/* Clear before sweeping: a remote free that lands after our
		 * XCHG of its word sees needsweep == 0 and pushes again. */
		__atomic_store_n(&s->needsweep, 0, __ATOMIC_SEQ_CST);
		MM_CHECK(__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == SPAN_INUSE,
		         "dead span on a sweep stack", s->base);
		if (__atomic_load_n(&s->cachedBy, __ATOMIC_ACQUIRE) == CPU_NONE) {
			mspan_sweep(s);
			place(c, s);
		}
		s = next;
	}
}

/* Called by a remote freer after setting its bit, with inflight held. */
void mcentral_push_sweep(struct mcentral *c, struct mspan *s)
{
	if (__atomic_exchange_n(&s->needsweep, 1, __ATOMIC_SEQ_CST) != 0)
		return;
	struct mspan *old = __atomic_load_n(&c->sweepq, __ATOMIC_RELAXED);
	do {
		s->sweepnext = old;
	} while (!__atomic_compare_exchange_n(&c->sweepq, &old, s, true,
	                                      __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

/* A span with a free slot for CPU `cpu`, or NULL when memory is
 * exhausted. pre: interrupts off, no mm lock held. */
struct mspan *mcentral_cacheSpan(struct mcentral *c, unsigned cpu)
{
	MM_ASSERT(cpu < sys_config.max_cpus);
	lock_central(c);
	drain(c);
	struct mspan *s = c->partial;
	if (s != NULL) {
		list_remove(c, s);
		__atomic_store_n(&s->cachedBy, cpu_slot(cpu), __ATOMIC_RELEASE);
		unlock_central(c);
		return s;
	}
	unlock_central(c);

	s = mheap_alloc_span(class_to_allocnpages[c->spanclass], c->spanclass, 1);
	if (s == NULL)
		return NULL;
	__atomic_store_n(&s->cachedBy, cpu_slot(cpu), __ATOMIC_RELAXED);
	mspan_init_small(s, c->spanclass); /* publishes INUSE */
	lock_central(c);
	c->nspans++;
	unlock_central(c);
	return s;
}

/* Give back a span this CPU caches. pre: interrupts off, the caller is
 * the caching CPU, no mm lock held. */
void mcentral_uncacheSpan(struct mcentral *c, struct mspan *s)
{
	lock_central(c);
	mspan_sweep(s);
	__atomic_store_n(&s->cachedBy, CPU_NONE, __ATOMIC_SEQ_CST);
	place(c, s);
	unlock_central(c);
}

void mcentral_reclaim(struct mcentral *c)
{
	if (__atomic_load_n(&c->sweepq, __ATOMIC_ACQUIRE) == NULL)
		return;
	lock_central(c);
	drain(c);
	unlock_central(c);
}

/* Go's mheap.reclaim: return the empty spans remote frees left behind in
 * every class, before the heap grows and on flush/trim. pre: no mm lock. */
void mcentral_reclaim_all(void)
{
	for (unsigned i = 1; i < _NumSizeClasses; i++)
		mcentral_reclaim(&mheap_.central[i].c);
}
