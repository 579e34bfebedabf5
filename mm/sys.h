/*
 * sys.h: the porting interface. Everything mm/ needs from the world outside
 * it goes through the ten functions and one configuration below; a hobby kernel
 * that implements them (and provides memset/memcpy) links the library
 * `make lib PORT=<dir of its sys_arch.h>` builds as its kmalloc: see
 * docs/porting.md, and malloc.c for the overview.
 *
 * Data flow: kmalloc_init reserves ONE region of address space
 * (sys_reserve) holding the allocator's metadata and its heap arena. As the
 * heap grows, mheap commits pieces of it (sys_commit); the scavenger hands
 * free pieces back (sys_release). The per-CPU fast path asks for the CPU id
 * with interrupts off (sys_irq_save, sys_cpu_id, sys_irq_restore); the
 * shared structures are guarded by spinlocks (sys_lock); misuse ends in
 * sys_fault; kmalloc_dump prints through sys_log.
 *
 * Memory states of the region, as in Go's mem.go (a "sys page" is
 * sys_config.page_size bytes, 4096 on both ports; every address and length
 * passed below is a multiple of it):
 *
 *   Unreserved --sys_reserve--> Reserved --sys_commit--> Ready
 *                               Reserved <--sys_release-- Ready
 *
 *   Unreserved: not ours.
 *   Reserved:   ours, but backed by nothing; any access faults (or is
 *               undefined). Costs no memory.
 *   Ready:      readable and writable; reads as zero when it became Ready
 *               (if sys_config.commit_zeroed), holds what was written since.
 *
 * mm never frees the region: a kernel allocator lives as long as the kernel.
 * (The host port's released pages stay mapped and read as zero: Linux's
 * MADV_DONTNEED; mm never touches Reserved memory either way.)
 *
 * Inline fast path: sys_cpu_id, sys_irq_save and sys_irq_restore run on
 * every kmalloc/kfree, so an out-of-line call would cost more than the whole
 * fast path. This header therefore includes <sys_arch.h>, found on the
 * include path of the port (arch/host/sys_arch.h, arch/x86_64/sys_arch.h,
 * the template mm/generic/sys_arch.h), which either defines them `static
 * inline` itself or just declares them. It may define sys_lock/sys_unlock
 * `static inline` too (the template does): their declarations below then
 * keep that internal linkage.
 *
 * Checklist (what the core reads of the port, and nothing else):
 *   required  sys_reserve, sys_commit, sys_release       (memory, 1-3)
 *             sys_cpu_id, sys_irq_save, sys_irq_restore  (this CPU, 4-6)
 *             sys_lock, sys_unlock, struct sys_lock      (locks, 7-8)
 *             sys_fault, sys_log                         (reports, 9-10)
 *             sys_config's page_size, commit_zeroed, max_cpus, arena_size
 *             memset, memcpy, memmove (the compiler may emit calls;
 *             called with interrupts off and mm locks held: they must
 *             not allocate or take locks; memmove handles overlap)
 *   optional  what it costs if absent:
 *             sys_config.move,        krealloc of a big object copies its
 *             move_min                bytes instead of moving its pages
 *             sys_config.commit_lazy  a big object growing in place alone
 *                                     takes the page allocator's lock
 *                                     every 1.25x of growth, not every 2x
 *             sys_config.nomem        no errno-style report of failures
 *             sys_config.release_zero kmalloc_trim keeps the page maps (16
 *                                     bytes per heap page ever grown)
 *             sys_config.now_ns,      memory returns by allocation volume
 *             release_ms              only, never while the heap is idle;
 *                                     caches do not age
 *             sys_config.             (with now_ns) release happens only on
 *             start_background        allocation slow paths and at
 *                                     kmalloc_safepoint
 *             sys_config.now_coarse_ns (with now_ns) now_ns is read at each
 *                                     take and give of heap pages
 *             sys_config.cpu_unpublish, a CPU that stops calling kmalloc
 *             cpu_fence, cpu_busy     without reaching kmalloc_safepoint
 *                                     keeps its caches full (mcache.c)
 *             sys_config.backtrace    reports carry one frame (the
 *                                     caller), not a backtrace (mstack.c)
 *             sys_config.track_sites, roots, stop_world, start_world,
 *             symbolize               the leak detector reports no
 *                                     allocation sites / sees only roots
 *                                     given by kmalloc_add_root / scans
 *                                     with other CPUs running (the caller
 *                                     must keep them off the heap) /
 *                                     prints raw addresses
 *             sys_config.mesh_alias,  sparse spans never share frames
 *             mesh_unalias,           (meshing, mmesh.c)
 *             mesh_protect/unprotect,
 *             mesh_context
 *             sys_config.guard,       no guarded sampling (mkfence.c):
 *             kfence_ms,              overflows and uses after free are
 *             kfence_objects          not caught where they happen
 *             SYS_MCACHE_GET/SET      one more load (a table indexed by
 *                                     sys_cpu_id) per kmalloc and kfree
 *             SYS_MAX_CPUS            32768: mm's static per-CPU
 *                                     tables take 9 bytes per possible
 *                                     CPU (17 without SYS_MCACHE_GET),
 *                                     288 KiB of .bss at that count
 *             SYS_PREFETCH_W          the compiler's prefetch, for reading
 *                                     only where it has no write prefetch
 *                                     for the target: a free of an object
 *                                     another CPU wrote last takes its
 *                                     lines twice
 *             kmalloc_safepoint()     (the port calls it, from each CPU's
 *                                     timer tick) other CPUs' caches are
 *                                     emptied for kmalloc_trim only when
 *                                     those CPUs next take a slow path
 *             kmalloc_cpu_idle()      (the port calls it when a CPU stops
 *                                     calling kmalloc_safepoint, e.g. idle
 *                                     without a timer) kmalloc_trim waits
 *                                     seconds for each such CPU
 * sys_arch.h must also define `struct sys_lock` (zero-initialised storage
 * means unlocked). Nothing else in mm/ depends on the port.
 */
