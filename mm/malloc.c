/*
 * malloc.c: the overview of the allocator, and its public entry points
 * (kmalloc.h). Go's runtime allocator (malloc.go) without the garbage
 * collector, in freestanding C, with per-CPU object caches in front of
 * Go's spans for explicit free; every other mm/ file covers one part of
 * what this comment maps.
 *
 * Words: a heap page is 8 KiB (the unit of spans); a sys page is the
 * port's commit unit (4 KiB); a frame is 4 KiB of physical memory (kernel
 * port only); a chunk is 512 heap pages (4 MiB); the arena is the part of
 * the reserved region that holds heap pages. A slot is "out" of its span
 * when the span handed it to a user or to a cache, "live" when a user
 * holds it (its live byte is 1). allocBits has a bit set for every slot
 * out as of the span's last sweep; allocCache is the owner's inverted copy
 * of 64 of those bits, from freeindex on, so the next free slot is one
 * count-trailing-zeros away. free_bits collects the slots other CPUs gave
 * back; a sweep merges them into allocBits (Go sweeps gcmarkBits; we have
 * explicit frees instead of a collector).
 *
 * Names: Go's names stay for Go's ideas (mheap, mcentral, mcache, mspan,
 * spanclass, allocBits, allocCache, freeindex, nextFreeFast, gcmarkBits,
 * uncacheSpan, the scavenger), with our layer prefix where they are
 * functions (mspan_nextFreeFast, mcentral_uncacheSpan). Everything
 * of our own is snake_case with its layer's prefix (mheap_, mcentral_,
 * mspan_, mcache_, pa_ for the page allocator, fixalloc_/meta_ for
 * metadata, mm_ for what crosses layers, pmm_ for the frame allocator,
 * sys_ for the port), fields too (cached_by, free_bits, div_exact), so a
 * reader can tell a Go idea from ours by its name.
 *
 * Data structures, one line each:
 *   size class   one of 71 object sizes, 8 B .. 64 KiB (sizeclasses.h): Go's
 *                67 to 32 KiB, then four of ours, one object a span
 *   span class   size class << 1 | noscan (Go's spanClass): objects
 *                allocated with KM_NOSCAN hold no pointers and get spans
 *                of their own, which the leak scan does not read; span
 *                classes 0 and 1 are large objects
 *   mspan        a run of heap pages; for a size class, cut into equal
 *                slots, with a live byte per slot (one per 2^liveshift
 *                bytes of span, so a shift finds it) and three bitmaps
 *                (allocBits, free_bits, gcmarkBits) in its own record, out
 *                of band (mspan.c); or one large object (and the growth
 *                room krealloc gave it, mlarge.c)
 *   magazine     per CPU and span class: a bounded stack of free objects,
 *                each with its live byte's address (mcache.c)
 *   mcache       per CPU: a magazine and one cached span per span class,
 *                bins of freed large spans by page count, counters
 *                (mcache.c, mlarge.c)
 *   transfer     per span class: a bounded array of free objects shared
 *                by all CPUs, moved in batches (mtransfer.c)
 *   mcentral     per span class: uncached spans (partial, full, one
 *                spare empty span, meshed aliases) under a spinlock; where objects come
 *                back to spans (mcentral.c)
 *   mheap        the arena, the page -> span map and page descriptors
 *                (kfree's), span alloc/free, growth
 *                (mheap.c); its page allocator: bitmaps per chunk and a
 *                radix tree of free-run summaries (mpagealloc.c); the
 *                maps' words and page-allocator records of chunks with
 *                no span, given back by trim and recommitted when a span
 *                comes there (mmeta.c)
 *   fixalloc     fixed-size span records, each with its live bytes and
 *                bitmaps behind it, and the leak scan's grey blocks; the
 *                mcaches and transfer entries are bump-allocated
 *                (mfixalloc.c)
 *   scavenger    returns free pages to the port: by age with the port's
 *                clock (pages of chunks nobody touched for release_ms),
 *                else by allocation volume; paced steps, and the aging
 *                of caches (mscavenge.c)
 *   mesh         groups of sparse spans of one class whose out slots do
 *                not overlap, merged onto one span's frames through the
 *                port's page tables (sys_config.mesh_*); each other span
 *                stays as an alias (its address, its live bytes, on the
 *                class's meshed list) whose returns go on to the span
 *                whose frames it maps; a group meshes whole into another;
 *                runs of adjacent spans onto adjacent spans first, the
 *                longest segments first (one mapping each on the host,
 *                and one protect, copy and remap a segment of up to
 *                MESH_BATCH spans), then any pairs, each span onto the
 *                fullest it may mesh with (best fit);
 *                from the paced background work (less often while the
 *                port refuses), trim and kmalloc_mesh (mmesh.c, its
 *                pairing mmeshpick.c)
 *   mark         the leak detector: a gcmarkBits bitmap per span and a
 *                grey stack of fixalloc blocks (mgcmark.c); its report,
 *                suppressions and per-object flags (mleak.c)
 *   depot        tracked allocations' backtraces, each distinct one
 *                stored once in the metadata region, an object keeping
 *                a 32-bit handle in its site word (mstack.c)
 *   kfence pool  guarded sampling: sys pages after the arena, each object
 *                page between two inaccessible guards, a record per slot
 *                out of band (mkfence.c)
 *   kmem_cache   a typed cache: a span class of its own (144 .. 255) cut
 *                at its exact object size, with an optional constructor
 *                run on each slot of a new span; every per-class
 *                structure above serves it as it serves kmalloc's
 *                classes (mkmemcache.c)
 *   sys          the porting layer: 10 functions and sys_config, optional
 *                hooks (sys_config.move and .nomem, the clocks and the
 *                background context (now_ns, now_coarse_ns,
 *                start_background), the leak detector's, meshing's
 *                (mesh_alias, mesh_unalias, mesh_protect,
 *                mesh_unprotect), the idle-CPU drain's,
 *                the backtrace hook, SYS_MCACHE_GET/SET), and
 *                kmalloc_safepoint and kmalloc_cpu_idle for the port
 *                to call; sys.h lists each with what its absence costs
 *
 * kmalloc(size) climbs the hierarchy until one level can serve it; the
 * functions are named in the order a first kmalloc(64) meets them (Go's
 * mallocgc -> nextFreeFast -> refill -> cacheSpan):
 *   1. kmalloc -> kmalloc_fast (inline): size > 64 KiB: mlarge_alloc
 *      (step 7).
 *   2. class_alloc_fast (inline): interrupts off (sys_irq_save); this
 *      CPU's mcache from the port's slot (mcache_fast); count its
 *      kfence_left down (at 0, every 4096 allocations of a CPU:
 *      kmalloc_sampled -> kfence_sample, a guarded sample if one is due
 *      by the clock, mkfence.c; about one allocation per interval is
 *      sampled); size_to_class (two small tables); pop the magazine of
 *      the span class; store 1 in the object's live byte (its address is
 *      in the entry). No lock, no atomic RMW.
 *   3. Magazine empty: mspan_nextFreeFast on the span the mcache caches
 *      for the class: the lowest set bit of allocCache gives a free
 *      slot; store its live byte 1.
 *   4. Cache word used up, or the slot empty (a CPU's first call, or
 *      after the idle-CPU drain): mm_alloc_class -> mcache_this (the
 *      slot, else mcache_get: the mcache made on this CPU's first
 *      allocation, claimed back from the drain by mcache_claim) ->
 *      mcache_alloc_slow: mcache_poll drains this CPU if mm_drain_all
 *      asked; every AGE_EVERY slow paths mcache_age; mcache_mag_ready
 *      carves the class's magazine on its first use; mm_transfer_take
 *      moves a batch from the class's transfer cache into the magazine
 *      (one lock hold), and the top is popped.
 *   5. None: mcache_refill_alloc: mspan_nextFreeIndex scans allocBits;
 *      the span is full: mspan_sweep merges free_bits (objects that came
 *      back); if that freed an eighth of it, keep it (no lock).
 *   6. Otherwise mcentral_refill trades it in one mcentral lock hold:
 *      file it as partial or full, take the top of partial (the spare
 *      empty span sits at its tail); none: mheap_alloc_span takes pages
 *      from the page allocator (first fit by address), growing the arena
 *      by whole chunks if none fit, and commits the scavenged ones
 *      through sys_commit with no lock held (under mheap.lock only where
 *      the commit unit is above 8 KiB); mspan_init_small lays the record
 *      out and publishes it INUSE, and mheap_publish_small writes the
 *      page descriptors kfree reads. Where the port meshes runs of
 *      spans cheaper (sys_config.mesh_runs: the host's meshing), a class
 *      with many spans takes up to a sixteenth of them more
 *      (MCENTRAL_GROW at most), adjacent, as empty spans at the tail of
 *      partial (grow_batch).
 *   7. Large: mlarge_alloc: a cached span of n .. n + n/4 pages from
 *      this CPU's bins (alloc_cached: no lock, no call and no step 9,
 *      as a fast path; it finds no mcache while sites are tracked, the
 *      fast slot staying empty), else alloc_general: the same with
 *      KM_ZERO or sites tracked, else mheap_alloc_span.
 *   8. Out of memory: empty every cache (mm_drain_all: this CPU's now,
 *      the transfer caches, the other CPUs' at their safe points) and
 *      try once more; then NULL (mm_nomem), with everything as before.
 *   9. On the way out of a slow path, a bounded step of the scavenger if
 *      one is due (mheap_scavenge_paced): with a clock, no background
 *      context and no safe points on this CPU, kmalloc_background
 *      (release pages and shared caches that aged); without a clock, if
 *      free pages exceed the goal.

 * kmem_cache_alloc(c) is steps 2-9 for c's span class (after a check
 * that c lives); a new span of it runs c's constructor on every slot
 * (step 6, mcentral_refill, before the span is published).
 *
 * Memory comes back without a call into the heap (mscavenge.c), with the
 * port's clock: kmalloc_background, run by the port's background thread
 * (host), by kmalloc_safepoint at each timer tick and by the idle loop
 * (kernel), ages the transfer caches and releases free pages whose chunk
 * nobody touched for release_ms, oldest chunks first, 2 MiB a step,
 * paced to about a twentieth of a CPU; where the port meshes, the same
 * steps mesh sparse spans for up to 10 ms every 100 ms (mmesh.c). Where
 * the port can fence every CPU (the host), they also drain the caches of
 * CPUs that made no slow path for half the delay (mcache_idle_pass): a
 * step empties each CPU's fast slot, so its next call takes the slow
 * path and claims its mcache back (mcache_this -> mcache_get ->
 * mcache_claim); one nobody claimed by the next step is flushed.
 *
 * kfree(p) validates before it touches anything, and touches nothing the
 * validation did not prove is p's:
 *   1. p -> page -> the page's descriptor (one word: span class, the
 *      page's place in its span, the record's incarnation and address;
 *      0 on pages of no small in-use span, and on chunks whose map
 *      words trim gave back, which read as zero (mmeta.c); internal.h);
 *      outside the grown arena: a guarded sample's if in the pool after
 *      it (kfence_free validates it against its slot's record, then
 *      makes its page inaccessible), else "invalid free".
 *   2. Interrupts off; this CPU's magazine for the descriptor's class
 *      holds the class's constants: p must be a slot start (one
 *      multiply, msize.h) within the span's slot bytes (0 for class 0:
 *      large, dead and free pages fail here); read its live byte (behind
 *      the span's record, at offset >> liveshift; that line and the
 *      object's first are prefetched for writing first, SYS_PREFETCH_W,
 *      so a free of an object another CPU wrote last misses on both at
 *      once, not one after the other); load the descriptor
 *      again: if it changed, the span died or was recycled while we read
 *      and the slow path decides (through the page -> span map, where
 *      pages in no span map to the dead sentinel mspan_none, or to
 *      NULL where trim gave the words back: "invalid free"). Byte 0 (a
 *      free slot, or an object in some cache): "double free"; not a
 *      slot: "invalid free". The span record itself is not read.
 *   3. Store 0 in the live byte and push (p, byte) on the magazine,
 *      whichever CPU allocated p. No lock, no atomic RMW.
 *   4. Magazine full (mcache_spill): its oldest batch goes to the transfer
 *      cache; if that is full, back to the spans (mcentral_return: each
 *      entry's span word, live byte and span record prefetched before
 *      the lock; under the mcentral lock, a run of entries of one span at
 *      a time: an uncached span, which the lock holder owns, gets its
 *      allocBits cleared and is filed there, and an empty one becomes
 *      the class's spare, or goes back to the mheap if it has one; a
 *      span whose frames an alias maps waits on partial; a cached span
 *      gets one atomic OR per bitmap word into its free_bits, for its
 *      CPU's next sweep). What comes back to an alias goes on to its
 *      dst's free_bits (mmesh.c).
 *   5. Large object: p must be the span base; a CAS InUse -> Freeing
 *      decides between concurrent or repeated frees ("double free"), then
 *      the span goes to this CPU's large bins, or (over 32 pages, bins
 *      full) back to the page allocator, coalescing with its neighbours.
 * kmem_cache_free(c, p) is the same path with one more test in step 1:
 * the descriptor's class must be c's, else kfree_slow validates p as
 * above and, for a live object of another class, stops with "wrong
 * cache" (after a log line naming both owners).
 * A span on a free list, a dead span, or memory that was never allocated
 * never receives a write from kfree; misuse ends in sys_fault with one
 * line "kmalloc: <fault>: <pointer>". A pointer into a span that went
 * back to the mheap is an "invalid free" (its slots no longer exist),
 * except the base of a freed large object, which is a "double free"
 * until kmalloc_trim gives back its record or its chunk's map words
 * (then "invalid free": what told the two apart is gone).
 * ksize and krealloc validate the same way without writing anything and
 * report "invalid pointer" (a sample's against its record: its size is
 * the size asked for; krealloc moves it to a new object).
 * Typed caches are never sampled (kmem_cache_alloc skips the count).
 *
 * krealloc(p, size) validates p like kfree (without writing), then:
 *   1. size 0, or a shrink that keeps more than half: p itself.
 *   2. Growing past 8 KiB (a heap page), a large object grows into its
 *      span's room (pages after the object that ksize does not count;
 *      no lock); else in place if the pages after it are free, with a
 *      quarter more as room where free, twice its size where the port's
 *      commits cost nothing until written (sys_config.commit_lazy) and
 *      nothing lies within four times it (mheap_extend_span takes the
 *      first of the three that fits, one lock hold; mlarge.c);
 *      else it moves to a new span with 5/8 more pages as room: by the
 *      port's page-table move (sys_config.move) from sys_config.move_min
 *      up (256 KiB by default; 8 MiB on the host, where mremap starts to
 *      beat memcpy), else by copying the object's bytes (not its room),
 *      its old span going straight back to the mheap, not to a large
 *      cache. A small object growing past 8 KiB becomes a large one
 *      with the same room (a copy), so it grows in place from then on:
 *      krealloc's results from 8 KiB up may be large where kmalloc's of
 *      that size are small.
 *   3. Otherwise a new object (a small one growing gets twice its old
 *      size, so a string built step by step moves every few steps), a
 *      copy, and kfree(p).
 *
 * Why a live byte per slot. Caching freed objects per CPU is what makes
 * frees cheap (without them a free whose span another CPU caches costs
 * five locked read-modify-writes), but then a second free of an object sitting
 * in some cache must still be caught at once. That takes one state change
 * per free, out of band. A byte per slot is written with a plain store:
 * stores to different bytes never lose each other's updates, where a
 * read-modify-write of a shared bitmap word would need a locked
 * instruction on every kmalloc and kfree (measured by make bench-core,
 * tests/bench/statecost.c, on this project's 2-CPU EPYC: two byte stores
 * ~1 cycle per kmalloc+kfree, lock bts + lock btr ~8-10, two cmpxchg
 * ~19, all uncontended, before any cache line moves between CPUs). The
 * price is memory: one byte per 2^liveshift bytes of span (liveshift =
 * log2 of the largest power of two <= the object size, so the byte is
 * found by a shift): 12.5% for 8-byte objects, 6.25% for 16, 3.1% for 32
 * and 48, under 1% from 128 bytes up. Two frees of one pointer racing on
 * two CPUs can both read 1; the second copy is then caught when the
 * objects come back to their span (mcentral.c, mspan.c), before the slot
 * is reused from the span.
 *
 * Why page descriptors. With many live objects a random free finds
 * nothing of its span in the first-level cache, and each line kfree
 * reads is a miss: the page map entry, the span record and the live byte
 * would be three (valgrind --tool=cachegrind --cache-sim=yes on the churn
 * workload: 3.3 first-level read misses per free that way, tcmalloc's
 * free 0.55). A page's descriptor packs what the record contributes
 * (class, the span's base, the record's address and incarnation) into
 * the word the page map lookup reads anyway, and the class's constants
 * ride in the magazine line the push writes: 1.6 misses per free, for 5
 * instructions more per kmalloc+kfree pair (callgrind).
 *
 * Alignment: slots are base + index * size with 8 KiB-aligned span bases,
 * so every object is aligned to the largest power of two dividing its
 * class size; power-of-two sizes up to 8 KiB are naturally aligned. The
 * size -> class tables skip Go's 24-byte class for 17..24-byte requests
 * so that everything from 16 bytes up is 16-byte aligned (kmalloc.h).
 * kmemalign picks a class whose size is a multiple of the alignment
 * (class_align_up, generated with the size classes) and takes the same
 * fast path as kmalloc, or asks the page allocator for an aligned large
 * span.
 *
 * Statistics: each CPU counts its own allocations and frees per class
 * in its magazines (plain stores, summed by kmalloc_stats); nothing on
 * the fast paths is a shared atomic.
 * kmalloc_heapmap prints the arena run by run (span class and live
 * objects of each small span, large, free, released pages) for
 * scripts/heapmap to draw (mheapmap.c).
 *
 * Zeroing: memory from sys_commit reads as zero (sys_config), so a span
 * made only of freshly committed pages has needzero == 0; a span made of
 * reused pages, or whose slots came back and were swept, has needzero == 1,
 * and an object from a cache was used before. kzalloc / KM_ZERO clears
 * what may hold old data; kmalloc without KM_ZERO never clears (like
 * Linux).
 *
 * kmalloc_leak_scan() finds leaks with Go's mark phase, without the sweep
 * (mgcmark.c; Go's allocator exists for its collector):
 *   0. Zero the caller's *out and the stack the scan's frames will use
 *      (they are roots; an unwritten slot there may hold an old pointer).
 *   1. Stop the world with the port's stop_world, if it has one: every
 *      other CPU parked with interrupts on, so none is inside an
 *      allocator critical section (the host port stops its threads by a
 *      signal, and one inside a section stops at the section's end:
 *      arch/host/stopworld.c); if it fails: no scan, a log line.
 *      Then interrupts off on this CPU until the world restarts: no
 *      interrupt handler here allocates or frees under the walk.
 *   2. Clear the gcmarkBits of every in-use span; objects flagged
 *      kmalloc_leak_not_leak are marked and greyed, as roots.
 *   3. Roots, read word by word: kmalloc_add_root's ranges, the port's
 *      (data, bss, the live part of every CPU's stack, the stopped CPUs'
 *      registers; the host's threads' TLS too) and the caller's stack with
 *      its registers spilled. An object being allocated is reachable
 *      from its CPU's registers or stack from the moment it is live
 *      (mlarge_alloc keeps its address in a stack slot until it returns). A word pointing into a live object
 *      (live byte 1; a large span in use) marks it; unless its span class
 *      is noscan, the object goes on the grey stack.
 *   4. Drain the grey stack the same way (fixalloc blocks, no recursion;
 *      when it is full, spans are flagged and rescanned: marks only grow).
 *   5. Report every live object left unmarked, with its allocation
 *      backtrace when the port asked for sites at init (track_sites: the
 *      slow paths walk the caller's stack and keep the stack depot's
 *      handle, the fast paths are off), unless it is flagged (not_leak,
 *      ignore) or a kmalloc_leak_suppress pattern names a function of
 *      its backtrace (mleak.c); restart the world. An object flagged
 *      ignore is marked but never greyed; a word at the end of an object
 *      flagged end_ref marks that object, not the next one.
 * Nothing is freed; cached and free objects are never marked or reported.
 *
 * Layout: one region from sys_reserve holds metadata (page -> span map,
 * page descriptors, page-allocator chunk records and summaries, fixalloc
 * area, mcaches and transfer entries) followed by the arena; see
 * mheap.c's layout. kmalloc_trim empties the
 * caches and meshes (where the port meshes), then gives back
 * the free heap pages (mscavenge.c), the map words and page-allocator
 * records of chunks with no span (mmeta.c, through the port's
 * sys_config.release_zero: stray pointers still read them), the entry
 * pages of empty transfer caches
 * (mtransfer.c) and the idle fixalloc blocks (mfixalloc.c). The kernel port maps the region at a fixed
 * window (arch/x86_64/memlayout.h); the host port anywhere.
 *
 * Library needs: gcc may emit calls to memset, memcpy and memmove for the
 * explicit clears and moves here; a kernel linking libkmalloc.a must
 * provide them. Nothing else outside sys.h is referenced.
 */
