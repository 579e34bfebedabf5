/*
 * mcentral.c: per-size-class pools of spans that no CPU caches. See
 * malloc.c for the overview.
 *
 * One mcentral per size class (68, padded to a cache line each, as Go
 * pads mheap.central). Each holds, under its spinlock, three lists of
 * uncached spans, in the spirit of Go's swept/unswept span sets:
 *   partial  swept, with at least one free slot (or parked, see below);
 *   full     swept, without one;
 *   unswept  spans that were full and took remote frees since (their
 *            remoteFree bits are not merged yet);
 * and, lock-free, a "sweep stack" on which a remote free announces a span
 * the mcentral does not know to need a sweep.
 *
 * We use Go's pre-1.15 design, a lock and doubly-linked lists, not Go's
 * current lock-free spanSets: explicit free must move an arbitrary span
 * from full to unswept (or to the mheap) when a free lands on it, which a
 * list does in O(1) and a spanSet cannot do at all.
 *
 * Packing policy. Lists are stacks, and a span keeps its place while it
 * stays on a list: refills take the span that most recently stopped being
 * full (unswept first, then partial), so allocation concentrates on
 * nearly full spans while spans deeper down only lose objects, until they
 * are empty and go back to the mheap, whose pages then serve any class.
 * Measured on a 50000-object random churn (8..512 B): in-use/live 1.10
 * this way, 1.13 when refills take the span that waited longest (FIFO),
 * which costs ~35% fewer instructions per operation because those spans
 * collected more free slots -- we chose memory. The yield problem is
 * solved instead by announcing a span only once an eighth of it is free
 * (see mcentral_note_remote_free): 1.14, with fewer instructions still.
 *
 * Flow:
 *   refill (mcache, the cached span is used up): uncache the old span
 *     (file it), drain the sweep stack, hand out the top of unswept or of
 *     partial (sweeping it first if it is parked), all in one lock hold;
 *     if both are empty, grow: a fresh span from mheap_alloc_span, taken
 *     without holding this lock (as Go's mcentral.grow).
 *   remote kfree: sets the slot's remoteFree bit and counts it in the
 *     span's nremote; if the span's `queued` state is CLEAN and an eighth
 *     of it (or all it held) is now free, or it is
 *     PARKED but this free seems to have emptied it (nremote reached the
 *     allocCount of its last sweep), it moves it to STACKED and pushes it.
 *   drain (under the lock): pops the whole stack with one XCHG (single
 *     consumer, so no ABA) and marks each span PARKED (known to need a
 *     sweep, so later remote frees need not push it again). A span that
 *     looks empty is swept at once and goes back to the mheap; a full one
 *     moves to the top of unswept; a partial one stays where it is. Other
 *     sweeping waits until the span is handed out or reclaimed, so a span
 *     that takes many remote frees is swept once, not once per free.
 *   reclaim (before the heap grows, on flush and trim): drain, then sweep
 *     every parked span and file it; empty ones go back to the mheap.
 *
 * `queued`: CLEAN -> STACKED (the pusher's CAS; the span is on the stack)
 * -> PARKED (drain) -> CLEAN (a sweeper under the lock, just before it
 * sweeps, so a remote free landing after the sweep pushes again); also
 * PARKED -> STACKED when a free empties a parked span. Only drain takes a
 * span off the stack, so it is never on it twice.
 *
 * Span lifetime against remote frees: a remote freer increments the
 * span's `inflight` before it looks at the span and decrements it after
 * it pushed the span. A span goes back to the mheap only from here, under
 * the lock, and only after: uncached, swept empty, state set DEAD, and
 * then inflight == 0 and queued == CLEAN (seq_cst on both sides, so either
 * the freer sees DEAD and reports its free as invalid -- a free on an
 * empty span cannot be valid -- or we see its inflight and keep the span).
 */
#include "internal.h"

static struct spanlist *list_of(struct mcentral *c, unsigned l)
{
	return l == LIST_PARTIAL ? &c->partial : l == LIST_FULL ? &c->full : &c->unswept;
}

static void list_remove(struct mcentral *c, struct mspan *s)
{
	if (s->onlist == LIST_NONE)
		return;
	struct spanlist *l = list_of(c, s->onlist);
	if (s->prev)
		s->prev->next = s->next;
	else
		l->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		l->tail = s->prev;
	s->next = s->prev = NULL;
	s->onlist = LIST_NONE;
	l->len--;
}

