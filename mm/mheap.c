/*
 * mheap.c: the heap: the reserved region, its growth, the page -> span
 * map, and span allocation/free on top of the page allocator. See
 * malloc.c for the overview.
 *
 * kmalloc_init reserves one region through the port (the configured
 * arena, halved until the port agrees) and lays it out as follows;
 * nothing is committed at first, each part as the heap grows into it:
 *
 *   | spans map | page descs | chunk records | summaries | fixalloc | pad | arena |
 *     8 B/page    8 B/page     136 B/chunk     12 B/chunk   arena/5    to 4 MiB
 *   (and, smaller: a state byte per sys page of chunk records, the
 *   fixalloc blocks' counts, the mcaches and transfer-cache entries)
 *
 * ksize, krealloc and kfree's slow path find a pointer's span with one
 * load from the spans map (Go's heapArena.spans, flat here since there is
 * one arena). Entries are set for every page of a span when it is
 * allocated and left stale when it is freed: they then point at a DEAD
 * mspan record, never at garbage; pages never in a span point at
 * mspan_none, which is DEAD too. kfree's fast path reads the page
 * descriptors instead (internal.h): set for every page of a small span
 * when mcentral publishes it, cleared before it dies, so a random free
 * needs neither the record's cache line nor a state recheck there.
 * Trim gives back both maps' words of chunks holding no span: they read
 * as zero (NULL, descriptor 0) until a span comes there again (mmeta.c).
 *
 * The arena is empty at first: mheap grows it by whole chunks (4 MiB, 512
 * heap pages) when the page allocator finds no fit, committing the
 * metadata for the new chunks (under the lock: small and rare) but not
 * the chunks themselves: new pages count as free and scavenged
 * ("released"), exactly as Go's pageAlloc.grow does. mheap_alloc_span commits
 * the scavenged pages of the span it hands out, outside the lock.
 *
 * Accounting, in heap pages (mheap.lock):
 *   pages_inuse     in spans (small or large)
 *   pages_free      free and committed (retained; the scavenger's input)
 *   pages_released  free and Reserved
 *   pages_sys       = inuse + free + released = grown arena
 */
#include "internal.h"

struct mheap mheap_;
struct mcache *mm_mcaches[MM_MAX_CPUS + 1];
uint8_t mm_cpu_polls[MM_MAX_CPUS + 1];
unsigned mm_mcache_hi;
#if !defined(SYS_MCACHE_GET)
struct mcache *mm_fast_mcaches[MM_MAX_CPUS + 1];
#endif
#if defined(MM_DEBUG) && MM_DEBUG >= 2
void (*mm_test_hook)(enum mm_hook_at at, const void *p);
#endif
static struct sys_lock init_lock;


_Static_assert(SYS_ARENA_MIN == 4 * CHUNK_BYTES, "sys.h's minimum arena is 4 chunks");
_Static_assert(SYS_ARENA_MAX == (size_t)CHUNK_BYTES << (3 * (PA_MAX_LEVELS - 1)),
               "sys.h's maximum arena is what the page allocator's summary covers");

static size_t round_up(size_t x, size_t a)
{
	return (x + a - 1) & ~(a - 1);
}

/* Words per bitmap of a span of spanclass and npages (0 if large): one
 * bit per slot, or one live byte per 64 bits' worth of slots, whichever
 * needs more (the live bytes sit at 64 per word, see below). */
static unsigned bits_words(unsigned spanclass, size_t npages)
{
	if (spanclass < 2)
		return 0;
	size_t size = spanclass_elemsize(spanclass);
	unsigned bw = (unsigned)((npages * PAGE_SIZE / size + 63) / 64);
	unsigned lw = (unsigned)((((npages * PAGE_SIZE) >> liveshift_of(size)) + 63) / 64);
	return bw > lw ? bw : lw;
}

/* Bitmap bucket: records for 1, 2, 4, 8, 16 bitmap words. A small span
 * record of bucket b holds, after the struct, the live bytes (64 per
 * word) then allocBits, free_bits and gcmarkBits (1 << b words each):
 * REC_BYTES(b) bytes; with allocation sites tracked (mgcmark.c), one
 * site word per slot after that. */
