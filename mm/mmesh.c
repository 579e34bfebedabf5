/*
 * mmesh.c: meshing (Powers, Tench, Berger, McGregor, PLDI 2019): two
 * sparse spans of one span class whose out slots do not overlap come to
 * share one set of frames, through the port's page tables, and no
 * object's address changes. See malloc.c for the overview.
 *
 * A span and the aliases on its frames form a group; a mesh of the group
 * of src into the group of dst, for a span class c:
 *   1. Pick (c's lock, mmeshpick.c): candidates are partial spans at
 *      most half out (their allocBits hold their aliases' slots too),
 *      each looked at once a pass; a pair meshes if their allocBits AND
 *      to zero and the groups together have at most MESH_MAX_ALIAS
 *      aliases; runs of adjacent spans are paired with adjacent spans,
 *      in order, then any pairs, each span onto the fullest it fits
 *      (best fit, which Mesh's SplitMesher is not). src leaves the
 *      lists with mesh_dst set ("becoming an alias"), dst's allocBits
 *      take src's out slots S0 (so dst never hands them out) and its
 *      nalias counts src and src's aliases (so dst is never given back
 *      while they map its frames).
 *   2. Copy (no lock; where the port meshes runs cheaper, a segment of
 *      a run with no aliases to move as one range: batch_len): writers
 *      of src and its aliases are held off by the
 *      port, either sys_config.mesh_protect (the host write-protects each
 *      range; a writer faults and waits) or stop_world; the S0 slots are
 *      copied to the same offsets of dst; mesh_alias maps src's range
 *      onto dst's frames and gives src's own frames back, then maps each
 *      of src's aliases onto dst's frames too. The pause is measured.
 *   3. Settle (c's lock): src is swept (objects freed meanwhile came back
 *      to src's free_bits as usual, its aliases' through src), the slots
 *      of S0 that neither src nor its aliases hold any more are returned
 *      to dst's free_bits, src gives up its aliases' slots (they now come
 *      back from the aliases to dst), and src and its aliases join dst's
 *      list (mesh_aliases); src goes on the class's meshed list: an
 *      alias.
 * An alias is an ordinary span to kfree, ksize, krealloc and the leak
 * detector: its pages keep their descriptors, its live bytes say which
 * of its objects are live, so a pointer through either address is
 * validated exactly and marked once. It never hands out a slot (it is on
 * no list a CPU takes from), though objects of it already in caches go
 * out and come back through its address as before. Whatever comes back
 * to an alias (mcentral_return -> mesh_alias_sweep) is forwarded to dst's
 * free_bits, where dst's owner sweeps it up; an alias with no slot out is
 * reaped (mesh_reap: mesh_unalias, which the port may refuse for now
 * (then the next reap tries again), descriptors cleared, its pages back
 * to the page allocator as released, dst's nalias down), after which dst
 * can empty and go back to the mheap like any span.
 *
 * Why a group moves whole, and an alias never meshes by itself: the port
 * maps a range onto another's frames, not frames by name, so a chain
 * (an alias of an alias) would leave a range on frames its dst no longer
 * has. Moving src's aliases with it keeps every alias one step from the
 * span whose frames it maps. Without group moves, a pass could only
 * halve a class's spans: every span would be a dst or an alias after one
 * pass (the fragmentation heap of tests/heapmap/frag.c at 64 MiB: 30 MiB
 * meshed of 92, with group moves 39).
 *
 * Allocation order: Mesh shuffles the slots a span hands out so that
 * spans that survive random frees look random, which makes disjoint pairs
 * likely. Ours hands out the lowest free slot (allocCache), which packs
 * new objects at the low end of every span; survivors of random frees are
 * random either way, and kept that way: no shuffle (the fast path stays
 * as it is). Measured in the closing note of the meshing issue.
 *
 * Who runs it: the paced background work (kmalloc_background: up to
 * MESH_STEP_NS of meshing every MESH_PERIOD_NS, and of reaping at each
 * step; a round out of time leaves its picked pairs unmeshed, as failed
 * ones, so a step ends within one batch of its budget), kmalloc_trim and
 * kmalloc_mesh, each behind the background gate (mheap_.bg_busy), so a leak scan or a fork never meets
 * a mesh in flight. Never on an allocation path. A mesh the port refuses
 * ends the call (the rest would be refused too: the host is out of
 * mappings until aliases are reaped), and the paced work then waits
 * longer each time it is refused (mesh_paced). Passes over the classes
 * pair runs onto runs only, in segments of at least a pass's min_run,
 * then any pairs: where aliases cost the port mappings (the host: a
 * segment of a run of aliases is one, a lone alias one or two) the runs
 * come first, the longest first (kmalloc_mesh: min_run 32 down to 2),
 * before the shorter ones and the lone ones use up what the port allows.
 */