#ifndef MM_SYS_H
#define MM_SYS_H

#include <stddef.h>
#include <stdint.h>

struct sys_config {
	size_t page_size;      /* commit granularity: a power of two up to
	                          2 MiB; 4096 on both ports. Above mm's 8 KiB
	                          heap page (a kernel that maps only 2 MiB
	                          pages), mm commits and releases whole units,
	                          each all Ready or all Reserved: commits then
	                          run under mheap.lock, a unit is released only
	                          when all its pages are free, metadata blocks
	                          are never released and krealloc copies
	                          instead of calling move. */
	int commit_zeroed;     /* 1 if memory reads as zero when it turns Ready
	                          (both ports: yes). 0: mm zeroes the metadata
	                          it commits, and kzalloc clears objects of
	                          fresh spans too (test_genericport_dirty runs
	                          on commits full of 0xa5). */
	unsigned max_cpus;     /* every sys_cpu_id() is < max_cpus */
	size_t arena_size;     /* bytes of heap arena to reserve; 64 GiB on
	                          both ports. Metadata is reserved beside it
	                          (nothing of it committed until used): a
	                          fifth of the arena for span records (their
	                          worst case, 8 KiB spans of 8 B objects; with
	                          track_sites 1.25 times the arena, a site
	                          word per slot), 0.2% for the page maps, and
	                          per CPU of max_cpus 352 KiB for its mcache
	                          (18 KiB) and the magazine entries of every
	                          span class, typed caches' too; a CPU commits
	                          those of the classes it uses (an idle host
	                          thread: about 70 KiB, README); 280 KiB for
	                          meshing's scratch, of which a port that
	                          meshes commits 24 KiB for the paced work and
	                          all while kmalloc_mesh runs */
	/* Optional hook, NULL if the port has none (then big objects that
	 * krealloc cannot grow in place are copied).
	 * Ready -> Ready + Ready -> Reserved: give dst the memory of
	 * [src, src+n) without copying (page-table moves: mremap on Linux,
	 * moving PTEs plus one TLB shootdown in a kernel); what dst held is
	 * dropped, src becomes Reserved.
	 *    pre: src, dst, n page-aligned, n > 0; both ranges Ready and
	 *         disjoint; no mm lock held; interrupts as the caller of
	 *         krealloc left them.
	 *    Returns 0, or -1 with nothing changed (the caller copies). */
	int (*move)(void *dst, void *src, size_t n);
	/* With move: the object size from which the port's move costs less
	 * than a copy (its page-table work and the faults of the range it
	 * leaves, against memcpy); smaller objects are copied. 0 means
	 * 256 KiB. The port measures it: the host's is 8 MiB (mremap
	 * against memcpy, arch/host/sys.c). */
	size_t move_min;
	/* 1 if committed memory costs nothing until written (the host: pages
	 * come on first touch). Then krealloc gives a large object growing in
	 * place, with nothing within four times its size after it, twice its
	 * size as room: a quarter more (as with 0) made a buffer growing
	 * alone take mheap.lock and update the page allocator every 1.25x of
	 * growth (mlarge.c). The kernel leaves it 0: its commits take frames,
	 * and a quarter of room is all it gives. */
	int commit_lazy;
	/* Optional hook, NULL if the port has none: called just before a
	 * kmalloc-family function returns NULL because memory is exhausted or
	 * the size is impossible (a C library port sets errno = ENOMEM here,
	 * so its malloc needs no test of its own).
	 *    pre: no mm lock held. */
	void (*nomem)(void);
	/* Optional hook, NULL if the port has none (then the page maps keep
	 * 16 bytes per heap page the heap ever grew to, after any trim).
	 * Ready -> Reserved like sys_release, except that the range stays
	 * readable and reads as zero until sys_commit makes it Ready again
	 * (Linux: MADV_DONTNEED on a private writable mapping does exactly
	 * this; a kernel maps one shared zero frame read-only). kmalloc_trim
	 * gives back the page-map words of chunks that hold no span with it:
	 * kfree reads those words without a lock for any pointer into the
	 * heap, a stray one too, so they must never fault (mm/mmeta.c).
	 *    pre: as sys_release; sys_commit must accept such a range as
	 *         Reserved (and no CPU may read the old zeros after it). */
	void (*release_zero)(void *p, size_t n);
	/* Optional hooks of the leak detector (kmalloc_leak_scan), each NULL
	 * if the port has none:
	 *  track_sites  called once by kmalloc_init: nonzero makes every
	 *               allocation record where it was made (into the stack
	 *               depot: still a word per object, and the per-CPU fast
	 *               paths off), for the report's "allocated at" and
	 *               backtrace, and the per-object flags of
	 *               kmalloc_leak_not_leak and co. The value is the frames
	 *               to record: 1 the caller alone (no walk), 2..8 (more
	 *               is 8) a backtrace through the hook below. The
	 *               kernel's kmemleak=on (8), the host's
	 *               KMALLOC_LEAK_CHECK=1 (KMALLOC_LEAK_FRAMES, default 8).
	 *               Cost per allocation: make bench-sites (README).
	 *  roots        call scan(start, len, arg) for every range of memory
	 *               that may hold pointers to live objects and is not
	 *               itself allocated by kmalloc: data/bss, stacks,
	 *               per-CPU areas. Without it only the ranges given to
	 *               kmalloc_add_root are roots.
	 *  stop_world   stop every other CPU (interrupts off, parked, from a
	 *               point where they were on: outside every section
	 *               between sys_irq_save and sys_irq_restore and every
	 *               lock hold; its registers where the roots hook finds
	 *               them) and return 0, or -1 if it cannot; start_world
	 *               lets them go. Without them the caller must make sure
	 *               that no other CPU allocates or frees during the scan.
	 *               The host port's threads have no interrupts: its
	 *               sys_irq_save/restore count a per-thread depth, and a
	 *               stop signal that finds it nonzero takes effect at the
	 *               restore that ends the section (arch/host/sys_arch.h).
	 *               The scanning CPU itself: kmalloc_leak_scan disables
	 *               interrupts there (sys_irq_save) from the stop to the
	 *               restart, so an interrupt handler that allocates never
	 *               runs under the scan; stop_world may be called with
	 *               interrupts on or off, and finds them as it left them
	 *               at start_world.
	 *  symbolize    write "func+0xoff" for a code address into buf (at
	 *               most cap bytes, no newline); return its length, 0 if
	 *               unknown. Without it sites print as hex. */
	int (*track_sites)(void);
	void (*roots)(void (*scan)(const void *start, size_t len, void *arg), void *arg);
	int (*stop_world)(void);
	void (*start_world)(void);
	size_t (*symbolize)(uintptr_t pc, char *buf, size_t cap);
	/* Optional hook, NULL if the port has none: store the return
	 * addresses of the calling thread's chain of calls, innermost first
	 * (frames inside mm and the hook's own included: mm_backtrace cuts
	 * them off at the allocation site), in pcs[0..max); return how many.
	 * It may stop early (frames it cannot walk) and return 0.
	 *    pre: no mm lock held and interrupts on (outside sys_irq_save
	 *         sections): the host's DWARF unwinder takes the dynamic
	 *         loader's lock, which a thread waiting for an mm lock, or
	 *         stopped for a leak scan, may hold. Never allocates. Leak
	 *         tracking calls it after each allocation with interrupts as
	 *         the kmalloc caller left them: off in a kernel's interrupt
	 *         handler, so a kernel's walk must work there (a frame-
	 *         pointer walk does); host code never calls kmalloc inside a
	 *         sys_irq_save section.
	 * For reports that carry a backtrace (leak reports, guarded
	 * sampling); without it they carry one frame, the caller of the
	 * kmalloc-family function. Kernel: a frame-pointer walk; host:
	 * libgcc's _Unwind_Backtrace (about 0.4 us a frame: 4-5 us per
	 * tracked allocation keeping 8, make bench-sites). */
	unsigned (*backtrace)(uintptr_t *pcs, unsigned max);
	/* Optional hook, NULL if the port has none: a monotonic clock in
	 * nanoseconds (any origin, never going back; the host's
	 * CLOCK_MONOTONIC, the kernel's TSC).
	 *    pre: none. It runs with or without mm locks held and with
	 *         interrupts off (kmalloc_safepoint from a timer interrupt),
	 *         so it takes no lock and never allocates.
	 * With it the heap returns memory by age (mscavenge.c): free pages
	 * nobody reused for release_ms go back to the port, and caches
	 * nobody used for half that go back to their spans, in paced steps
	 * (kmalloc_background). Without it the scavenger paces by allocation
	 * volume: a heap that stops allocating keeps what it freed until
	 * kmalloc_trim, and caches never age. */
	uint64_t (*now_ns)(void);
	/* Optional hook, with now_ns: the same clock read cheaply, at most
	 * 10 ms behind it (never ahead); the host's CLOCK_MONOTONIC_COARSE,
	 * a kernel's tick count. pre: as now_ns. The core reads it where a
	 * reading only dates pages or asks whether a step is due: each take
	 * of pages from the heap, each give back, each slow path's check of
	 * the background step. Without it the core reads now_ns there (on
	 * the host 34 against 8 ns a reading: 11% of the realloc workload's
	 * time, whose in-place extensions each take pages). A port or test
	 * that sets now_ns sets this with it, or clears it. */
	uint64_t (*now_coarse_ns)(void);
	unsigned release_ms; /* with now_ns: how long a free page or an
	                          unused cache waits before it goes back;
	                          0 means 1000 (Go's background scavenger
	                          releases within a few seconds too) */
	/* Optional hook, with now_ns, NULL if the port has none: start a
	 * context that calls kmalloc_background() in a loop, sleeping for as
	 * long as each call returns (Go's bgscavenge goroutine; the host
	 * creates a thread). The core calls it once, when the heap first
	 * grows past background_min (a port may ask again after a fork by clearing
	 * mheap.bg_state: arch/host/fork.c), with no mm lock held, from an
	 * allocation's slow path, so it may allocate.
	 *    Returns 0 if the context runs, -1 if not.
	 * Without it (or below background_min) the heap's own calls do the steps:
	 * the allocation slow paths, and kmalloc_safepoint where the port
	 * calls it; a heap that nobody calls keeps its pages until then. */
	int (*start_background)(void);
	size_t background_min; /* heap bytes before start_background is
	                          called; 0 means 64 MiB */
	/* Optional hooks, all three or none, with now_ns: the paced
	 * background work drains the caches of a CPU that stopped calling
	 * kmalloc (mcache.c, "idle CPUs"). A kernel's idle CPU reaches
	 * kmalloc_safepoint or kmalloc_cpu_idle instead and needs none of
	 * this; the host's threads are CPUs that may block for good with
	 * their caches full (a thread pool's idle workers). Without them
	 * such a CPU keeps what its caches hold until it next allocates.
	 * Called from kmalloc_background, with no mm lock held, interrupts
	 * on, never for the calling CPU's own id.
	 *  cpu_unpublish(cpu)  CPU cpu's SYS_MCACHE slot becomes NULL, so
	 *               its next kmalloc or kfree takes the slow path.
	 *               Returns 0, or -1 if nothing runs as that CPU now
	 *               (nothing changed).
	 *  cpu_fence()  returns once every CPU ran a full memory barrier
	 *               (Linux: membarrier PRIVATE_EXPEDITED), so a CPU's
	 *               sys_irq_save and its load of the slot are ordered
	 *               against this CPU's stores before the call. Returns
	 *               0, or -1 if it cannot (nothing is drained then).
	 *  cpu_busy(cpu)  after cpu_fence: nonzero if CPU cpu is between
	 *               sys_irq_save and sys_irq_restore or its slot is
	 *               not NULL; when zero, what the CPU wrote before its
	 *               last sys_irq_restore is visible to the caller
	 *               (acquire). A CPU nothing runs as: 0. */
	int (*cpu_unpublish)(unsigned cpu);
	int (*cpu_fence)(void);
	int (*cpu_busy)(unsigned cpu);
	/* Optional hooks of meshing (mm/mmesh.c), NULL if the port has none
	 * (then nothing is ever meshed: sparse spans keep their frames).
	 * mesh_alias and mesh_unalias both, and either mesh_protect with
	 * mesh_unprotect or stop_world/start_world to keep writers out while
	 * a span's objects are copied. Called from the paced background work, kmalloc_trim
	 * and kmalloc_mesh, with no mm lock held; src and dst are spans of
	 * the heap arena, len a multiple of 8 KiB (with mesh_runs, up to
	 * MESH_BATCH adjacent spans onto as many adjacent spans at once).
	 *  mesh_protect(src, len)  Ready -> Ready read-only: a write to the
	 *               range waits (the host's fault handler waits and
	 *               retries) until mesh_alias of the range returns.
	 *               Returns 0, or -1 with nothing changed: a refusal
	 *               ends that kmalloc_mesh, and the paced work asks
	 *               less often until a mesh goes through or an alias
	 *               is unmapped (up to 6.4 s apart; the host refuses
	 *               once its mappings reach their budget).
	 *  mesh_unprotect(src, len)  undoes mesh_protect (a mesh given up).
	 *  mesh_alias(dst, src, len, own)  [src, src+len) maps the memory
	 *               behind [dst, dst+len), writable (waiting writers go
	 *               on, into dst's memory at the same offset). own: src's
	 *               memory is its own and is given back (sys_release's
	 *               cost); 0: src is an alias of another range already
	 *               (a whole group moves), its memory is that range's and
	 *               stays. Both ranges stay Ready. Returns 0, or -1 with
	 *               src as before and writable again (own == 0: must not
	 *               fail).
	 *  mesh_unalias(src, len)  [src, src+len), an alias, maps nothing of
	 *               its own any more: Reserved (dst's memory is dst's);
	 *               pre: interrupts may be off (as sys_release); no slot
	 *               of it is out. Returns 0, or -1 with the alias as it
	 *               was (the host, out of mappings): the core keeps it,
	 *               and dst's memory with it, and tries again at its next
	 *               reap.
	 *  mesh_context()  optional: nonzero if the paced background work
	 *               may mesh (and reap aliases) where it is called from;
	 *               NULL: anywhere. The kernel says no in the timer tick,
	 *               where stop_world would stall the interrupted code
	 *               (arch/x86_64/mesh.c); kmalloc_mesh and kmalloc_trim
	 *               do not ask. */
	int (*mesh_protect)(void *src, size_t len);
	void (*mesh_unprotect)(void *src, size_t len);
	int (*mesh_alias)(void *dst, void *src, size_t len, int own);
	int (*mesh_unalias)(void *src, size_t len);
	int (*mesh_context)(void);
	/* Optional, with meshing: nonzero if aliases of adjacent spans onto
	 * adjacent spans cost the port less than scattered ones (the host:
	 * Linux merges such a run into one mapping, and a process's mappings
	 * are limited). A class that grows then takes up to a sixteenth of
	 * its spans more at once, adjacent, so runs exist (mcentral.c
	 * grow_batch); they wait committed and empty until refills take them
	 * (frames, on a port whose commit maps them, which is why the kernel
	 * leaves it 0: its aliases cost a page-table entry each, run or not). */
	int mesh_runs;
	/* Optional hook of guarded sampling (mm/mkfence.c), NULL if the port
	 * has none (then nothing is sampled). mm reserves a pool of sys pages
	 * after the arena and changes its pages only through this hook,
	 * never through sys_commit or sys_release:
	 *  guard(p, n, 1)  Reserved -> Ready (reads as zero, as sys_commit).
	 *               Returns 0, or -1 with nothing changed (no memory:
	 *               the sample is skipped).
	 *  guard(p, n, 0)  Ready -> Reserved, and any access to the range
	 *               faults (the host's sys_release leaves pages readable
	 *               as zero; this may not). Returns 0; cannot fail.
	 *    pre: p, n multiples of page_size; no mm lock held; interrupts
	 *         may be off (a sample or free in the kernel's timer
	 *         interrupt), as for sys_commit and sys_release.
	 * A fault on the pool goes to kmalloc_kfence_fault (kmalloc.h), which
	 * prints the report; the port then stops (panic, abort).
	 *  kfence_ms    the sampling interval: about one allocation per
	 *               interval is served from the pool; 0: none (the port
	 *               may still turn it on later, kmalloc_kfence_set).
	 *               Needs now_ns.
	 *  kfence_objects  the pool's size in objects; 0 means 255 (KFENCE's
	 *               default): 2 * (n + 1) sys pages of address space,
	 *               reserved only; one page is Ready per live sample. */
	int (*guard)(void *p, size_t n, int open);
	unsigned kfence_ms;
	unsigned kfence_objects;
};