/* Push at the head: lists are stacks (see the top comment). */
static void list_push_front(struct mcentral *c, struct mspan *s, enum mcentral_list which)
{
	struct spanlist *l = list_of(c, which);
	s->prev = NULL;
	s->next = l->head;
	if (l->head)
		l->head->prev = s;
	else
		l->tail = s;
	l->head = s;
	s->onlist = (uint8_t)which;
	l->len++;
}

static struct mspan *list_pop(struct mcentral *c, enum mcentral_list which)
{
	struct mspan *s = list_of(c, which)->head;
	if (s != NULL)
		list_remove(c, s);
	return s;
}

/* Sweep an uncached span (or one its owner is uncaching) under the lock. */
static void sweep_locked(struct mspan *s)
{
	uint32_t q = Q_PARKED;
	/* PARKED -> CLEAN before the sweep: a remote free after the sweep's
	 * XCHG of its word must push the span again. STACKED stays: the
	 * span is on the stack and drain will see it. */
	__atomic_compare_exchange_n(&s->queued, &q, Q_CLEAN, false, __ATOMIC_SEQ_CST,
	                            __ATOMIC_SEQ_CST);
	mspan_sweep(s);
}

/* Give an empty, uncached, swept span back to the mheap if no remote
 * free is looking at it. pre: c->lock. Returns true if it went. */
static bool try_free(struct mcentral *c, struct mspan *s)
{
	__atomic_store_n(&s->state, SPAN_DEAD, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST) != 0 ||
	    __atomic_load_n(&s->queued, __ATOMIC_SEQ_CST) != Q_CLEAN) {
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
		list_push_front(c, s, want);
	}
}

/* Take the spans remote frees pushed: they need a sweep. pre: c->lock. */
static void drain(struct mcentral *c)
{
	struct mspan *s = __atomic_exchange_n(&c->sweepq, NULL, __ATOMIC_ACQUIRE);
	while (s != NULL) {
		struct mspan *next = s->sweepnext;
		MM_CHECK(__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == SPAN_INUSE,
		         "dead span on a sweep stack", s->base);
		__atomic_store_n(&s->queued, Q_PARKED, __ATOMIC_SEQ_CST);
		/* A cached span is its owner's to sweep; its uncache will. */
		if (__atomic_load_n(&s->cachedBy, __ATOMIC_ACQUIRE) == CPU_NONE) {
			if (__atomic_load_n(&s->nremote, __ATOMIC_SEQ_CST) >= (int32_t)s->allocCount) {
				/* probably empty: sweep now, so it can go back */
				list_remove(c, s);
				sweep_locked(s);
				place(c, s);
			} else {
				if (s->onlist == LIST_FULL) {
					list_remove(c, s);
					list_push_front(c, s, LIST_UNSWEPT);
				}
				__atomic_store_n(&c->parked_hint, 1, __ATOMIC_RELAXED);
			}
		}
		s = next;
	}
}

/* Called by a remote freer after setting its bit, with inflight held;
 * `pending` is the span's nremote after its own increment. The span is
 * pushed if the mcentral does not know it needs a sweep (CLEAN), or if it
 * is parked on the unswept list but this free looks like its last live
 * object (pending >= allocCount of its last sweep): an empty span should
 * go back to the mheap now, where any size class can use its pages, not
 * when its turn on the unswept list comes. */