#include "internal.h"
#include "msize.h"

int kmalloc_init(void)
{
	int r = mheap_init();
	if (r == 0)
		kfence_start();
	return r;
}

/* The slow half of small allocation (steps 4-6, 8, 9), for kmalloc's
 * and kmemalign's classes alike. */
/* With allocation sites tracked every allocation comes here, past the
 * fast path's count: count here, and sample at the class's size (a
 * multiple of kmemalign's alignment, so a sample keeps it). */
static __attribute__((noinline)) void *sample_tracked(unsigned spanclass, unsigned flags,
                                                      uintptr_t site)
{
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_this();
	bool due = c != NULL && --c->kfence_left == 0;
	if (due)
		c->kfence_left = KFENCE_CHECK_EVERY;
	sys_irq_restore(f);
	return due ? kfence_sample(spanclass_elemsize(spanclass), spanclass, flags, site) : NULL;
}

void *mm_alloc_class(unsigned spanclass, unsigned flags, uintptr_t site)
{
	if (spanclass_size(spanclass) == 0) /* kmalloc(0): a real, freeable */
		spanclass = spanclass_make(1, spanclass_noscan(spanclass)); /* 8-byte object */
	void *v = NULL;
	if (MM_UNLIKELY(mheap_inited() && mheap_.track_sites) && spanclass < KMALLOC_SPANCLASSES &&
	    (v = sample_tracked(spanclass, flags, site)) != NULL)
		return v;
	bool needzero = false;
	for (int attempt = 0; attempt < 2; attempt++) {
		unsigned long f = sys_irq_save();
		struct mcache *c = mcache_this();
		if (c != NULL)
			v = mcache_alloc_slow(c, spanclass, &needzero);
		sys_irq_restore(f);
		if (v != NULL || c == NULL || attempt == 1)
			break;
		mm_drain_all(true);
	}
	if (v == NULL)
		return mm_nomem();
	if ((flags & KM_ZERO) && needzero)
		__builtin_memset(v, 0, spanclass_elemsize(spanclass));
	if (MM_UNLIKELY(mheap_.track_sites))
		mm_record_site(v, site);
	mheap_scavenge_paced();
	return v;
}

