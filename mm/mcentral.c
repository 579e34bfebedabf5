/*
 * mcentral.c: per-size-class pools of spans that no CPU caches, and the
 * way objects come back to their spans. See malloc.c for the overview.
 *
 * One mcentral per span class (NUM_SPANCLASSES: kmalloc's and the typed
 * caches', padded to a cache line each, as Go pads mheap.central). Each
 * holds, under its spinlock, lists of uncached spans:
 *   partial  swept, at least an eighth of the slots free (at least one),
 *            and at its tail at most MCENTRAL_SPARE empty spans kept for
 *            reuse (a span whose frames aliases map is never one), and
 *            the rest of a growth's batch until refills take them;
 *   full     swept, fewer free slots than that;
 *   meshed   aliases (mmesh.c): they never hand out slots, and what
 *            comes back to them goes on to the span whose frames they
 *            map (mesh_alias_sweep).
 * We use Go's pre-1.15 design, a lock and doubly-linked lists, not Go's
 * current lock-free spanSets: a batch of returned objects must move an
 * arbitrary span from full to partial (or to the mheap), which a list
 * does in O(1) and a spanSet cannot do at all.
 *
 * Why "an eighth": a refill that took a span with one or two free slots
 * would be back for another span after one or two allocations, a lock
 * hold per object. So a span counts as partial only once an eighth of it
 * is free, the same rule mcache_refill_alloc uses to keep its own span
 * after a sweep; a "full" span with a few free slots is still taken when
 * the heap cannot grow. At most nelems/8 - 1 free slots per span wait.
 *
 * Packing policy. Lists are stacks, and a span keeps its place while it
 * stays on a list: refills take the span that most recently became
 * partial, so allocation concentrates on a few spans while spans deeper
 * down only lose objects, until they are empty and go back to the mheap,
 * whose pages then serve any class.
 *
 * Flow:
 *   refill (mcache, the cached span is used up): file the old span, hand
 *     out the top of partial, in one lock hold; if there is none, grow: a
 *     fresh span from mheap_alloc_span, taken without holding this lock
 *     (as Go's mcentral.grow), and for a class with many spans more of
 *     them, adjacent, for the next refills (grow_batch).
 *   return (a batch of free objects from a cache: mcache_spill, drains):
 *     entry by entry, a run of one span's at once; under the lock, an
 *     uncached span (the lock holder owns it) gets its allocBits cleared
 *     at once and is filed (empty: back to the mheap); a cached one gets
 *     one atomic OR per word into its free_bits, for its owner's next
 *     sweep.
 *
 * Span lifetime: a span goes back to the mheap only from here, under the
 * lock, when it is uncached and empty and the class has its spare
 * already, or when trim, flush or an out-of-memory drain frees spares;
 * and an empty alias from mmesh.c's reap (marked dead under this lock,
 * unmapped and given back after it). Nothing else holds a
 * reference that outlives a lock hold: kfree's lock-free reads check the
 * page descriptor (fast path) or the span's state word (slow path) before
 * and after (malloc.c).
 */
#include "internal.h"

static struct spanlist *list_of(struct mcentral *c, unsigned l)
{
	return l == LIST_PARTIAL ? &c->partial : l == LIST_FULL ? &c->full : &c->meshed;
}

