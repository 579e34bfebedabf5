/*
 * mmeta.c: giving back the page maps (the page -> span map and the page
 * descriptors, 8 bytes per heap page each) and the page allocator's
 * records of chunks that hold no span, and taking them again when a span
 * comes there. See malloc.c for the overview, mheap.c for the maps.
 *
 * The maps are indexed by page for the whole grown arena and read without
 * a lock: kfree reads a page's descriptor for any pointer inside the grown
 * arena, ksize/krealloc/kfree's slow path and the leak scan read the page
 * -> span map. A stray pointer may point anywhere in it, so a map page
 * that is given back must stay readable: mm gives it back through the
 * port's sys_config.release_zero, after which it reads as zero until
 * sys_commit makes it Ready again (sys.h). A port without that hook keeps
 * its maps. Zero words are what a reader already handles: descriptor 0
 * sends kfree to its slow path (the class-0 magazine accepts no slot),
 * a NULL span is "invalid free" / "invalid pointer" there, and the leak
 * scan skips it.
 *
 * Unit: the map words of unit_chunks() chunks in each array, at least a
 * sys page (4 KiB of words = one chunk's 512 pages with 4 KiB sys pages;
 * 512 chunks with 2 MiB ones). Its state (pchunk.mapstate of its first
 * chunk, mheap.lock):
 *
 *   MAP_READY -(trim: every page of its chunks free)-> MAP_INFLIGHT
 *     -(released outside the lock)-> MAP_RELEASED
 *     -(a span is made there: mheap_maps_ensure, under the lock)-> MAP_READY
 *   (MAP_HALF: the recommit of the descriptors failed after the span map's
 *   succeeded; the next ensure commits only the descriptors.)
 *
 * Why the race is harmless. A unit is given back only while all its pages
 * are free, so no live object points into it: only a bad pointer (stray,
 * or freed before) reads its words. While it is in flight its pages are
 * marked allocated in the page allocator (quietly, as the scavenger marks
 * what it releases), so no span can be made there and nobody writes its
 * words; a bad pointer's reader then sees the old words or zeros, and
 * either ends in a fault line (a stale entry leads to a DEAD record as
 * before trim). Before a span is made in a released unit (take_pages,
 * mheap_extend_span, mheap_grow, under mheap.lock), the unit is committed
 * and every word set to "no span" (mspan_none, descriptor 0); the span's
 * own entries follow with release stores, before the span's first object
 * is handed out, so a kfree of a real object never meets a released word.
 * sys_release-like work never runs under the lock: trim marks under it,
 * releases outside, and finishes under it again (as mscavenge.c does).
 *
 * The page allocator's chunk records (struct pchunk, 136 bytes: 30 to a
 * 4 KiB page) go the same way, a sys page at a time, once every chunk on
 * the page is grown, its unit given back and its record all free and
 * released: such a record is all zeros (the bitmaps say "free" and
 * "not ready", MAP_RELEASED is 0; only the scavenger's epoch stamp is
 * lost), so a page given back through release_zero reads exactly as what
 * it held, and the page allocator's readers (pa_find, the scavenger,
 * in-place growth) need no change. Nobody may write there meanwhile:
 * while a page is in flight (pagealloc.pgstate CP_INFLIGHT) its chunks'
 * summaries say "full" (pa_hide_chunk), so pa_find passes them by, and
 * an in-place growth that reaches them gives up (cp_ensure fails). Every
 * writer of a record commits its page first (mheap_maps_ensure, before a
 * span is made there); chunks not grown yet never share a page that is
 * given back, so growth writes only pages that are there.
 */
#include "internal.h"

/* Bytes of map words per chunk in each array (one word per heap page). */
#define CHUNK_MAP_BYTES ((size_t)CHUNK_PAGES * sizeof(uint64_t))
_Static_assert(sizeof(struct mspan *) == sizeof(uint64_t), "both maps are one word per page");

/* Chunks per unit: the maps are given back in whole sys pages. */
static size_t unit_chunks(void)
{
	size_t ps = sys_config.page_size;
	return ps > CHUNK_MAP_BYTES ? ps / CHUNK_MAP_BYTES : 1;
}

static uint8_t *unit_state(size_t u) { return &mheap_.pages.chunks[u * unit_chunks()].mapstate; }