static __attribute__((noinline)) void *zero_object(void *v, unsigned spanclass)
{
	__builtin_memset(v, 0, spanclass_elemsize(spanclass));
	return v;
}

/* The caller's address, for allocation sites (recorded only when the
 * port tracks them; the slow paths are the only paths then). In
 * kmalloc_fast, which is always inlined, it is the address the public
 * entry point (kmalloc, kzalloc, krealloc, ...) returns to, as GCC
 * documents for __builtin_return_address in inlined code; it is taken
 * only on the slow paths, so the fast path does not load it. */
#define CALLER() ((uintptr_t)__builtin_return_address(0))

static void *kmalloc_sampled(size_t size, unsigned flags, uintptr_t site);

/* kmalloc's span class for size (<= 64 KiB). */
static inline __attribute__((always_inline)) uintptr_t kmalloc_class(size_t size, unsigned flags)
{
	return (uintptr_t)size_to_class(size) << 1 | ((flags / KM_NOSCAN) & 1);
}

/* Steps 2-3 of the overview for span class cls, then the slow half:
 * kmalloc's and kmemalign's fast path. cls is a uintptr_t because it
 * indexes arrays, and an unsigned index costs a zero-extending move.
 * sample (a constant): kmalloc's path, which counts down to the next
 * sampling check; arg is then the size, and the class is computed after
 * the count, so the size need not stay in a register beside it (two
 * moves more per kmalloc, callgrind showed). Otherwise arg is the class. */
