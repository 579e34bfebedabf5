/*
 * fork.c (host): the allocator across fork(), for the library and the
 * LD_PRELOAD shim alike. See mm/malloc.c for the overview and
 * arch/host/sys.c for threads as CPUs.
 *
 * fork() copies the address space but only the calling thread. Two things
 * follow.
 *
 * Locks. A lock another thread held at that moment would stay locked
 * forever in the child, and the first allocation needing it would hang.
 * So, as glibc does for its arenas, the prepare handler takes every lock
 * of the core and the port, in an order that cannot deadlock with the
 * allocator's own (mm/internal.h: mcentral[i] -> mheap -> transfer[j];
 * taking all mcentral locks, then all transfer locks, in index order is
 * safe because no code holds two of a kind), and the parent and child
 * handlers release them:
 *
 *     move_lock, pool_lock, mcentral[1..], mheap, transfer[1..], commit_lock
 *
 * (sys_commit takes commit_lock, sometimes under mheap.lock, so it comes
 * last; the move and pool locks are never held with an mm lock.) Between
 * prepare and release no other thread is inside a locked section, so the
 * child's copy of every locked structure is consistent.
 *
 * The other threads' CPUs. Their threads do not exist in the child, but
 * their CPU ids were still taken and their mcaches full: a child of a
 * 1,000-thread parent could start only the rest of the pool's threads, and
 * the objects and spans those caches held were lost to it. The child
 * handler gives those ids back to the pool (host_cpu_reclaim); the next
 * threads of the child take them and find the mcache of the id as its
 * previous owner left it, magazines, cached spans and large bins included,
 * and use it as their own. Nothing is drained eagerly: a child that only
 * calls exec pays a read-only pass, no copy-on-write of heap metadata.
 *
 * That is sound only for a cache no thread was changing when fork took
 * its snapshot. The lock-free parts of the core (magazine pushes and pops,
 * nextFreeFast, a sweep of a cached span, a spill between its transfer
 * put and its magazine update) may have been caught half done. Most such
 * states only lose an object or a span (a leak, never a corruption); two
 * are dangerous, so the child checks for them before any orphaned cache
 * is used, while it is still the only thread:
 *   - a magazine entry whose object is also somewhere else: a spill or a
 *     drain that gave a batch away (to a transfer cache or to its spans)
 *     and did not yet shorten the magazine; that object may since have
 *     been handed out, freed again into another cache, or still be free.
 *     Every entry of an orphaned magazine is kept only if its object is a
 *     slot of a live span of that class, out of its span (not free there),
 *     not live, and held by no other magazine or transfer cache (one hash
 *     table of every cached object); the others are dropped (leaked).
 *   - a cached span whose sweep was cut short: its allocCount no longer
 *     equals the slots its allocBits mark out, and a later sweep would
 *     compute a wrong count (and might free the span while objects in it
 *     are live). Such a span is dropped from the mcache (leaked, still
 *     marked cached).
 * Large bins are re-linked from the spans that are really there, with
 * their counts recomputed. If the scratch table cannot be mapped, every
 * orphaned magazine is emptied instead (its objects leak).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>

#include "host_port.h"
#include "internal.h"

static void fork_prepare(void)
{
	pthread_mutex_lock(&host_move_lock);
	pthread_mutex_lock(&host_pool_lock);
	for (unsigned i = 1; i < _NumSizeClasses; i++)
		sys_lock(&mheap_.central[i].c.lock);
	sys_lock(&mheap_.lock);
	for (unsigned i = 1; i < _NumSizeClasses; i++)
		sys_lock(&mheap_.transfer[i].t.lock);
	pthread_mutex_lock(&host_commit_lock);
}

/* Parent and child alike: the locks were ours, the same bytes in both. */
static void fork_release(void)
{
	pthread_mutex_unlock(&host_commit_lock);
	for (unsigned i = _NumSizeClasses - 1; i >= 1; i--)
		sys_unlock(&mheap_.transfer[i].t.lock);
	sys_unlock(&mheap_.lock);
	for (unsigned i = _NumSizeClasses - 1; i >= 1; i--)
		sys_unlock(&mheap_.central[i].c.lock);
	pthread_mutex_unlock(&host_pool_lock);
	pthread_mutex_unlock(&host_move_lock);
}