/* Defined by the port. The port may set fields until kmalloc_init runs
 * (the kernel takes arena_size from its command line); from then on mm
 * reads it and nobody writes it. */
extern struct sys_config sys_config;

/* Arena sizes kmalloc_init accepts (arena_size is rounded down to 4 MiB;
 * a failing sys_reserve is retried with half as much down to the
 * minimum): at least 4 chunks of 4 MiB, at most what the page
 * allocator's 8 summary levels of fan-out 8 cover (8^7 chunks). */
#define SYS_ARENA_MIN ((size_t)16 << 20)
#define SYS_ARENA_MAX ((size_t)8 << 40)

/* Port-specific inline parts: struct sys_lock, and possibly `static
 * inline` definitions of sys_cpu_id / sys_irq_save / sys_irq_restore /
 * sys_lock / sys_unlock (the declarations below then keep that internal
 * linkage), and the optional SYS_MCACHE_GET/SET. */
#include <sys_arch.h>

/* 1. Unreserved -> Reserved. Reserve `size` bytes of address space; store
 *    the page-aligned base in *base.
 *    pre: called by kmalloc_init only, before any other function here
 *         except sys_lock/sys_unlock/sys_log/sys_fault. If it fails,
 *         kmalloc_init retries with the arena halved (down to 16 MiB), so
 *         a port with a fixed window simply refuses sizes that do not fit;
 *         after one success it is never called again.
 *    Returns 0, or -1 (nothing reserved). Costs no memory. */