#include "mmesh.h"

/* work per period: a tenth of a CPU at most (a mesh costs 16-19 us of
 * CPU on the host, picking included: the frag pattern at 256 MiB) */
#define MESH_STEP_NS (10u * 1000 * 1000)

/* The scratch in m_mesh: the gate's (one mesher at a time); cap 0
 * while none of m_mesh is committed. */
static struct mesh_work work;

/* Statistics (kmalloc_stats), atomics; pass: the gate's. */
static struct {
	uint8_t pass;          /* mesh_run calls, mod 256 (mspan.mesh_seen) */
	uint64_t meshes;       /* meshes done */
	uint64_t failed;       /* the port refused */
	uint64_t pages;        /* heap pages of live aliases: their frames
	                          were given back */
	uint64_t aliases;      /* aliases live now */
	uint64_t pause_max_ns; /* longest copy + remap (of a batch) */
	uint64_t pause_sum_ns;
	uint64_t steps;        /* copies + remaps: batches and lone meshes */
	uint64_t last_ns;      /* when the paced work last meshed */
	uint64_t wait_ns;      /* the gate's: from last_ns to the next paced
	                          mesh, MESH_PERIOD_NS or more (mesh_paced) */
	bool refused;          /* the gate's: the port refused a mesh in this
	                          call (mesh_run, kmalloc_mesh), which then
	                          stops */
	uint64_t reap_pending; /* aliases swept empty, not reaped yet */
} mesh;

bool mesh_supported(void)
{
	return sys_config.mesh_alias != NULL && sys_config.mesh_unalias != NULL &&
	       ((sys_config.mesh_protect != NULL && sys_config.mesh_unprotect != NULL) ||
	        sys_config.stop_world != NULL);
}

/* ThreadSanitizer cannot see that the port's write protection orders the
 * copy after every write to src (it reports the copy as a race with the
 * last writes before mesh_protect): the copy is not instrumented. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MESH_COPY_ATTR __attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef MESH_COPY_ATTR
#define MESH_COPY_ATTR
#endif

MESH_COPY_ATTR static void copy_slot(uintptr_t to, uintptr_t from, size_t n)
{
	for (size_t i = 0; i < n; i += sizeof(uint64_t))
		*(volatile uint64_t *)(to + i) = *(const volatile uint64_t *)(from + i);
}

/* A protect of the group failed at range n: the ranges before it are
 * writable again. */
static void unprotect_first(const struct mesh_pair *p, unsigned n)
{
	size_t len = p->src->npages * PAGE_SIZE;
	for (unsigned i = 0; i < n; i++)
		sys_config.mesh_unprotect((void *)(i == 0 ? p->src : p->moved[i - 1])->base, len);
}

/* How many pairs from p[0] on, at most n, the port can take as one range:
 * where runs are cheaper (sys_config.mesh_runs), a segment of a run
 * (mmeshpick.c: adjacent srcs onto adjacent dsts, in order, picked one
 * after another) with no aliases to move is protected, mapped and given
 * back in one call each, instead of one per span (the host: mprotect,
 * mmap and fallocate a mesh, and sigaction to put the fault handler
 * first; with batches a mesh costs 16-19 us of CPU instead of 22-31,
 * picking included, the frag pattern at 256 MiB). */
static unsigned batch_len(const struct mesh_pair *p, unsigned n)
{
	if (!sys_config.mesh_runs || p[0].nmoved != 0)
		return 1;
	size_t len = p[0].src->npages * PAGE_SIZE;
	unsigned k = 1;
	while (k < n && k < MESH_BATCH && p[k].nmoved == 0 &&
	       p[k].src->npages == p[0].src->npages && p[k].src->base == p[0].src->base + k * len &&
	       p[k].dst->base == p[0].dst->base + k * len)
		k++;
	return k;
}

/* Step 2 for p[0, k) (k > 1: a batch, batch_len): copy each src's slots
 * into its dst's frames and map src and its aliases onto them, with the
 * group's writers held off. Returns 0, or -1 with everything as before. */