#define REC_WORDS(b) ((size_t)(3 * sizeof(uint64_t) + 64) << (b))
#define REC_SITES(b) ((size_t)(64 * sizeof(uintptr_t)) << (b))
/* the commonest record (up to 64 slots) in four whole lines (mspan.h) */
_Static_assert(sizeof(struct mspan) + REC_WORDS(0) <= 256, "one-word span record over 256 bytes");
static unsigned bits_bucket(unsigned nwords)
{
	unsigned b = 0;
	while ((1u << b) < nwords)
		b++;
	return b;
}

/* The fixalloc of span records for spanclass and npages. */
static struct fixalloc *record_alloc(unsigned spanclass, size_t npages)
{
	unsigned nwords = bits_words(spanclass, npages);
	return &mheap_.spanalloc[nwords == 0 ? 0 : 1 + bits_bucket(nwords)];
}

/* Lay the metadata out for an arena of `arena` bytes (relative offsets
 * until the region exists); returns the metadata size. */
static size_t layout(size_t arena, struct metaarr **arrs, unsigned *narrs)
{
	size_t ps = sys_config.page_size;
	size_t npages = arena >> PAGE_SHIFT, nchunks = arena >> CHUNK_SHIFT;
	struct pagealloc *pa = &mheap_.pages;
	size_t sizes[4 + PA_MAX_LEVELS + 5];
	unsigned n = 0;

	pa_init(pa, nchunks);
	arrs[n] = &mheap_.m_spans;
	sizes[n++] = npages * sizeof(struct mspan *);
	arrs[n] = &mheap_.m_pagedesc;
	sizes[n++] = npages * sizeof(uint64_t);
	arrs[n] = &mheap_.m_chunks;
	sizes[n++] = nchunks * sizeof(struct pchunk);
	arrs[n] = &mheap_.m_chunkpg; /* a state byte per sys page of those */
	sizes[n++] = pa_record_pages(nchunks);
	for (unsigned k = 0; k < pa->nlevels; k++) {
		arrs[n] = &mheap_.m_sum[k];
		sizes[n++] = pa->level_len[k] * sizeof(struct psum);
	}
	arrs[n] = &mheap_.m_fix;
	/* worst case: a 1,600-byte record (struct, live bytes, three
	 * bitmaps) per 8 KiB span of 8-byte objects, 19% of the arena; with
	 * allocation sites, 8 KiB more per such span */
	size_t fix = mheap_.track_sites ? arena + arena / 4 : arena / 5;
	sizes[n++] = fix;
	arrs[n] = &mheap_.m_fixblk;
	sizes[n++] = fix / FIX_BLOCK * sizeof(struct fixblk);
	/* mcaches with their magazines, and the transfer caches' entries */
	arrs[n] = &mheap_.m_caches;
	sizes[n++] = (size_t)sys_config.max_cpus * mheap_.cs.mcache_max_bytes + mheap_.cs.tc_bytes;
	/* the stack depot of tracked allocations' backtraces (mstack.c) */
	arrs[n] = &mheap_.m_depot;
	sizes[n++] = mheap_.track_sites ? MM_DEPOT_BYTES : 0;
	/* meshing's scratch (whether the port meshes is known only once it
	 * reserved: address space either way, committed while it meshes) */
	arrs[n] = &mheap_.m_mesh;
	sizes[n++] = mesh_work_bytes();
	size_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		arrs[i]->base = off;
		arrs[i]->size = round_up(sizes[i], ps);
		arrs[i]->committed = arrs[i]->used = 0;
		off += arrs[i]->size;
	}
	*narrs = n;
	return off;
}

