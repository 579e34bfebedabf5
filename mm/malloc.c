/*
 * malloc.c: the overview of the allocator, and its public entry points
 * (kmalloc.h). Go's runtime allocator (malloc.go) without the garbage
 * collector, in freestanding C; every other mm/ file covers one part of
 * what this comment maps.
 *
 * Words: a heap page is 8 KiB (the unit of spans); a sys page is the
 * port's commit unit (4 KiB); a frame is 4 KiB of physical memory (kernel
 * port only); a chunk is 512 heap pages (4 MiB); the arena is the part of
 * the reserved region that holds heap pages.
 *
 * Data structures, one line each:
 *   size class   one of 67 object sizes, 8 B .. 32 KiB (sizeclasses.h)
 *   mspan        a run of heap pages; for a size class, cut into equal
 *                slots with out-of-band bitmaps (mspan.c); or one large
 *                object (span class 0)
 *   mcache       per CPU: one cached span per size class (mcache.c)
 *   mcentral     per size class: uncached spans (partial, full, unswept)
 *                under a spinlock, plus a lock-free stack on which remote
 *                frees announce spans (mcentral.c)
 *   mheap        the arena, the page -> span map, span alloc/free, growth
 *                (mheap.c); its page allocator: bitmaps per chunk and a
 *                radix tree of free-run summaries (mpagealloc.c)
 *   fixalloc     fixed-size records for mspans, bitmaps, mcaches, never
 *                returned to the port (mfixalloc.c)
 *   scavenger    returns free pages to the port (mscavenge.c)
 *   sys          the porting layer: 10 functions (sys.h)
 *
 * kmalloc(size) climbs the hierarchy until one level can serve it:
 *   1. size > 32 KiB: a large span of its own from the mheap (step 5).
 *   2. size -> size class (two small tables); interrupts off; this CPU's
 *      mcache; its cached span for the class; nextFreeFast: the lowest set
 *      bit of allocCache gives a free slot. No lock, no atomic RMW.
 *   3. The cache word is used up: nextFreeIndex scans allocBits for the
 *      next free slot. The span is full: sweep it (merge the frees since
 *      the last sweep); if that freed an eighth of it, keep it (no lock).
 *   4. Otherwise trade it in one mcentral lock hold: file it as partial or
 *      full, and take the span that most recently stopped being full
 *      (sweeping it now, once, however many frees it took): allocation
 *      concentrates on nearly full spans and the rest drain empty.
 *   5. None: mheap_alloc_span takes pages from the page allocator (first
 *      fit by address); if none fit, reclaim empty spans from every
 *      mcentral; if still none, grow the arena by whole chunks.
 *   6. Pages that were never committed, or were scavenged, are committed
 *      through sys_commit (outside the lock). A refusal returns NULL with
 *      everything as before.
 *
 * kfree(p) validates before it touches anything:
 *   1. p -> page -> span through the page -> span map (O(1)); outside the
 *      grown arena, or no span: "invalid free".
 *   2. Small object, span cached by this CPU: p must be a slot start
 *      (divMul) that is allocated and not yet freed; then one plain store
 *      sets its localFree bit. A freed slot: "double free"; anything
 *      else: "invalid free".
 *   3. Small object, span cached elsewhere or not at all (remote free):
 *      the same checks under the span's sweep sequence counter, then an
 *      atomic fetch-or of its remoteFree bit (a bit already set: "double
 *      free"); the first such free since the span's last sweep pushes it
 *      on its mcentral's sweep stack, from where it becomes allocatable
 *      again at the next refill, or goes back to the mheap when a reclaim
 *      (heap growth, flush, trim) finds it empty. The owner's cache is
 *      never taken away by a remote free.
 *   4. Large object: p must be the span base; a CAS InUse -> Freeing
 *      decides between concurrent or repeated frees ("double free"), then
 *      the pages go back to the page allocator, coalescing with their
 *      free neighbours in the bitmaps.
 *   5. If free committed pages now exceed the retain goal, the scavenger
 *      releases the highest ones (outside every lock).
 * A span on a free list, a dead span, or memory that was never allocated
 * never receives a write from kfree; misuse ends in sys_fault with one
 * line "kmalloc: <fault>: <pointer>". A pointer into a span that went
 * back to the mheap is an "invalid free" (its slots no longer exist),
 * except the base of a freed large object, which is a "double free".
 * ksize and krealloc validate the same way without writing anything and
 * report "invalid pointer".
 *
 * Why explicit free looks like this (Go frees only by GC sweep): per-slot
 * "freed" bitmaps merged into allocBits by a lazy sweep, so allocation
 * stays Go's nextFreeFast and every double free is seen; mspan.c gives
 * the reasoning and mcentral.c the span lifetime rules.
 *
 * Alignment: slots are base + index * size with 8 KiB-aligned span bases,
 * so every object is aligned to the largest power of two dividing its
 * class size; power-of-two sizes up to 8 KiB are naturally aligned. The
 * size -> class tables skip Go's 24-byte class for 17..24-byte requests
 * so that everything from 16 bytes up is 16-byte aligned (kmalloc.h).
 * kmemalign picks a class whose size is a multiple of the alignment, or
 * asks the page allocator for an aligned large span.
 *
 * Statistics cost the fast paths nothing: allocations and local frees
 * are counted when a span is swept (mstats.c).
 *
 * Zeroing: memory from sys_commit reads as zero (sys_config), so a span
 * made only of freshly committed pages has needzero == 0; a span made of
 * reused pages, or whose slots were freed and swept, has needzero == 1.
 * kzalloc / KM_ZERO clears the object only when its span has needzero.
 * kmalloc without KM_ZERO never clears (like Linux).
 *
 * Layout: one region from sys_reserve holds metadata (page -> span map,
 * page-allocator bitmaps and summaries, fixalloc area) followed by the
 * arena, 4 MiB aligned; see mheap.c. The kernel port maps the region at a
 * fixed window (arch/x86_64/memlayout.h); the host port anywhere.
 *
 * Library needs: gcc may emit calls to memset and memcpy for struct
 * copies and the explicit clears here; a kernel linking libkmalloc.a must
 * provide memset, memcpy, memmove and memcmp, as GCC requires of every
 * freestanding environment. Nothing else outside sys.h is referenced.
 */