static inline __attribute__((always_inline)) void *class_alloc_fast(uintptr_t arg, unsigned flags,
                                                                    bool sample)
{
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_fast();
	uintptr_t cls;
	if (MM_LIKELY(c != NULL)) {
		if (sample && MM_UNLIKELY(--c->kfence_left == 0)) {
			c->kfence_left = KFENCE_CHECK_EVERY;
			sys_irq_restore(f);
			return kmalloc_sampled(arg, flags, CALLER());
		}
		cls = sample ? kmalloc_class(arg, flags) : arg;
		struct magazine *m = &c->mag[cls];
		struct magentry *e = m->top;
		if (MM_LIKELY(e != m->base)) {
			e--;
			m->top = e;
			void *v = e->p;
			STORE(*e->live, 1);
			COUNT(m->allocs);
			sys_irq_restore(f);
			if (MM_UNLIKELY(flags & KM_ZERO))
				return zero_object(v, (unsigned)cls);
			return v;
		}
		struct mspan *s = c->alloc[cls];
		long idx = mspan_nextFreeFast(s);
		if (MM_LIKELY(idx >= 0)) {
			uintptr_t off = (uintptr_t)idx * s->elemsize;
			STORE(mspan_livebytes(s)[off >> s->liveshift], 1);
			COUNT(m->allocs);
			void *v = (void *)(s->base + off);
			bool dirty = s->needzero;
			sys_irq_restore(f);
			if (MM_UNLIKELY(flags & KM_ZERO) && dirty)
				return zero_object(v, (unsigned)cls);
			return v;
		}
	} else {
		cls = sample ? kmalloc_class(arg, flags) : arg;
	}
	sys_irq_restore(f);
	return mm_alloc_class((unsigned)cls, flags, CALLER());
}

