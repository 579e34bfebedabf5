/*
 * mfixalloc.c: the allocator's allocator. See malloc.c for the overview.
 *
 * mspan records (with their live bytes and bitmaps) cannot come from
 * kmalloc itself; like Go's fixalloc they are fixed-size records carved
 * from a metadata area by a bump pointer and recycled through a free list.
 *
 * The metadata area (struct metaarr m_fix) is reserved address space,
 * carved in FIX_BLOCK (16 KiB) blocks, each serving one fixalloc. A block
 * is committed when first carved and counted in mheap.meta_sys; a count
 * per block (m_fixblk) says how many of its records are handed out.
 *
 * Go never gives fixalloc memory back. We do, on kmalloc_trim only
 * (fixalloc_trim): a block with no live record (a fixalloc's current
 * bump block too: it then takes a fresh one) has its free records
 * unlinked from its free list and its memory released (FB_READY ->
 * FB_RELEASING -> FB_INFLIGHT -> FB_RELEASED, the release itself
 * outside mheap.lock as in mscavenge.c). A refill takes a
 * released block first and commits it again; if that fails the record
 * allocation returns NULL. No record is handed out from a block that is
 * not FB_READY, because only FB_READY blocks have records on a free list
 * or a bump pointer into them.
 *
 * What releasing costs: a stale page->span entry (a kfree of a pointer in
 * a free page) may lead to a dead mspan record. Trim clears the entries
 * that lead into blocks it releases, so such a kfree after the trim finds
 * no span and reports "invalid free" (not "double free": the record that
 * told the two apart is gone). A bad kfree racing with the trim itself,
 * or two racing kfrees of one large object, may still read a released
 * record: the host then reads zeros (SPAN_DEAD, a clean fault), the
 * kernel takes a page fault and panics naming the address. Entries of
 * chunks whose map words trim gave back (mmeta.c) are not there to
 * clear: they read as NULL already.
 *
 * Everything here runs under mheap.lock, except the sys_release calls.
 */
#include "internal.h"


/* Commit [base, base+bytes) of m if not yet Ready. pre: mheap.lock.
 * Returns 0, or -1 if the port refused (nothing changes then). */
int meta_ensure(struct metaarr *m, size_t bytes)
{
	MM_HELD_HEAP();
	size_t ps = sys_config.page_size;
	if (bytes <= m->committed)
		return 0;
	if (bytes > m->size)
		return -1;
	size_t want = (bytes + ps - 1) & ~(ps - 1);
	if (want > m->size)
		want = m->size;
	if (sys_commit((void *)(m->base + m->committed), want - m->committed) != 0)
		return -1;
	if (!sys_config.commit_zeroed)
		__builtin_memset((void *)(m->base + m->committed), 0, want - m->committed);
	mheap_.meta_sys += want - m->committed;
	m->committed = want;
	return 0;
}

/* `bytes` of zeroed metadata from m by bump allocation at an `align`
 * boundary (a power of two, at least 64), never freed (mcaches and
 * transfer-cache entries), or NULL when m is exhausted or cannot be
 * committed. pre: mheap.lock. */
void *meta_alloc_aligned(struct metaarr *m, size_t bytes, size_t align)
{
	bytes = (bytes + 63) & ~(size_t)63;
	size_t at = (m->used + align - 1) & ~(align - 1);
	if (at > m->size || bytes > m->size - at || meta_ensure(m, at + bytes) != 0)
		return NULL;
	m->used = at + bytes;
	return (void *)(m->base + at);
}

void *meta_alloc(struct metaarr *m, size_t bytes) { return meta_alloc_aligned(m, bytes, 64); }

void fixalloc_init(struct fixalloc *f, size_t size, bool zero)
{
	/* Whole cache lines, so every record starts on one (blocks are
	 * aligned): page descriptors name span records in 64-byte units
	 * (internal.h), and the fields kmalloc's fast path reads sit on a
	 * record's first line (mspan.h); 16-byte records straddled two lines
	 * three times in four. */
	f->size = (size + 63) & ~(size_t)63;
	MM_CHECK(f->size <= FIX_BLOCK, "fixalloc: record larger than a block", 0);
	f->zero = zero;
	f->list = f->tail = NULL;
	f->chunk = f->end = 0;
	f->inuse = 0;
}

