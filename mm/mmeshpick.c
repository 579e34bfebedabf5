/*
 * mmeshpick.c: which spans of a class mesh together (step 1 of a mesh,
 * mm/mmesh.c, which does the rest; see there and malloc.c), and the
 * scratch its rounds work in (struct mesh_work, mmesh.h).
 *
 * A round, under the class's lock: up to MESH_CANDIDATES spans
 * (MESH_CANDIDATES_PACED for the paced background work, mmesh.h) of
 * partial that this pass has not looked at and that are at most half out
 * (their allocBits hold their aliases' slots too) are collected, each
 * with the run of adjacent candidates it is in, and sorted by address. A
 * pair meshes if their allocBits AND to zero and the groups together have
 * at most MESH_MAX_ALIAS aliases. Each pair is picked at once (pick: src
 * leaves the lists with mesh_dst set, dst takes src's slots and counts
 * src's group in its nalias), so a span is a src once at most; only the
 * pass of any pairs lets a dst take more than one src a round.
 *
 * Runs first. A port that maps a range onto another's memory through a
 * file (the host, arch/host/mesh.c) pays one mapping per segment, a run
 * of aliases that map a run of spans in order (Linux merges mappings
 * whose file offsets follow their addresses), two for a lone alias among
 * spans that map their own pages, and has a limited number of mappings
 * (vm.max_map_count). So there a growing class takes adjacent spans from
 * the mheap (mcentral_refill, with sys_config.mesh_runs), and passes of
 * runs onto runs (runs_onto) come before a pass of any pairs (pair_fit:
 * each span onto the fullest it may mesh with). A run of candidates is
 * covered by segments, each onto whichever adjacent dsts give the
 * longest from where the last one stopped: where the span facing it
 * conflicts, the run goes on onto other dsts (or the same ones one
 * further on) instead of leaving a span between two mappings. Segments shorter than the
 * pass's min_run are left for a later pass: kmalloc_mesh lowers min_run
 * pass by pass (mmesh.c), so that where the mappings run out, the pages
 * freed per mapping were as many as could be had. Each round pairs the
 * lower half's runs onto the upper half's spans, then the upper's onto
 * what is left of the lower (aliases gather low, next to each other),
 * then any onto any. The segments are matched 64 dsts at a time: a
 * round keeps, per candidate, the set of candidates it may mesh with as
 * a bitset, and a segment grows by ANDing shifted sets (longest_match).
 * The kernel port, which maps page by page, is indifferent to the runs:
 * the same spans mesh, in another order.
 */
#include "mmesh.h"

/* ---- the scratch (struct mesh_work, in m_mesh) ---- */

/* Bytes of the scratch for rounds of cap candidates. */
static size_t work_size(unsigned cap)
{
	/* bitsets: rows, one a candidate; cols, one a slot of the first two
	 * bitmap words; nal_le; adj, ubits and dbuf's two */
	size_t sets = (size_t)cap + 128 + MESH_MAX_ALIAS + 4;
	return cap / 2 * sizeof(struct mesh_pair) + sets * MESH_WORDS(cap) * sizeof(uint64_t) +
	       cap * (sizeof(struct mspan *) + 2 * sizeof(uint64_t) + 2 * sizeof(uint16_t) +
	              sizeof(bool) + 2 * sizeof(uint8_t));
}

size_t mesh_work_bytes(void) { return work_size(MESH_CANDIDATES); }

bool mesh_work_ready(struct mesh_work *w, unsigned cap)
{
	if (w->cap >= cap)
		return true;
	lock_heap();
	bool ok = meta_ensure(&mheap_.m_mesh, work_size(cap)) == 0;
	unlock_heap();
	if (!ok)
		return false;
	uintptr_t p = mheap_.m_mesh.base;
	w->pairs = (struct mesh_pair *)p;
	p += cap / 2 * sizeof(struct mesh_pair);
	size_t words = MESH_WORDS(cap);
	w->rows = (uint64_t *)p;
	w->cols = w->rows + cap * words;
	w->nal_le = w->cols + 128 * words;
	w->adj = w->nal_le + MESH_MAX_ALIAS * words;
	w->ubits = w->adj + words;
	w->dbuf = w->ubits + words;
	p = (uintptr_t)(w->dbuf + 2 * words);
	w->cand = (struct mspan **)p;
	w->sig = (uint64_t *)(w->cand + cap);
	w->ahead = (uint16_t *)(w->sig + 2 * cap);
	w->cnt = w->ahead + cap;
	w->grown = (bool *)(w->cnt + cap);
	w->nal = (uint8_t *)(w->grown + cap);
	w->rowok = w->nal + cap;
	w->cap = cap;
	return true;
}

