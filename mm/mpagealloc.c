/*
 * mpagealloc.c: the page allocator: which 8 KiB heap pages of the arena
 * are free, and address-ordered first fit over them in O(log n). See
 * malloc.c for the overview. Everything here runs under mheap.lock.
 *
 * Go's design (mpagealloc.go), sized to our one arena:
 *   - The arena is cut into chunks of 512 heap pages (4 MiB). Each chunk
 *     has a 512-bit alloc bitmap (1 = page allocated) and a 512-bit
 *     ready bitmap (0 = page scavenged: free AND released to the port,
 *     i.e. Reserved, to be committed before use; Go keeps the inverse,
 *     "scavenged"). So a chunk record of all zeros is a chunk whose
 *     pages are all free and released, which is how a record that trim
 *     gave back reads (mmeta.c).
 *   - A radix tree of summaries sits on top: level 0 has one summary per
 *     chunk, level k one per 8^k chunks, up to a single root. A summary is
 *     (start, max, end): free pages at the start, the longest free run,
 *     free pages at the end. A parent is a merge of its 8 children, so a
 *     run crossing child boundaries is seen as end(left) + start(right).
 *   - pa_find walks from the top (the lowest level whose node 0 covers
 *     every grown chunk; the levels above it would only copy that node,
 *     so nothing keeps them): at each level it scans the 8 children
 *     left to right, carrying the free run that reaches the current child;
 *     a fit that starts in an earlier child is returned at once, otherwise
 *     it descends into the first child whose max is large enough. The
 *     result is the lowest address with n free pages (address-ordered
 *     first fit, which keeps the heap compact and old pages hot), found in
 *     8 * levels summary reads plus one chunk scan.
 * Differences from Go: summaries are three uint32 instead of one packed
 * uint64 (our 64 GiB arena has 2^23 pages, more than Go's 21-bit fields
 * hold, and the arrays are small: 12 bytes per 4 MiB chunk); there is no
 * searchAddr hint and no per-P page cache (the tree walk is short, and
 * mcache already batches small allocations into spans); Go updates every
 * level on each change, we stop at the top above, which on a small heap
 * is most of the work.
 *
 * Chunks not grown yet have all-zero summaries ("nothing free"), so
 * growth is just initialising new chunks as free+scavenged and updating
 * the summaries above them. The arrays live in reserved metadata that
 * mheap commits as the heap grows; tests point them at plain memory.
 */
#include "internal.h"

static inline uint64_t pa_node_pages(unsigned level)
{
	return (uint64_t)CHUNK_PAGES << (3 * level);
}

/* Entries of summary level `level` for an arena of cap_chunks chunks (0 if
 * there is no such level); *nlevels gets the number of levels. */
size_t pa_level_len(size_t cap_chunks, unsigned level, unsigned *nlevels)
{
	size_t len = cap_chunks, want = 0;
	unsigned k = 0;
	for (;;) {
		if (k == level)
			want = len;
		k++;
		if (len <= 1)
			break;
		len = (len + PA_FANOUT - 1) / PA_FANOUT;
	}
	if (nlevels)
		*nlevels = k;
	return want;
}

void pa_init(struct pagealloc *pa, size_t cap_chunks)
{
	unsigned n;
	pa_level_len(cap_chunks, 0, &n);
	MM_CHECK(n <= PA_MAX_LEVELS, "arena too large for the page allocator", 0);
	pa->nlevels = n;
	for (unsigned k = 0; k < n; k++)
		pa->level_len[k] = pa_level_len(cap_chunks, k, NULL);
	pa->cap_chunks = cap_chunks;
	pa->nchunks = 0;
	pa->top = 0;
}

/* The lowest level whose node 0 covers chunks [0, grown). Above it each
 * level's node 0 would only copy it (one grown child, no free end), so
 * set_leaf stops there: a heap of up to 8 chunks (32 MiB) updates one
 * level, not the six the host's 64 GiB arena has (the realloc workload:
 * set_leaf 282 -> 41 instructions a call, callgrind). */
