/*
 * mlarge.c: large objects (more than 64 KiB): one span each, from a
 * per-CPU cache of freed large spans or from the mheap; their free, and
 * their growth in place. See malloc.c for the overview.
 *
 * The large cache. Without it every large object takes mheap.lock twice
 * (allocation and free), and each time the page allocator recomputes the
 * summary of a 512-page chunk. Go avoids this for small page counts with
 * a per-P page cache (mpagecache.go: a 64-page window claimed at once).
 * We cache whole freed spans instead, per CPU, in one LIFO bin per page
 * count: up to LARGE_CACHE_N spans of at most LARGE_CACHE_MAXPAGES pages
 * and LARGE_CACHE_BYTES in all. A free pushes the span on its bin (its
 * pages stay committed, its record and its page->span entries stay); a
 * free that does not fit goes to the mheap. An allocation takes a cached
 * span of the same size or up to a quarter larger, the smallest first.
 * Why not Go's page cache: it only speeds up allocation (frees still take
 * the lock), and a freed span already is the right run of pages. Sizes a
 * program stopped asking for stay cached (within the bounds) until the
 * cache is drained with the rest of the CPU's caches (mcache_drain: trim,
 * flush, out of memory).
 *
 * Double frees: a large object's span state goes INUSE -> FREEING by CAS
 * (one winner among racing frees), then to CACHED or back to the mheap
 * (DEAD). A later kfree of its base finds a state other than INUSE and
 * reports "double free" (malloc.c: bad_pointer), wherever the span is.
 *
 * Growth (krealloc). A large object's span may hold more pages than the
 * object (elemsize <= npages * 8 KiB): its growth room, pages krealloc
 * took for it that ksize does not count, never written by the heap, so
 * on the host they cost no memory until the object grows into them.
 * krealloc grows the object into its room (no lock); else the span
 * takes the free pages right after it (mheap_extend_span), a quarter
 * more as room where those are free too; else the object moves to a
 * new span with 5/8 of its size more as room (GROW_ROOM_EIGHTHS; by the
 * port's page-table move from sys_config.move_min up, else by copying
 * its bytes, never the room's). So a buffer whose neighbours block it
 * moves once per 1.6x of growth, as jemalloc's and tcmalloc's size
 * classes make their buffers move only now and then, and copies about
 * 2.6 times its final size in all. A small object krealloc grows past a
 * heap page comes here as a new large one with the same room
 * (malloc.c). A freed span comes back whole. In the kernel the room is
 * committed with the span (frames for up to 5/8 of a grown object; Linux's
 * kmalloc_large rounds to a power-of-two page order, up to 1/1).
 */
#include "internal.h"

/* sys_config.move_min when the port leaves it 0 (sys.h). */
#define MOVE_MIN_DEFAULT ((size_t)256 << 10)

/* Growth room: a large object krealloc has to move gets a span of
 * GROW_ROOM_EIGHTHS eighths more pages than it needs. Chosen on the
 * regrow workload (8 buffers grown round-robin by 1/8 steps to 1 MiB,
 * each step's bytes written; 2026-12-07, host shim, copies below 8 MiB):
 * before (no room, pages moved from 256 KiB) 0.26 s, peak RSS 15.2 MiB,
 * 30,400 minor faults; with room 1/4, 3/8, 1/2, 5/8, 3/4, 1: 45, 31, 30,
 * 28, 25, 28 ms and 16.2, 15.5, 16.8, 14.6, 14.3, 15.9 MiB (how the
 * buffers' spans pack decides the peak), 3,300 faults at 5/8 (mimalloc:
 * 52 ms, 17.8 MiB, 4,200). 5/8 rather than 3/4: 16 buffers to 700 KiB
 * peak at 17.4 against 20.8 MiB, 8 to 3 MiB at 38.0 against 42.8. */
#define GROW_ROOM_EIGHTHS 5

/* A cached span of npages..npages+npages/4 pages (the smallest there
 * is), or NULL. pre: interrupts off; c is this CPU's mcache. */