static int copy_and_alias(const struct mesh_pair *p, unsigned k, uint64_t *pause)
{
	const struct mspan *src = p->src, *dst = p->dst;
	size_t len = src->npages * PAGE_SIZE;
	bool stopped = false;
	uint64_t t0 = mm_now();
	if (sys_config.mesh_protect != NULL) {
		if (k > 1 && sys_config.mesh_protect((void *)src->base, k * len) != 0)
			return -1;
		for (unsigned i = 0; k == 1 && i <= p->nmoved; i++)
			if (sys_config.mesh_protect((void *)(i == 0 ? src : p->moved[i - 1])->base,
			                            len) != 0) {
				unprotect_first(p, i);
				return -1;
			}
	} else {
		if (sys_config.stop_world() != 0)
			return -1;
		stopped = true;
	}
	for (unsigned x = 0; x < k; x++)
		for (unsigned w = 0; w < span_nwords(src); w++)
			for (uint64_t bits = p[x].s0[w]; bits != 0; bits &= bits - 1) {
				unsigned idx = w * 64 + (unsigned)__builtin_ctzll(bits);
				if (idx >= src->nelems)
					break;
				uintptr_t off = (uintptr_t)idx * src->elemsize;
				copy_slot(p[x].dst->base + off, p[x].src->base + off,
				          src->elemsize);
			}
	/* src's aliases first, then src, whose own frames go back last: an
	 * alias read meanwhile (reads are not held off) must never show
	 * frames already given back */
	for (unsigned i = 0; i < p->nmoved; i++)
		if (sys_config.mesh_alias((void *)dst->base, (void *)p->moved[i]->base, len, 0) !=
		    0)
			sys_fault("mesh: the port could not move an alias",
			          (void *)p->moved[i]->base);
	if (sys_config.mesh_alias((void *)dst->base, (void *)src->base, k * len, 1) != 0) {
		/* src is as it was and writable. Moved aliases cannot go back:
		 * writers may have used dst's frames through them already. */
		if (p->nmoved != 0)
			sys_fault("mesh: the port could not alias a group's span",
			          (void *)src->base);
		if (stopped)
			sys_config.start_world();
		*pause = mm_now() - t0;
		return -1;
	}
	if (stopped)
		sys_config.start_world();
	*pause = mm_now() - t0;
	return 0;
}

/* dst's owner sweeps what was forwarded; an uncached dst is swept and
 * filed now. pre: c->lock. */
static void settle_dst(struct mcentral *c, struct mspan *dst)
{
	if (mm_load_relaxed(&dst->cached_by) == CPU_NONE) {
		mspan_sweep(dst);
		mcentral_place(c, dst);
	}
}

/* Step 3. pre: c->lock. */
static void settle(struct mcentral *c, struct mesh_pair *p, bool ok)
{
	MM_HELD_CENTRAL(c);
	struct mspan *src = p->src, *dst = p->dst;
	unsigned nw = span_nwords(src), left = 0;
	mspan_sweep(src);
	for (unsigned w = 0; w < nw; w++) {
		uint64_t valid = mspan_slot_mask(src, w);
		/* the moved aliases' slots: out of them, so src no longer
		 * holds them (they come back from the aliases to dst now) */
		uint64_t theirs = 0;
		for (unsigned i = 0; ok && i < p->nmoved; i++)
			theirs |= p->moved[i]->allocBits[w];
		/* ok: the slots nobody holds any more; failed: all of S0 */
		uint64_t back =
		        p->s0[w] & valid & (ok ? ~src->allocBits[w] & ~theirs : ~(uint64_t)0);
		if (back != 0)
			mcentral_mark_returned(dst, w, back);
		src->allocBits[w] &= ~(theirs & valid);
		left += mm_popcount64(src->allocBits[w] & valid);
	}
	if (ok) {
		src->allocCount = (uint16_t)left;
		mspan_refillAllocCache(src, 0);
		for (unsigned i = 0; i < p->nmoved; i++) {
			struct mspan *m = p->moved[i];
			mm_store_relaxed(&m->mesh_dst, dst);
			m->mesh_next = dst->mesh_aliases;
			dst->mesh_aliases = m;
		}
		src->mesh_aliases = NULL;
		src->nalias = 0;
		src->mesh_next = dst->mesh_aliases;
		dst->mesh_aliases = src;
		mcentral_list_push(c, src, LIST_MESHED);
		if (src->allocCount == 0)
			mm_add_fetch_relaxed(&mesh.reap_pending, 1);
	} else {
		mm_store_relaxed(&src->mesh_dst, NULL);
		dst->nalias = (uint8_t)(dst->nalias - 1 - p->nmoved);
		mcentral_place(c, src);
	}
	settle_dst(c, dst);
}

