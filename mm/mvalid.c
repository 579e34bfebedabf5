/*
 * mvalid.c: the whole-heap validator (mheap_valid, the grade-2 check of
 * mm/internal.h's MM_VALIDATE, and what tests assert after their steps)
 * and the census it rests on (mm_census): every object a cache holds is
 * counted against its span, every span's counts against its bitmaps and
 * live bytes, every page's descriptor against its span, and the metadata
 * committed against what the arrays hold. See malloc.c for the overview.
 *
 * The census walks the arena run by run with mheap_run_at (mheapmap.c),
 * the walk kmalloc_heapmap draws the heap with.
 */
#include "internal.h"

/* Count an object a cache holds against its span (mspan.vcount), or
 * note that it cannot be there. pre: no CPU runs. */
static bool census_entry(const struct magentry *e, unsigned cls)
{
	struct mspan *s = spanOf((uintptr_t)e->p);
	if (s == NULL || span_state(s) != SPAN_INUSE || s->spanclass != cls)
		return false;
	long idx = mspan_slot_of(s, (uintptr_t)e->p);
	if (idx < 0 || e->live != mspan_live(s, (unsigned)idx) || LOAD(*e->live) != 0)
		return false;
	s->vcount++;
	return true;
}

/* Walk the caches (counting their objects against their spans, in
 * mspan.vcount, when count_spans), the page -> span map of the grown
 * arena and the mcentral lists. Returns false if a cache holds something
 * that cannot be a cached object. pre: no other CPU allocates or frees
 * meanwhile (tests). */
static bool census(struct mm_census *out, bool count_spans)
{
	bool ok = true;
	__builtin_memset(out, 0, sizeof(*out));
	if (!mheap_inited())
		return true;
	for (unsigned slot = 1, hi = mcache_slots(); slot <= hi; slot++) {
		struct mcache *c = mcache_at(slot);
		for (unsigned i = 2; c != NULL && i < NUM_SPANCLASSES; i++) {
			out->objs_cached += mag_count(&c->mag[i]);
			for (uint32_t k = 0; count_spans && k < mag_count(&c->mag[i]); k++)
				ok &= census_entry(&c->mag[i].base[k], i);
		}
	}
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct transfer *t = &mheap_.transfer[i].t;
		lock_transfer(t);
		out->objs_cached += t->n;
		for (uint32_t k = 0; count_spans && k < t->n; k++)
			ok &= census_entry(&t->e[k], i);
		unlock_transfer(t);
	}
	lock_heap();
	size_t npages = mheap_.pages.nchunks * CHUNK_PAGES;
	struct mm_run r;
	for (size_t pg = 0; pg < npages; pg += r.n) {
		mheap_run_at(pg, &r);
		if (r.kind == RUN_RELEASED)
			out->pages_released += r.n;
		else if (r.kind == RUN_FREE)
			out->pages_free += r.n;
		if (r.kind != RUN_SPAN)
			continue;
		struct mspan *s = r.s;
		if (span_state(s) == SPAN_DEAD)
			continue;
		out->pages_inuse += r.n;
		if (s->base != mheap_.arena_start + pg * PAGE_SIZE)
			continue;
		if (span_is_large(s))
			out->spans_large++;
		else {
			out->spans_small++;
			if (s->cached_by != CPU_NONE)
				out->spans_cached++;
		}
	}
	unlock_heap();
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		lock_central(c);
		out->spans_partial += c->partial.len;
		out->spans_full += c->full.len;
		unlock_central(c);
	}
	return ok;
}

void mm_census(struct mm_census *out) { census(out, false); }

static int fail(const char *why)
{
	sys_log(why);
	return 0;
}

/* Every small span's slots out of it are live or in a cache, each once:
 * out == live bytes + objects counted by census (vcount), which is reset.
 * pre: mheap.lock, census(.., true) just ran, no CPU runs. */