static struct mspan *cache_take(struct mcache *c, size_t npages)
{
	if (npages > LARGE_CACHE_MAXPAGES || c->nlarge == 0)
		return NULL;
	size_t hi = npages + npages / 4;
	if (hi > LARGE_CACHE_MAXPAGES)
		hi = LARGE_CACHE_MAXPAGES;
	for (size_t n = npages; n <= hi; n++) {
		struct mspan *s = c->lbin[n];
		if (s == NULL)
			continue;
		c->lbin[n] = s->next;
		s->next = NULL;
		c->nlarge--;
		STORE(c->large_cached_bytes, c->large_cached_bytes - n * PAGE_SIZE);
		return s;
	}
	return NULL;
}

/* Cache s if there is room: returns true, or false when s must go to the
 * mheap. pre: interrupts off; c is this CPU's mcache; s is FREEING. */
static bool cache_put(struct mcache *c, struct mspan *s)
{
	size_t bytes = s->npages * PAGE_SIZE;
	if (s->npages > LARGE_CACHE_MAXPAGES || c->nlarge == LARGE_CACHE_N ||
	    c->large_cached_bytes + bytes > LARGE_CACHE_BYTES)
		return false;
	span_set_state(s, SPAN_CACHED);
	s->next = c->lbin[s->npages];
	c->lbin[s->npages] = s;
	c->nlarge++;
	STORE(c->large_cached_bytes, c->large_cached_bytes + bytes);
	return true;
}

void mlarge_drain(struct mcache *c)
{
	for (size_t n = 1; c->nlarge != 0 && n <= LARGE_CACHE_MAXPAGES; n++) {
		struct mspan *s;
		while ((s = c->lbin[n]) != NULL) {
			c->lbin[n] = s->next;
			s->next = NULL;
			c->nlarge--;
			STORE(c->large_cached_bytes, c->large_cached_bytes - n * PAGE_SIZE);
			mheap_free_span(s, false);
		}
	}
}

/* Count a large allocation or free on this CPU. pre: interrupts off; c
 * is this CPU's mcache. */
static void count_alloc(struct mcache *c, size_t bytes)
{
	COUNT(c->large_allocs);
	STORE(c->large_alloc_bytes, c->large_alloc_bytes + bytes);
}

static void count_free(struct mcache *c, size_t bytes)
{
	COUNT(c->large_frees);
	STORE(c->large_free_bytes, c->large_free_bytes + bytes);
}

/* The same from anywhere, and counts of bytes alone (a krealloc in place
 * changes only the bytes). */
static void count_large_n(unsigned allocs, size_t abytes, unsigned frees, size_t fbytes)
{
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_mine();
	if (c != NULL) {
		STORE(c->large_allocs, c->large_allocs + allocs);
		STORE(c->large_alloc_bytes, c->large_alloc_bytes + abytes);
		STORE(c->large_frees, c->large_frees + frees);
		STORE(c->large_free_bytes, c->large_free_bytes + fbytes);
	}
	sys_irq_restore(f);
}

/* The object of a large span: its first npages pages; the rest of the
 * span is its growth room. pre: the caller owns s. */
static void large_set_size(struct mspan *s, size_t npages)
{
	s->elemsize = npages * PAGE_SIZE;
	s->limit = s->base + s->elemsize;
}

/* The class fields of a fresh large span: one object of its first
 * npages pages. nbytes and divMul 0 make mspan_slot_of fail; kfree's
 * fast path never reaches a large span (its pages have no page
 * descriptor). */
static void large_init(struct mspan *s, size_t npages)
{
	large_set_size(s, npages);
	s->nelems = 1;
	s->allocCount = 1;
	s->freeindex = 1;
	s->divMul = 0;
	s->div_exact = 0;
	s->nbytes = 0;
	s->allocCache = 0;
}

/* A span of at least span_pages from c's bins, relabelled span class spc
 * and sized for an object of npages (what it has beyond span_pages is the
 * object's, as a fresh span's would be), not yet published: the caller
 * keeps its base where the leak scan finds it first (alloc_pages); NULL
 * if the bins have none. pre: interrupts off, c this CPU's. */
static inline __attribute__((always_inline)) struct mspan *
cached_span(struct mcache *c, size_t npages, size_t span_pages, unsigned spc)
{
	struct mspan *s = cache_take(c, span_pages);
	if (s == NULL)
		return NULL;
	s->spanclass = (uint8_t)spc; /* a cached span is ours to relabel */
	large_set_size(s, npages == span_pages ? s->npages : npages);
	s->needzero = 1;
	count_alloc(c, s->npages * PAGE_SIZE);
	return s;
}