/* ---- the cached-object census ---- */

struct seen {
	uintptr_t p;       /* 0 = empty slot */
	uint32_t orphan;   /* copies in orphaned magazines */
	uint32_t trusted;  /* copies in the forking thread's magazines, in
	                      drained ones, or in transfer caches */
};

struct census {
	struct seen *t;
	size_t mask;
};

static struct seen *census_slot(const struct census *c, uintptr_t p)
{
	size_t h = (size_t)(((uint64_t)p >> 4) * 0x9e3779b97f4a7c15ull >> 20) & c->mask;
	while (c->t[h].p != 0 && c->t[h].p != p)
		h = (h + 1) & c->mask;
	return &c->t[h];
}

static void census_add(struct census *c, uintptr_t p, bool orphan)
{
	struct seen *s = census_slot(c, p);
	s->p = p;
	if (orphan)
		s->orphan++;
	else
		s->trusted++;
}

/* Entries [base, top) of a magazine, if its bounds are sane (they are
 * written by its owner only, one aligned store at a time). */
static size_t mag_entries(const struct magazine *m)
{
	if (m->base == NULL || m->top < m->base || m->top > m->limit)
		return 0;
	return (size_t)(m->top - m->base);
}

/* Is e an object a magazine of class i may hold: a slot of a live small
 * span of that class, with its own live byte, not live, and out of its
 * span (i < freeindex or allocated in allocBits, and not in freeBits)? */
static bool entry_ok(const struct magentry *e, unsigned i)
{
	struct mspan *s = spanOf((uintptr_t)e->p);
	if (s == NULL || span_state(s) != SPAN_INUSE ||
	    s->spanclass != mheap_.central[i].c.spanclass)
		return false;
	long idx = mspan_slot_of(s, (uintptr_t)e->p);
	if (idx < 0 || e->live != mspan_live(s, (unsigned)idx) || LOAD(*e->live) != 0)
		return false;
	unsigned w = (unsigned)idx / 64, b = (unsigned)idx % 64;
	bool out = (unsigned)idx < s->freeindex || ((s->allocBits[w] >> b) & 1);
	bool returned = (__atomic_load_n(&s->freeBits[w], __ATOMIC_RELAXED) >> b) & 1;
	return out && !returned;
}

/* A cached span of class i as its CPU (slot) left it: live, its class,
 * cached by it, and not halfway through a sweep (allocCount equals the
 * valid slots allocBits mark out; padding bits are always set). */
static bool cached_span_ok(const struct mspan *s, unsigned i, unsigned slot)
{
	if (span_state(s) != SPAN_INUSE || s->spanclass != mheap_.central[i].c.spanclass ||
	    __atomic_load_n(&s->cachedBy, __ATOMIC_RELAXED) != slot)
		return false;
	unsigned nw = span_nwords(s), out = 0;
	for (unsigned w = 0; w < nw; w++)
		out += mm_popcount64(s->allocBits[w]);
	return out - (nw * 64 - s->nelems) == s->allocCount;
}

/* Re-link c's large bins from the spans really in them, recount. */
static void large_bins_fix(struct mcache *c)
{
	uint32_t n = 0;
	uint64_t bytes = 0;
	for (size_t np = 1; np <= LARGE_CACHE_MAXPAGES; np++) {
		struct mspan **pp = &c->lbin[np];
		while (*pp != NULL) {
			struct mspan *s = *pp;
			if (n == LARGE_CACHE_N || span_state(s) != SPAN_CACHED || s->spanclass != 0 ||
			    s->npages != np) {
				*pp = NULL; /* the rest leaks */
				break;
			}
			n++;
			bytes += np * PAGE_SIZE;
			pp = &s->next;
		}
	}
	if (c->nlarge != n)
		c->nlarge = n;
	if (c->large_cached_bytes != bytes)
		STORE(c->large_cached_bytes, bytes);
}

