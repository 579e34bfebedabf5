/*
 * mfixalloc.c: the allocator's allocator. See malloc.c for the overview.
 *
 * mspan records, their bitmaps and mcache records cannot come from
 * kmalloc itself; like Go's fixalloc they are fixed-size records carved
 * from a metadata area by a bump pointer, recycled through a free list,
 * and never returned to the port. That last point is a safety property,
 * not laziness: a kfree racing with a span's death may still read the
 * span's record through a stale page->span entry, and must find an mspan
 * there (whose state and range then tell it the truth).
 *
 * The metadata area (struct metaarr) is reserved address space that is
 * committed on demand, 16 KiB at a time, and counted in mheap.meta_sys.
 * Everything here runs under mheap.lock.
 */
#include "internal.h"

#define FIX_BLOCK ((size_t)16 << 10)   /* records carved per refill */

/* Commit [base, base+bytes) of m if not yet Ready. pre: mheap.lock.
 * Returns 0, or -1 if the port refused (nothing changes then). */
int meta_ensure(struct metaarr *m, size_t bytes)
{
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

void fixalloc_init(struct fixalloc *f, size_t size, bool zero)
{
	f->size = (size + 15) & ~(size_t)15;
	f->zero = zero;
	f->list = f->tail = NULL;
	f->chunk = f->end = 0;
	f->inuse = 0;
}

/* A record of f->size bytes (zeroed if f->zero), or NULL when the metadata
 * area is exhausted or cannot be committed. pre: mheap.lock. */
void *fixalloc_alloc(struct fixalloc *f)
{
	void *p;
	if (f->list != NULL) {
		p = f->list;
		f->list = *(void **)p;
		if (f->list == NULL)
			f->tail = NULL;
		if (f->zero)
			__builtin_memset(p, 0, f->size);
	} else {
		if (f->chunk + f->size > f->end) {
			struct metaarr *m = &mheap_.m_fix;
			size_t blk = f->size > FIX_BLOCK ? f->size : FIX_BLOCK;
			if (m->used + blk > m->size || meta_ensure(m, m->used + blk) != 0)
				return NULL;
			/* the tail of the previous block is abandoned: < 1 record */
			f->chunk = m->base + m->used;
			f->end = f->chunk + blk;
			m->used += blk;
		}
		p = (void *)f->chunk; /* fresh committed memory reads as zero */
		f->chunk += f->size;
	}
	f->inuse++;
	return p;
}

/* pre: mheap.lock; p came from fixalloc_alloc(f). */
void fixalloc_free(struct fixalloc *f, void *p)
{
	*(void **)p = NULL;
	if (f->tail != NULL)
		*(void **)f->tail = p;
	else
		f->list = p;
	f->tail = p;
	f->inuse--;
}