/* A large object of npages pages in a span of span_pages >= npages (the
 * rest is its growth room), aligned to align (a power of two), or NULL
 * (the caller reports it). pre: the heap is ready; npages fits in the
 * arena. */
static inline __attribute__((always_inline)) void *
alloc_pages(size_t npages, size_t span_pages, size_t align, unsigned flags, uintptr_t site)
{
	size_t align_pages = align > PAGE_SIZE ? align >> PAGE_SHIFT : 1;

	/* From span_publish on the object is live, and until it is returned
	 * only this stack slot points to it (s is its record, outside the
	 * heap): a leak scan that stops this CPU meanwhile (at a safe point
	 * of the calls below, or an interrupt) must find it there. */
	void *volatile obj = NULL;
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_this();
	struct mspan *s = NULL;
	bool cached = false;
	unsigned spc = spanclass_make(0, (flags / KM_NOSCAN) & 1);
	if (c != NULL && align_pages == 1 &&
	    (s = cached_span(c, npages, span_pages, spc)) != NULL) {
		obj = (void *)s->base;
		span_publish(s);
	}
	sys_irq_restore(f);
	if (s != NULL) {
		cached = true;
	} else {
		s = mheap_alloc_span(span_pages, spc, align_pages);
		if (s == NULL) {
			mm_drain_all(true);
			s = mheap_alloc_span(span_pages, spc, align_pages);
		}
		if (s == NULL)
			return NULL;
		large_init(s, npages);
		obj = (void *)s->base;
		span_publish(s);
		count_large_n(1, s->npages * PAGE_SIZE, 0, 0);
	}
	if ((flags & KM_ZERO) && s->needzero)
		__builtin_memset((void *)s->base, 0, s->elemsize);
	if (MM_UNLIKELY(mheap_.track_sites))
		mm_record_site(obj, site);
	/* A span from this CPU's bins changed nothing the scavenger paces
	 * (the heap's pages, the shared caches), and below the background
	 * threshold a step check is a clock read: half the cost of a cache
	 * hit (loguni, 1 in 13 allocations large). Like the small fast path,
	 * it leaves the step to the next slow path. */
	if (!cached)
		mheap_scavenge_paced();
	/* The slot is dead once we return, but a later frame's unwritten
	 * local may lie over it, and a scan reads live frames whole: a copy
	 * left there would keep the object alive after the user dropped it. */
	void *r = obj;
	obj = NULL;
	return r;
}

/* The common large allocation: a span from this CPU's bins, nothing to
 * zero, no site to record. No call, no stack slot for the leak scan (the
 * object goes straight back to the caller, as from class_alloc_fast), no
 * scavenger step (see alloc_pages). A 64 KiB malloc+free (callgrind,
 * loop included) took 228 instructions with this case on alloc_pages'
 * path and 193 with it here; 183 once the free side below saves no
 * registers. NULL: take that path. */
static inline __attribute__((always_inline)) void *alloc_cached(size_t npages, unsigned flags)
{
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_fast(); /* NULL: alloc_pages sets it */
	struct mspan *s = NULL;
	if (c != NULL)
		s = cached_span(c, npages, npages, spanclass_make(0, (flags / KM_NOSCAN) & 1));
	void *v = NULL;
	if (s != NULL) {
		v = (void *)s->base;
		span_publish(s);
	}
	sys_irq_restore(f);
	return v;
}

static MM_OUTLINE void *alloc_general(size_t size, size_t align, unsigned flags, uintptr_t site);

/* A large object of `size` bytes at an `align`-aligned address (align is
 * a power of two; <= 8192 needs nothing extra), or NULL. With sites
 * tracked the fast slot stays empty (mcache_this), so alloc_cached finds
 * no mcache and the site is recorded by alloc_general; reading
 * mheap_.track_sites here would race with mheap_init on another thread's
 * first allocation. */
void *mlarge_alloc(size_t size, size_t align, unsigned flags, uintptr_t site)
{
	if (MM_LIKELY(align <= PAGE_SIZE && size - 1 < LARGE_CACHE_MAXPAGES * PAGE_SIZE &&
	              !(flags & KM_ZERO))) {
		void *v = alloc_cached((size + PAGE_SIZE - 1) >> PAGE_SHIFT, flags);
		if (v != NULL)
			return v;
	}
	return alloc_general(size, align, flags, site);
}