int mheap_init(void)
{
	if (mheap_inited())
		return 0;
	sys_lock(&init_lock);
	if (mheap_.inited) {
		sys_unlock(&init_lock);
		return 0;
	}
	size_t ps = sys_config.page_size;
	MM_CHECK(sys_config.max_cpus <= MM_MAX_CPUS, "sys_config.max_cpus too large", 0);
	MM_CHECK(ps != 0 && (ps & (ps - 1)) == 0 && ps <= ((size_t)2 << 20),
	         "sys_config.page_size must be a power of two up to 2 MiB", 0);
	mheap_.gran = ps > PAGE_SIZE ? ps / PAGE_SIZE : 1;

	mm_cache_init();
	int frames = sys_config.track_sites != NULL ? sys_config.track_sites() : 0;
	mheap_.track_sites = frames != 0;
	if (frames > LEAK_FRAMES)
		frames = LEAK_FRAMES;
	mheap_.site_frames = (uint8_t)(frames < 1 ? 1 : frames); /* negative: 1 */
	/* Reserve the configured arena; if the port cannot (a small address
	 * space, or valgrind's), halve it down to 16 MiB. */
	size_t arena = sys_config.arena_size & ~(CHUNK_BYTES - 1);
	struct metaarr *arrs[4 + PA_MAX_LEVELS + 5];
	unsigned n = 0;
	size_t meta = 0;
	void *base = NULL;
	/* the guarded pool after the arena: address space only (mkfence.c) */
	size_t kfence = kfence_reserve_bytes();
	for (;;) {
		if (arena < SYS_ARENA_MIN) {
			sys_unlock(&init_lock);
			return -1;
		}
		meta = layout(arena, arrs, &n);
		if (sys_reserve(meta + CHUNK_BYTES + arena + kfence, &base) == 0)
			break;
		arena /= 2;
	}
	struct pagealloc *pa = &mheap_.pages;
	mheap_.region = (uintptr_t)base;
	mheap_.region_size = meta + CHUNK_BYTES + arena + kfence;
	for (unsigned i = 0; i < n; i++)
		arrs[i]->base += (uintptr_t)base;
	mheap_.arena_start = round_up((uintptr_t)base + meta, CHUNK_BYTES);
	mheap_.arena_end = mheap_.arena_start + arena;
	mheap_.spans = (struct mspan **)mheap_.m_spans.base;
	mheap_.pagedesc = (uint64_t *)mheap_.m_pagedesc.base;
	mheap_.livebase = mheap_.m_fix.base + sizeof(struct mspan);
	pa->chunks = (struct pchunk *)mheap_.m_chunks.base;
	mheap_maps_init();
	for (unsigned k = 0; k < pa->nlevels; k++)
		pa->sum[k] = (struct psum *)mheap_.m_sum[k].base;
	/* Not zeroed on reuse: a record's state generation must outlive
	 * its incarnations (see span_publish); mheap_alloc_span clears the
	 * live bytes and bitmaps itself. */
	fixalloc_init(&mheap_.spanalloc[0], sizeof(struct mspan), false);
	fixalloc_init(&mheap_.greyalloc, sizeof(struct greyblk), false);
	for (unsigned b = 0; b < 5; b++)
		fixalloc_init(&mheap_.spanalloc[1 + b],
		              sizeof(struct mspan) + REC_WORDS(b) +
		              (mheap_.track_sites ? REC_SITES(b) : 0), false);
	for (unsigned i = 0; i < NUM_SPANCLASSES; i++)
		mheap_.central[i].c.spanclass = i;
	mheap_.arena_used = mheap_.arena_start;
	mheap_scav_init();
	kfence_init(mheap_.arena_end);       /* after the clock: it may start sampling */
	mm_store_release(&mheap_.inited, 1); /* publishes everything above (mheap_inited) */
	sys_unlock(&init_lock);
	return 0;
}

/* Grow the arena by enough whole chunks for npages. pre: mheap.lock.
 * Returns 0, or -1 (arena exhausted, or metadata could not be committed;
 * nothing changes then, apart from metadata that stays committed). */
