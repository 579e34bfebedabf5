/*
 * mmesh.c: meshing (Powers, Tench, Berger, McGregor, PLDI 2019): two
 * sparse spans of one span class whose out slots do not overlap come to
 * share one set of frames, through the port's page tables, and no
 * object's address changes. See malloc.c for the overview.
 *
 * A mesh of src into dst, for a span class c:
 *   1. Pick (c's lock): candidates are partial spans at most half out;
 *      pairs are probed as Mesh's SplitMesher does (the candidates split
 *      in two halves, each left one tried against MESH_TRIES right ones),
 *      a pair meshes if their allocBits AND to zero. src leaves the lists
 *      with mesh_dst set ("becoming an alias"), dst's allocBits take src's
 *      out slots S0 (so dst never hands them out) and its nalias counts
 *      src (so dst is never given back while src maps its frames).
 *   2. Copy (no lock): writers of src are held off by the port, either
 *      sys_config.mesh_protect (the host write-protects src; a writer
 *      faults and waits) or stop_world; the S0 slots are copied to the
 *      same offsets of dst; mesh_alias maps src's range onto dst's frames
 *      and gives src's own frames back. The pause is measured.
 *   3. Settle (c's lock): src is swept (objects freed meanwhile came back
 *      to src's free_bits as usual), and the slots of S0 that src no
 *      longer holds are returned to dst's free_bits; src goes on the
 *      class's meshed list: an alias.
 * An alias is an ordinary span to kfree, ksize, krealloc and the leak
 * detector: its pages keep their descriptors, its live bytes say which
 * of its objects are live, so a pointer through either address is
 * validated exactly and marked once. It never hands out a slot (it is on
 * no list a CPU takes from), though objects of it already in caches go
 * out and come back through its address as before. Whatever comes back
 * to an alias (mcentral_return -> mesh_alias_sweep) is forwarded to dst's
 * free_bits, where dst's owner sweeps it up; an alias with no slot out is
 * reaped (mesh_reap: descriptors cleared, mesh_unalias, its pages back to
 * the page allocator as released, dst's nalias down), after which dst can
 * empty and go back to the mheap like any span.
 *
 * Why one alias is never a dst or a src again (and a dst never a src):
 * the port maps a range onto another's frames, not frames by name; a
 * chain would leave an alias on frames its dst no longer has. A dst takes
 * up to MESH_MAX_ALIAS aliases, each checked against its allocBits, which
 * already hold the earlier aliases' slots.
 *
 * Allocation order: Mesh shuffles the slots a span hands out so that
 * spans that survive random frees look random, which makes disjoint pairs
 * likely. Ours hands out the lowest free slot (allocCache), which packs
 * new objects at the low end of every span; survivors of random frees are
 * random either way, and kept that way: no shuffle (the fast path stays
 * as it is). Measured in the closing note of the meshing issue.
 *
 * Who runs it: the paced background work (kmalloc_background: up to
 * MESH_STEP_NS of meshing every MESH_PERIOD_NS), kmalloc_trim and kmalloc_mesh, each behind the
 * background gate (mheap_.bg_busy), so a leak scan or a fork never meets
 * a mesh in flight. Never on an allocation path.
 */
#include "internal.h"

#define MESH_CANDIDATES 64                   /* spans looked at per class and step */
#define MESH_TRIES      16                   /* right-half spans tried per left one */
#define MESH_MAX_ALIAS  3                    /* aliases per dst (a group of 4 spans) */
#define MESH_PERIOD_NS  (100u * 1000 * 1000) /* Mesh's default rate */
#define MESH_STEP_NS \
	(10u * 1000 * 1000) /* work per period: a tenth of a
                                            CPU at most (a mesh costs
                                            ~40 us on the host) */
#define MESH_MAX_WORDS \
	16 /* bitmap words of the largest span: 8 B
                              objects in one 8 KiB page */

struct mesh_pair {
	struct mspan *src, *dst;
	uint64_t s0[MESH_MAX_WORDS]; /* src's out slots when picked */
};

/* Statistics (kmalloc_stats), atomics. */
static struct {
	uint64_t meshes;       /* meshes done */
	uint64_t failed;       /* the port refused */
	uint64_t pages;        /* heap pages of live aliases: their frames
	                          were given back */
	uint64_t aliases;      /* aliases live now */
	uint64_t pause_max_ns; /* longest copy + remap */
	uint64_t pause_sum_ns;
	uint64_t last_ns;      /* when the paced work last meshed */
	uint64_t reap_pending; /* aliases swept empty, not reaped yet */
} mesh;

bool mesh_supported(void)
{
	return sys_config.mesh_alias != NULL && sys_config.mesh_unalias != NULL &&
	       (sys_config.mesh_protect != NULL || sys_config.stop_world != NULL);
}

static bool disjoint(const struct mspan *a, const struct mspan *b)
{
	unsigned nw = span_nwords(a);
	for (unsigned w = 0; w < nw; w++) {
		uint64_t va = w == nw - 1 && a->nelems % 64
		                      ? (((uint64_t)1 << (a->nelems % 64)) - 1)
		                      : ~(uint64_t)0;
		if (a->allocBits[w] & b->allocBits[w] & va)
			return false;
	}
	return true;
}