static MM_OUTLINE void *alloc_general(size_t size, size_t align, unsigned flags, uintptr_t site)
{
	if (mheap_ready() != 0)
		return mm_nomem();
	size_t arena = mheap_.arena_end - mheap_.arena_start;
	if (size > arena || align > arena)
		return mm_nomem();
	size_t npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
	if (npages == 0)
		npages = 1;
	void *v = alloc_pages(npages, npages, align, flags, site);
	return v != NULL ? v : mm_nomem();
}

/* Out of line, so that a free into the cache saves no registers for
 * them. pre (mcache_outlined): interrupts off. */
static MM_OUTLINE void free_to_heap(struct mspan *s) { mheap_free_span(s, false); }
static MM_OUTLINE struct mcache *mcache_outlined(void) { return mcache_this(); }

/* kfree of the large object p of span s; into this CPU's large cache if
 * `cache` and it fits. pre: span_is_large(s). */
static inline __attribute__((always_inline)) void free_large(struct mspan *s, uintptr_t p,
                                                             bool cache)
{
	uint32_t w = span_state_word(s);
	if (p != s->base || (w & SPAN_STATE_MASK) != SPAN_INUSE)
		sys_fault((w & SPAN_STATE_MASK) != SPAN_INUSE && p == s->base ? "double free"
		                                                              : "invalid free",
		          (void *)p);
	uint32_t want = (w & ~SPAN_STATE_MASK) | SPAN_FREEING;
	MM_TEST_HOOK(MM_HOOK_KFREE_LARGE, (void *)p);
	/* acq_rel: of two racing kfrees exactly one wins, and sees the span whole */
	if (!mm_cas_acq_rel(&s->state, &w, want))
		sys_fault("double free", (void *)p);
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_fast();
	if (MM_UNLIKELY(c == NULL))
		c = mcache_outlined();
	bool cached = false;
	if (c != NULL) {
		count_free(c, s->npages * PAGE_SIZE);
		cached = cache && cache_put(c, s);
	}
	sys_irq_restore(f);
	if (!cached)
		free_to_heap(s);
}

/* Out of line: kfree_slow jumps here and saves no registers for it. */
MM_OUTLINE void mlarge_free(struct mspan *s, uintptr_t p) { free_large(s, p, true); }

/* Pages for an object of npages that is growing and has to move:
 * GROW_ROOM_EIGHTHS eighths more as room, within the arena. */
static size_t grown_span_pages(size_t npages)
{
	size_t arena_pages = (mheap_.arena_end - mheap_.arena_start) >> PAGE_SHIFT;
	size_t want = npages + npages * GROW_ROOM_EIGHTHS / 8;
	return want <= arena_pages ? want : npages;
}

/* A large object of size bytes with room (the room only if memory
 * allows), or NULL after mm_nomem. pre: the heap is ready; size fits in
 * the arena. */
static void *grown(size_t size, unsigned flags, uintptr_t site)
{
	size_t npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT, span_pages = grown_span_pages(npages);
	void *v = alloc_pages(npages, span_pages, 0, flags, site);
	if (v == NULL && span_pages != npages)
		v = alloc_pages(npages, npages, 0, flags, site);
	return v != NULL ? v : mm_nomem();
}

void *mm_alloc_grown(size_t size, unsigned flags, uintptr_t site)
{
	if (mheap_ready() != 0 || size > mheap_.arena_end - mheap_.arena_start)
		return mm_nomem();
	return grown(size, flags, site);
}

/* krealloc of the large object p (span s) to size bytes: in its room, or
 * in place if the following pages are free; else moved (by pages or
 * bytes) to a span with room. Returns the object, or NULL with p
 * untouched. */
static MM_OUTLINE void *realloc_out(struct mspan *s, void *p, size_t size, unsigned flags,
                                    uintptr_t site);

void *mlarge_realloc(struct mspan *s, void *p, size_t size, unsigned flags, uintptr_t site)
{
	/* larger than the arena: refused before the page count, which would
	 * wrap to 0 within a page of SIZE_MAX (and then "fit") */
	if (size > mheap_.arena_end - mheap_.arena_start)
		return mm_nomem();
	size_t npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
	if (npages <= s->elemsize >> PAGE_SHIFT)
		return p;
	if (npages <= s->npages) {
		large_set_size(s, npages); /* into its room: no lock */
		return p;
	}
	return realloc_out(s, p, size, flags, site);
}