int sys_reserve(size_t size, void **base);

/* 2. Reserved -> Ready. Back [p, p+n) with memory that reads as zero
 *    (if sys_config.commit_zeroed; else with anything).
 *    pre: p, n page-aligned, n > 0; every page of the range is Reserved.
 *    pre: heap pages are committed with no mm lock held (mheap.c's
 *         commit_runs), except where the commit unit is above 8 KiB
 *         (commit_granules, under mheap.lock). Metadata is committed under
 *         mheap.lock: the metadata arrays (meta_ensure), blocks of span
 *         records (the fixalloc refill), and what kmalloc_trim gave back
 *         and a later allocation needs again (page-map units and chunk
 *         records, mmeta.c; transfer-cache entries, mtransfer.c). So it
 *         may run with interrupts off, from any allocation path, an
 *         interrupt handler's included (kernel): it only takes frames and
 *         writes page-table entries, and needs no kmalloc.
 *    Returns 0, or -1 when memory is exhausted; on -1 the whole range is
 *    still Reserved (nothing half-committed). */
int sys_commit(void *p, size_t n);

/* 3. Ready -> Reserved. Give the memory behind [p, p+n) back (Go's
 *    sysUnused); the contents are lost and accesses fault again.
 *    pre: p, n page-aligned, n > 0; every page of the range is Ready.
 *    pre: no mm lock held. Called by the scavenger's steps (heap pages:
 *         the allocation slow paths, kmalloc_background, and
 *         kmalloc_safepoint, which the kernel calls from its timer
 *         interrupt), by kmalloc_trim (heap pages, blocks of span records,
 *         transfer-cache entries), by kmalloc_mesh and so kmalloc_trim
 *         (meshing's scratch, where the port meshes), never by kfree. Interrupts may be off:
 *         in the timer interrupt, and in any kmalloc slow path called with
 *         them off (the kernel port then leaves the frames in its TLB
 *         gather and shoots them down when the CPU next runs with
 *         interrupts on).
 *    Cannot fail. */