static unsigned top_for(const struct pagealloc *pa, size_t grown)
{
	unsigned k = 0;
	while (k + 1 < pa->nlevels && ((grown - 1) >> (3 * k)) != 0)
		k++;
	return k;
}

static inline unsigned u32min(uint64_t a, uint64_t b)
{
	return (unsigned)(a < b ? a : b);
}

/* First page of the first run of at least n > 0 free pages in chunk c,
 * or -1: its free runs in address order, a bitmap word at a time (a run
 * may cross words). */
static long chunk_find(const struct pchunk *c, size_t n)
{
	size_t run = 0, runstart = 0;
	for (unsigned w = 0; w < CHUNK_WORDS; w++) {
		uint64_t a = c->alloc[w];
		unsigned i = 0;
		while (i < 64) {
			uint64_t rest = a >> i;
			unsigned z = rest == 0 ? 64 - i : (unsigned)__builtin_ctzll(rest);
			if (run == 0)
				runstart = w * 64 + i;
			run += z;
			if (run >= n)
				return (long)runstart;
			if (rest == 0)
				break;
			run = 0;
			i += z;
			uint64_t fr = ~a >> i;
			if (fr == 0)
				break;
			i += (unsigned)__builtin_ctzll(fr);
		}
	}
	return -1;
}

/* The longest run of ones in f that is longer than `best`, or best:
 * erosion (bit i of e is set while f holds ones at i .. i + len - 1),
 * first by best + 1 in doubling steps, then one longer at a time, so a
 * word whose runs cannot beat best costs a few operations. */
static unsigned longest_ones_above(uint64_t f, unsigned best)
{
	unsigned want = best + 1, len = 1;
	uint64_t e = f;
	while (e != 0 && 2 * len <= want) {
		e &= e >> len;
		len *= 2;
	}
	if (e != 0 && len < want)
		e &= e >> (want - len);
	for (; e != 0; want++, e &= e >> 1)
		best = want;
	return best;
}

/* The longest free run of chunk c, a word at a time: runs that cross
 * words grow by whole free words and the free ends of the others; runs
 * inside a word are measured only where they could beat the longest so
 * far (a step per free run makes a fragmented chunk cost 11% of the frag
 * workload's instructions under callgrind). */
static unsigned chunk_max_run(const struct pchunk *c)
{
	unsigned best = 0, run = 0; /* run: free pages ending at this word */
	for (unsigned w = 0; w < CHUNK_WORDS; w++) {
		uint64_t a = c->alloc[w];
		if (a == 0) {
			run += 64;
			continue;
		}
		unsigned lo = (unsigned)__builtin_ctzll(a), hi = 63 - (unsigned)__builtin_clzll(a);
		if (run + lo > best)
			best = run + lo;
		run = 63 - hi;
		/* the free pages strictly between the lowest and highest
		 * allocated ones */
		uint64_t inner = ~a & (~(uint64_t)0 << lo);
		if (hi < 63)
			inner &= ((uint64_t)1 << (hi + 1)) - 1;
		/* no run inside can beat best unless its free pages span
		 * more than best: two bit scans, where a software popcount
		 * was a fifth of pa_chunk_sum's instructions (callgrind on
		 * fragsmall: 42.5M -> 34.2M without it) */
		if (inner != 0 &&
		    (unsigned)(63 - __builtin_clzll(inner) - __builtin_ctzll(inner)) >= best)
			best = longest_ones_above(inner, best);
	}
	return run > best ? run : best;
}

struct psum pa_chunk_sum(const struct pchunk *c)
{
	struct psum s = {0, 0, 0};
	unsigned w;