/* mlarge_realloc past the span's room, apart: krealloc, into which the
 * rest inlines, then saves 4 registers fewer a call (its own
 * instructions on the realloc workload's 164,000 calls: 7.36M -> 6.64M,
 * callgrind). */
static MM_OUTLINE void *realloc_out(struct mspan *s, void *p, size_t size, unsigned flags,
                                    uintptr_t site)
{
	size_t npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
	size_t old = s->elemsize, old_pages = s->npages;
	/* In place, with room when the pages after it are free: an object
	 * grown step by step then takes mheap.lock (an extension is ~1,060
	 * instructions in the realloc workload, callgrind: ~330 the page
	 * allocator's bitmap and summary, ~230 the page -> span words, ~145
	 * the accounting) every few steps, not at each. A quarter more;
	 * where the port's commits cost nothing until written
	 * (sys_config.commit_lazy) and nothing lies within four times its
	 * size after it, twice its size (a buffer growing alone: the realloc
	 * workload's in-place extensions fell from 13 to 5 a chain). Not
	 * more where a neighbour
	 * is near: a buffer that takes more of a hole leaves the others
	 * less, and the heap grows (8 buffers to 1.5 MiB: peak RSS 25.2 MiB
	 * with GROW_ROOM_EIGHTHS against 22.9). */
	size_t arena_pages = (mheap_.arena_end - mheap_.arena_start) >> PAGE_SHIFT;
	/* (no product wraps: npages is at most the arena's pages) */
	struct span_extend tries[] = { { 2 * npages, 4 * npages },
		                       { npages + npages / 4, 0 },
		                       { npages, 0 } };
	unsigned first = sys_config.commit_lazy ? 0 : 1;
	if (npages <= arena_pages && mheap_extend_span(s, tries + first, 3 - first) != 0) {
		large_set_size(s, npages);
		count_large_n(0, (s->npages - old_pages) * PAGE_SIZE, 0, 0);
		return p;
	}
	size_t span_pages = grown_span_pages(npages);
	size_t move_min = sys_config.move_min != 0 ? sys_config.move_min : MOVE_MIN_DEFAULT;
	/* moves hand over heap pages, not whole commit units */
	if (sys_config.move != NULL && old >= move_min && mheap_.gran == 1) {
		/* the walk before the move: p is unseen by a scan meanwhile */
		uintptr_t word = mheap_.track_sites ? mm_depot_record(site) : 0;
		struct mspan *n =
		        mheap_alloc_span(span_pages, spanclass_make(0, (flags / KM_NOSCAN) & 1), 1);
		/* s stops being in use before its pages start to go: a leak
		 * scan that stops the world mid-move (the kernel's move runs
		 * with interrupts on) must not read them, and n is not
		 * published yet, so the scan sees neither. The room moves
		 * too (pages never written cost mremap nothing), so that all
		 * of s's pages are Reserved after it. */
		uint32_t w = span_state_word(s);
		if (n != NULL) /* release: as span_set_state (the record's fields first) */
			mm_store_release(&s->state, (w & ~SPAN_STATE_MASK) | SPAN_FREEING);
		if (n != NULL && sys_config.move((void *)n->base, p, old_pages * PAGE_SIZE) == 0) {
			large_init(n, npages);
			n->needzero = 1;
			n->site1 = word;
			void *volatile obj = (void *)n->base; /* as in alloc_pages */
			span_publish(n);
			/* p's pages are Reserved now: they go back scavenged. */
			count_large_n(0, n->npages * PAGE_SIZE, 0, old_pages * PAGE_SIZE);
			mheap_free_span(s, true);
			void *r = obj;
			obj = NULL; /* as in alloc_pages */
			return r;
		}
		if (n != NULL) {
			mm_store_release(&s->state, w); /* p stays */
			mheap_free_span(n, false);
		}
	}
	void *q = grown(size, flags, site);
	if (q == NULL)
		return NULL;
	__builtin_memcpy(q, p, old); /* the object's bytes, not its room */
	/* Not into the large cache: a growing object does not ask for its
	 * old size again, and a cached span cannot merge with the free
	 * pages around it, which the next move of a growing neighbour can
	 * use. */
	free_large(s, (uintptr_t)p, false);
	return q;
}