/* A kmalloc whose CPU's kfence_left ran out: a guarded sample if one is
 * due (mkfence.c), else the fast path without the count. */
static __attribute__((noinline)) void *kmalloc_sampled(size_t size, unsigned flags, uintptr_t site)
{
	uintptr_t cls = kmalloc_class(size, flags);
	void *v = kfence_sample(size, (unsigned)cls, flags, site);
	if (v != NULL)
		return v;
	return class_alloc_fast(cls, flags, false);
}

/* The fast path: steps 1-3 of the overview. Measured with callgrind on
 * the host (make bench-core); see the README for the figures. */
static inline __attribute__((always_inline)) void *kmalloc_fast(size_t size, unsigned flags)
{
	if (MM_UNLIKELY(size > _MaxSmallSize))
		return mlarge_alloc(size, 0, flags, CALLER());
	return class_alloc_fast(size, flags, true);
}

void *kmalloc(size_t size, unsigned flags)
{
	return kmalloc_fast(size, flags);
}

void *kzalloc(size_t size, unsigned flags)
{
	return kmalloc_fast(size, flags | KM_ZERO);
}

void *kcalloc(size_t n, size_t size, unsigned flags)
{
	if (size != 0 && n > SIZE_MAX / size)
		return mm_nomem();
	return kmalloc_fast(n * size, flags | KM_ZERO);
}