	for (w = 0; w < CHUNK_WORDS; w++) {
		uint64_t a = c->alloc[w];
		if (a != 0) {
			s.start += (unsigned)__builtin_ctzll(a);
			break;
		}
		s.start += 64;
	}
	if (s.start == CHUNK_PAGES) {
		s.max = s.end = CHUNK_PAGES;
		return s;
	}
	for (w = CHUNK_WORDS; w-- > 0;) {
		uint64_t a = c->alloc[w];
		if (a != 0) {
			s.end += (unsigned)__builtin_clzll(a);
			break;
		}
		s.end += 64;
	}
	s.max = chunk_max_run(c);
	return s;
}

/* Summary of a node from its n children of csize pages each, in one pass:
 * `run` is the free run reaching the end of the children seen so far, so
 * after the last child it is the node's end. */
static struct psum merge(const struct psum *ch, size_t n, uint64_t csize)
{
	uint64_t start = 0, max = 0, run = 0;
	bool prefix = true;

	for (size_t j = 0; j < n; j++) {
		uint64_t cs = ch[j].start;
		if (prefix) {
			start += cs;
			prefix = cs == csize;
		}
		if (run + cs > max)
			max = run + cs;
		if (ch[j].max > max)
			max = ch[j].max;
		run = cs == csize ? run + csize : ch[j].end;
	}
	if (run > max)
		max = run;
	struct psum s = {u32min(start, UINT32_MAX), u32min(max, UINT32_MAX),
	                 u32min(run, UINT32_MAX)};
	return s;
}

static bool psum_eq(struct psum a, struct psum b)
{
	return a.start == b.start && a.max == b.max && a.end == b.end;
}

/* Set chunk ci's summary to leaf and recompute the summaries above it
 * up to pa->top, bottom-up, stopping early when a level does not
 * change. */
static void set_leaf(struct pagealloc *pa, size_t ci, struct psum leaf)
{
	if (psum_eq(leaf, pa->sum[0][ci]))
		return;
	pa->sum[0][ci] = leaf;
	/* Chunks up to ci are grown (pa_grow calls us in order before it
	 * raises nchunks); those above hold all-zero summaries. */
	size_t grown = pa->nchunks > ci ? pa->nchunks : ci + 1;
	for (unsigned k = 1; k <= pa->top; k++) {
		size_t idx = ci >> (3 * k);
		size_t first = idx * PA_FANOUT;
		size_t n = pa->level_len[k - 1] - first;
		if (n > PA_FANOUT)
			n = PA_FANOUT;
		/* Merge only the children that cover grown chunks: the arena
		 * is reserved far larger than it grows, so most of the tree
		 * is zero and a full merge per level cost ~650 instructions
		 * per large kmalloc+kfree. Zero children after them add
		 * nothing but cut the trailing free run. */
		size_t grown_here = ((grown - 1) >> (3 * (k - 1))) + 1;
		size_t nv = grown_here - first < n ? grown_here - first : n;
		struct psum m;
		if (nv == 1 && n > 1) {
			/* one grown child, zeros after it: its start and max
			 * (a max counts both ends' runs), no free run at the end
			 * (the node a heap just grown past 8^k chunks starts) */
			m = pa->sum[k - 1][first];
			m.end = 0;
		} else {
			m = merge(&pa->sum[k - 1][first], nv, pa_node_pages(k - 1));
			if (nv < n)
				m.end = 0;
		}
		if (psum_eq(m, pa->sum[k][idx]))
			return;
		pa->sum[k][idx] = m;
	}
}

static void update_chunk(struct pagealloc *pa, size_t ci)
{
	set_leaf(pa, ci, pa_chunk_sum(&pa->chunks[ci]));
}

/* Make chunk ci look full to pa_find (hide), or as its bitmaps say
 * again, without writing its record: trim gives the record's memory back
 * meanwhile (mmeta.c). */
void pa_hide_chunk(struct pagealloc *pa, size_t ci, bool hide)
{
	struct psum full = { 0, 0, 0 };
	set_leaf(pa, ci, hide ? full : pa_chunk_sum(&pa->chunks[ci]));
}

/* Whether chunk ci's record sits on a page trim is giving back (its
 * summary is hidden meanwhile). */
