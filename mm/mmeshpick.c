/*
 * mmeshpick.c: which spans of a class mesh together (step 1 of a mesh,
 * mm/mmesh.c, which does the rest; see there and malloc.c).
 *
 * A round, under the class's lock: up to MESH_CANDIDATES spans of
 * partial that this pass has not looked at and that are at most half out
 * (their allocBits hold their aliases' slots too) are collected, each
 * with the run of adjacent candidates it is in, and sorted by address. A
 * pair meshes if their allocBits AND to zero and the groups together have
 * at most MESH_MAX_ALIAS aliases. Each pair is picked at once (pick: src
 * leaves the lists with mesh_dst set, dst takes src's slots and counts
 * src's group in its nalias), so a span is in one pair at most.
 *
 * Runs first. A port that maps a range onto another's memory through a
 * file (the host, arch/host/mesh.c) pays one mapping per run of aliases
 * that map a run of spans in order (Linux merges mappings whose file
 * offsets follow their addresses), two for a lone alias, and has a
 * limited number of mappings (vm.max_map_count). So there a growing
 * class takes adjacent spans from the mheap (mcentral_refill, with
 * sys_config.mesh_runs), and a pass of
 * runs onto runs (pair_runs) comes before a pass of any pairs (pair_any,
 * Mesh's SplitMesher: the lower half of the candidates each tried
 * against MESH_TRIES of the upper half). In both, src is the lower span
 * or run unless it has more aliases to move, so aliases gather next to
 * each other. The kernel port, which maps page by page, is indifferent
 * to all of it: the same spans mesh, in another order.
 */
#include "mmesh.h"

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
	/* (a typed cache's span could have more slots than a pair records) */
	return s->allocCount != 0 && 2u * s->allocCount <= s->nelems &&
	       span_nwords(s) <= MESH_MAX_WORDS && mm_load_relaxed(&s->cached_by) == CPU_NONE;
}

/* Step 1 for one pair: src out of the lists, dst takes its slots.
 * pre: c->lock; both swept and uncached (on partial). */
static void pick(struct mcentral *c, struct mesh_pair *p)
{
	MM_HELD_CENTRAL(c);
	struct mspan *src = p->src, *dst = p->dst;
	unsigned nw = span_nwords(src);
	mcentral_list_remove(c, src);
	mm_store_relaxed(&src->mesh_dst, dst); /* atomic: kmalloc_heapmap reads it */
	p->nmoved = 0;
	for (struct mspan *a = src->mesh_aliases; a != NULL; a = a->mesh_next)
		p->moved[p->nmoved++] = a;
	dst->nalias = (uint8_t)(dst->nalias + 1 + src->nalias);
	for (unsigned w = 0; w < nw; w++) {
		p->s0[w] = src->allocBits[w];
		dst->allocBits[w] |= p->s0[w];
	}
	dst->allocCount = (uint16_t)(dst->allocCount + src->allocCount);
	mspan_refillAllocCache(dst, 0); /* swept: freeindex is 0 */
	mcentral_place(c, dst);
}

/* May a and b mesh (either way round)? */
static bool meshable(const struct mspan *a, const struct mspan *b)
{
	return a->nalias + b->nalias + 1u <= MESH_MAX_ALIAS && disjoint(a, b);
}

/* Does b start where a ends? */
static bool adjacent(const struct mspan *a, const struct mspan *b)
{
	return a->base + a->npages * PAGE_SIZE == b->base;
}

/* May s be a candidate in this pass? pre: c->lock. */
static bool candidate(const struct mspan *s, uint8_t pass)
{
	return s->mesh_seen != pass && s->onlist == LIST_PARTIAL && sparse(s) &&
	       s->mesh_dst == NULL;
}

/* The span of s's class that starts where s ends, or NULL: its first
 * page's descriptor names the class (a class's descriptors change only
 * under its lock, so the record is that span's while we hold it).
 * pre: c->lock, s is c's. */