/* The grown chunks of unit u: [*first, *end). */
static void unit_range(size_t u, size_t *first, size_t *end)
{
	size_t uc = unit_chunks();
	*first = u * uc;
	*end = *first + uc < mheap_.pages.nchunks ? *first + uc : mheap_.pages.nchunks;
}

static void *unit_words(const struct metaarr *m, size_t u)
{
	return (void *)(m->base + u * unit_chunks() * CHUNK_MAP_BYTES);
}

static size_t unit_bytes(void) { return unit_chunks() * CHUNK_MAP_BYTES; }

/* ---- pages of chunk records (pagealloc.chunks) ---- */

/* The sys pages holding the records of chunks [c0, c1): [*p0, *p1). */
static void cp_pages(size_t c0, size_t c1, size_t *p0, size_t *p1)
{
	size_t ps = sys_config.page_size, sz = sizeof(struct pchunk);
	*p0 = c0 * sz / ps;
	*p1 = c1 > c0 ? ((c1 * sz - 1) / ps) + 1 : *p0;
}

/* The chunks whose records page p holds: [*c0, *c1). */
static void cp_chunks(size_t p, size_t *c0, size_t *c1)
{
	size_t ps = sys_config.page_size, sz = sizeof(struct pchunk);
	*c0 = p * ps / sz;
	*c1 = ((p + 1) * ps + sz - 1) / sz;
}

static void *cp_addr(size_t p) { return (void *)(mheap_.m_chunks.base + p * sys_config.page_size); }

/* Commit again the pages trim gave back that hold the records of chunks
 * [c0, c1). Returns 0, or -1: a page is still in flight (its chunks look
 * full meanwhile, so only an in-place growth asks: it gives up), or the
 * port refused. pre: mheap.lock. */
static int cp_ensure(size_t c0, size_t c1)
{
	size_t p0, p1, ps = sys_config.page_size;
	if (mheap_.pages.pgstate == NULL)
		return 0;
	cp_pages(c0, c1, &p0, &p1);
	for (size_t p = p0; p < p1; p++) {
		uint8_t *st = &mheap_.pages.pgstate[p];
		if (*st == CP_READY)
			continue;
		if (*st == CP_INFLIGHT || sys_commit(cp_addr(p), ps) != 0)
			return -1;
		if (!sys_config.commit_zeroed)
			__builtin_memset(cp_addr(p), 0, ps);
		mheap_.meta_sys += ps;
		*st = CP_READY;
	}
	return 0;
}

/* Whether page p of chunk records can go: every chunk on it grown, its
 * map unit given back and its record all free and released (all zero but
 * the scavenger's epoch stamp, which a chunk with nothing to release does
 * not need). pre: mheap.lock. */
static bool cp_idle(size_t p)
{
	size_t c0, c1;
	cp_chunks(p, &c0, &c1);
	if (mheap_.pages.pgstate[p] != CP_READY || c1 > mheap_.pages.nchunks)
		return false;
	for (size_t c = c0; c < c1; c++) {
		const struct pchunk *pc = &mheap_.pages.chunks[c];
		if (*unit_state(c / unit_chunks()) != MAP_RELEASED)
			return false;
		for (unsigned w = 0; w < CHUNK_WORDS; w++)
			if (pc->alloc[w] != 0 || pc->ready[w] != 0)
				return false;
	}
	return true;
}

/* Show the chunks of page p to pa_find again where none of their pages
 * is still in flight. pre: mheap.lock. */
static void cp_unhide(size_t p)
{
	size_t c0, c1, q0, q1;
	cp_chunks(p, &c0, &c1);
	for (size_t c = c0; c < c1; c++) {
		cp_pages(c, c + 1, &q0, &q1);
		bool flying = false;
		for (size_t q = q0; q < q1; q++)
			flying |= mheap_.pages.pgstate[q] == CP_INFLIGHT;
		if (!flying)
			pa_hide_chunk(&mheap_.pages, c, false);
	}
}

/* Give back the pages of chunk records cp_idle accepts. pre: no mm lock
 * held. */
