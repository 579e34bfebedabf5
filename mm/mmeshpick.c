/*
 * mmeshpick.c: which spans of a class mesh together (step 1 of a mesh,
 * mm/mmesh.c, which does the rest; see there and malloc.c).
 *
 * A round, under the class's lock: up to MESH_CANDIDATES spans
 * (MESH_CANDIDATES_PACED for the paced background work, mmesh.h) of
 * partial that this pass has not looked at and that are at most half out
 * (their allocBits hold their aliases' slots too) are collected, each
 * with the run of adjacent candidates it is in, and sorted by address. A
 * pair meshes if their allocBits AND to zero and the groups together have
 * at most MESH_MAX_ALIAS aliases. Each pair is picked at once (pick: src
 * leaves the lists with mesh_dst set, dst takes src's slots and counts
 * src's group in its nalias), so a span is in one pair at most.
 *
 * Runs first. A port that maps a range onto another's memory through a
 * file (the host, arch/host/mesh.c) pays one mapping per segment, a run
 * of aliases that map a run of spans in order (Linux merges mappings
 * whose file offsets follow their addresses), two for a lone alias among
 * spans that map their own pages, and has a limited number of mappings
 * (vm.max_map_count). So there a growing class takes adjacent spans from
 * the mheap (mcentral_refill, with sys_config.mesh_runs), and passes of
 * runs onto runs (runs_onto) come before a pass of any pairs (pair_any,
 * Mesh's SplitMesher: the lower half of the candidates each tried
 * against MESH_TRIES of the upper half). A run of candidates is covered
 * by segments, each onto whichever adjacent dsts give the longest from
 * where the last one stopped: where the span facing it conflicts, the
 * run goes on onto other dsts (or the same ones one further on) instead
 * of leaving a span between two mappings. Segments shorter than the
 * pass's min_run are left for a later pass: kmalloc_mesh lowers min_run
 * pass by pass (mmesh.c), so that where the mappings run out, the pages
 * freed per mapping were as many as could be had. Each round pairs the
 * lower half's runs onto the upper half's spans, then the upper's onto
 * what is left of the lower, then any onto any; in pair_any too, src is
 * the lower span unless it has more aliases to move, so aliases gather
 * next to each other. The kernel port, which maps page by page, is
 * indifferent to all of it: the same spans mesh, in another order.
 */
#include "mmesh.h"

/* Do a's and b's out slots from word `from` on not overlap? */
static bool disjoint_from(const struct mspan *a, const struct mspan *b, unsigned from)
{
	for (unsigned w = from; w < span_nwords(a); w++)
		if (a->allocBits[w] & b->allocBits[w] & mspan_slot_mask(a, w))
			return false;
	return true;
}