void sys_release(void *p, size_t n);

/* 4. Id of the running CPU, < sys_config.max_cpus.
 *    pre: interrupts disabled (sys_irq_save), so the caller cannot migrate.
 *    The host port treats every thread as a CPU (see arch/host/sys.c). */
unsigned sys_cpu_id(void);

/* 5. Disable interrupts on this CPU; return the previous state for
 *    sys_irq_restore. Nests. Both 5 and 6 are compiler barriers (an asm
 *    with a "memory" clobber, or an out-of-line call): mm relies on no
 *    access of the fast path moving out of the section. */
unsigned long sys_irq_save(void);

/* 6. Restore the interrupt state returned by the matching sys_irq_save. */
void sys_irq_restore(unsigned long flags);

/* Optional: SYS_MCACHE_GET() and SYS_MCACHE_SET(c) in sys_arch.h read and
 * write a per-CPU slot holding this CPU's `struct mcache *`, NULL until
 * mm sets it (a thread-local on the host, a %gs-relative field in our
 * kernel). mm sets it from its slow path; kmalloc's and kfree's fast
 * paths read it in one load instead of indexing a table by sys_cpu_id().
 * pre: interrupts off; the slot is NULL or holds the mcache of the CPU
 * that reads it (a port that hands the running context a different CPU
 * id must clear it). */