static inline size_t fix_blkno(uintptr_t p)
{
	return (p - mheap_.m_fix.base) / FIX_BLOCK;
}
static inline struct fixblk *fix_blk(size_t b)
{
	return (struct fixblk *)mheap_.m_fixblk.base + b;
}

/* Point f's bump pointer at a fresh block: a released one committed again,
 * else the next unused one. Returns 0, or -1 (nothing changes). pre: lock. */
static int fixalloc_refill(struct fixalloc *f)
{
	struct metaarr *m = &mheap_.m_fix;
	uintptr_t blk;
	if (mheap_.fix_released != 0) {
		size_t b = mheap_.fix_released - 1;
		struct fixblk *fb = fix_blk(b);
		blk = m->base + b * FIX_BLOCK;
		if (sys_commit((void *)blk, FIX_BLOCK) != 0)
			return -1;
		if (!sys_config.commit_zeroed)
			__builtin_memset((void *)blk, 0, FIX_BLOCK);
		mheap_.meta_sys += FIX_BLOCK;
		mheap_.fix_released = fb->next;
		fb->next = 0;
		fb->state = FB_READY;
	} else {
		size_t b = m->used / FIX_BLOCK;
		if (m->used + FIX_BLOCK > m->size ||
		    meta_ensure(&mheap_.m_fixblk, (b + 1) * sizeof(struct fixblk)) != 0 ||
		    meta_ensure(m, m->used + FIX_BLOCK) != 0)
			return -1;
		blk = m->base + m->used;
		m->used += FIX_BLOCK;
	}
	/* the tail of the previous block is abandoned: < 1 record */
	f->chunk = blk;
	f->end = blk + FIX_BLOCK;
	return 0;
}

/* A record of f->size bytes (zeroed if f->zero), or NULL when the metadata
 * area is exhausted or cannot be committed. pre: mheap.lock. */
void *fixalloc_alloc(struct fixalloc *f)
{
	MM_HELD_HEAP();
	void *p;
	if (f->list != NULL) {
		p = f->list;
		f->list = *(void **)p;
		if (f->list == NULL)
			f->tail = NULL;
		if (f->zero)
			__builtin_memset(p, 0, f->size);
	} else {
		if (f->chunk + f->size > f->end && fixalloc_refill(f) != 0)
			return NULL;
		p = (void *)f->chunk; /* fresh committed memory reads as zero */
		f->chunk += f->size;
	}
	fix_blk(fix_blkno((uintptr_t)p))->live++;
	f->inuse++;
	return p;
}

/* pre: mheap.lock; p came from fixalloc_alloc(f). */
void fixalloc_free(struct fixalloc *f, void *p)
{
	MM_HELD_HEAP();
	struct fixblk *fb = fix_blk(fix_blkno((uintptr_t)p));
	MM_CHECK(fb->state == FB_READY && fb->live > 0, "fixalloc: free of a record not handed out", p);
	fb->live--;
	*(void **)p = NULL;
	if (f->tail != NULL)
		*(void **)f->tail = p;
	else
		f->list = p;
	f->tail = p;
	f->inuse--;
}

static struct fixalloc *fix_all(unsigned i)
{
	return i < 6 ? &mheap_.spanalloc[i] : &mheap_.greyalloc;
}
#define FIX_NALLOCS 7

/* True if block b holds no live record and no fixalloc carves from it. */
static bool fix_blk_idle(size_t b)
{
	if (fix_blk(b)->state != FB_READY || fix_blk(b)->live != 0)
		return false;
	for (unsigned i = 0; i < FIX_NALLOCS; i++) {
		struct fixalloc *f = fix_all(i);
		if (f->end != 0 && fix_blkno(f->end - 1) == b)
			return false;
	}
	return true;
}

/* Unlink the free records of idle blocks, keeping the lists' FIFO order;
 * those blocks then have no way back in but a refill. The walk is
 * O(free records): trim is explicit and rare. A bump block none of whose
 * records is out goes too: its fixalloc takes a fresh block when it next
 * needs one. pre: mheap.lock. */