static bool disjoint(const struct mspan *a, const struct mspan *b)
{
	return disjoint_from(a, b, 0);
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

/* Heapsort by base address (the candidates come run by run, in the
 * list's order: an insertion sort of 1024 of them took most of a
 * trim's picking). */
static void sift_down(struct mspan **a, unsigned i, unsigned n)
{
	for (unsigned k; (k = 2 * i + 1) < n; i = k) {
		if (k + 1 < n && a[k + 1]->base > a[k]->base)
			k++;
		if (a[i]->base >= a[k]->base)
			return;
		struct mspan *t = a[i];
		a[i] = a[k];
		a[k] = t;
	}
}

static void sort_by_base(struct mspan **a, unsigned n)
{
	for (unsigned i = n / 2; i-- > 0;)
		sift_down(a, i, n);
	for (unsigned e = n; e-- > 1;) {
		struct mspan *t = a[0];
		a[0] = a[e];
		a[e] = t;
		sift_down(a, 0, e);
	}
}

/* The candidates of a round, sorted by address, each with the whole run
 * of candidates it is in (the list's order, the order spans became
 * partial, says nothing of where they are); returns how many. */
static unsigned collect(struct mesh_work *w, struct mcentral *c, uint8_t pass, unsigned cands)
{
	unsigned n = 0;
	struct mspan *h = c->mesh_pass == pass ? c->mesh_cursor : NULL;
	if (h == NULL) /* a new pass, or the end of the list: from the head */
		h = c->partial.head;
	for (; h != NULL && n < cands; h = h->next) {
		/* from the start of h's run of candidates */
		struct mspan *f = h, *p;
		for (unsigned k = 0; k < cands && candidate(f, pass) &&
		                     (p = prev_of_class(f)) != NULL && candidate(p, pass);
		     k++)
			f = p;
		for (struct mspan *s = f; s != NULL && n < cands && candidate(s, pass);
		     s = next_of_class(s)) {
			s->mesh_seen = pass;
			w->cand[n++] = s;
		}
	}
	c->mesh_cursor = h;
	c->mesh_pass = pass;
	sort_by_base(w->cand, n);
	return n;
}

/* Pair up spans of cand[0, n) not used yet, as Mesh's SplitMesher: the
 * lower half each tried against MESH_TRIES of the upper half; src is the
 * lower span unless it has more aliases to move. Returns the new np. */
static unsigned pair_any(struct mesh_work *w, struct mcentral *c, unsigned n, struct mesh_pair *out,
                         unsigned np, unsigned max)
{
	for (unsigned i = 0; i < n; i++)
		w->rused[i] = false;
	unsigned m = 0;
	for (unsigned i = 0; i < n; i++)
		if (!w->used[i])
			w->left[m++] = w->cand[i];
	unsigned half = m / 2;
	for (unsigned i = half; i < m; i++)
		w->right[i - half] = w->left[i];
	for (unsigned i = 0; i < half && np < max; i++)
		for (unsigned t = 0; t < MESH_TRIES && t < m - half; t++) {
			unsigned k = (i + t) % (m - half);
			if (w->rused[k] || !meshable(w->left[i], w->right[k]))
				continue;
			bool up = w->left[i]->nalias <= w->right[k]->nalias;
			out[np].src = up ? w->left[i] : w->right[k];
			out[np].dst = up ? w->right[k] : w->left[i];
			pick(c, &out[np++]);
			w->rused[k] = true;
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

/* May cand[b] mesh with a span whose signature is s0, s1 and aliases
 * na, by the signatures alone? (Its arguments apart, so that a loop over
 * b keeps the other span's in registers.) */
static bool sig_meshable(const struct mesh_work *w, unsigned b, uint64_t s0, uint64_t s1,
                         unsigned na)
{
	return na + w->nal[b] + 1u <= MESH_MAX_ALIAS && (w->sig[2 * b] & s0) == 0 &&
	       (w->sig[2 * b + 1] & s1) == 0;
}

/* meshable(cand[a], cand[b]) from the round's signatures first: at 10%
 * of slots out, two words of 64 slots already overlap for three pairs
 * in four, so the span records are read for one pair in four at most
 * (the matching below tries every pair of a round's candidates: with
 * the records alone it was most of a trim's time). */
static bool meshable_at(const struct mesh_work *w, unsigned a, unsigned b)
{
	return sig_meshable(w, b, w->sig[2 * a], w->sig[2 * a + 1], w->nal[a]) &&
	       disjoint_from(w->cand[a], w->cand[b], 2);
}

/* How many spans of cand[i, e) from i on mesh in order with cand[j],
 * cand[j+1], ... (adjacent, below d1), none used yet and none of cand[i,
 * e) a dst. */
static unsigned match_len(const struct mesh_work *w, unsigned i, unsigned e, unsigned j,
                          unsigned d1)
{
	unsigned k = 0, l = j + w->ahead[j] < d1 ? w->ahead[j] : d1 - j;
	while (i + k < e && k < l && (j + k < i || j + k >= e) && !w->used[i + k] &&
	       !w->used[j + k] && meshable_at(w, i + k, j + k))
		k++;
	return k;
}

/* The longest match (match_len) of cand[i, e) from i on with spans of
 * cand[d0, d1), if at least min long; *at: where it starts. */
static unsigned longest_match(const struct mesh_work *w, unsigned i, unsigned e, unsigned d0,
                              unsigned d1, unsigned min, unsigned *at)
{
	unsigned best = min - 1;
	if (w->used[i])
		return 0;
	uint64_t s0 = w->sig[2 * i], s1 = w->sig[2 * i + 1];
	unsigned na = w->nal[i];
	for (unsigned j = d0; j < d1 && best < e - i; j++) {
		/* match_len only where the signatures allow cand[i] onto cand[j] */
		if (w->ahead[j] <= best || j + best >= d1 || !sig_meshable(w, j, s0, s1, na))
			continue;
		unsigned k = match_len(w, i, e, j, d1);
		if (k > best) {
			best = k;
			*at = j;
		}
	}
	return best >= min ? best : 0;
}

/* Mesh l spans from a onto l from b, in order (each pair meshable). */
static unsigned mesh_in_order(struct mesh_work *w, struct mcentral *c, unsigned a, unsigned b,
                              unsigned l, struct mesh_pair *out, unsigned np, unsigned max)
{
	for (unsigned x = 0; x < l && np < max; x++) {
		out[np].src = w->cand[a + x];
		out[np].dst = w->cand[b + x];
		pick(c, &out[np++]);
		w->used[a + x] = w->used[b + x] = true;
	}
	return np;
}

/* Mesh the runs of adjacent spans of cand[s0, s1) (a run is cut at s1)
 * onto adjacent spans of cand[d0, d1), in order, in segments of at least
 * min_run: a run is covered from its start by the longest segment any
 * dsts allow (the fewest segments: a match's tail is a match too),
 * jumping to other dsts where the facing pair conflicts, and skipping a
 * span only where no segment of min_run starts. A run whose spans hold
 * aliases moves only whole, onto one segment (a part of it would take
 * its aliases out of their own runs); src is then the side with fewer
 * aliases to move. Returns the new np. */
static unsigned runs_onto(struct mesh_work *w, struct mcentral *c, unsigned s0, unsigned s1,
                          unsigned d0, unsigned d1, unsigned min_run, struct mesh_pair *out,
                          unsigned np, unsigned max)
{
	unsigned e, j = 0;
	for (unsigned b = s0; b < s1 && np < max; b = e) {
		e = b + w->ahead[b] < s1 ? b + w->ahead[b] : s1;
		if (e - b < min_run)
			continue;
		unsigned aa = run_aliases(w->cand + b, e - b);
		if (aa != 0) {
			if (longest_match(w, b, e, d0, d1, e - b, &j) == 0)
				continue;
			bool a_src = aa <= run_aliases(w->cand + j, e - b);
			np = mesh_in_order(w, c, a_src ? b : j, a_src ? j : b, e - b, out, np, max);
			continue;
		}
		for (unsigned x = b, k; x + min_run <= e && np < max; x += k ? k : 1) {
			k = longest_match(w, x, e, d0, d1, min_run, &j);
			np = mesh_in_order(w, c, x, j, k, out, np, max);
		}
	}
	return np;
}

unsigned mesh_find_pairs(struct mesh_work *w, struct mcentral *c, unsigned max, unsigned *seen,
                         uint8_t pass, unsigned min_run, unsigned cands)
{
	MM_HELD_CENTRAL(c);
	MM_ASSERT(cands <= w->cap);
	struct mesh_pair *out = w->pairs;
	unsigned n = collect(w, c, pass, cands);
	*seen = n;
	unsigned nw = n != 0 ? span_nwords(w->cand[0]) : 0; /* one class: one layout */
	for (unsigned i = n; i-- > 0;) {
		const struct mspan *s = w->cand[i];
		w->sig[2 * i] = s->allocBits[0] & mspan_slot_mask(s, 0);
		w->sig[2 * i + 1] = nw > 1 ? s->allocBits[1] & mspan_slot_mask(s, 1) : 0;
		w->nal[i] = s->nalias;
		w->used[i] = false;
		w->ahead[i] = (uint16_t)(i + 1 < n && adjacent(w->cand[i], w->cand[i + 1])
		                                 ? w->ahead[i + 1] + 1
		                                 : 1);
	}
	/* the lower half onto the upper (aliases gather low), the upper onto
	 * what is left of the lower, then any onto any */
	unsigned m = min_run < 2 ? 2 : min_run, h = n / 2;
	unsigned np = runs_onto(w, c, 0, h, h, n, m, out, 0, max);
	np = runs_onto(w, c, h, n, 0, h, m, out, np, max);
	np = runs_onto(w, c, 0, n, 0, n, m, out, np, max);
	return min_run != 0 ? np : pair_any(w, c, n, out, np, max);
}