static void trim_chunk_records(void)
{
	size_t cursor = 0, ps = sys_config.page_size;
	if (mheap_.pages.pgstate == NULL)
		return;
	for (;;) {
		size_t batch[16];
		unsigned n = 0;
		lock_heap();
		size_t np = mheap_.m_chunks.committed / ps;
		for (; cursor < np && n < 16; cursor++) {
			if (!cp_idle(cursor))
				continue;
			/* Nobody may take its chunks' pages while it goes:
			 * they look full to pa_find. */
			size_t c0, c1;
			cp_chunks(cursor, &c0, &c1);
			for (size_t c = c0; c < c1; c++)
				pa_hide_chunk(&mheap_.pages, c, true);
			mheap_.pages.pgstate[cursor] = CP_INFLIGHT;
			mheap_.meta_sys -= ps;
			batch[n++] = cursor;
		}
		unlock_heap();
		if (n == 0)
			return;
		for (unsigned i = 0; i < n; i++)
			sys_config.release_zero(cp_addr(batch[i]), ps);
		lock_heap();
		for (unsigned i = 0; i < n; i++)
			mheap_.pages.pgstate[batch[i]] = CP_RELEASED;
		for (unsigned i = 0; i < n; i++)
			cp_unhide(batch[i]);
		unlock_heap();
	}
}

/* Chunk records go back only through release_zero, and only with sys
 * pages of up to 64 KiB: a 2 MiB page holds the records of 15,000
 * chunks, and the state bytes would cost a commit unit themselves.
 * pre: mheap_init, the region laid out. */
void mheap_maps_init(void)
{
	if (sys_config.release_zero != NULL && sys_config.page_size <= ((size_t)64 << 10))
		mheap_.pages.pgstate = (uint8_t *)mheap_.m_chunkpg.base;
}

/* Chunks [first, end) are being grown: their map units are there (the
 * growth just committed their words). pre: mheap.lock. */
void mheap_maps_grow(size_t first, size_t end)
{
	MM_HELD_HEAP();
	for (size_t c = first; c < end; c++)
		if (c % unit_chunks() == 0)
			*unit_state(c / unit_chunks()) = MAP_READY;
}

/* Make the map words of the grown chunks of pages [pg, pg+n) Ready again
 * where trim gave them back, every word "no span". Returns 0, or -1 if the
 * port refused to commit (the unit stays released or half; nothing else
 * changes). pre: mheap.lock; [pg, pg+n) inside the grown arena. */
int mheap_maps_ensure(size_t pg, size_t n)
{
	MM_HELD_HEAP();
	if (n == 0 || sys_config.release_zero == NULL)
		return 0;
	size_t per = unit_chunks() * CHUNK_PAGES;
	for (size_t u = pg / per; u <= (pg + n - 1) / per; u++) {
		uint8_t *st = unit_state(u);
		if (*st == MAP_READY)
			continue;
		/* in flight: its pages are marked allocated, nobody takes them */
		MM_ASSERT(*st == MAP_RELEASED || *st == MAP_HALF);
		size_t first, end;
		unit_range(u, &first, &end);
		if (cp_ensure(first, end) != 0)
			return -1;
		st = unit_state(u); /* the same byte, on a page that is there */
		void *sp = unit_words(&mheap_.m_spans, u), *pd = unit_words(&mheap_.m_pagedesc, u);
		if (*st == MAP_RELEASED) {
			if (sys_commit(sp, unit_bytes()) != 0)
				return -1;
			mheap_.meta_sys += unit_bytes();
			*st = MAP_HALF;
		}
		if (sys_commit(pd, unit_bytes()) != 0)
			return -1;
		mheap_.meta_sys += unit_bytes();
		if (!sys_config.commit_zeroed)
			__builtin_memset(pd, 0, unit_bytes());
		for (size_t p = first * CHUNK_PAGES; p < end * CHUNK_PAGES; p++)
			mm_store_release(&mheap_.spans[p], &mspan_none); /* as mheap_grow */
		*st = MAP_READY;
	}
	return 0;
}

/* Unit u can go: every page of its grown chunks free, nothing in flight. */
static bool unit_idle(size_t u)
{
	if (*unit_state(u) != MAP_READY)
		return false;
	size_t first, end;
	unit_range(u, &first, &end);
	for (size_t c = first; c < end; c++)
		for (unsigned w = 0; w < CHUNK_WORDS; w++)
			if (mheap_.pages.chunks[c].alloc[w] != 0)
				return false;
	return true;
}

/* Mark (or unmark) every page of unit u's grown chunks allocated, quietly:
 * while its words are released nobody may make a span there. */