#include "internal.h"
#include "msize.h"

int kmalloc_init(void)
{
	return mheap_init();
}

/* The slow half of small allocation: the mcache, then the mcentral and
 * the mheap. Also the entry for kmemalign's class choice. */
void *mm_alloc_class(unsigned sizeclass, unsigned flags)
{
	if (sizeclass == 0)
		sizeclass = 1; /* kmalloc(0): a real, freeable 8-byte object */
	unsigned long f = sys_irq_save();
	unsigned cpu = sys_cpu_id();
	struct mcache *c = mcache_get(cpu);
	void *v = NULL;
	bool zero = false;
	if (c != NULL) {
		mcache_fast_set(c);
		v = mcache_refill_alloc(c, sizeclass);
		if (v != NULL)
			zero = (flags & KM_ZERO) && c->alloc[sizeclass]->needzero;
	}
	sys_irq_restore(f);
	if (zero)
		__builtin_memset(v, 0, class_to_size[sizeclass]);
	mheap_scavenge_maybe();
	return v;
}

/* A large object of `size` bytes at an `align`-aligned address (align is
 * a power of two; <= 8192 needs nothing extra). */
void *mm_alloc_large(size_t size, size_t align, unsigned flags)
{
	if (mheap_init() != 0)
		return NULL;
	size_t arena = mheap_.arena_end - mheap_.arena_start;
	if (size > arena || align > arena)
		return NULL;
	size_t npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
	if (npages == 0)
		npages = 1;
	size_t align_pages = align > PAGE_SIZE ? align >> PAGE_SHIFT : 1;
	struct mspan *s = mheap_alloc_span(npages, 0, align_pages);
	if (s == NULL)
		return NULL;
	s->elemsize = npages * PAGE_SIZE;
	s->nelems = 1;
	s->allocCount = 1;
	s->freeindex = 1;
	s->divMul = 0;
	s->allocCache = 0;
	s->limit = s->base + s->elemsize;
	bool zero = (flags & KM_ZERO) && s->needzero;
	__atomic_store_n(&s->state, SPAN_INUSE, __ATOMIC_RELEASE);
	if (zero)
		__builtin_memset((void *)s->base, 0, s->elemsize);
	return (void *)s->base;
}

static __attribute__((noinline)) void *zero_object(void *v, unsigned sizeclass)
{
	__builtin_memset(v, 0, class_to_size[sizeclass]);
	return v;
}