/* Classify a pointer kfree or ksize cannot accept and stop. Dead large
 * spans whose base is p are a repeated free of that object; everything
 * else is an invalid pointer for `what`. */
static _Noreturn void bad_pointer(struct mspan *s, uintptr_t p, const char *what)
{
	if (s != NULL && span_is_large(s) && p == s->base && span_state(s) != SPAN_INUSE)
		sys_fault("double free", (void *)p);
	sys_fault(what, (void *)p);
}

/* Step 2 done carefully: the live byte of the small object p of span s,
 * read while the span's state word stayed INUSE and unchanged, or a
 * fault. Returns the byte's address. */
static uint8_t *live_byte(struct mspan *s, uintptr_t p, const char *what, const char *dead)
{
	for (;;) {
		uint32_t w = span_state_word(s);
		if ((w & SPAN_STATE_MASK) != SPAN_INUSE || span_is_large(s))
			bad_pointer(s, p, what);
		long idx = mspan_slot_of(s, p);
		uint8_t *lb = idx >= 0 ? mspan_live(s, (unsigned)idx) : NULL;
		uint8_t v = lb != NULL ? LOAD(*lb) : 0;
		MM_TEST_HOOK(MM_HOOK_LIVE_BYTE, (void *)p);
		mm_fence_acquire(); /* seqlock read side: the byte before the recheck */
		if (mm_load_relaxed(&s->state) != w)
			continue; /* recycled while we read: look again */
		if (lb == NULL)
			sys_fault(what, (void *)p);
		if (v != 1)
			sys_fault(dead, (void *)p);
		return lb;
	}
}

/* kfree off the fast path: a large object; a span that is not a small
 * INUSE one or changed under the fast path's reads; no mcache yet; a
 * full magazine; for kmem_cache_free, an object of another class than
 * want (0: any). pre: no mm lock held, interrupts as the caller had
 * them. */
static MM_OUTLINE void kfree_small_slow(struct mspan *s, uintptr_t p, unsigned want);

static __attribute__((noinline)) void kfree_slow(uintptr_t p, unsigned want)
{
	struct mspan *s = spanOf(p); /* NULL: a page whose map trim gave back */
	if (s == NULL)
		sys_fault("invalid free", (void *)p);
	if (span_is_large(s) && span_state(s) != SPAN_DEAD) {
		if (want != 0 && span_state(s) == SPAN_INUSE && p == s->base)
			mm_kmc_wrong((void *)p, s->spanclass, want);
		mlarge_free(s, p);
		return;
	}
	/* apart, so that a large kfree saves no registers for it */
	kfree_small_slow(s, p, want);
}

static MM_OUTLINE void kfree_small_slow(struct mspan *s, uintptr_t p, unsigned want)
{
	uint8_t *lb = live_byte(s, p, "invalid free", "double free");
	unsigned cls = s->spanclass;
	if (want != 0 && cls != want)
		mm_kmc_wrong((void *)p, cls, want);
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_this();
	if (c == NULL || !mcache_mag_ready(c, cls)) {
		/* No mcache or magazine can be made (the metadata area is
		 * out): free to the span. */
		if (c != NULL)
			COUNT(c->mag[cls].frees);
		sys_irq_restore(f);
		STORE(*lb, 0);
		struct magentry e = { (void *)p, lb };
		mcentral_return(&mheap_.central[cls].c, &e, 1);
		return;
	}
	struct magazine *m = &c->mag[cls];
	if (m->top == m->limit)
		mcache_spill(c, cls);
	STORE(*lb, 0);
	m->top->p = (void *)p;
	m->top->live = lb;
	m->top++;
	COUNT(m->frees);
	sys_irq_restore(f);
}

/* Not declared noreturn, so the fast path reaches them with a tail jump
 * and needs no stack frame of its own. A pointer outside the grown arena
 * is invalid unless it is a guarded sample's (mkfence.c): the pool lies
 * after the arena, so its frees cost the fast path nothing. */