void mcentral_note_remote_free(struct mcentral *c, struct mspan *s, int32_t pending)
{
	uint32_t q = __atomic_load_n(&s->queued, __ATOMIC_RELAXED);
	int32_t live = (int32_t)LOAD(s->allocCount);
	/* A CLEAN span is announced only once an eighth of it is free (the
	 * owner's keep rule in mcache.c) or it looks empty. Announcing it at
	 * its first free made refills hand out spans with one free slot, a
	 * whole lock hold and sweep per object (churn: 643 -> 380
	 * instructions per op; in-use/live 1.10 -> 1.14). At most
	 * nelems/8 - 1 freed slots per span wait unseen. */
	if (q == Q_CLEAN && pending < live && pending < (int32_t)(s->nelems / 8u))
		return;
	if (q == Q_PARKED &&
	    (pending < live ||
	     __atomic_load_n(&s->cachedBy, __ATOMIC_RELAXED) != CPU_NONE))
		return;
	if (q == Q_STACKED ||
	    !__atomic_compare_exchange_n(&s->queued, &q, Q_STACKED, false, __ATOMIC_SEQ_CST,
	                                 __ATOMIC_RELAXED))
		return;
	struct mspan *old = __atomic_load_n(&c->sweepq, __ATOMIC_RELAXED);
	do {
		s->sweepnext = old;
	} while (!__atomic_compare_exchange_n(&c->sweepq, &old, s, true,
	                                      __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

/* Uncache `old` (if not NULL) and return a span with a free slot for CPU
 * `cpu`, or NULL when memory is exhausted. `old_swept`: its owner swept
 * it just now; it needs another sweep only if it is PARKED (remote frees
 * since then did not push it). pre: interrupts off, no mm lock held;
 * `old` is cached by `cpu`. */
struct mspan *mcentral_refill(struct mcentral *c, struct mspan *old, bool old_swept,
                              unsigned cpu)
{
	lock_central(c);
	if (old != NULL) {
		if (!old_swept || __atomic_load_n(&old->queued, __ATOMIC_SEQ_CST) == Q_PARKED)
			sweep_locked(old);
		__atomic_store_n(&old->cachedBy, CPU_NONE, __ATOMIC_SEQ_CST);
		place(c, old);
	}
	drain(c);
	struct mspan *s = list_pop(c, LIST_UNSWEPT);
	if (s == NULL)
		s = list_pop(c, LIST_PARTIAL);
	if (s != NULL && __atomic_load_n(&s->queued, __ATOMIC_RELAXED) == Q_PARKED)
		sweep_locked(s);
	if (s != NULL) {
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

struct mspan *mcentral_cacheSpan(struct mcentral *c, unsigned cpu)
{
	MM_ASSERT(cpu < sys_config.max_cpus);
	return mcentral_refill(c, NULL, false, cpu);
}

/* Give back a span this CPU caches. pre: interrupts off, the caller is
 * the caching CPU, no mm lock held. */
void mcentral_uncacheSpan(struct mcentral *c, struct mspan *s)
{
	lock_central(c);
	sweep_locked(s);
	__atomic_store_n(&s->cachedBy, CPU_NONE, __ATOMIC_SEQ_CST);
	place(c, s);
	unlock_central(c);
}

/* Sweep and file every span remote frees touched (unswept, and parked
 * partial spans); empty ones go back to the mheap. pre: no mm lock. */
void mcentral_reclaim(struct mcentral *c)
{
	if (__atomic_load_n(&c->sweepq, __ATOMIC_ACQUIRE) == NULL &&
	    !__atomic_load_n(&c->parked_hint, __ATOMIC_RELAXED))
		return;
	lock_central(c);
	drain(c);
	struct mspan *s, *next;
	while ((s = list_pop(c, LIST_UNSWEPT)) != NULL) {
		sweep_locked(s);
		place(c, s);
	}
	for (s = c->partial.head; s != NULL; s = next) {
		next = s->next; /* place() may free s or keep it in place */
		if (__atomic_load_n(&s->queued, __ATOMIC_RELAXED) == Q_PARKED) {
			sweep_locked(s);
			place(c, s);
		}
	}
	__atomic_store_n(&c->parked_hint, 0, __ATOMIC_RELAXED);
	unlock_central(c);
}

/* Go's mheap.reclaim: return the empty spans remote frees left behind in
 * every class, before the heap grows and on flush/trim. pre: no mm lock. */
void mcentral_reclaim_all(void)
{
	for (unsigned i = 1; i < _NumSizeClasses; i++)
		mcentral_reclaim(&mheap_.central[i].c);
}

/* Is there anything a reclaim could return to the mheap? (A hint.) */
bool mcentral_reclaim_pending(void)
{
	for (unsigned i = 1; i < _NumSizeClasses; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		if (__atomic_load_n(&c->sweepq, __ATOMIC_RELAXED) ||
		    __atomic_load_n(&c->parked_hint, __ATOMIC_RELAXED))
			return true;
	}
	return false;
}