static bool sparse(const struct mspan *s)
{
	return s->allocCount != 0 && 2u * s->allocCount <= s->nelems &&
	       mm_load_relaxed(&s->cached_by) == CPU_NONE;
}

/* Step 1 for one pair: src out of the lists, dst takes its slots.
 * pre: c->lock; both swept and uncached (on partial). */
static void pick(struct mcentral *c, struct mesh_pair *p)
{
	MM_HELD_CENTRAL(c);
	struct mspan *src = p->src, *dst = p->dst;
	unsigned nw = span_nwords(src);
	mcentral_list_remove(c, src);
	src->mesh_dst = dst;
	dst->nalias++;
	for (unsigned w = 0; w < nw; w++) {
		p->s0[w] = src->allocBits[w];
		dst->allocBits[w] |= p->s0[w];
	}
	dst->allocCount = (uint16_t)(dst->allocCount + src->allocCount);
	mspan_refillAllocCache(dst, 0); /* swept: freeindex is 0 */
	mcentral_place(c, dst);
}

/* Up to `max` disjoint pairs of class c among the MESH_CANDIDATES sparse
 * spans of partial after the first `skip`, picked. Returns how many;
 * *seen: the candidates there were. */
static unsigned find_pairs(struct mcentral *c, struct mesh_pair *out, unsigned max, unsigned skip,
                           unsigned *seen)
{
	struct mspan *cand[MESH_CANDIDATES];
	bool used[MESH_CANDIDATES] = { false };
	unsigned n = 0, np = 0;
	MM_HELD_CENTRAL(c);
	for (struct mspan *s = c->partial.head; s != NULL && n < MESH_CANDIDATES; s = s->next)
		if (sparse(s) && s->mesh_dst == NULL) {
			if (skip != 0)
				skip--;
			else
				cand[n++] = s;
		}
	*seen = n;
	unsigned half = n / 2;
	for (unsigned i = 0; i < half && np < max; i++) {
		for (unsigned t = 0; t < MESH_TRIES && t < n - half; t++) {
			unsigned j = half + (i + t) % (n - half);
			if (used[j])
				continue;
			struct mspan *a = cand[i], *b = cand[j];
			/* dst: the one with aliases already, else the fuller */
			if (b->nalias > a->nalias ||
			    (b->nalias == a->nalias && b->allocCount > a->allocCount)) {
				struct mspan *x = a;
				a = b;
				b = x;
			}
			if (b->nalias != 0 || a->nalias >= MESH_MAX_ALIAS || !disjoint(a, b))
				continue;
			out[np].dst = a;
			out[np].src = b;
			pick(c, &out[np]);
			used[i] = used[j] = true;
			np++;
			break;
		}
	}
	return np;
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

/* Step 2: copy src's slots into dst's frames and alias src onto them,
 * with src's writers held off. Returns 0, or -1 with src as before. */
static int copy_and_alias(const struct mesh_pair *p, uint64_t *pause)
{
	const struct mspan *src = p->src, *dst = p->dst;
	size_t len = src->npages * PAGE_SIZE;
	bool stopped = false;
	uint64_t t0 = mm_now();
	if (sys_config.mesh_protect != NULL) {
		if (sys_config.mesh_protect((void *)src->base, len) != 0)
			return -1;
	} else {
		if (sys_config.stop_world() != 0)
			return -1;
		stopped = true;
	}
	for (unsigned w = 0; w < span_nwords(src); w++)
		for (uint64_t bits = p->s0[w]; bits != 0; bits &= bits - 1) {
			unsigned idx = w * 64 + (unsigned)__builtin_ctzll(bits);
			if (idx >= src->nelems)
				break;
			uintptr_t off = (uintptr_t)idx * src->elemsize;
			copy_slot(dst->base + off, src->base + off, src->elemsize);
		}
	int r = sys_config.mesh_alias((void *)dst->base, (void *)src->base, len);
	if (stopped)
		sys_config.start_world();
	*pause = mm_now() - t0;
	return r;
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
	unsigned nw = span_nwords(src);
	mspan_sweep(src);
	for (unsigned w = 0; w < nw; w++) {
		uint64_t valid = (w == nw - 1 && src->nelems % 64)
		                         ? (((uint64_t)1 << (src->nelems % 64)) - 1)
		                         : ~(uint64_t)0;
		/* ok: the slots src gave up meanwhile; failed: all of S0 */
		uint64_t back = p->s0[w] & valid & (ok ? ~src->allocBits[w] : ~(uint64_t)0);
		if (back != 0)
			mcentral_mark_returned(dst, w, back);
	}
	if (ok) {
		mcentral_list_push(c, src, LIST_MESHED);
		if (src->allocCount == 0)
			mm_add_fetch_relaxed(&mesh.reap_pending, 1);
	} else {
		src->mesh_dst = NULL;
		dst->nalias--;
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

/* Mesh up to `max` pairs of class c, until the clock passes `until`.
 * pre: the background gate, no mm lock. */
static unsigned mesh_class(struct mcentral *c, unsigned max, uint64_t until)
{
	struct mesh_pair pairs[4];
	unsigned done = 0, skip = 0;
	while (done < max && mm_now() <= until) {
		unsigned want = max - done < 4 ? max - done : 4, seen;
		lock_central(c);
		unsigned np = find_pairs(c, pairs, want, skip, &seen);
		unlock_central(c);
		if (seen < 2)
			break;
		if (np == 0) { /* nothing in this window: the next one */
			skip += MESH_CANDIDATES / 2;
			continue;
		}
		for (unsigned i = 0; i < np; i++) {
			uint64_t pause = 0;
			bool ok = copy_and_alias(&pairs[i], &pause) == 0;
			lock_central(c);
			settle(c, &pairs[i], ok);
			unlock_central(c);
			if (!ok) {
				mm_add_fetch_relaxed(&mesh.failed, 1);
				continue;
			}
			mm_add_fetch_relaxed(&mesh.meshes, 1);
			mm_add_fetch_relaxed(&mesh.aliases, 1);
			mm_add_fetch_relaxed(&mesh.pages, pairs[i].src->npages);
			mm_add_fetch_relaxed(&mesh.pause_sum_ns, pause);
			if (pause > mm_load_relaxed(&mesh.pause_max_ns))
				mm_store_relaxed(&mesh.pause_max_ns, pause);
			done++;
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

/* Reap the aliases with no slot out. pre: the background gate (or the
 * world as it is under it), no mm lock. */
static void mesh_reap(void)
{
	if (mm_load_relaxed(&mesh.reap_pending) == 0)
		return;
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		if (list_len(c, &c->meshed) == 0)
			continue;
		for (;;) {
			struct mspan *dead = NULL;
			lock_central(c);
			for (struct mspan *s = c->meshed.head; s != NULL; s = s->next)
				if (s->allocCount == 0) {
					dead = s;
					break;
				}
			if (dead != NULL) {
				mcentral_list_remove(c, dead);
				c->nspans--;
				/* as mcentral's free_span: descriptors, nbytes, state */
				mheap_unpublish_small(dead);
				mm_store_relaxed(&dead->nbytes, 0);
				span_set_state(dead, SPAN_DEAD);
			}
			unlock_central(c);
			if (dead == NULL)
				break;
			struct mspan *dst = dead->mesh_dst;
			size_t npages = dead->npages;
			sys_config.mesh_unalias((void *)dead->base, npages * PAGE_SIZE);
			dead->mesh_dst = NULL;
			mheap_free_span(dead, true);
			lock_central(c);
			dst->nalias--;
			if (mm_load_relaxed(&dst->cached_by) == CPU_NONE)
				mcentral_place(c, dst);
			unlock_central(c);
			mm_add_fetch_relaxed(&mesh.reap_pending, (uint64_t)-1);
			mm_add_fetch_relaxed(&mesh.aliases, (uint64_t)-1);
			mm_add_fetch_relaxed(&mesh.pages, (uint64_t)0 - npages);
		}
	}
}

/* Every class, up to max_pairs meshes in all, until the port's clock
 * passes `until` (UINT64_MAX: no limit); reaps first. Returns the meshes
 * done. pre: the background gate, no mm lock. */
unsigned mesh_run(unsigned max_pairs, uint64_t until)
{
	if (!mesh_supported())
		return 0;
	mesh_reap();
	unsigned done = 0;
	for (unsigned i = 2; i < NUM_SPANCLASSES && done < max_pairs && mm_now() <= until; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		if (list_len(c, &c->partial) < 2)
			continue;
		done += mesh_class(c, max_pairs - done, until);
	}
	return done;
}

/* The paced background work's share: at most every MESH_PERIOD_NS. */
void mesh_paced(uint64_t now)
{
	if (!mesh_supported())
		return;
	/* before the rate limit: a context that may not mesh must not use up
	 * the period (the kernel's timer tick comes far more often than its
	 * idle loop) */
	if (sys_config.mesh_context != NULL && !sys_config.mesh_context())
		return;
	mesh_reap();
	if (now - mm_load_relaxed(&mesh.last_ns) < MESH_PERIOD_NS)
		return;
	mm_store_relaxed(&mesh.last_ns, now);
	mesh_run(UINT32_MAX, now + MESH_STEP_NS);
}

void mesh_stats(struct kmalloc_stats *st)
{
	st->mesh_count = mm_load_relaxed(&mesh.meshes);
	st->mesh_failed = mm_load_relaxed(&mesh.failed);
	st->mesh_spans = mm_load_relaxed(&mesh.aliases);
	st->mesh_bytes = mm_load_relaxed(&mesh.pages) * PAGE_SIZE;
	st->mesh_pause_max_ns = mm_load_relaxed(&mesh.pause_max_ns);
	st->mesh_pause_sum_ns = mm_load_relaxed(&mesh.pause_sum_ns);
}

unsigned kmalloc_mesh(void)
{
	if (!mheap_inited() || !mesh_supported())
		return 0;
	mheap_bg_enter();
	unsigned done = mesh_run(UINT32_MAX, UINT64_MAX);
	mheap_bg_leave();
	return done;
}