static MM_OUTLINE void kfree_outside(const void *p, unsigned want)
{
	if (kfence_owns((uintptr_t)p)) {
		kfence_free((uintptr_t)p, want, CALLER());
		return;
	}
	sys_fault("invalid free", p);
}

static MM_OUTLINE void kfree_double(const void *p)
{
	sys_fault("double free", p);
}

/* Steps 1-3 of the overview's kfree path inline; the rest in kfree_slow.
 * typed (a constant: kmem_cache_free) says that p must be of span class
 * want: another class's pointer leaves the fast path, so kfree_slow
 * decides what is wrong with it. Fault paths do not restore
 * interrupts: sys_fault never returns. */
static inline __attribute__((always_inline)) void free_fast(const void *ptr, bool typed,
                                                            unsigned want)
{
	uintptr_t p = (uintptr_t)ptr;
	/* acquire first: 0 before mheap_init (every pointer is outside),
	 * then arena_start and the page maps below it are the published
	 * ones (mheap_grow's release), even on a thread whose first call
	 * this is, kfree(NULL) included */
	uintptr_t used = mm_load_acquire(&mheap_.arena_used_bytes);
	uintptr_t rel = p - mheap_.arena_start;
	if (MM_UNLIKELY(rel >= used)) {
		if (p == 0)
			return;
		return kfree_outside(ptr, typed ? want : 0);
	}
	/* Small INUSE spans only, from the page's descriptor (internal.h):
	 * 0 on pages of no small span, whose class-0 magazine (slot_bytes 0)
	 * fails the slot test. acquire: pairs with mheap_publish_small's
	 * release, so the live bytes read below are the published ones. The
	 * class's constants come from this CPU's magazine, whose line the
	 * push needs anyway. The exact-slot test and the bound reject
	 * non-slots; then the live byte, and the descriptor again: equal
	 * means the span did not die (descriptor cleared first,
	 * mheap_unpublish_small) or come back as another incarnation while
	 * we read. Interrupts go off first so that the magazine stays this
	 * CPU's from the checks to the push. */
	uint64_t *dp = &mheap_.pagedesc[rel >> PAGE_SHIFT];
	uint64_t d = mm_load_acquire(dp);
	if (typed && MM_UNLIKELY(PD_CLASS(d) != want))
		return kfree_slow(p, want);
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_fast();
	if (MM_UNLIKELY(c == NULL))
		goto slow;
	struct magazine *m = &c->mag[PD_CLASS(d)];
	uintptr_t off = (d & PD_PAGEOFF_MASK) | (rel & (PAGE_SIZE - 1));
	if (MM_UNLIKELY(!slot_exact(m->div_exact, off) || off >= m->slot_bytes))
		goto slow;
	uint8_t *lb = (uint8_t *)(mheap_.livebase + PD_RECOFF(d)) + (off >> m->liveshift);
	/* Both lines for writing, at once: the byte is written below, and
	 * the object by its next user, this CPU (the magazine is a stack).
	 * Freed by another CPU than the one that wrote them last, each was
	 * one miss after the other (xlarson: kfree 47% of the cycles). */
	SYS_PREFETCH_W(lb);
	SYS_PREFETCH_W(ptr);
	struct magentry *e = m->top; /* ours alone: read before the fence */
	MM_TEST_HOOK(MM_HOOK_KFREE_FAST, ptr);
	uint8_t live = LOAD(*lb);
	mm_fence_acquire(); /* seqlock read side: the byte before the recheck */
	if (MM_UNLIKELY(mm_load_relaxed(dp) != d))
		goto slow;
	if (MM_UNLIKELY(live != 1))
		return kfree_double(ptr);
	if (MM_UNLIKELY(e == m->limit))
		goto slow;
	STORE(*lb, 0);
	e->p = (void *)p;
	e->live = lb;
	m->top = e + 1;
	COUNT(m->frees);
	sys_irq_restore(f);
	return;
slow:
	sys_irq_restore(f);
	kfree_slow(p, typed ? want : 0);
}

void kfree(const void *ptr) { free_fast(ptr, false, 0); }

static MM_OUTLINE void *cache_invalid(const struct kmem_cache *c) { sys_fault("invalid cache", c); }

/* The typed caches' fast paths are kmalloc's and kfree's for the cache's
 * own span class (mkmemcache.c holds the rest). A destroyed cache is a
 * fault, not a quiet allocation from a class being recycled. flags needs
 * no masking: only KM_ZERO is read once the class is chosen. */
void *kmem_cache_alloc(struct kmem_cache *c, unsigned flags)
{
	if (MM_UNLIKELY(LOAD(c->state) != KMC_LIVE))
		return cache_invalid(c);
	return class_alloc_fast(c->spanclass, flags, false);
}

void kmem_cache_free(struct kmem_cache *c, void *obj) { free_fast(obj, true, c->spanclass); }

/* The span of a live object p, or a fault naming `what`. */
static struct mspan *live_span(uintptr_t p, const char *what)
{
	struct mspan *s = spanOf(p);
	if (s == NULL)
		sys_fault(what, (void *)p);
	if (span_is_large(s)) {
		if (span_state(s) != SPAN_INUSE || p != s->base)
			bad_pointer(s, p, what);
		return s;
	}
	live_byte(s, p, what, what);
	return s;
}