static void unit_hold(size_t u, bool hold)
{
	size_t first, end;
	unit_range(u, &first, &end);
	pa_set_alloc_quiet(&mheap_.pages, first * CHUNK_PAGES, (end - first) * CHUNK_PAGES, hold);
}

/* Give back the map words of every unit whose chunks hold no span (trim).
 * pre: no mm lock held. */
void mheap_trim_maps(void)
{
	MM_UNLOCKED();
	if (!mheap_inited() || sys_config.release_zero == NULL)
		return;
	size_t cursor = 0;
	for (;;) {
		size_t batch[16];
		unsigned n = 0;
		lock_heap();
		size_t nunits = (mheap_.pages.nchunks + unit_chunks() - 1) / unit_chunks();
		for (; cursor < nunits && n < 16; cursor++)
			if (unit_idle(cursor)) {
				*unit_state(cursor) = MAP_INFLIGHT;
				unit_hold(cursor, true);
				mheap_.meta_sys -= 2 * unit_bytes();
				batch[n++] = cursor;
			}
		unlock_heap();
		if (n == 0)
			break;
		for (unsigned i = 0; i < n; i++) {
			sys_config.release_zero(unit_words(&mheap_.m_spans, batch[i]),
			                        unit_bytes());
			sys_config.release_zero(unit_words(&mheap_.m_pagedesc, batch[i]),
			                        unit_bytes());
		}
		lock_heap();
		for (unsigned i = 0; i < n; i++) {
			unit_hold(batch[i], false);
			*unit_state(batch[i]) = MAP_RELEASED;
		}
		unlock_heap();
	}
	trim_chunk_records();
}

/* Whether the map words of the grown chunk c are Ready. pre: mheap.lock. */
bool mheap_maps_ready(size_t c) { return *unit_state(c / unit_chunks()) == MAP_READY; }

/* The validator's part (mheap_valid, MM_DEBUG=2): a unit not Ready holds
 * no allocated page and reads as zero (the span map too unless half
 * committed); a Ready one maps every page to a span record or the
 * sentinel; a page of chunk records given back covers grown chunks of
 * given-back units, all zero. Returns the bytes of maps and records
 * given back, or -1 if inconsistent.
 * pre: mheap.lock, nothing allocating or trimming. */
long mheap_maps_check(void)
{
	size_t nunits = (mheap_.pages.nchunks + unit_chunks() - 1) / unit_chunks();
	long released = 0;
	for (size_t u = 0; u < nunits; u++) {
		uint8_t st = *unit_state(u);
		size_t first, end;
		unit_range(u, &first, &end);
		if (st != MAP_READY && st != MAP_RELEASED && st != MAP_HALF)
			return -1;
		for (size_t p = first * CHUNK_PAGES; p < end * CHUNK_PAGES; p++) {
			struct mspan *s = mm_load_relaxed(&mheap_.spans[p]);
			uint64_t d = mm_load_relaxed(&mheap_.pagedesc[p]);
			if (st == MAP_READY ? s == NULL
			                    : pa_is_alloc(&mheap_.pages, p) || d != 0 ||
			                              (st == MAP_RELEASED && s != NULL))
				return -1;
		}
		released += st == MAP_RELEASED ? 2 * (long)unit_bytes()
		            : st == MAP_HALF   ? (long)unit_bytes()
		                               : 0;
	}
	/* pages of chunk records given back: whole grown chunks, given-back
	 * units, all free and released (they read as zero) */
	size_t np = mheap_.pages.pgstate ? mheap_.m_chunks.committed / sys_config.page_size : 0;
	for (size_t p = 0; p < np; p++) {
		uint8_t st = mheap_.pages.pgstate[p];
		if (st == CP_READY)
			continue;
		size_t c0, c1;
		cp_chunks(p, &c0, &c1);
		if (st != CP_RELEASED || c1 > mheap_.pages.nchunks)
			return -1;
		for (size_t c = c0; c < c1; c++) {
			const struct pchunk *pc = &mheap_.pages.chunks[c];
			if (*unit_state(c / unit_chunks()) != MAP_RELEASED)
				return -1;
			for (unsigned w = 0; w < CHUNK_WORDS; w++)
				if (pc->alloc[w] != 0 || pc->ready[w] != 0)
					return -1;
		}
		released += (long)sys_config.page_size;
	}
	return released;
}