static struct mspan *next_of_class(const struct mspan *s)
{
	uintptr_t end = s->base + s->npages * PAGE_SIZE, rel = end - mheap_.arena_start;
	if (rel >= LOAD(mheap_.arena_used_bytes))
		return NULL;
	uint64_t d = mm_load_acquire(&mheap_.pagedesc[rel >> PAGE_SHIFT]);
	if (d == 0 || PD_CLASS(d) != s->spanclass || (d & PD_PAGEOFF_MASK) != 0)
		return NULL;
	return spanOf(end);
}

/* The span of s's class that ends where s starts, or NULL (as
 * next_of_class). pre: c->lock, s is c's. */
static struct mspan *prev_of_class(const struct mspan *s)
{
	if (s->base <= mheap_.arena_start)
		return NULL;
	uintptr_t rel = s->base - PAGE_SIZE - mheap_.arena_start;
	uint64_t d = mm_load_acquire(&mheap_.pagedesc[rel >> PAGE_SHIFT]);
	if (d == 0 || PD_CLASS(d) != s->spanclass)
		return NULL;
	return spanOf(s->base - PAGE_SIZE);
}

/* The candidates of a round, sorted by address, each with the whole run
 * of candidates it is in (the list's order, the order spans became
 * partial, says nothing of where they are); returns how many. */
static unsigned collect(struct mcentral *c, struct mspan **cand, uint8_t pass)
{
	unsigned n = 0;
	for (struct mspan *h = c->partial.head; h != NULL && n < MESH_CANDIDATES; h = h->next) {
		/* from the start of h's run of candidates */
		struct mspan *f = h, *p;
		for (unsigned k = 0; k < MESH_CANDIDATES && candidate(f, pass) &&
		                     (p = prev_of_class(f)) != NULL && candidate(p, pass);
		     k++)
			f = p;
		for (struct mspan *s = f; s != NULL && n < MESH_CANDIDATES && candidate(s, pass);
		     s = next_of_class(s)) {
			s->mesh_seen = pass;
			unsigned k = n++;
			for (; k > 0 && cand[k - 1]->base > s->base; k--)
				cand[k] = cand[k - 1];
			cand[k] = s;
		}
	}
	return n;
}

/* Pair up spans of cand[0, n) not used yet, as Mesh's SplitMesher: the
 * lower half each tried against MESH_TRIES of the upper half; src is the
 * lower span unless it has more aliases to move. Returns the new np. */
static unsigned pair_any(struct mcentral *c, struct mspan **cand, bool *used, unsigned n,
                         struct mesh_pair *out, unsigned np, unsigned max)
{
	struct mspan *left[MESH_CANDIDATES], *right[MESH_CANDIDATES];
	bool rused[MESH_CANDIDATES] = { false };
	unsigned m = 0;
	for (unsigned i = 0; i < n; i++)
		if (!used[i])
			left[m++] = cand[i];
	unsigned half = m / 2;
	for (unsigned i = half; i < m; i++)
		right[i - half] = left[i];
	for (unsigned i = 0; i < half && np < max; i++)
		for (unsigned t = 0; t < MESH_TRIES && t < m - half; t++) {
			unsigned k = (i + t) % (m - half);
			if (rused[k] || !meshable(left[i], right[k]))
				continue;
			bool up = left[i]->nalias <= right[k]->nalias;
			out[np].src = up ? left[i] : right[k];
			out[np].dst = up ? right[k] : left[i];
			pick(c, &out[np++]);
			rused[k] = true;
			break;
		}
	return np;
}

/* Aliases a run of spans' frames hold. */
static unsigned run_aliases(struct mspan *const *r, unsigned len)
{
	unsigned a = 0;
	for (unsigned x = 0; x < len; x++)
		a += r[x]->nalias;
	return a;
}

#define RUN_SPLIT 8 /* runs this long count as two (pair_runs) */

/* How many spans of the run b (lb long) mesh with those of a (la) at
 * the best offset of the shorter into the longer; *shift: that offset
 * (into a if a is the longer, else into b). */