static bool chunk_inflight(const struct pagealloc *pa, size_t ci)
{
	if (pa->pgstate == NULL)
		return false;
	size_t ps = sys_config.page_size, sz = sizeof(struct pchunk);
	for (size_t p = ci * sz / ps; p <= ((ci + 1) * sz - 1) / ps; p++)
		if (pa->pgstate[p] == CP_INFLIGHT)
			return true;
	return false;
}

void pa_grow(struct pagealloc *pa, size_t new_nchunks)
{
	MM_CHECK(new_nchunks <= pa->cap_chunks, "page allocator grown past its arena", 0);
	for (size_t ci = pa->nchunks; ci < new_nchunks; ci++) {
		for (unsigned w = 0; w < CHUNK_WORDS; w++) {
			pa->chunks[ci].alloc[w] = 0;
			pa->chunks[ci].ready[w] = 0;
		}
		/* a new top's node 0 is computed here: ci = 8^top is the first
		 * child of a new node on every level below, each of which
		 * changes from nothing free, so set_leaf climbs to it */
		pa->top = top_for(pa, ci + 1);
		update_chunk(pa, ci);
	}
	pa->nchunks = new_nchunks;
}


long pa_find(const struct pagealloc *pa, size_t npages)
{
	unsigned top = pa->top;
	size_t idx = 0;

	if (npages == 0 || pa->nchunks == 0 || pa->sum[top][0].max < npages)
		return -1;
	for (unsigned k = top; k >= 1; k--) {
		uint64_t csize = pa_node_pages(k - 1);
		uint64_t run = 0;
		size_t first = idx * PA_FANOUT;
		bool found = false;
		for (size_t j = 0; j < PA_FANOUT && first + j < pa->level_len[k - 1]; j++) {
			size_t ci = first + j;
			struct psum c = pa->sum[k - 1][ci];
			if (run + c.start >= npages)
				return (long)(ci * csize - run);
			if (c.max >= npages) {
				idx = ci;
				found = true;
				break;
			}
			if (c.start == csize)
				run += csize;
			else
				run = c.end;
		}
		MM_CHECK(found, "page allocator summaries corrupt", idx);
	}
	long off = chunk_find(&pa->chunks[idx], npages);
	MM_CHECK(off >= 0, "page allocator chunk summary corrupt", idx);
	return (long)(idx * CHUNK_PAGES) + off;
}

/* The bits of pages [pg, pg+n) in the bitmap word holding pg: the mask,
 * and in *k how many pages that is (up to the word's end). */
static inline uint64_t word_mask(size_t pg, size_t n, size_t *k)
{
	unsigned b = pg % 64;
	*k = 64 - b < n ? 64 - b : n;
	return (*k == 64 ? ~(uint64_t)0 : (((uint64_t)1 << *k) - 1)) << b;
}

/* Apply fn to [pg, pg+n) word by word; update summaries if `sums`. */
enum range_op { OP_SET_ALLOC, OP_CLEAR_ALLOC, OP_SET_SCAV, OP_CLEAR_SCAV };

static void range_apply(struct pagealloc *pa, size_t pg, size_t n, enum range_op op,
                        bool touch)
{
	size_t last_ci = (size_t)-1;
	MM_CHECK(pg + n <= pa->nchunks * CHUNK_PAGES && pg + n >= pg,
	         "page range outside the grown heap", pg);
	while (n > 0) {
		size_t ci = pg / CHUNK_PAGES;
		unsigned w = (pg % CHUNK_PAGES) / 64;
		size_t k;
		uint64_t mask = word_mask(pg, n, &k);
		struct pchunk *c = &pa->chunks[ci];
		if (touch)
			c->touched = pa->epoch;
		bool alloc = op == OP_SET_ALLOC || op == OP_CLEAR_ALLOC;
		uint64_t *word = alloc ? &c->alloc[w] : &c->ready[w];
		if (op == OP_SET_ALLOC || op == OP_CLEAR_SCAV)
			*word |= mask;
		else
			*word &= ~mask;
		if (alloc && ci != last_ci) {
			if (last_ci != (size_t)-1)
				update_chunk(pa, last_ci);
			last_ci = ci;
		}
		pg += k;
		n -= k;
	}
	if (last_ci != (size_t)-1)
		update_chunk(pa, last_ci);
}