/* An alias got objects back (mcentral_return): they go on to dst.
 * pre: c->lock; s is on c's meshed list. */
void mesh_alias_sweep(struct mcentral *c, struct mspan *s)
{
	MM_HELD_CENTRAL(c);
	unsigned nw = span_nwords(s), freed = 0;
	for (unsigned w = 0; w < nw; w++) {
		if (mm_load_relaxed(&s->free_bits[w]) == 0)
			continue;
		uint64_t fr = mm_exchange_acq_rel(&s->free_bits[w], 0);
		if (MM_UNLIKELY(fr & ~s->allocBits[w]))
			sys_fault("double free",
			          mspan_slot_addr(s, w * 64 + (unsigned)__builtin_ctzll(
			                                              fr & ~s->allocBits[w])));
		s->allocBits[w] &= ~fr;
		freed += mm_popcount64(fr);
		mcentral_mark_returned(s->mesh_dst, w, fr);
	}
	if (freed == 0)
		return;
	s->needzero = 1;
	s->allocCount = (uint16_t)(s->allocCount - freed);
	if (s->allocCount == 0)
		mm_add_fetch_relaxed(&mesh.reap_pending, 1);
	settle_dst(c, s->mesh_dst);
}

/* Mesh up to `max` pairs of class c, until the clock passes `until`;
 * min_run: as mesh_find_pairs's (mmeshpick.c). pre: the background gate,
 * no mm lock. */
static unsigned mesh_class(struct mcentral *c, unsigned max, uint64_t until, unsigned min_run,
                           unsigned cands)
{
	struct mesh_pair *pairs = work.pairs;
	unsigned done = 0;
	while (done < max && !mesh.refused && mm_now() <= until) {
		unsigned want = max - done < cands / 2 ? max - done : cands / 2, seen;
		lock_central(c);
		unsigned np = mesh_find_pairs(&work, c, want, &seen, mesh.pass, min_run, cands);
		unlock_central(c);
		if (seen < 2)
			break;
		for (unsigned i = 0, k; i < np; i += k) {
			if (mesh.refused || (i != 0 && mm_now() > until)) {
				/* out of time: the rest of the round stays as it
				 * was (a batch may take long: the host's first
				 * protect of a mesh may count its mappings, 21 ms
				 * at 32,000 of them, so a round of 64 such could
				 * hold the background gate for over a second);
				 * refused: so would the rest be (the host: out of
				 * mappings, until aliases are reaped) */
				lock_central(c);
				for (unsigned x = i; x < np; x++)
					settle(c, &pairs[x], false);
				unlock_central(c);
				break;
			}
			uint64_t pause = 0;
			k = batch_len(&pairs[i], np - i);
			bool ok = copy_and_alias(&pairs[i], k, &pause) == 0;
			lock_central(c);
			for (unsigned x = 0; x < k; x++)
				settle(c, &pairs[i + x], ok);
			unlock_central(c);
			if (!ok) {
				mm_add_fetch_relaxed(&mesh.failed, k);
				mesh.refused = true;
				continue;
			}
			mm_add_fetch_relaxed(&mesh.meshes, k);
			mm_add_fetch_relaxed(&mesh.aliases, k);
			mm_add_fetch_relaxed(&mesh.pages, (uint64_t)k * pairs[i].src->npages);
			mm_add_fetch_relaxed(&mesh.pause_sum_ns, pause);
			mm_add_fetch_relaxed(&mesh.steps, 1);
			if (pause > mm_load_relaxed(&mesh.pause_max_ns))
				mm_store_relaxed(&mesh.pause_max_ns, pause);
			done += k;
		}
	}
	return done;
}

/* A list's length, under its lock (the lengths are plain fields: a
 * racy read would be a data race to ThreadSanitizer). */
static uint64_t list_len(struct mcentral *c, const struct spanlist *l)
{
	lock_central(c);
	uint64_t n = l->len;
	unlock_central(c);
	return n;
}

/* Reap the aliases with no slot out, until the port's clock passes
 * `until` (UINT64_MAX: all; at least one a call). Bounded for the paced
 * work: a program that frees a meshed heap leaves tens of thousands at
 * once (the frag workload's end: 62,000-70,000, 0.5-0.8 s of unmapping
 * in one background step, which held the gate a trim then spun on).
 * pre: the background gate (or the world as it is under it), no mm
 * lock. */