static bool spans_account_for_caches(void)
{
	bool ok = true;
	size_t npages = mheap_.pages.nchunks * CHUNK_PAGES;
	/* a dst's slots out include what its aliases still hold (mmesh.c:
	 * they keep their slots of dst's frames until those come back) */
	for (size_t pg = 0; pg < npages; pg++) {
		struct mspan *s = mheap_.spans[pg];
		if (!pa_is_alloc(&mheap_.pages, pg) || s == NULL || span_state(s) == SPAN_DEAD ||
		    s->base != mheap_.arena_start + pg * PAGE_SIZE || span_is_large(s))
			continue;
		if (s->mesh_dst != NULL)
			s->mesh_dst->vcount += mspan_out_count(s);
	}
	for (size_t pg = 0; pg < npages; pg++) {
		struct mspan *s = mheap_.spans[pg];
		if (!pa_is_alloc(&mheap_.pages, pg) || s == NULL || span_state(s) == SPAN_DEAD ||
		    s->base != mheap_.arena_start + pg * PAGE_SIZE || span_is_large(s))
			continue;
		if (mspan_out_count(s) != mspan_live_count(s) + s->vcount)
			ok = false;
		s->vcount = 0;
	}
	return ok;
}

/* Whole-heap check: page allocator consistent, counters match a walk of
 * the bitmaps and the page map, every in-use span valid and mapped on all
 * its pages, every cached object a free slot of its class counted once,
 * mcentral lists hold uncached spans of their class with the right
 * fullness. Logs the first failure and returns 0; 1 if valid.
 * pre: no other CPU allocates or frees meanwhile. */
/* Page pg's descriptor (internal.h) is 0 unless the page is in a small
 * INUSE span, and then names that span's class, the page's place in it
 * and its record. pre: mheap.lock, nothing allocating. */
static int page_desc_valid(size_t pg)
{
	uint64_t d = mheap_.pagedesc[pg];
	struct mspan *s = mheap_.spans[pg];
	if (!pa_is_alloc(&mheap_.pages, pg) || span_is_large(s) || span_state(s) != SPAN_INUSE)
		return d == 0;
	size_t i = pg - ((s->base - mheap_.arena_start) >> PAGE_SHIFT);
	return PD_CLASS(d) == s->spanclass && (d & PD_PAGEOFF_MASK) == i << PAGE_SHIFT &&
	       PD_GEN(d) == (span_state_word(s) / SPAN_GEN_ONE & PD_GEN_MASK) &&
	       mheap_.livebase + PD_RECOFF(d) == (uintptr_t)mspan_livebytes(s);
}

/* Metadata trim gave back is consistent (mheap_maps_check: map units
 * not Ready hold only free pages and read as zero), and meta_sys is what
 * the arrays committed less the map units, transfer-cache entry pages
 * and fixalloc blocks given back, plus guarded sampling's records.
 * pre: mheap.lock, nothing allocating or trimming. */
static bool meta_accounted(void)
{
	long maps = mheap_maps_check();
	if (maps < 0)
		return false;
	struct metaarr *arrs[] = { &mheap_.m_spans,   &mheap_.m_pagedesc, &mheap_.m_chunks,
		                   &mheap_.m_chunkpg, &mheap_.m_fix,      &mheap_.m_fixblk,
		                   &mheap_.m_caches,  &mheap_.m_depot,    &mheap_.m_mesh };
	uint64_t sum = 0;
	for (unsigned i = 0; i < sizeof arrs / sizeof arrs[0]; i++)
		sum += arrs[i]->committed;
	for (unsigned k = 0; k < mheap_.pages.nlevels; k++)
		sum += mheap_.m_sum[k].committed;
	const struct fixblk *fb = (const struct fixblk *)mheap_.m_fixblk.base;
	for (size_t b = 0; b < mheap_.m_fix.used / FIX_BLOCK; b++)
		if (fb[b].state == FB_RELEASED || fb[b].state == FB_INFLIGHT)
			sum -= FIX_BLOCK;
	sum += kfence_meta_sys(); /* guarded sampling's records (mkfence.c) */
	return sum - (uint64_t)maps - mm_transfer_released_bytes() == mheap_.meta_sys;
}