static unsigned run_match(struct mspan *const *a, unsigned la, struct mspan *const *b, unsigned lb,
                          unsigned *shift)
{
	unsigned best = 0;
	*shift = 0;
	for (unsigned sh = 0; sh + (la < lb ? la : lb) <= (la < lb ? lb : la); sh++) {
		unsigned k = 0, l = la < lb ? la : lb;
		for (unsigned x = 0; x < l; x++)
			k += la >= lb ? meshable(a[sh + x], b[x]) : meshable(a[x], b[sh + x]);
		if (k > best) {
			best = k;
			*shift = sh;
		}
	}
	return best;
}

/* Mesh runs onto runs: the runs of adjacent spans in cand (sorted), each
 * of the lower half's onto the upper run where most of its spans mesh,
 * the shorter at the best offset into the longer; each pair of a run pair
 * meshes if it can, except that a run whose spans hold aliases moves only
 * whole (a part of it would take its aliases out of their own runs). A
 * run of RUN_SPLIT or more counts as its two halves, which may pair with
 * each other: a block of adjacent spans meshed onto itself leaves one run
 * of aliases next to one of dsts. src: the lower run, unless it has more
 * aliases to move, so that the
 * aliases gather low, next to each other (a run of aliases between spans
 * that map their own offsets costs the host two more mappings). Returns
 * the new np. */
static unsigned pair_runs(struct mcentral *c, struct mspan **cand, bool *used, unsigned n,
                          struct mesh_pair *out, unsigned np, unsigned max)
{
	unsigned start[MESH_CANDIDATES / 2], len[MESH_CANDIDATES / 2], nr = 0;
	bool rused[MESH_CANDIDATES / 2] = { false };
	for (unsigned i = 0, l; i < n; i += l) {
		for (l = 1; i + l < n && adjacent(cand[i + l - 1], cand[i + l]); l++)
			;
		if (l >= RUN_SPLIT) {
			start[nr] = i;
			len[nr++] = l / 2;
			start[nr] = i + l / 2;
			len[nr++] = l - l / 2;
		} else if (l >= 2) {
			start[nr] = i;
			len[nr++] = l;
		}
	}
	for (unsigned r = 0; r < nr / 2 && np < max; r++) {
		unsigned bestq = nr, bestn = 0, bests = 0, sh;
		for (unsigned q = nr / 2; q < nr; q++) {
			unsigned k = rused[q] ? 0
			                      : run_match(cand + start[r], len[r], cand + start[q],
			                                  len[q], &sh);
			if (k > bestn) {
				bestq = q;
				bestn = k;
				bests = sh;
			}
		}
		if (bestq == nr)
			continue;
		unsigned l = len[r] < len[bestq] ? len[r] : len[bestq];
		unsigned ia = start[r] + (len[r] >= len[bestq] ? bests : 0);
		unsigned ib = start[bestq] + (len[r] >= len[bestq] ? 0 : bests);
		struct mspan **a = cand + ia, **b = cand + ib;
		unsigned aa = run_aliases(a, l), ab = run_aliases(b, l);
		bool a_src = aa <= ab; /* a is the lower run */
		if ((a_src ? aa : ab) != 0 && bestn != l)
			continue;
		rused[bestq] = true;
		for (unsigned x = 0; x < l && np < max; x++) {
			if (!meshable(a[x], b[x]))
				continue;
			out[np].src = a_src ? a[x] : b[x];
			out[np].dst = a_src ? b[x] : a[x];
			pick(c, &out[np++]);
			used[ia + x] = used[ib + x] = true;
		}
	}
	return np;
}

unsigned mesh_find_pairs(struct mcentral *c, struct mesh_pair *out, unsigned max, unsigned *seen,
                         uint8_t pass, bool runs_only)
{
	struct mspan *cand[MESH_CANDIDATES];
	bool used[MESH_CANDIDATES] = { false };
	MM_HELD_CENTRAL(c);
	unsigned n = collect(c, cand, pass);
	*seen = n;
	unsigned np = pair_runs(c, cand, used, n, out, 0, max);
	return runs_only ? np : pair_any(c, cand, used, n, out, np, max);
}