static void mesh_reap(uint64_t until)
{
	if (mm_load_relaxed(&mesh.reap_pending) == 0)
		return;
	bool first = true;
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		if (list_len(c, &c->meshed) == 0)
			continue;
		/* where the last look stopped: only the mesher (us) takes
		 * spans off the meshed list, so it stays on it, and the live
		 * aliases before it are not walked again for each dead one
		 * (one that empties meanwhile waits for the next reap) */
		struct mspan *from = NULL;
		for (;; first = false) {
			if (!first && mm_now() > until)
				return;
			struct mspan *dead = NULL;
			lock_central(c);
			for (struct mspan *s = from != NULL ? from : c->meshed.head; s != NULL;
			     s = s->next)
				if (s->allocCount == 0) {
					dead = s;
					from = s->next;
					break;
				}
			unlock_central(c);
			if (dead == NULL)
				break;
			/* first, while it is still an alias on the list: a port
			 * that cannot unmap it now (the host, out of mappings)
			 * leaves it as it is, for the next reap; with no slot
			 * out, nothing changes it meanwhile (the mesher is the
			 * only one to reap or move aliases) */
			size_t npages = dead->npages;
			if (sys_config.mesh_unalias((void *)dead->base, npages * PAGE_SIZE) != 0)
				return;
			lock_central(c);
			mcentral_list_remove(c, dead);
			c->nspans--;
			/* as mcentral's free_span: descriptors, nbytes, state */
			mheap_unpublish_small(dead);
			mm_store_relaxed(&dead->nbytes, 0);
			span_set_state(dead, SPAN_DEAD);
			struct mspan **l = &dead->mesh_dst->mesh_aliases;
			while (*l != dead)
				l = &(*l)->mesh_next;
			*l = dead->mesh_next;
			dead->mesh_next = NULL;
			unlock_central(c);
			struct mspan *dst = dead->mesh_dst;
			mm_store_relaxed(&dead->mesh_dst, NULL);
			mheap_free_span(dead, true);
			lock_central(c);
			dst->nalias--;
			if (mm_load_relaxed(&dst->cached_by) == CPU_NONE)
				mcentral_place(c, dst);
			unlock_central(c);
			mm_add_fetch_relaxed(&mesh.reap_pending, (uint64_t)-1);
			mm_add_fetch_relaxed(&mesh.aliases, (uint64_t)-1);
			mm_add_fetch_relaxed(&mesh.pages, (uint64_t)0 - npages);
			mesh.wait_ns = MESH_PERIOD_NS; /* the port may have room again */
		}
	}
}

/* Per class: did the last pass mesh any of it? The background gate's. */
static bool class_meshed[NUM_SPANCLASSES];

/* One pass over every class (each span looked at once), up to max_pairs
 * meshes in all, until the port's clock passes `until`; min_run: as
 * mesh_find_pairs's. again: the pass before was of the same kind, so a
 * class it meshed none of is skipped: the same rounds over the same
 * spans would find nothing again (unless frees changed them meanwhile,
 * which the next kind of pass sees), and each pass walks every class's
 * partial list, a cache miss a span (half of kmalloc_mesh's picking).
 * pre: the background gate, no mm lock. */
static unsigned mesh_pass(unsigned max_pairs, uint64_t until, unsigned min_run, unsigned cands,
                          bool again)
{
	mesh.pass++;
	unsigned done = 0;
	for (unsigned i = 2;
	     i < NUM_SPANCLASSES && done < max_pairs && !mesh.refused && mm_now() <= until; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		if (again && !class_meshed[i])
			continue;
		class_meshed[i] = false;
		if (list_len(c, &c->partial) < 2)
			continue;
		if (!mesh_work_ready(&work, cands))
			break;
		unsigned n = mesh_class(c, max_pairs - done, until, min_run, cands);
		class_meshed[i] = n != 0;
		done += n;
	}
	return done;
}

/* Every class, up to max_pairs meshes in all, until the port's clock
 * passes `until` (UINT64_MAX: no limit); reaps first. A pass of runs
 * onto runs, then one of any pairs: on a port whose aliases cost
 * mappings (the host), runs are cheaper (mmeshpick.c) and come first.
 * Returns the meshes done. pre: the background gate, no mm lock. */