int mheap_valid(void)
{
	struct mm_census cs;
	if (!mheap_inited())
		return 1;
	bool caches_ok = census(&cs, true);
	lock_heap();
	bool counts_ok = spans_account_for_caches();
	int ok = pa_valid(&mheap_.pages);
	for (size_t ci = 0; ci < mheap_.pages.nchunks; ci++)
		for (unsigned w = 0; w < CHUNK_WORDS; w++)
			if (mheap_.pages.chunks[ci].alloc[w] & ~mheap_.pages.chunks[ci].ready[w])
				ok = 0;
	/* a commit unit above a heap page is scavenged whole or not at all */
	int units_ok = 1;
	for (size_t u = 0, g = mheap_.gran; g > 1 && u < mheap_.pages.nchunks * CHUNK_PAGES;
	     u += g) {
		size_t sc = pa_scav_count(&mheap_.pages, u, g);
		if (sc != 0 && sc != g)
			units_ok = 0;
	}
	bool meta_ok = meta_accounted();
	uint64_t inuse = mheap_.pages_inuse, fr = mheap_.pages_free, rel = mheap_.pages_released,
	         sys = mheap_.pages_sys;
	size_t npages = mheap_.pages.nchunks * CHUNK_PAGES;
	int spans_ok = 1, desc_ok = 1;
	for (size_t pg = 0; pg < npages && desc_ok; pg++)
		desc_ok = page_desc_valid(pg);
	for (size_t pg = 0; pg < npages && spans_ok; pg++) {
		struct mspan *s = mheap_.spans[pg];
		if (!pa_is_alloc(&mheap_.pages, pg) || s == NULL || span_state(s) == SPAN_DEAD)
			continue;
		if (s->base != mheap_.arena_start + pg * PAGE_SIZE)
			continue;
		if (span_state(s) == SPAN_INUSE && !mspan_valid(s))
			spans_ok = 0;
		for (size_t i = 0; i < s->npages; i++)
			if (mheap_.spans[pg + i] != s || !pa_is_alloc(&mheap_.pages, pg + i))
				spans_ok = 0;
	}
	unlock_heap();
	if (!caches_ok)
		return fail("mheap_valid: a cache holds something that is not a free slot "
		            "of its class");
	if (!counts_ok)
		return fail("mheap_valid: a span's slots out are not its live objects plus "
		            "its cached ones, each once");
	if (!ok)
		return fail("mheap_valid: page allocator summaries disagree with bitmaps, "
		            "or a page is both allocated and scavenged");
	if (!spans_ok)
		return fail(
		        "mheap_valid: an in-use span is invalid or not mapped on all its pages");
	if (!desc_ok)
		return fail("mheap_valid: a page descriptor does not describe its page's span");
	if (!units_ok)
		return fail("mheap_valid: a commit unit is partly scavenged");
	if (!meta_ok)
		return fail("mheap_valid: page-map words given back are not zero on free pages, "
		            "or meta_sys is not the metadata committed less what trim gave back");
	if (inuse + fr + rel != sys)
		return fail("mheap_valid: inuse + free + released != sys");
	if (cs.pages_inuse != inuse || cs.pages_free != fr || cs.pages_released != rel)
		return fail("mheap_valid: page counters disagree with the bitmaps");
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		lock_central(c);
		uint32_t empty = 0;
		for (unsigned l = LIST_PARTIAL; l <= LIST_MESHED && ok; l++) {
			struct spanlist *list = l == LIST_PARTIAL ? &c->partial
			                        : l == LIST_FULL  ? &c->full
			                                          : &c->meshed;
			uint64_t n = 0;
			struct mspan *prev = NULL;
			for (struct mspan *s = list->head; s; prev = s, s = s->next, n++) {
				unsigned freeslots = s->nelems - s->allocCount;
				unsigned min = s->nelems / 8u ? s->nelems / 8u : 1;
				/* empty spans: the spares, at the tail of partial;
				 * a span aliases map is no spare (mmesh.c), nor is
				 * an alias */
				bool spare =
				        s->allocCount == 0 && s->nalias == 0 && l != LIST_MESHED;
				bool spare_ok =
				        !spare || (l == LIST_PARTIAL &&
				                   (s->next == NULL || s->next->allocCount == 0));
				empty += spare;
				/* an alias, and only an alias, is on meshed */
				bool alias_ok = (l == LIST_MESHED) == (s->mesh_dst != NULL) &&
				                (l != LIST_MESHED || s->nalias == 0);
				if (s->spanclass != i || s->cached_by != CPU_NONE ||
				    s->onlist != l || s->prev != prev ||
				    span_state(s) != SPAN_INUSE || !spare_ok || !alias_ok ||
				    (l == LIST_PARTIAL && freeslots < min) ||
				    (l == LIST_FULL && freeslots >= min)) {
					ok = 0;
					break;
				}
			}
			if (n != list->len || list->tail != prev)
				ok = 0;
		}
		if (empty != c->nempty || empty > MCENTRAL_SPARE + MCENTRAL_GROW - 1)
			ok = 0;
		unlock_central(c);
		if (!ok)
			return fail("mheap_valid: an mcentral list holds a wrong span");
	}
	if (cs.spans_partial + cs.spans_full + cs.spans_cached > cs.spans_small)
		return fail("mheap_valid: more listed spans than small spans in use");
	return 1;
}