size_t ksize(const void *p)
{
	if (p == NULL)
		return 0;
	if (MM_UNLIKELY(kfence_owns((uintptr_t)p)))
		return kfence_ksize((uintptr_t)p, "invalid pointer");
	return live_span((uintptr_t)p, "invalid pointer")->elemsize;
}

/* krealloc of a guarded sample: a new object (perhaps a sample again),
 * the bytes, and the sample freed, which closes its page. */
static __attribute__((noinline)) void *krealloc_sampled(void *p, size_t size, unsigned flags)
{
	size_t old = kfence_ksize((uintptr_t)p, "invalid pointer");
	if (size == 0 || size == old)
		return p;
	void *n = kmalloc_fast(size, flags);
	if (n == NULL)
		return NULL;
	__builtin_memcpy(n, p, old < size ? old : size);
	kfree(p);
	return n;
}

/* The alignment kmalloc.h promises an object of size bytes (> 0):
 * natural for a power of two up to a heap page, else 16 from 16 bytes
 * up, 8 below. krealloc keeps an object in place only where it has it:
 * a typed cache's object may be only 8-aligned (its slots are cut at its
 * exact size), and a 576-byte slot is not 512-aligned (the fuzzer found
 * the first: 520-byte cache objects resized to 512 bytes in place). */
static inline uintptr_t contract_align(size_t size)
{
	if (size <= PAGE_SIZE && (size & (size - 1)) == 0)
		return size;
	return size >= 16 ? 16 : 8;
}

void *krealloc(void *p, size_t size, unsigned flags)
{
	if (p == NULL)
		return kmalloc_fast(size, flags);
	if (MM_UNLIKELY(kfence_owns((uintptr_t)p)))
		return krealloc_sampled(p, size, flags);
	struct mspan *s = live_span((uintptr_t)p, "invalid pointer");
	size_t old = s->elemsize;
	if (size == 0 ||
	    (size <= old && size > old / 2 && ((uintptr_t)p & (contract_align(size) - 1)) == 0))
		return p;
	void *n;
	if (size > old && size > PAGE_SIZE) {
		/* Growing past a heap page, an object is or becomes large and
		 * from then on grows by whole pages in place (mlarge.c) rather
		 * than moving through every size class up to 64 KiB: the bytes
		 * a chain of growth copies are mostly those of its largest
		 * moves, which are the ones this saves. A large object wastes
		 * less than a page besides its growth room (mlarge.c), pages
		 * nobody wrote yet. */
		if (span_is_large(s))
			return mlarge_realloc(s, p, size, flags, CALLER());
		n = mm_alloc_grown(size, flags, CALLER());
	} else {
		if (!span_is_large(s) && size <= old &&
		    size_to_class(size) == spanclass_size(s->spanclass))
			return p; /* shrinking, but no smaller class fits */
		/* A small object that grows gets twice its old size:
		 * an object grown step by step (a string being built) then
		 * moves every few steps instead of at every class boundary
		 * (with half again it moved 15 times on its way to 8 KiB in
		 * the realloc workload, 10 now; its instructions fell from 63M
		 * to 43M, callgrind). */
		size_t want = size;
		if (size > old && 2 * old > size)
			want = 2 * old;
		n = kmalloc_fast(want, flags);
	}
	if (n == NULL)
		return NULL;
	__builtin_memcpy(n, p, old < size ? old : size);
	kfree(p);
	return n;
}

void *kmemalign(size_t align, size_t size, unsigned flags)
{
	if (align == 0 || (align & (align - 1)) != 0)
		return NULL;
	if (align <= 8)
		return kmalloc_fast(size, flags);
	if (size <= _MaxSmallSize && align <= PAGE_SIZE) {
		/* Span bases are 8 KiB aligned, so a class whose size is a
		 * multiple of align aligns every slot: the generated table
		 * names the first such class from the one size would take. */
		_Static_assert(16 << (alignClassShifts - 1) == PAGE_SIZE,
		               "columns end at a heap page");
		unsigned k = (unsigned)__builtin_ctzll(align) - 4; /* align 16 << k */
		uintptr_t c = class_align_up[size_to_class(size ? size : 1)][k];
		if (c != 0)
			return class_alloc_fast(c << 1 | ((flags / KM_NOSCAN) & 1), flags, false);
	}
	return mlarge_alloc(size, align, flags, CALLER());
}

void kmalloc_flush_cpu(void)
{
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_mine();
	if (c != NULL)
		mcache_flush(c);
	sys_irq_restore(f);
	/* The shared transfer caches and spare spans too: a CPU that goes
	 * away must not leave the heap holding spans nothing will empty. */
	if (mheap_inited()) {
		mm_transfer_drain_all();
		mcentral_free_spares();
	}
	mheap_scavenge_paced();
}

void kmalloc_trim(void)
{
	if (!mheap_inited())
		return;
	/* Objects in caches first, so spans are as sparse as they will get,
	 * then mesh (behind the background gate, so before the exclusion;
	 * inside a stretch that keeps background work out, as the kernel's
	 * frame-counting tests trim, kmalloc_mesh meshes nothing). */
	if (mesh_supported())
		mm_drain_all(true);
	kmalloc_mesh();
	mheap_bg_exclude(true);
	mm_drain_all(true);
	mheap_scavenge(0);
	mheap_trim_maps();
	mm_transfer_trim();
	fixalloc_trim();
	mheap_bg_exclude(false);
}