unsigned mesh_run(unsigned max_pairs, uint64_t until)
{
	if (!mesh_supported())
		return 0;
	mesh_reap(until);
	mesh.refused = false;
	unsigned done = mesh_pass(max_pairs, until, 2, MESH_CANDIDATES_PACED, false);
	if (done < max_pairs && !mesh.refused)
		done += mesh_pass(max_pairs - done, until, 0, MESH_CANDIDATES_PACED, false);
	return done;
}

/* The longest the paced work waits between meshes while the port
 * refuses them: 64 periods. */
#define MESH_BACKOFF_MAX_NS (64ull * MESH_PERIOD_NS)

/* The paced background work's share: at most every MESH_PERIOD_NS, and
 * less often while the port refuses every mesh: a heap meshed up to the
 * host's mapping budget, idle, kept its background thread counting
 * /proc/self/maps (21 ms at 32,000 mappings) every 100 ms for nothing
 * (the frag heap after a trim: 0.48 s of CPU in 5 s, 18 refusals, no
 * mesh). The wait doubles after a step the port refused and that meshed
 * nothing, up to MESH_BACKOFF_MAX_NS, and is back at the period once a
 * step meshes or a reap unmaps an alias. */
unsigned mesh_paced(uint64_t now)
{
	if (!mesh_supported())
		return 0;
	/* before the rate limit: a context that may not mesh must not use up
	 * the period (the kernel's timer tick comes far more often than its
	 * idle loop) */
	if (sys_config.mesh_context != NULL && !sys_config.mesh_context())
		return 0;
	mesh_reap(now + MESH_STEP_NS);
	if (mesh.wait_ns < MESH_PERIOD_NS)
		mesh.wait_ns = MESH_PERIOD_NS;
	if (now - mm_load_relaxed(&mesh.last_ns) < mesh.wait_ns)
		return 0;
	mm_store_relaxed(&mesh.last_ns, now);
	unsigned done = mesh_run(UINT32_MAX, now + MESH_STEP_NS);
	if (done == 0 && mesh.refused)
		mesh.wait_ns = mesh.wait_ns * 2 < MESH_BACKOFF_MAX_NS ? mesh.wait_ns * 2
		                                                      : MESH_BACKOFF_MAX_NS;
	else
		mesh.wait_ns = MESH_PERIOD_NS;
	return done;
}

void mesh_stats(struct kmalloc_stats *st)
{
	st->mesh_count = mm_load_relaxed(&mesh.meshes);
	st->mesh_failed = mm_load_relaxed(&mesh.failed);
	st->mesh_spans = mm_load_relaxed(&mesh.aliases);
	st->mesh_bytes = mm_load_relaxed(&mesh.pages) * PAGE_SIZE;
	st->mesh_steps = mm_load_relaxed(&mesh.steps);
	st->mesh_pause_max_ns = mm_load_relaxed(&mesh.pause_max_ns);
	st->mesh_pause_sum_ns = mm_load_relaxed(&mesh.pause_sum_ns);
}

void mesh_reap_now(void)
{
	if (!mheap_inited() || !mesh_supported() || !mheap_bg_enter())
		return;
	mesh_reap(UINT64_MAX);
	mheap_bg_leave();
}

unsigned kmalloc_mesh(void)
{
	if (!mheap_inited() || !mesh_supported() || !mheap_bg_enter())
		return 0; /* (a trim inside an excluded stretch: no mesh) */
	/* passes until one finds nothing (a dst that took an alias may take
	 * another in the next pass): of runs onto runs in segments of at least
	 * min_run, longer ones first (each mapping they cost frees the most
	 * pages; two passes each find nearly all of them), then of any pairs */
	unsigned done = 0, n;
	mesh_reap(UINT64_MAX);
	mesh.refused = false; /* the first refusal ends the call */
	static const unsigned min_run[] = { 32, 24, 16, 12, 10, 8, 7, 6, 5, 4, 3, 2, 0 };
	for (unsigned r = 0; r < sizeof min_run / sizeof min_run[0] && !mesh.refused; r++)
		for (int pass = 0; pass < (min_run[r] > 2 ? 2 : 8) && !mesh.refused &&
		                   (n = mesh_pass(UINT32_MAX, UINT64_MAX, min_run[r],
		                                  MESH_CANDIDATES, pass > 0)) != 0;
		     pass++)
			done += n;
	mesh_work_release(&work);
	mheap_bg_leave();
	return done;
}