static int mheap_grow(size_t npages)
{
	MM_HELD_HEAP();
	struct pagealloc *pa = &mheap_.pages;
	size_t k = (npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	size_t newn = pa->nchunks + k;
	if (k == 0 || newn > pa->cap_chunks || newn < k)
		return -1;
	if (meta_ensure(&mheap_.m_spans, newn * CHUNK_PAGES * sizeof(struct mspan *)) ||
	    meta_ensure(&mheap_.m_pagedesc, newn * CHUNK_PAGES * sizeof(uint64_t)) ||
	    meta_ensure(&mheap_.m_chunks, newn * sizeof(struct pchunk)) ||
	    (pa->pgstate != NULL && meta_ensure(&mheap_.m_chunkpg, pa_record_pages(newn))))
		return -1;
	size_t len = newn;
	for (unsigned l = 0; l < pa->nlevels; l++) {
		/* whole groups of 8: a parent merge reads all its children */
		size_t ents = (len + PA_FANOUT - 1) / PA_FANOUT * PA_FANOUT;
		if (ents > pa->level_len[l])
			ents = pa->level_len[l];
		if (meta_ensure(&mheap_.m_sum[l], ents * sizeof(struct psum)))
			return -1;
		len = (len + PA_FANOUT - 1) / PA_FANOUT;
	}
	/* New map units are there; one bigger than a chunk (2 MiB sys
	 * pages) may have been given back with chunks below (mmeta.c). */
	mheap_maps_grow(newn - k, newn);
	if (mheap_maps_ensure((newn - k) * CHUNK_PAGES, k * CHUNK_PAGES) != 0)
		return -1;
	pa_grow(pa, newn);
	/* New pages map to the dead sentinel (NULL: given back, mmeta.c). */
	for (size_t pg = (newn - k) * CHUNK_PAGES; pg < newn * CHUNK_PAGES; pg++) {
		mheap_.spans[pg] = &mspan_none;
		mheap_.pagedesc[pg] = 0; /* commits need not zero (sys.h) */
	}
	mheap_.pages_sys += k * CHUNK_PAGES;
	mheap_.pages_released += k * CHUNK_PAGES;
	/* release: the page-map entries above exist before kfree may index them */
	mm_store_release(&mheap_.arena_used, mheap_.arena_start + newn * CHUNK_BYTES);
	mm_store_release(&mheap_.arena_used_bytes, newn * CHUNK_BYTES);
	return 0;
}

/* Find and take npages (aligned to align_pages heap pages), growing the
 * arena if nothing fits. pre: lock. Returns the page index or -1. */
static long take_pages(size_t npages, size_t align_pages)
{
	MM_HELD_HEAP();
	struct pagealloc *pa = &mheap_.pages;
	mheap_scav_clock(); /* the chunk we take from is touched now */
	size_t need = npages + align_pages - 1;
	if (need < npages)
		return -1;
	long pg = pa_find(pa, need);
	if (pg < 0) {
		if (mheap_grow(need) != 0)
			return -1;
		pg = pa_find(pa, need);
		if (pg < 0)
			return -1;
	}
	if (align_pages > 1) {
		size_t abs = (mheap_.arena_start >> PAGE_SHIFT) + (size_t)pg;
		pg += (long)(round_up(abs, align_pages) - abs);
	}
	if (mheap_maps_ensure((size_t)pg, npages) != 0)
		return -1;
	pa_set_alloc(pa, (size_t)pg, npages, true);
	return pg;
}

/* Take pages [pg, pg+n) out of the free pool into spans: counters and
 * the scavenger's pacing. Returns how many of them were scavenged (must
 * be committed). pre: lock, the pages just marked allocated. */
static size_t account_take(size_t pg, size_t n, bool large)
{
	MM_HELD_HEAP();
	size_t scav = pa_scav_count(&mheap_.pages, pg, n);
	mheap_.pages_inuse += n;
	mheap_.pages_free -= n - scav;
	mheap_.pages_released -= scav;
	if (large)
		mheap_.large_pages += n;
	mheap_scav_note_alloc(n);
	return scav;
}

/* Give pages [pg, pg+n) back to the free pool (their scavenged bits are
 * exact: committed runs clear, released runs set). pre: lock. */
static void account_give(size_t pg, size_t n, bool large)
{
	MM_HELD_HEAP();
	size_t sc = pa_scav_count(&mheap_.pages, pg, n);
	mheap_scav_clock();
	pa_set_alloc(&mheap_.pages, pg, n, false);
	mheap_.pages_inuse -= n;
	mheap_.pages_released += sc;
	mheap_.pages_free += n - sc;
	if (large)
		mheap_.large_pages -= n;
	if (mheap_.pages_free * PAGE_SIZE > mheap_retain_goal())
		mm_store_relaxed(&mheap_.scav_pending, 1);
}

/* Commit the scavenged runs of [pg, pg+n), which the caller has just
 * taken (so nobody else changes their bits), outside the lock (Go's
 * sysUsed after unlock), a batch of runs at a time. Returns 0; or -1 when
 * the port refused, with the runs not committed marked scavenged again.
 * pre: no mm lock held. */
static int commit_runs(size_t pg, size_t n)
{
	struct pagealloc *pa = &mheap_.pages;
	size_t cur = pg, end = pg + n;
	for (;;) {
		size_t rp[8], rn[8];
		unsigned nr = 0;
		lock_heap();
		while (nr < 8 && cur < end && pa_scav_next_run(pa, cur, end - cur, &rp[nr], &rn[nr])) {
			pa_set_scav(pa, rp[nr], rn[nr], false);
			cur = rp[nr] + rn[nr];
			nr++;
		}
		unlock_heap();
		if (nr == 0)
			return 0;
		for (unsigned i = 0; i < nr; i++) {
			uintptr_t a = mheap_.arena_start + rp[i] * PAGE_SIZE;
			if (sys_commit((void *)a, rn[i] * PAGE_SIZE) != 0) {
				lock_heap();
				for (unsigned j = i; j < nr; j++)
					pa_set_scav(pa, rp[j], rn[j], true);
				unlock_heap();
				return -1;
			}
		}
		/* A short batch was the last: no second lock hold to find
		 * nothing (at 255 CPUs under emulation mheap.lock is the queue
		 * every fresh span waits in). */
		if (nr < 8 || cur >= end)
			return 0;
	}
}

/* With a commit unit above a heap page (mheap.gran > 1): commit every
 * scavenged unit that [pg, pg+n), just taken, touches. Under the lock,
 * unlike commit_runs: a unit also holds free pages, which another span
 * could take and use while an unlocked commit was still under way. The
 * unit's free pages become free committed ones. Returns 0, or -1 when the
 * port refused (units committed before stay so; the bits say which).
 * pre: lock. */
static int commit_granules(size_t pg, size_t n)
{
	MM_HELD_HEAP();
	struct pagealloc *pa = &mheap_.pages;
	size_t g = mheap_.gran;
	for (size_t u = pg / g * g; u < pg + n; u += g) {
		if (!pa_is_scav(pa, u))
			continue; /* a unit is all scavenged or not at all */
		if (sys_commit((void *)(mheap_.arena_start + u * PAGE_SIZE), g * PAGE_SIZE) != 0)
			return -1;
		size_t extra = 0; /* the unit's free pages outside the span */
		for (size_t p = u; p < u + g; p++)
			extra += !pa_is_alloc(pa, p);
		pa_set_scav(pa, u, g, false);
		mheap_.pages_released -= extra;
		mheap_.pages_free += extra;
	}
	return 0;
}

static void free_records(struct mspan *s)
{
	struct fixalloc *f = record_alloc(s->spanclass, s->npages);
	s->allocBits = s->free_bits = s->gcmarkBits = NULL;
	s->sites = NULL;
	fixalloc_free(f, s);
}

/* Fill a fresh span record for pages [pg, pg+npages): fields, bitmaps
 * and live bytes (small: all clear), mark bits and sites (large: the
 * record's own words). State stays DEAD until the caller publishes it.
 * pre: mheap.lock. */
static void span_record_init(struct mspan *s, size_t pg, size_t npages, unsigned spanclass,
                             unsigned nwords, size_t scav)
{
	MM_HELD_HEAP();
	span_set_state(s, SPAN_DEAD);
	s->next = s->prev = NULL;
	s->base = mheap_.arena_start + pg * PAGE_SIZE;
	s->npages = npages;
	s->spanclass = (uint8_t)spanclass;
	s->needzero = !(scav == npages && sys_config.commit_zeroed);
	mm_store_relaxed(&s->cached_by, CPU_NONE);
	if (nwords != 0) {
		unsigned b = bits_bucket(nwords);
		size_t bw = (size_t)1 << b;
		__builtin_memset(mspan_livebytes(s), 0, REC_WORDS(b));
		s->allocBits = (uint64_t *)(uintptr_t)(mspan_livebytes(s) + 64 * bw);
		s->free_bits = s->allocBits + bw;
		s->gcmarkBits = s->free_bits + bw;
		s->sites = mheap_.track_sites ? (uintptr_t *)(s->gcmarkBits + bw) : NULL;
	} else {
		s->allocBits = s->free_bits = NULL;
		s->gcmark1 = 0;
		s->gcmarkBits = &s->gcmark1; /* a large span's one mark bit */
		s->site1 = 0;
		s->sites = &s->site1;
	}
	s->gcrescan = 0;
	s->nelems = 0;
}

/* Allocate a span of npages heap pages (base aligned to align_pages heap
 * pages) for spanclass (0 or 1 = large object). Returns it with base, npages,
 * spanclass, needzero, bitmaps and live bytes (small, all clear) set and
 * state still DEAD: the caller fills the class fields and publishes
 * INUSE. NULL if the arena or the port's memory is exhausted; nothing
 * changes then. pre: no mm lock held (may be called with interrupts off). */
struct mspan *mheap_alloc_span(size_t npages, unsigned spanclass, size_t align_pages)
{
	MM_UNLOCKED();
	struct pagealloc *pa = &mheap_.pages;
	if (npages == 0 || npages > pa->cap_chunks * CHUNK_PAGES)
		return NULL;
	unsigned nwords = bits_words(spanclass, npages);
	struct fixalloc *f = record_alloc(spanclass, npages);

	lock_heap();
	struct mspan *s = fixalloc_alloc(f);
	long pgl = s != NULL ? take_pages(npages, align_pages) : -1;
	if (pgl < 0) {
		if (s)
			fixalloc_free(f, s);
		unlock_heap();
		return NULL;
	}
	size_t pg = (size_t)pgl;
	size_t scav = account_take(pg, npages, spanclass < 2);
	if (scav != 0 && mheap_.gran > 1 && commit_granules(pg, npages) != 0) {
		account_give(pg, npages, spanclass < 2);
		fixalloc_free(f, s);
		unlock_heap();
		return NULL;
	}
	span_record_init(s, pg, npages, spanclass, nwords, scav);
	for (size_t i = 0; i < npages; i++)
		mm_store_release(&mheap_.spans[pg + i], s); /* s's fields before the entry (kfree) */
	MM_VALIDATE(pa_valid(pa));
	unlock_heap();

	if (scav != 0 && mheap_.gran == 1 && commit_runs(pg, npages) != 0) {
		lock_heap();
		account_give(pg, npages, spanclass < 2);
		free_records(s);
		unlock_heap();
		return NULL;
	}
	return s;
}

/* Whether try t fits s (at page pg): it grows s, and the pages after s
 * up to t's `clear` (from s's base, at least `take`) are free in the
 * grown arena. pre: mheap.lock held. */
static bool extend_fits(const struct mspan *s, size_t pg, const struct span_extend *t)
{
	struct pagealloc *pa = &mheap_.pages;
	size_t clear = t->clear > t->take ? t->clear : t->take;
	return t->take > s->npages && clear <= pa->nchunks * CHUNK_PAGES - pg &&
	       pa_range_free(pa, pg + s->npages, clear - s->npages);
}

/* Take the add free pages after s (at page pg) for it and commit those
 * released. Returns true with mheap.lock released; false with it held
 * and the pages free again when the port refused the commit.
 * pre: mheap.lock held; the pages free, their maps committed. */
static bool extend_take(struct mspan *s, size_t pg, size_t add)
{
	size_t at = pg + s->npages;
	mheap_scav_clock();
	pa_set_alloc(&mheap_.pages, at, add, true);
	size_t scav = account_take(at, add, true);
	if (scav != 0 && mheap_.gran > 1 && commit_granules(at, add) != 0) {
		account_give(at, add, true);
		return false;
	}
	for (size_t i = 0; i < add; i++)
		mm_store_release(&mheap_.spans[at + i], s); /* as in mheap_alloc_span */
	unlock_heap();
	if (scav != 0 && mheap_.gran == 1 && commit_runs(at, add) != 0) {
		lock_heap();
		account_give(at, add, true);
		return false;
	}
	return true;
}

/* Grow the large span s in place to the first of the n tries whose
 * pages after s are free and commit (struct span_extend: the caller's
 * room policy, mlarge.c), in one lock hold unless a commit is refused.
 * Returns s's new page count (the caller sizes the object in it), or 0,
 * having changed nothing.
 * pre: the caller owns s (a live large object); no mm lock held. */
size_t mheap_extend_span(struct mspan *s, const struct span_extend *tries, unsigned n)
{
	MM_UNLOCKED();
	size_t pg = (s->base - mheap_.arena_start) >> PAGE_SHIFT;
	lock_heap();
	for (unsigned i = 0; i < n; i++) {
		const struct span_extend *t = &tries[i];
		if (!extend_fits(s, pg, t) ||
		    mheap_maps_ensure(pg + s->npages, t->take - s->npages) != 0)
			continue;
		if (extend_take(s, pg, t->take - s->npages)) {
			s->npages = t->take;
			return t->take;
		}
	}
	unlock_heap();
	return 0;
}

/* The descriptor of page i of the small span s (internal.h). */
static uint64_t page_desc(const struct mspan *s, size_t i)
{
	uintptr_t at = (uintptr_t)s - mheap_.m_fix.base;
	MM_CHECK(at % 64 == 0, "span record not 64-byte aligned", s); /* fixalloc_init */
	MM_CHECK(i <= 0xff, "small span longer than 256 pages", s);   /* 8 bits of index */
	uint64_t rec = (uint64_t)at >> 6;
	uint64_t gen = (mm_load_relaxed(&s->state) / SPAN_GEN_ONE) & PD_GEN_MASK;
	return rec << 21 | (uint64_t)i << PAGE_SHIFT | gen << 8 | s->spanclass;
}

/* Map every page of the small span s, just published INUSE, to its
 * descriptor, after everything of the new incarnation (release: kfree
 * reads the live bytes after the descriptor). pre: s is the caller's. */
void mheap_publish_small(struct mspan *s)
{
	size_t pg = (s->base - mheap_.arena_start) >> PAGE_SHIFT;
	for (size_t i = 0; i < s->npages; i++)
		mm_store_release(&mheap_.pagedesc[pg + i], page_desc(s, i));
}

/* The small span s is about to die: its pages map to no descriptor any
 * more before its live bytes or record change (the release fence keeps
 * those later stores behind the clears, the seqlock writer's side of
 * kfree's fast path). pre: s is the caller's (its mcentral's lock or
 * mheap.lock). */
void mheap_unpublish_small(struct mspan *s)
{
	size_t pg = (s->base - mheap_.arena_start) >> PAGE_SHIFT;
	for (size_t i = 0; i < s->npages; i++)
		mm_store_relaxed(&mheap_.pagedesc[pg + i], 0);
	mm_fence_release();
}

/* Return a span's pages to the heap. `released`: its pages are already
 * Reserved (the port's move hook took them away), so they come back scavenged.
 * pre: the span is dead to everyone (state DEAD, FREEING or CACHED,
 * uncached); no lock or only its mcentral's lock held. */
void mheap_free_span(struct mspan *s, bool released)
{
	MM_ASSERT(!mm_lock_held(RANK_MHEAP, &mheap_.lock));
	size_t pg = (s->base - mheap_.arena_start) >> PAGE_SHIFT;
	MM_ASSERT(span_is_large(s) || mheap_.pagedesc[pg] == 0); /* mcentral's free_span */
	lock_heap();
	mm_store_relaxed(&s->nbytes, 0); /* before DEAD: malloc.c */
	if (released)
		pa_set_scav(&mheap_.pages, pg, s->npages, true);
	account_give(pg, s->npages, span_is_large(s));
	span_set_state(s, SPAN_DEAD);
	/* The page->span entries stay: stale entries point at this record,
	 * now DEAD, which is how kfree tells a freed span from garbage. */
	free_records(s);
	MM_VALIDATE(pa_valid(&mheap_.pages));
	MM_ASSERT(mheap_.pages_inuse + mheap_.pages_free + mheap_.pages_released ==
	          mheap_.pages_sys);
	unlock_heap();
}