/* The fast path: steps 1-2 of the overview. Written out rather than
 * calling mspan_nextFreeFast so the compiler needs no NULL test on the
 * result. Measured with callgrind on the host (gcc 12 -O2, make
 * bench-core): a 64-byte kmalloc+kfree pair costs 84.5 instructions with
 * the benchmark's loop and calls (inclusive: kmalloc 26.5 with the slow
 * path amortised, the mcache from the port's SYS_MCACHE_SLOT; kfree 41,
 * most of them the validation). The goal is 48; see the report in
 * README. */
void *kmalloc(size_t size, unsigned flags)
{
	if (MM_UNLIKELY(size > _MaxSmallSize))
		return mm_alloc_large(size, 0, flags);
	unsigned cls = size_to_class(size);
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_fast();
	if (MM_LIKELY(c != NULL)) {
		struct mspan *s = c->alloc[cls];
		uint64_t cache = s->allocCache;
		if (MM_LIKELY(cache != 0)) {
			unsigned b = (unsigned)__builtin_ctzll(cache);
			unsigned idx = s->freeindex + b;
			s->allocCache = (cache >> b) >> 1;
			STORE(s->freeindex, (uint16_t)(idx + 1));
			void *v = (void *)(s->base + (uintptr_t)idx * s->elemsize);
			if (MM_UNLIKELY(flags & KM_ZERO) && s->needzero) {
				sys_irq_restore(f);
				return zero_object(v, cls);
			}
			sys_irq_restore(f);
			return v;
		}
	}
	sys_irq_restore(f);
	return mm_alloc_class(cls, flags);
}

void *kzalloc(size_t size, unsigned flags)
{
	return kmalloc(size, flags | KM_ZERO);
}

void *kcalloc(size_t n, size_t size, unsigned flags)
{
	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	return kmalloc(n * size, flags | KM_ZERO);
}

/* Classify a pointer kfree or ksize cannot accept and stop. Dead large
 * spans whose base is p are a repeated free of that object; everything
 * else is an invalid pointer for `what`. */
static _Noreturn void bad_pointer(struct mspan *s, uintptr_t p, const char *what)
{
	if (s != NULL && s->spanclass == 0 && p == s->base &&
	    __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SPAN_INUSE)
		sys_fault("double free", (void *)p);
	sys_fault(what, (void *)p);
}

/* kfree of a large object, or of a small one whose span this CPU does not
 * cache. pre: no mm lock held, interrupts as the caller had them. */
static __attribute__((noinline)) void kfree_slow(struct mspan *s, uintptr_t p)
{
	__atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	uint32_t st = __atomic_load_n(&s->state, __ATOMIC_SEQ_CST);
	unsigned cls = s->spanclass;
	if (cls == 0 || st != SPAN_INUSE) {
		__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELEASE);
		if (cls != 0 || p != s->base)
			bad_pointer(s, p, "invalid free");
		uint32_t expect = SPAN_INUSE;
		if (!__atomic_compare_exchange_n(&s->state, &expect, SPAN_FREEING, false,
		                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			sys_fault("double free", (void *)p);
		mheap_free_span(s);
		mheap_scavenge_maybe();
		return;
	}
	long idx = mspan_slot_of(s, p);
	if (idx < 0) {
		__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELEASE);
		sys_fault("invalid free", (void *)p);
	}
	bool freed;
	if (!mspan_slot_live(s, (unsigned)idx, &freed)) {
		__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELEASE);
		sys_fault("double free", (void *)p);
	}
	uint64_t bit = (uint64_t)1 << (idx % 64);
	uint64_t old = __atomic_fetch_or(&s->remoteFree[idx / 64], bit, __ATOMIC_SEQ_CST);
	if (old & bit) {
		__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELEASE);
		sys_fault("double free", (void *)p);
	}
	struct mcentral *c = &mheap_.central[cls].c;
	__atomic_add_fetch(&c->remote_frees, 1, __ATOMIC_RELAXED);
	mcentral_note_remote_free(c, s, __atomic_add_fetch(&s->nremote, 1, __ATOMIC_SEQ_CST));
	__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELEASE);
}

/* Not declared noreturn, so the fast path reaches them with a tail jump
 * and needs no stack frame of its own. */
static MM_OUTLINE void kfree_invalid(const void *p)
{
	sys_fault("invalid free", p);
}

static MM_OUTLINE void kfree_double(const void *p)
{
	sys_fault("double free", p);
}

