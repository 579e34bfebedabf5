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
 *     stw_lock, move_lock, pool_lock, kmc_lock, depot lock, bg_excl,
 *     mcentral[2..], mheap, transfer[2..], commit_lock
 *
 * (sys_commit takes commit_lock, sometimes under mheap.lock, so it comes
 * last; the move, pool, kmc and stack depot locks are never held with an
 * mm lock;
 * stw_lock is held across a leak scan, which takes mm locks, so it comes
 * first.) Between
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
 * calls exec pays one pass that reads the caches (and writes only its own
 * scratch array), no copy-on-write of heap metadata.
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
 *     not live, and held by no other magazine or transfer cache (one sorted
 *     array of every cached object); the others are dropped (leaked).
 *   - a cached span whose sweep was cut short: its allocCount no longer
 *     equals the slots its allocBits mark out, and a later sweep would
 *     compute a wrong count (and might free the span while objects in it
 *     are live). Such a span is dropped from the mcache (leaked, still
 *     marked cached). This and the large bins (re-linked from the spans
 *     really there, counts recomputed) are checked later, by the thread
 *     that takes the id (host_fork_adopt): they are that CPU's alone.
 * If the scratch array cannot be mapped, every orphaned magazine is
 * emptied instead (its objects leak). The check costs 13-25 ms per fork
 * (this 2-CPU VM) for a parent of 1,000 threads holding ~160,000 cached
 * objects, where fork itself takes 25-55 ms; it is proportional to the
 * objects cached. glibc's posix_spawn, system and popen run no fork
 * handlers at all.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>

#include "host_port.h"
#include "internal.h"

static void fork_prepare(void)
{
	/* A leak scan's stop in progress finishes first: the child must
	 * not inherit a half-stopped world (stopworld.c). */
	pthread_mutex_lock(&host_stw_lock);
	pthread_mutex_lock(&host_move_lock);
	pthread_mutex_lock(&host_pool_lock);
	sys_lock(&mm_kmc_lock); /* typed caches' registry: a leaf */
	mm_depot_lock();        /* tracked backtraces (mm/mstack.c): a leaf */
	sys_lock(&kfence_lock); /* guarded sampling's pool: a leaf */
	/* A background step (background.c) takes mm locks one at a time
	 * and between them releases pages it has taken out of the page
	 * allocator: let it finish, and start none until the release. */
	mheap_bg_exclude(true);
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
		sys_lock(&mheap_.central[i].c.lock);
	sys_lock(&mheap_.lock);
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
		sys_lock(&mheap_.transfer[i].t.lock);
	pthread_mutex_lock(&host_commit_lock);
	host_mesh_fork_prepare();
}

/* Parent and child alike: the locks were ours, the same bytes in both. */
static void fork_release(void)
{
	pthread_mutex_unlock(&host_commit_lock);
	for (unsigned i = NUM_SPANCLASSES - 1; i >= 2; i--)
		sys_unlock(&mheap_.transfer[i].t.lock);
	sys_unlock(&mheap_.lock);
	for (unsigned i = NUM_SPANCLASSES - 1; i >= 2; i--)
		sys_unlock(&mheap_.central[i].c.lock);
	mheap_bg_exclude(false);
	sys_unlock(&kfence_lock);
	mm_depot_unlock();
	sys_unlock(&mm_kmc_lock);
	pthread_mutex_unlock(&host_pool_lock);
	pthread_mutex_unlock(&host_move_lock);
	pthread_mutex_unlock(&host_stw_lock);
}

/* ---- the cached-object census ----
 * Every object any cache holds, with its live-byte pointer and the class
 * of the magazine holding it, sorted by address: objects held twice are
 * then neighbours, and the others are checked against their spans in
 * address order, so span records and live bytes are read nearly in
 * sequence (checking them in magazine order cost ~260 ns per object in
 * cache misses). Sorting is an LSD radix sort, four sequential passes.
 * What fails goes on a sorted list of bad objects, usually empty; only
 * then are the orphaned magazines read again to drop them. */

struct rec {
	uintptr_t p;        /* object; bit 0: held by a trusted cache */
	uintptr_t live_cls; /* its live byte's address | magazine class << 56
	                       (user addresses are below 2^47) */
};

#define REC_TRUSTED 1u
#define RADIX_BITS 12
static size_t radix_count[1u << RADIX_BITS]; /* the child is one thread */