static void unlink_idle_records(void)
{
	for (unsigned i = 0; i < FIX_NALLOCS; i++) {
		struct fixalloc *f = fix_all(i);
		if (f->end != 0 && fix_blk(fix_blkno(f->end - 1))->live == 0)
			f->chunk = f->end = 0;
	}
	for (unsigned i = 0; i < FIX_NALLOCS; i++) {
		struct fixalloc *f = fix_all(i);
		void *keep = NULL, *tail = NULL;
		for (void *r = f->list; r != NULL;) {
			void *next = *(void **)r;
			if (!fix_blk_idle(fix_blkno((uintptr_t)r))) {
				*(void **)r = NULL;
				if (tail != NULL)
					*(void **)tail = r;
				else
					keep = r;
				tail = r;
			}
			r = next;
		}
		f->list = keep;
		f->tail = tail;
	}
}

/* Stale page->span entries of free pages may point at dead mspan records
 * in the blocks being released; point them at the dead sentinel, so a
 * later bad kfree there finds no span ("invalid free") instead of reading
 * released memory. An idle block holds no live record, so every such
 * entry is stale. O(arena pages), on trim only. pre: mheap.lock. */
static void forget_releasing_records(void)
{
	size_t npg = mheap_.arena_used_bytes >> PAGE_SHIFT;
	uintptr_t lo = mheap_.m_fix.base, hi = lo + mheap_.m_fix.used;
	for (size_t pg = 0; pg < npg; pg++) {
		if (pg % CHUNK_PAGES == 0 && !mheap_maps_ready(pg / CHUNK_PAGES)) {
			pg += CHUNK_PAGES - 1; /* given back (mmeta.c): no entries */
			continue;
		}
		uintptr_t sp = (uintptr_t)mheap_.spans[pg];
		if (sp >= lo && sp < hi && fix_blk(fix_blkno(sp))->state == FB_RELEASING)
			mm_store_release(&mheap_.spans[pg], &mspan_none); /* as every entry store */
	}
}

/* Release the RELEASING blocks below nblk in batches: taken under the
 * lock (INFLIGHT: a concurrent trim must not take them too), released
 * outside it, then made available to refills. pre: no mm lock held. */
static void release_blocks(size_t nblk)
{
	size_t cursor = 0;
	for (;;) {
		size_t batch[16];
		unsigned n = 0;
		lock_heap();
		for (; cursor < nblk && n < 16; cursor++)
			if (fix_blk(cursor)->state == FB_RELEASING) {
				fix_blk(cursor)->state = FB_INFLIGHT;
				batch[n++] = cursor;
				mheap_.meta_sys -= FIX_BLOCK;
			}
		unlock_heap();
		if (n == 0)
			return;
		for (unsigned i = 0; i < n; i++)
			sys_release((void *)(mheap_.m_fix.base + batch[i] * FIX_BLOCK), FIX_BLOCK);
		lock_heap();
		for (unsigned i = 0; i < n; i++) {
			struct fixblk *fb = fix_blk(batch[i]);
			fb->state = FB_RELEASED;
			fb->next = mheap_.fix_released;
			mheap_.fix_released = (uint32_t)(batch[i] + 1);
		}
		unlock_heap();
	}
}

/* Release every idle block of the fixalloc area. pre: no mm lock held. */
void fixalloc_trim(void)
{
	MM_UNLOCKED();
	/* a port whose commit unit is larger than a block cannot release one */
	if (!mheap_inited() || sys_config.page_size > FIX_BLOCK)
		return;
	lock_heap();
	size_t nblk = mheap_.m_fix.used / FIX_BLOCK, nidle = 0;
	unlink_idle_records();
	for (size_t b = 0; b < nblk; b++)
		if (fix_blk_idle(b)) {
			fix_blk(b)->state = FB_RELEASING;
			nidle++;
		}
	if (nidle != 0)
		forget_releasing_records();
	unlock_heap();
	release_blocks(nblk);
}