/* Steps 1-2 of the overview's kfree path inline; remote and large frees
 * in kfree_slow. Fault paths do not restore interrupts: sys_fault never
 * returns. */
void kfree(const void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	uintptr_t rel = p - mheap_.arena_start;
	if (MM_UNLIKELY(rel >= LOAD(mheap_.arena_used_bytes))) {
		if (p == 0)
			return;
		return kfree_invalid(ptr);
	}
	struct mspan *s = __atomic_load_n(&mheap_.spans[rel >> PAGE_SHIFT], __ATOMIC_ACQUIRE);
	if (MM_UNLIKELY(s == NULL))
		return kfree_invalid(ptr);
	unsigned long f = sys_irq_save();
	if (LOAD(s->cachedBy) != cpu_slot(SYS_CPU_ID_FAST())) {
		sys_irq_restore(f);
		kfree_slow(s, p);
		return;
	}
	/* Our own cached span: nobody else can uncache it while interrupts
	 * are off, and only we write localFree. p lies on one of the span's
	 * pages or (stale map entry, record reused) far from it; either way
	 * the exact multiply-back test and idx < nelems reject non-slots. */
	uintptr_t off = p - s->base;
	unsigned idx = obj_index(s->divMul, off);
	if (MM_UNLIKELY((uintptr_t)idx * s->elemsize != off || idx >= s->nelems))
		return kfree_invalid(ptr);
	unsigned w = idx / 64;
	uint64_t bit = (uint64_t)1 << (idx % 64);
	uint64_t lf = s->localFree[w];
	if (MM_UNLIKELY(!(idx < s->freeindex || (s->allocBits[w] & bit)) ||
	                ((lf | LOAD(s->remoteFree[w])) & bit)))
		return kfree_double(ptr);
	STORE(s->localFree[w], lf | bit);
	sys_irq_restore(f);
}

/* The span of a live object p, or a fault naming `what`. */
static struct mspan *live_span(uintptr_t p, const char *what)
{
	struct mspan *s = spanOf(p);
	if (s == NULL || __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SPAN_INUSE)
		bad_pointer(s, p, what);
	if (s->spanclass == 0) {
		if (p != s->base)
			sys_fault(what, (void *)p);
		return s;
	}
	long idx = mspan_slot_of(s, p);
	bool freed;
	if (idx < 0)
		sys_fault(what, (void *)p);
	if (!mspan_slot_live(s, (unsigned)idx, &freed))
		sys_fault(what, (void *)p);
	return s;
}

size_t ksize(const void *p)
{
	if (p == NULL)
		return 0;
	return live_span((uintptr_t)p, "invalid pointer")->elemsize;
}

void *krealloc(void *p, size_t size, unsigned flags)
{
	if (p == NULL)
		return kmalloc(size, flags);
	size_t old = live_span((uintptr_t)p, "invalid pointer")->elemsize;
	if (size <= old)
		return p;
	void *n = kmalloc(size, flags);
	if (n == NULL)
		return NULL;
	__builtin_memcpy(n, p, old);
	kfree(p);
	return n;
}

void *kmemalign(size_t align, size_t size, unsigned flags)
{
	if (align == 0 || (align & (align - 1)) != 0)
		return NULL;
	if (align <= 8)
		return kmalloc(size, flags);
	if (size <= _MaxSmallSize && align <= PAGE_SIZE) {
		/* Span bases are 8 KiB aligned, so a class whose size is a
		 * multiple of align aligns every slot. */
		for (unsigned c = size_to_class(size ? size : 1); c < _NumSizeClasses; c++)
			if (class_to_size[c] % align == 0)
				return mm_alloc_class(c, flags);
	}
	return mm_alloc_large(size, align, flags);
}

void kmalloc_flush_cpu(void)
{
	unsigned long f = sys_irq_save();
	struct mcache *c = mm_mcaches[cpu_slot(sys_cpu_id())];
	if (c != NULL)
		mcache_flush(c);
	sys_irq_restore(f);
	if (__atomic_load_n(&mheap_.inited, __ATOMIC_ACQUIRE)) {
		mcentral_reclaim_all();
		mheap_scavenge_maybe();
	}
}

void kmalloc_trim(void)
{
	if (!__atomic_load_n(&mheap_.inited, __ATOMIC_ACQUIRE))
		return;
	mcentral_reclaim_all();
	mheap_scavenge(0);
	fixalloc_trim();
}