/* Sort n records by p (user addresses: below 2^51, at least 8-aligned,
 * so bits 3..50; bit 0, the tag, is ignored and the sort is stable) with
 * tmp as scratch; the result ends up in a. */
static void sort_recs(struct rec *a, struct rec *tmp, size_t n)
{
	for (unsigned shift = 3; shift < 51; shift += RADIX_BITS) {
		__builtin_memset(radix_count, 0, sizeof(radix_count));
		for (size_t i = 0; i < n; i++)
			radix_count[(a[i].p >> shift) & ((1u << RADIX_BITS) - 1)]++;
		size_t sum = 0;
		for (size_t d = 0; d < (1u << RADIX_BITS); d++) {
			size_t c = radix_count[d];
			radix_count[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			tmp[radix_count[(a[i].p >> shift) & ((1u << RADIX_BITS) - 1)]++] = a[i];
		struct rec *t = a;
		a = tmp;
		tmp = t;
	}
	/* an even number of passes (four): the result is in the caller's a */
}

/* Is p among the n sorted bad objects? */
static bool is_bad(const uintptr_t *bad, size_t n, uintptr_t p)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bad[mid] < p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && bad[lo] == p;
}

/* Entries [base, top) of a magazine, if its bounds are sane (they are
 * written by its owner only, one aligned store at a time). */
static size_t mag_entries(const struct magazine *m)
{
	if (m->base == NULL || m->top < m->base || m->top > m->limit)
		return 0;
	return (size_t)(m->top - m->base);
}

/* May a magazine of class i hold p with live byte lb: a slot of a live
 * small span of that class, lb its own live byte, not live, and out of
 * its span (below freeindex or allocated in allocBits, and not in
 * free_bits)? */
static bool entry_ok(uintptr_t p, const uint8_t *lb, unsigned i)
{
	struct mspan *s = spanOf(p);
	if (s == NULL || span_state(s) != SPAN_INUSE ||
	    s->spanclass != mheap_.central[i].c.spanclass)
		return false;
	long idx = mspan_slot_of(s, p);
	if (idx < 0 || lb != mspan_live(s, (unsigned)idx) || LOAD(*lb) != 0)
		return false;
	unsigned w = (unsigned)idx / 64, b = (unsigned)idx % 64;
	bool out = (unsigned)idx < s->freeindex || ((s->allocBits[w] >> b) & 1);
	bool returned = (mm_load_relaxed(&s->free_bits[w]) >> b) & 1;
	return out && !returned;
}

/* A cached span of class i as its CPU (slot) left it: live, its class,
 * cached by it, and not halfway through a sweep (allocCount equals the
 * valid slots allocBits mark out; padding bits are always set). */
static bool cached_span_ok(const struct mspan *s, unsigned i, unsigned slot)
{
	if (span_state(s) != SPAN_INUSE || s->spanclass != mheap_.central[i].c.spanclass ||
	    mm_load_relaxed(&s->cached_by) != slot)
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

/* The part of the check that needs no census and may run later: by the
 * thread that takes the id, before it uses the mcache (cached spans and
 * large bins are its owner's alone; other CPUs only OR free_bits). */
void host_fork_adopt(unsigned id)
{
	struct mcache *c = mm_mcaches[cpu_slot(id)];
	if (c == NULL)
		return;
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct mspan *sp = c->alloc[i];
		if (sp != NULL && sp != &mspan_none && !cached_span_ok(sp, i, cpu_slot(id)))
			c->alloc[i] = &mspan_none;
	}
	large_bins_fix(c);
}

/* Drop the bad objects from an orphaned magazine (all of them if there is
 * no census). Writes only where something goes. */
static void mag_filter(struct magazine *m, const uintptr_t *bad, size_t nbad, bool census)
{
	size_t n = mag_entries(m), keep = 0;
	if (m->base != NULL && n == 0 && m->top != m->base) {
		m->top = m->base; /* insane bounds */
		return;
	}
	for (size_t k = 0; k < n; k++) {
		struct magentry e = m->base[k];
		if (census && !is_bad(bad, nbad, (uintptr_t)e.p)) {
			if (keep != k)
				m->base[keep] = e;
			keep++;
		}
	}
	if (keep != n)
		m->top = m->base + keep;
}

/* In the child, the only thread: give back the ids of the parent's other
 * threads, and drop from their magazines every object that is not theirs
 * alone; host_cpu_reclaim marks the ids for host_fork_adopt. */
static void reclaim_orphans(void)
{
	unsigned me = host_self.cpu_plus1; /* slot of the forking thread, 0 = none */
	unsigned high = host_cpu_high();
	size_t orphans = 0, n = 0, nbad = 0, bytes = 0;
	for (unsigned id = 0; id < high; id++)
		if (host_cpu_taken(id) && id + 1 != me)
			orphans++;
	if (orphans == 0)
		return;
	if (!mheap_inited()) {
		for (unsigned id = 0; id < high; id++)
			if (host_cpu_taken(id) && id + 1 != me)
				host_cpu_reclaim(id);
		return;
	}
	for (unsigned slot = 1; slot <= high; slot++) {
		struct mcache *c = mm_mcaches[slot];
		for (unsigned i = 2; c != NULL && i < NUM_SPANCLASSES; i++)
			n += mag_entries(&c->mag[i]);
	}
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
		n += mheap_.transfer[i].t.n;
	bytes = 2 * (n + 1) * sizeof(struct rec);
	/* populated at once: faulting its pages in one by one cost more
	 * than the sort */
	void *t = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct rec *r = t != MAP_FAILED ? t : NULL;
	uintptr_t *bad = (uintptr_t *)r; /* reuses the array's front */
	if (r != NULL) {
		size_t k = 0;
		for (unsigned slot = 1; slot <= high; slot++) {
			struct mcache *c = mm_mcaches[slot];
			uintptr_t tag = slot == me || !host_cpu_taken(slot - 1) ? REC_TRUSTED : 0;
			for (unsigned i = 2; c != NULL && i < NUM_SPANCLASSES; i++) {
				const struct magazine *m = &c->mag[i];
				size_t e = mag_entries(m);
				for (size_t j = 0; j < e; j++)
					r[k++] = (struct rec){ (uintptr_t)m->base[j].p | tag,
					                       (uintptr_t)m->base[j].live |
					                               (uintptr_t)i << 56 };
			}
		}
		for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
			const struct transfer *tr = &mheap_.transfer[i].t;
			for (uint32_t j = 0; j < tr->n; j++)
				r[k++] = (struct rec){ (uintptr_t)tr->e[j].p | REC_TRUSTED, 0 };
		}
		sort_recs(r, r + n + 1, n);
		/* An object held twice is bad (its orphaned copies go: one
		 * copy may be right, but which cannot be told); one held once
		 * by an orphan is checked against its span. The bad list is
		 * written over the front of r, behind the reading position. */
		for (size_t j = 0; j < n;) {
			uintptr_t p = r[j].p & ~(uintptr_t)REC_TRUSTED;
			size_t e = j + 1;
			while (e < n && (r[e].p & ~(uintptr_t)REC_TRUSTED) == p)
				e++;
			bool b = e - j > 1;
			if (!b && !(r[j].p & REC_TRUSTED)) {
				uintptr_t lc = r[j].live_cls;
				b = !entry_ok(p, (const uint8_t *)(lc & (((uintptr_t)1 << 56) - 1)),
				              (unsigned)(lc >> 56));
			}
			if (b)
				bad[nbad++] = p; /* nbad <= j: behind the reader */
			j = e;
		}
	}
	for (unsigned id = 0; id < high; id++) {
		if (!host_cpu_taken(id) || id + 1 == me)
			continue;
		struct mcache *c = mm_mcaches[cpu_slot(id)];
		if (c != NULL && (nbad != 0 || r == NULL))
			for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
				mag_filter(&c->mag[i], bad, nbad, r != NULL);
		host_cpu_reclaim(id);
	}
	if (r != NULL)
		munmap(r, bytes);
}

/* A meshing heap's arena is shared with the child until the child has
 * copied it (mesh.c): wait for that with the locks held. */
static void fork_parent(void)
{
	host_mesh_fork_parent();
	fork_release();
}

static void fork_child(void)
{
	/* The background thread is not copied: the next slow path asks
	 * for a new one. */
	mm_store_relaxed(&mheap_.bg_state, BG_NONE);
	host_mesh_fork_child();
	host_stopworld_fork_child();
	fork_release();
	reclaim_orphans();
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_register(void)
{
	if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
		sys_fault("pthread_atfork failed", NULL);
}

void host_fork_init(void)
{
	pthread_once(&fork_once, fork_register);
}