void mesh_work_release(struct mesh_work *w)
{
	struct metaarr *m = &mheap_.m_mesh;
	if (w->cap == 0)
		return;
	w->cap = 0;
	lock_heap();
	size_t n = m->committed;
	m->committed = 0;
	mheap_.meta_sys -= n;
	unlock_heap();
	sys_release((void *)m->base, n);
}

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

/* Is cand[i] in a pair of this round already? (ubits, struct mesh_work) */
static bool is_used(const struct mesh_work *w, unsigned i)
{
	return (w->ubits[i / 64] >> (i % 64)) & 1;
}

static void set_used(struct mesh_work *w, unsigned i)
{
	w->ubits[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Bits [a, b) of word q of a bitset. */
static uint64_t span_bits(unsigned q, unsigned a, unsigned b)
{
	unsigned lo = q * 64;
	if (b <= lo || a >= lo + 64)
		return 0;
	unsigned s = a > lo ? a - lo : 0, t = b < lo + 64 ? b - lo : 64;
	uint64_t from = ~(uint64_t)0 << s;
	return t == 64 ? from : from & (((uint64_t)1 << t) - 1);
}

/* Word q of bitset x (words long) shifted right by k bits: bit b of the
 * result is bit b + k of x. */
static uint64_t shr_word(const uint64_t *x, unsigned words, unsigned q, unsigned k)
{
	unsigned a = q + k / 64, r = k % 64;
	uint64_t lo = a < words ? x[a] : 0;
	if (r == 0)
		return lo;
	uint64_t hi = a + 1 < words ? x[a + 1] : 0;
	return lo >> r | hi << (64 - r);
}

/* Row a of the round's meshability (struct mesh_work): bit b set where
 * cand[a] and cand[b] may mesh (their aliases within MESH_MAX_ALIAS, out
 * slots disjoint), a's own bit clear. The signatures first: from the
 * columns of a's out slots where it has few (a word per 64 candidates
 * each), else span by span; at 10% of slots out, two words of 64 slots
 * already overlap for three pairs in four, so the span records' further
 * words are read for the bits left only. */
static const uint64_t *row(struct mesh_work *w, unsigned a)
{
	unsigned W = w->words;
	uint64_t *r = w->rows + (size_t)a * W;
	if (w->rowok[a])
		return r;
	w->rowok[a] = 1;
	uint64_t s0 = w->sig[2 * a], s1 = w->sig[2 * a + 1];
	unsigned na = w->nal[a], n = w->ncand;
	if (na + 1u > MESH_MAX_ALIAS) {
		for (unsigned q = 0; q < W; q++)
			r[q] = 0;
		return r;
	}
	const uint64_t *ok = w->nal_le + (size_t)(MESH_MAX_ALIAS - 1 - na) * W;
	if (mm_popcount64(s0) + mm_popcount64(s1) <= 24) {
		for (unsigned q = 0; q < W; q++)
			r[q] = ok[q];
		for (unsigned h = 0; h < 2; h++)
			for (uint64_t m = h ? s1 : s0; m != 0; m &= m - 1) {
				const uint64_t *c =
				        w->cols + (size_t)(h * 64 + __builtin_ctzll(m)) * W;
				for (unsigned q = 0; q < W; q++)
					r[q] &= ~c[q];
			}
	} else {
		for (unsigned q = 0; q < W; q++)
			r[q] = 0;
		for (unsigned b = 0; b < n; b++)
			if (sig_meshable(w, b, s0, s1, na))
				r[b / 64] |= (uint64_t)1 << (b % 64);
	}
	r[a / 64] &= ~((uint64_t)1 << (a % 64));
	if (w->nw > 2)
		for (unsigned q = 0; q < W; q++)
			for (uint64_t m = r[q]; m != 0; m &= m - 1) {
				unsigned b = q * 64 + (unsigned)__builtin_ctzll(m);
				if (!disjoint_from(w->cand[a], w->cand[b], 2))
					r[q] &= ~((uint64_t)1 << (b % 64));
			}
	return r;
}

/* Set up the round's bitsets (rows come on demand). */
static void bits_init(struct mesh_work *w, unsigned n)
{
	unsigned W = MESH_WORDS(n);
	w->words = W;
	w->ncand = n;
	for (size_t q = 0; q < (size_t)128 * W; q++)
		w->cols[q] = 0;
	for (size_t q = 0; q < (size_t)MESH_MAX_ALIAS * W; q++)
		w->nal_le[q] = 0;
	for (unsigned q = 0; q < W; q++)
		w->adj[q] = w->ubits[q] = 0;
	for (unsigned b = 0; b < n; b++) {
		uint64_t bit = (uint64_t)1 << (b % 64);
		w->rowok[b] = 0;
		for (unsigned h = 0; h < 2; h++)
			for (uint64_t m = w->sig[2 * b + h]; m != 0; m &= m - 1)
				w->cols[(size_t)(h * 64 + __builtin_ctzll(m)) * W + b / 64] |= bit;
		for (unsigned t = w->nal[b]; t < MESH_MAX_ALIAS; t++)
			w->nal_le[(size_t)t * W + b / 64] |= bit;
		if (w->ahead[b] >= 2)
			w->adj[b / 64] |= bit;
	}
}

/* The longest run of cand[i, e) from i on that meshes in order with
 * cand[j], cand[j+1], ... (adjacent, below d1), none used yet and none
 * of cand[i, e) a dst, if at least min long; *at: the lowest such j.
 * Bit-parallel over j: the set of j whose match reaches length k + 1 is
 * the set for k, of those whose dst run goes on (adj) and whose
 * (i + k, j + k) pair meshes (row i + k shifted by k), so a call costs
 * a few words per step of the longest match instead of a look at every
 * j (scanning every j for every i took most of a trim's time: 650-790
 * ms of kmalloc_mesh's 850-1040 on the fragsmall heap of make bench, in
 * rounds of up to 10.6 ms under the class's lock; now 230-270 of
 * 460-510, rounds of up to 1.5 ms). */
static unsigned longest_match(struct mesh_work *w, unsigned i, unsigned e, unsigned d0, unsigned d1,
                              unsigned min, unsigned *at)
{
	if (is_used(w, i) || d0 >= d1)
		return 0;
	unsigned W = w->words, lo = d0 / 64, hi = (d1 - 1) / 64 + 1;
	uint64_t *d = w->dbuf, *nd = w->dbuf + W;
	const uint64_t *r = row(w, i);
	bool any = false;
	for (unsigned q = lo; q < hi; q++) {
		d[q] = r[q] & ~w->ubits[q] & span_bits(q, d0, d1) & ~span_bits(q, i, e);
		any |= d[q] != 0;
	}
	if (!any)
		return 0;
	unsigned k = 1;
	for (; i + k < e && !is_used(w, i + k); k++) {
		/* x: the dsts cand[i + k] may go to, as row bits */
		const uint64_t *rk = row(w, i + k);
		any = false;
		for (unsigned q = lo; q < hi; q++) {
			if (d[q] == 0) {
				nd[q] = 0;
				continue;
			}
			uint64_t x = 0;
			for (unsigned h = 0; h < 2; h++) {
				unsigned t = q + k / 64 + h;
				if (t >= W || (h == 1 && k % 64 == 0))
					continue;
				uint64_t v = rk[t] & ~w->ubits[t] & span_bits(t, 0, d1) &
				             ~span_bits(t, i, e);
				x |= h == 0 ? v >> (k % 64) : v << (64 - k % 64);
			}
			nd[q] = d[q] & shr_word(w->adj, W, q, k - 1) & x;
			any |= nd[q] != 0;
		}
		if (!any)
			break;
		uint64_t *t = d;
		d = nd;
		nd = t;
	}
	if (k < min)
		return 0;
	for (unsigned q = lo; q < hi; q++)
		if (d[q] != 0) {
			*at = q * 64 + (unsigned)__builtin_ctzll(d[q]);
			return k;
		}
	return 0; /* not reached: d holds a bit */
}

/* Mesh l spans from a onto l from b, in order (each pair meshable). */
static unsigned mesh_in_order(struct mesh_work *w, struct mcentral *c, unsigned a, unsigned b,
                              unsigned l, struct mesh_pair *out, unsigned np, unsigned max)
{
	for (unsigned x = 0; x < l && np < max; x++) {
		out[np].src = w->cand[a + x];
		out[np].dst = w->cand[b + x];
		pick(c, &out[np++]);
		set_used(w, a + x);
		set_used(w, b + x);
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

/* Pair up spans of cand[0, n) not used yet, best fit: each in turn,
 * those without aliases first, goes onto the fullest span it may mesh
 * with, and a dst may take more than one src a round (grown). Mesh's
 * SplitMesher, which this replaced (the lower half each tried against
 * 64 of the upper half, a span in one pair a round), paired sparse
 * spans with each other: at 10% of slots out, pairs of pairs of a class
 * with 64 or more slots a span rarely mesh, so most groups stopped at
 * 2 to 4 spans (fragsmall after kmalloc_mesh: 1.77 of its live bytes;
 * best fit, 1.62). A grown dst's row is stale (its allocBits took its
 * srcs' slots): it is checked on the span records, and it never becomes
 * a src (its new aliases join it only when they settle). src is i
 * unless it has more aliases to move than a dst that is not grown.
 * Returns the new np. */
static unsigned pair_fit(struct mesh_work *w, struct mcentral *c, unsigned n, struct mesh_pair *out,
                         unsigned np, unsigned max)
{
	unsigned W = w->words;
	for (unsigned i = 0; i < n; i++)
		w->grown[i] = false;
	for (unsigned pass = 0; pass < 2; pass++)
		for (unsigned i = 0; i < n && np < max; i++) {
			struct mspan *a = w->cand[i];
			if (is_used(w, i) || w->grown[i] || (pass == 0 && a->nalias != 0))
				continue;
			const uint64_t *r = row(w, i);
			unsigned best = n, fill = 0;
			for (unsigned q = 0; q < W; q++)
				for (uint64_t m = r[q] & ~w->ubits[q]; m != 0; m &= m - 1) {
					unsigned j = q * 64 + (unsigned)__builtin_ctzll(m);
					unsigned f = w->cnt[j];
					if ((best == n || f > fill) &&
					    (!w->grown[j] || meshable(a, w->cand[j]))) {
						best = j;
						fill = f;
					}
				}
			if (best == n)
				continue;
			struct mspan *b = w->cand[best];
			bool up = w->grown[best] || a->nalias <= b->nalias;
			unsigned si = up ? i : best, di = up ? best : i;
			out[np].src = w->cand[si];
			out[np].dst = w->cand[di];
			pick(c, &out[np++]);
			set_used(w, si);
			w->grown[di] = true;
			w->cnt[di] = w->cand[di]->allocCount;
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
	w->nw = nw;
	for (unsigned i = n; i-- > 0;) {
		const struct mspan *s = w->cand[i];
		w->sig[2 * i] = s->allocBits[0] & mspan_slot_mask(s, 0);
		w->sig[2 * i + 1] = nw > 1 ? s->allocBits[1] & mspan_slot_mask(s, 1) : 0;
		w->nal[i] = s->nalias;
		w->cnt[i] = s->allocCount;
		w->ahead[i] = (uint16_t)(i + 1 < n && adjacent(w->cand[i], w->cand[i + 1])
		                                 ? w->ahead[i + 1] + 1
		                                 : 1);
	}
	bits_init(w, n);
	/* the lower half onto the upper (aliases gather low), the upper onto
	 * what is left of the lower, then any onto any */
	unsigned m = min_run < 2 ? 2 : min_run, h = n / 2;
	unsigned np = runs_onto(w, c, 0, h, h, n, m, out, 0, max);
	np = runs_onto(w, c, h, n, 0, h, m, out, np, max);
	np = runs_onto(w, c, 0, n, 0, n, m, out, np, max);
	return min_run != 0 ? np : pair_fit(w, c, n, out, np, max);
}