/* Make the mcache of an orphaned CPU (slot) safe to adopt. */
static void orphan_fix(struct mcache *c, unsigned slot, const struct census *cs)
{
	for (unsigned i = 1; i < _NumSizeClasses; i++) {
		struct magazine *m = &c->mag[i];
		size_t n = mag_entries(m), keep = 0;
		if (m->base != NULL && n == 0 && m->top != m->base)
			m->top = m->base; /* insane bounds */
		for (size_t k = 0; k < n; k++) {
			struct magentry e = m->base[k];
			const struct seen *s = cs != NULL ? census_slot(cs, (uintptr_t)e.p) : NULL;
			if (s != NULL && s->orphan == 1 && s->trusted == 0 && entry_ok(&e, i)) {
				if (keep != k)
					m->base[keep] = e;
				keep++;
			}
		}
		if (keep != n)
			m->top = m->base + keep; /* written only if something went */
		struct mspan *sp = c->alloc[i];
		if (sp != NULL && sp != &mspan_empty && !cached_span_ok(sp, i, slot))
			c->alloc[i] = &mspan_empty;
	}
	large_bins_fix(c);
}

/* In the child, the only thread: give back the ids of the parent's other
 * threads and make their mcaches safe for the next threads to adopt. */
static void reclaim_orphans(void)
{
	unsigned me = host_cpu_plus1; /* slot of the forking thread, 0 = none */
	unsigned high = host_cpu_high();
	size_t orphans = 0, entries = 0;
	for (unsigned id = 0; id < high; id++)
		if (host_cpu_taken(id) && id + 1 != me)
			orphans++;
	if (orphans == 0)
		return;
	bool heap = __atomic_load_n(&mheap_.inited, __ATOMIC_ACQUIRE);
	struct census cs = { NULL, 0 };
	size_t bytes = 0;
	if (heap) {
		for (unsigned slot = 1; slot <= high; slot++) {
			struct mcache *c = mm_mcaches[slot];
			for (unsigned i = 1; c != NULL && i < _NumSizeClasses; i++)
				entries += mag_entries(&c->mag[i]);
		}
		for (unsigned i = 1; i < _NumSizeClasses; i++)
			entries += mheap_.transfer[i].t.n;
		size_t slots = 64;
		while (slots < 2 * entries)
			slots *= 2;
		bytes = slots * sizeof(struct seen);
		void *t = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (t != MAP_FAILED) {
			cs.t = t;
			cs.mask = slots - 1;
			for (unsigned slot = 1; slot <= high; slot++) {
				struct mcache *c = mm_mcaches[slot];
				bool orphan = slot != me && host_cpu_taken(slot - 1);
				for (unsigned i = 1; c != NULL && i < _NumSizeClasses; i++) {
					const struct magazine *m = &c->mag[i];
					size_t n = mag_entries(m);
					for (size_t k = 0; k < n; k++)
						census_add(&cs, (uintptr_t)m->base[k].p, orphan);
				}
			}
			for (unsigned i = 1; i < _NumSizeClasses; i++) {
				const struct transfer *tr = &mheap_.transfer[i].t;
				for (uint32_t k = 0; k < tr->n; k++)
					census_add(&cs, (uintptr_t)tr->e[k].p, false);
			}
		}
	}
	for (unsigned id = 0; id < high; id++) {
		if (!host_cpu_taken(id) || id + 1 == me)
			continue;
		struct mcache *c = heap ? mm_mcaches[cpu_slot(id)] : NULL;
		if (c != NULL)
			orphan_fix(c, cpu_slot(id), cs.t != NULL ? &cs : NULL);
		host_cpu_reclaim(id);
	}
	if (cs.t != NULL)
		munmap(cs.t, bytes);
}

static void fork_child(void)
{
	fork_release();
	reclaim_orphans();
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_register(void)
{
	if (pthread_atfork(fork_prepare, fork_release, fork_child) != 0)
		sys_fault("pthread_atfork failed", NULL);
}

void host_fork_init(void)
{
	pthread_once(&fork_once, fork_register);
}