void mcentral_list_remove(struct mcentral *c, struct mspan *s)
{
	MM_HELD_CENTRAL(c);
	if (s->onlist == LIST_NONE)
		return;
	struct spanlist *l = list_of(c, s->onlist);
	if (c->mesh_cursor == s)
		c->mesh_cursor = s->next; /* (s is on partial) */
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

/* Push at the head: lists are stacks (see the top comment); or at the
 * tail, where a spare empty span waits until no partial one is left (see
 * place). */
static void list_push(struct mcentral *c, struct mspan *s, enum mcentral_list which, bool tail)
{
	MM_HELD_CENTRAL(c);
	struct spanlist *l = list_of(c, which);
	struct mspan **end = tail ? &l->tail : &l->head, **other = tail ? &l->head : &l->tail;
	s->next = tail ? NULL : l->head;
	s->prev = tail ? l->tail : NULL;
	if (*end != NULL) {
		if (tail)
			(*end)->next = s;
		else
			(*end)->prev = s;
	} else {
		*other = s;
	}
	*end = s;
	s->onlist = (uint8_t)which;
	l->len++;
}

void mcentral_list_push(struct mcentral *c, struct mspan *s, enum mcentral_list which)
{
	list_push(c, s, which, false);
}

/* Free slots a span needs to count as partial. */
static unsigned partial_min(const struct mspan *s)
{
	unsigned m = s->nelems / 8u;
	return m != 0 ? m : 1;
}

/* Give an empty, uncached span back to the mheap. pre: c->lock. */
static void free_span(struct mcentral *c, struct mspan *s)
{
	MM_HELD_CENTRAL(c);
	mcentral_list_remove(c, s);
	c->nspans--;
	/* descriptors, then nbytes, then the state: kfree's fast path, then
	 * live_byte (malloc.c) */
	mheap_unpublish_small(s);
	mm_store_relaxed(&s->nbytes, 0);
	span_set_state(s, SPAN_DEAD);
	mheap_free_span(s, false); /* takes mheap.lock: allowed after mcentral.lock */
}

/* File a swept, uncached span. An empty one is kept as the class's spare
 * (at the tail of partial) if it has none, else it goes back to the
 * mheap: a class whose spans hold one or two objects would otherwise take
 * a span from the page allocator and give it back on nearly every
 * allocation and free. pre: c->lock. */
void mcentral_place(struct mcentral *c, struct mspan *s)
{
	MM_HELD_CENTRAL(c);
	MM_VALIDATE(mspan_valid(s));
	if (s->mesh_dst != NULL)
		return; /* an alias, or becoming one: mmesh.c files it */
	/* A span whose frames aliases map is no spare (it may not go back to
	 * the mheap): it waits on partial until the last alias is gone. */
	if (s->allocCount == 0 && s->nalias == 0) {
		if (c->nempty >= MCENTRAL_SPARE) {
			free_span(c, s);
			return;
		}
		mcentral_list_remove(c, s);
		list_push(c, s, LIST_PARTIAL, true);
		STORE(c->nempty, c->nempty + 1);
		return;
	}
	enum mcentral_list want =
		(unsigned)(s->nelems - s->allocCount) >= partial_min(s) ? LIST_PARTIAL : LIST_FULL;
	if (s->onlist != want) {
		mcentral_list_remove(c, s);
		list_push(c, s, want, false);
	}
}

/* Take s off partial for a CPU to cache. pre: c->lock. */
static void take(struct mcentral *c, struct mspan *s, unsigned cpu)
{
	MM_HELD_CENTRAL(c);
	if (s->allocCount == 0 && s->nalias == 0)
		STORE(c->nempty, c->nempty - 1);
	mcentral_list_remove(c, s);
	mm_store_relaxed(&s->cached_by, cpu_slot(cpu));
}

/* Give the spare empty spans of class i (of every class) back to the
 * mheap (trim, flush, out of memory, typed caches). pre: no mm lock held. */
void mcentral_free_spares_class(unsigned i)
{
	MM_UNLOCKED();
	struct mcentral *c = &mheap_.central[i].c;
	if (mm_load_relaxed(&c->nempty) == 0)
		return;
	lock_central(c);
	struct mspan *s = c->partial.tail;
	while (s != NULL && c->nempty != 0) {
		struct mspan *prev = s->prev;
		if (s->allocCount == 0 && s->nalias == 0) {
			STORE(c->nempty, c->nempty - 1);
			free_span(c, s);
		}
		s = prev;
	}
	unlock_central(c);
}

void mcentral_free_spares(void)
{
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
		mcentral_free_spares_class(i);
}

/* A span of the full list that still has a free slot, for when the heap
 * cannot grow. pre: c->lock. */
static struct mspan *any_free_slot(struct mcentral *c)
{
	MM_HELD_CENTRAL(c);
	for (struct mspan *s = c->full.head; s != NULL; s = s->next)
		if (s->allocCount < s->nelems)
			return s;
	return NULL;
}

/* A fresh span for class c from the mheap, or NULL. pre: no mm lock. */
static struct mspan *grow_one(struct mcentral *c)
{
	struct mspan *s = mheap_alloc_span(spanclass_npages(c->spanclass), c->spanclass, 1);
	if (s != NULL && c->spanclass >= KMALLOC_SPANCLASSES)
		mm_kmc_construct(s, c->spanclass); /* before anyone sees a slot */
	return s;
}

/* Spans a class that has to grow takes at once: one, unless the port
 * meshes runs cheaper (sys_config.mesh_runs); then one while the class is
 * small, up to MCENTRAL_GROW as it has more spans (at most a sixteenth
 * of them wait empty, on pages the port committed but nobody touched).
 * The page allocator's first fit puts a batch's spans next to each other
 * where the heap grows, and meshing looks for runs of adjacent spans of
 * a class (mmesh.c: on a port that maps ranges onto a file, a run meshed
 * onto a run is one mapping). pre: c->lock. */
static unsigned grow_batch(const struct mcentral *c)
{
	MM_HELD_CENTRAL(c);
	if (!sys_config.mesh_runs || !mesh_supported())
		return 1;
	uint64_t k = c->nspans / 16;
	return k < 1 ? 1 : k > MCENTRAL_GROW ? MCENTRAL_GROW : (unsigned)k;
}

/* Uncache `old` (if not NULL) and return a span with a free slot for CPU
 * `cpu`, or NULL when memory is exhausted. pre: interrupts off, no mm
 * lock held; `old` is cached by `cpu`. */
struct mspan *mcentral_refill(struct mcentral *c, struct mspan *old, unsigned cpu)
{
	MM_UNLOCKED();
	lock_central(c);
	if (old != NULL) {
		mspan_sweep(old);
		mm_store_relaxed(&old->cached_by, CPU_NONE);
		mcentral_place(c, old);
	}
	struct mspan *s = c->partial.head;
	if (s != NULL) {
		take(c, s, cpu);
		unlock_central(c);
		return s;
	}
	unsigned batch = grow_batch(c);
	unlock_central(c);

	s = grow_one(c);
	lock_central(c);
	if (s == NULL) {
		s = any_free_slot(c);
		if (s != NULL)
			take(c, s, cpu);
		unlock_central(c);
		return s;
	}
	c->nspans++;
	mm_store_relaxed(&s->cached_by, cpu_slot(cpu));
	mspan_init_small(s, c->spanclass); /* publishes INUSE */
	mheap_publish_small(s);            /* kfree's fast path finds it now */
	unlock_central(c);
	/* the rest of the batch: empty spans at the tail of partial, in
	 * address order, for the next refills */
	for (unsigned i = 1; i < batch; i++) {
		struct mspan *e = grow_one(c);
		if (e == NULL)
			break;
		lock_central(c);
		c->nspans++;
		mspan_init_small(e, c->spanclass);
		mheap_publish_small(e);
		list_push(c, e, LIST_PARTIAL, true);
		STORE(c->nempty, c->nempty + 1);
		unlock_central(c);
	}
	return s;
}

struct mspan *mcentral_cacheSpan(struct mcentral *c, unsigned cpu)
{
	MM_ASSERT(cpu < sys_config.max_cpus);
	return mcentral_refill(c, NULL, cpu);
}

/* Give back a span this CPU caches. pre: interrupts off, the caller is
 * the caching CPU, no mm lock held. */
void mcentral_uncacheSpan(struct mcentral *c, struct mspan *s)
{
	MM_UNLOCKED();
	lock_central(c);
	mspan_sweep(s);
	mm_store_relaxed(&s->cached_by, CPU_NONE);
	mcentral_place(c, s);
	unlock_central(c);
}

/* Slot index of a cache entry of span s, after checking that the entry
 * is what a cache may hold: a slot start of s, with its own live byte,
 * not live. Anything else means the metadata was corrupted. */
static unsigned entry_slot(const struct mspan *s, const struct magentry *e)
{
	long idx = mspan_slot_of(s, (uintptr_t)e->p);
	MM_CHECK(idx >= 0 && e->live == mspan_live(s, (unsigned)idx) && LOAD(*e->live) == 0,
	         "corrupt cache entry", e->p);
	return (unsigned)idx;
}

/* OR bits into word w of s->free_bits. A bit already set means an object
 * came back twice: two frees that raced on two CPUs, the one double free
 * the live bytes can miss, caught here before the slot is reused. */
void mcentral_mark_returned(struct mspan *s, unsigned w, uint64_t bits)
{
	/* release: our last writes to the objects precede the owner's reuse */
	uint64_t old = mm_fetch_or_release(&s->free_bits[w], bits);
	if (MM_UNLIKELY(old & bits))
		sys_fault("double free",
		          mspan_slot_addr(s, w * 64 + (unsigned)__builtin_ctzll(old & bits)));
}

/* Set the free_bits of the n objects of span s in e (all in s): one
 * atomic OR per run of them in one bitmap word. */
static void return_to_span(struct mspan *s, const struct magentry *e, size_t n)
{
	unsigned w = entry_slot(s, &e[0]) / 64;
	uint64_t bits = 0;
	for (size_t k = 0; k < n; k++) {
		unsigned idx = entry_slot(s, &e[k]);
		uint64_t bit = (uint64_t)1 << (idx % 64);
		if (idx / 64 != w) {
			mcentral_mark_returned(s, w, bits);
			w = idx / 64;
			bits = 0;
		}
		if (MM_UNLIKELY(bits & bit))
			sys_fault("double free", e[k].p);
		bits |= bit;
	}
	mcentral_mark_returned(s, w, bits);
}

/* Give the n objects of e (all in s) back to the uncached span
 * s: their allocBits go clear at once. Its owner is whoever holds the
 * mcentral lock (struct mspan), which we do, so nobody allocates from it
 * or sweeps it meanwhile, and its free_bits hold nothing: it was swept
 * when it was uncached (freeindex 0 since). So no atomic OR into
 * free_bits and no sweep of every bitmap word after it, which cost two
 * locked instructions a word and ~90 instructions a span visited, on a
 * heap freed at random nearly every returned object's (fragsmall, frag).
 * A slot that is not out came back twice: "double free", as a sweep
 * would say (two CPUs freeing one object at once, or one batch holding
 * it twice). */
static void return_uncached(struct mspan *s, const struct magentry *e, size_t n)
{
	MM_ASSERT(s->freeindex == 0);
	for (size_t k = 0; k < n; k++) {
		unsigned idx = entry_slot(s, &e[k]);
		uint64_t bit = (uint64_t)1 << (idx % 64);
		if (MM_UNLIKELY(!(s->allocBits[idx / 64] & bit)))
			sys_fault("double free", e[k].p);
		s->allocBits[idx / 64] &= ~bit;
	}
	s->allocCount = (uint16_t)(s->allocCount - n);
	s->needzero = 1;
	mspan_refillAllocCache(s, 0); /* as a sweep leaves it */
}

/* Start fetching what returning e[0..n) reads, before the lock: each
 * entry's page -> span word and live byte, then each span's record (its
 * state, the fields mspan_slot_of reads, free_bits behind it). Objects
 * freed at random across a big heap are mostly in spans of their own,
 * and each of those reads missed in turn, one entry after the other
 * (the frag workload: 80% of mcentral_return's samples on the first two,
 * perf). Hints only: the loop below loads everything again under the
 * lock. */
static void prefetch_returns(const struct magentry *e, size_t n)
{
	uintptr_t used = mm_load_acquire(&mheap_.arena_used_bytes);
	for (size_t i = 0; i < n; i++) {
		uintptr_t rel = (uintptr_t)e[i].p - mheap_.arena_start;
		if (rel < used)
			__builtin_prefetch(&mheap_.spans[rel >> PAGE_SHIFT]);
		__builtin_prefetch(e[i].live);
	}
	const struct mspan *last = NULL;
	for (size_t i = 0; i < n; i++) {
		uintptr_t rel = (uintptr_t)e[i].p - mheap_.arena_start;
		const struct mspan *s =
		        rel < used ? mm_load_relaxed(&mheap_.spans[rel >> PAGE_SHIFT]) : NULL;
		if (s == NULL || s == last)
			continue;
		last = s;
		__builtin_prefetch(s);
		__builtin_prefetch(s->free_bits);
	}
}

/* Give n free objects of this class (from a magazine or a transfer cache)
 * back to their spans, in one lock hold. Entries of one span that come
 * one after the other are one visit (one filing, one atomic OR a bitmap
 * word of a cached span); the batch is not sorted to make more of them:
 * an insertion sort cost 139 instructions an entry on a batch freed at
 * random (a fifth of fragsmall's instructions), where nearly every entry
 * is in a span of its own, and saved nothing measurable on churn,
 * larson, xlarson or prodcons (cachegrind: instructions and first-level
 * misses the same or fewer without it). pre: no mm lock held; interrupts
 * may be off. */
void mcentral_return(struct mcentral *c, struct magentry *e, size_t n)
{
	MM_UNLOCKED();
	prefetch_returns(e, n);
	lock_central(c);
	for (size_t i = 0; i < n;) {
		struct mspan *s = spanOf((uintptr_t)e[i].p);
		MM_CHECK(s != NULL && span_state(s) == SPAN_INUSE && s->spanclass == c->spanclass,
		         "corrupt cache entry", e[i].p);
		size_t j = i + 1;
		while (j < n && (uintptr_t)e[j].p - s->base < s->limit - s->base)
			j++;
		c->returned += j - i;
		if (s->onlist == LIST_MESHED) {
			return_to_span(s, e + i, j - i);
			mesh_alias_sweep(c, s);
		} else if (mm_load_relaxed(&s->cached_by) == CPU_NONE) {
			return_uncached(s, e + i, j - i);
			mcentral_place(c, s);
		} else {
			return_to_span(s, e + i, j - i);
		}
		i = j;
	}
	unlock_central(c);
}