/* Optional: SYS_MAX_CPUS in sys_arch.h, the most CPUs the port will ever
 * have (sys_config.max_cpus must not exceed it; kmalloc_init stops with
 * "sys_config.max_cpus too large" otherwise). mm keeps static tables
 * indexed by CPU, usable before kmalloc_init: a pointer to each CPU's
 * mcache and a byte for its safe points, 9 bytes per CPU, and a second
 * pointer without SYS_MCACHE_GET. Default 32768, what a Linux process
 * reaches as threads; our kernel says 256 (its MAX_CPUS), which keeps
 * the tables at 2.3 KiB instead of 288 KiB. */
#ifndef SYS_MAX_CPUS
#define SYS_MAX_CPUS 32768
#endif

/* Optional: SYS_PREFETCH_W(p) in sys_arch.h starts fetching the cache
 * line of p for writing (x86's prefetchw: owned at once, where a read
 * would share it and the write then take it again); a hint that never
 * faults, p may be any address. kfree issues it for the object's live
 * byte and first line. Without it, __builtin_prefetch(p, 1). */
#ifndef SYS_PREFETCH_W
#define SYS_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#endif

/* 7./8. Spinlock over `struct sys_lock` (from sys_arch.h; all-zero storage
 *    is unlocked). Not recursive. The kernel port keeps interrupts disabled
 *    while a lock is held, so an interrupt handler that allocates cannot
 *    deadlock against the code it interrupted; the host port spins briefly
 *    and then yields, so it behaves under preemption. sys_lock is an
 *    acquire and sys_unlock a release (what one holder wrote, the next
 *    sees), and both are compiler barriers. The lock order of mm is
 *    written in mm/internal.h. */
void sys_lock(struct sys_lock *l);
void sys_unlock(struct sys_lock *l);

/* 9. Report misuse or corruption and stop: print one line
 *    "kmalloc: <msg>: <p>" (p as 0x-prefixed hex), then the host aborts and
 *    the kernel panics with a backtrace. Must not allocate. Never returns.
 *    May be called with mm locks held and interrupts off. */
_Noreturn void sys_fault(const char *msg, const void *p);

/* 10. Write one line of text (no newline in s; the port adds it). Used by
 *    kmalloc_dump, and by the leak scan's reports while the other CPUs
 *    are stopped: it must not allocate nor take a lock a stopped CPU may
 *    hold (the kernel's console lock is taken with a bounded spin). */
void sys_log(const char *s);

#endif /* MM_SYS_H */