void pa_set_alloc(struct pagealloc *pa, size_t pg, size_t n, bool alloc)
{
	range_apply(pa, pg, n, alloc ? OP_SET_ALLOC : OP_CLEAR_ALLOC, true);
}

/* The same without making the chunk look used: the scavenger's own
 * marks while it releases a run. */
void pa_set_alloc_quiet(struct pagealloc *pa, size_t pg, size_t n, bool alloc)
{
	range_apply(pa, pg, n, alloc ? OP_SET_ALLOC : OP_CLEAR_ALLOC, false);
}

void pa_set_scav(struct pagealloc *pa, size_t pg, size_t n, bool scav)
{
	range_apply(pa, pg, n, scav ? OP_SET_SCAV : OP_CLEAR_SCAV, false);
}

bool pa_is_alloc(const struct pagealloc *pa, size_t pg)
{
	const struct pchunk *c = &pa->chunks[pg / CHUNK_PAGES];
	unsigned bit = pg % CHUNK_PAGES;
	return (c->alloc[bit / 64] >> (bit % 64)) & 1;
}

bool pa_is_scav(const struct pagealloc *pa, size_t pg)
{
	const struct pchunk *c = &pa->chunks[pg / CHUNK_PAGES];
	unsigned bit = pg % CHUNK_PAGES;
	return !((c->ready[bit / 64] >> (bit % 64)) & 1);
}

/* Are pages [pg, pg+n) all free? pre: within the grown arena. */
bool pa_range_free(const struct pagealloc *pa, size_t pg, size_t n)
{
	while (n > 0) {
		unsigned bit = pg % CHUNK_PAGES;
		size_t k;
		uint64_t mask = word_mask(pg, n, &k);
		if (pa->chunks[pg / CHUNK_PAGES].alloc[bit / 64] & mask)
			return false;
		pg += k;
		n -= k;
	}
	return true;
}

size_t pa_scav_count(const struct pagealloc *pa, size_t pg, size_t n)
{
	size_t count = 0;
	while (n > 0) {
		unsigned bit = pg % CHUNK_PAGES;
		size_t k;
		uint64_t mask = word_mask(pg, n, &k);
		uint64_t scav = ~pa->chunks[pg / CHUNK_PAGES].ready[bit / 64] & mask;
		if (scav != 0) /* mostly none: a software popcount is ~12 steps */
			count += mm_popcount64(scav);
		pg += k;
		n -= k;
	}
	return count;
}

/* The first run of scavenged pages within [pg, pg+n), clipped to it. */
bool pa_scav_next_run(const struct pagealloc *pa, size_t pg, size_t n,
                      size_t *run_pg, size_t *run_n)
{
	size_t end = pg + n;
	while (pg < end && !pa_is_scav(pa, pg)) {
		if (pg % 64 == 0 && end - pg >= 64 &&
		    pa->chunks[pg / CHUNK_PAGES].ready[(pg % CHUNK_PAGES) / 64] == ~(uint64_t)0)
			pg += 64;
		else
			pg++;
	}
	if (pg >= end)
		return false;
	size_t s = pg;
	while (pg < end && pa_is_scav(pa, pg)) {
		if (pg % 64 == 0 && end - pg >= 64 &&
		    pa->chunks[pg / CHUNK_PAGES].ready[(pg % CHUNK_PAGES) / 64] == 0)
			pg += 64;
		else
			pg++;
	}
	*run_pg = s;
	*run_n = pg - s;
	return true;
}

/* The highest run of free, committed pages (within one chunk) in a chunk
 * nobody allocated from or freed to for min_age epochs: what the
 * scavenger releases next. Go scavenges from the top because the page
 * allocator allocates from the bottom: high pages stay free longest. */
bool pa_highest_unscav_free(const struct pagealloc *pa, uint32_t min_age, size_t *pg,
                            size_t *n)
{
	for (size_t ci = pa->nchunks; ci-- > 0;) {
		const struct pchunk *c = &pa->chunks[ci];
		if (pa->epoch - c->touched < min_age)
			continue;
		for (unsigned w = CHUNK_WORDS; w-- > 0;) {
			uint64_t cand = ~c->alloc[w] & c->ready[w];
			if (cand == 0)
				continue;
			unsigned top = 63 - (unsigned)__builtin_clzll(cand);
			size_t hi = ci * CHUNK_PAGES + w * 64 + top; /* inclusive */
			size_t lo = hi;
			size_t base = ci * CHUNK_PAGES;
			while (lo > base && !pa_is_alloc(pa, lo - 1) && !pa_is_scav(pa, lo - 1))
				lo--;
			*pg = lo;
			*n = hi - lo + 1;
			return true;
		}
	}
	return false;
}

/* The same for a heap whose commit unit is `gran` pages (mheap.gran > 1):
 * the highest run of whole units that are free and committed (no page
 * allocated or scavenged), in a chunk untouched for min_age epochs. */
bool pa_highest_free_granules(const struct pagealloc *pa, size_t gran, uint32_t min_age, size_t *pg,
                              size_t *n)
{
	for (size_t ci = pa->nchunks; ci-- > 0;) {
		const struct pchunk *c = &pa->chunks[ci];
		if (pa->epoch - c->touched < min_age)
			continue;
		size_t base = ci * CHUNK_PAGES, hi = 0, lo = 0;
		for (size_t g = base + CHUNK_PAGES; g > base; g -= gran) {
			bool cand = pa_range_free(pa, g - gran, gran) &&
			            pa_scav_count(pa, g - gran, gran) == 0;
			if (cand && hi == 0)
				hi = g;
			if (cand)
				lo = g - gran;
			if (!cand && hi != 0)
				break;
		}
		if (hi != 0) {
			*pg = lo;
			*n = hi - lo;
			return true;
		}
	}
	return false;
}

/* Whole-structure check: every grown summary up to pa->top matches its
 * bitmaps and children, ungrown chunks summarise as full, and top is
 * the lowest level covering the grown chunks. Returns 1 if valid. (That
 * no page is both allocated and scavenged holds only between mheap
 * operations, so mheap_valid checks it.) */
int pa_valid(const struct pagealloc *pa)
{
	size_t len = pa->nchunks;
	if (len > 0 && pa->top != top_for(pa, len))
		return 0;
	for (unsigned k = 0; k <= pa->top; k++) {
		/* grown entries, plus the rest of their group of 8 (which
		 * must summarise as "nothing free") */
		size_t ents = (len + PA_FANOUT - 1) / PA_FANOUT * PA_FANOUT;
		if (ents > pa->level_len[k])
			ents = pa->level_len[k];
		for (size_t idx = 0; idx < ents; idx++) {
			struct psum want = {0, 0, 0};
			if (k == 0 && idx < pa->nchunks && chunk_inflight(pa, idx)) {
				want = pa->sum[0][idx]; /* hidden while given back */
			} else if (k == 0 && idx < pa->nchunks) {
				want = pa_chunk_sum(&pa->chunks[idx]);
			} else if (k > 0 && idx < len) {
				size_t first = idx * PA_FANOUT;
				size_t n = pa->level_len[k - 1] - first;
				if (n > PA_FANOUT)
					n = PA_FANOUT;
				want = merge(&pa->sum[k - 1][first], n, pa_node_pages(k - 1));
			}
			if (!psum_eq(want, pa->sum[k][idx]))
				return 0;
		}
		len = (len + PA_FANOUT - 1) / PA_FANOUT;
	}
	return 1;
}
