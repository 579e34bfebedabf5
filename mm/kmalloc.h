/*
 * kmalloc.h: the public interface of the allocator, and the only header a
 * kernel (or a host program) includes to use it.
 *
 * The allocator is Go's runtime allocator without the garbage collector:
 * requests up to 64 KiB are rounded to one of 71 size classes and served
 * from the calling CPU's caches without a lock; larger requests get spans
 * of 8 KiB heap pages of their own. Freeing is explicit, from any CPU,
 * into the freeing CPU's caches.
 * See mm/malloc.c for the overview of the data structures and paths, and
 * mm/sys.h for what a port must provide.
 *
 * Contract shared by every function here:
 *   - Callable from any CPU, with interrupts on or off, and from interrupt
 *     handlers (the kernel port keeps interrupts off inside the allocator).
 *   - Alignment: every object of 16 bytes or more is 16-byte aligned;
 *     power-of-two sizes up to 8 KiB are naturally aligned. kmemalign()
 *     gives any power-of-two alignment up to at least 64 KiB.
 *   - Failure (out of memory, a size that overflows or exceeds the arena)
 *     returns NULL and changes nothing; the heap serves again after frees.
 *   - Misuse (double free, freeing or sizing anything that is not the start
 *     of a live object) is detected before anything is modified, reported
 *     as one line "kmalloc: <fault>: <pointer>" and stops (the kernel
 *     panics with a backtrace, the host port aborts).
 */
#ifndef KMALLOC_H
#define KMALLOC_H

#include <stddef.h>
#include <stdint.h>

/* Flags for the `flags` argument; 0 means default. */
#define KM_ZERO 0x2u   /* return zeroed memory (what kzalloc passes) */
#define KM_NOSCAN 0x1u /* the object holds no pointers (a string, a
                          buffer, page data): the leak detector does not
                          look inside it, so a pointer stored only in it
                          keeps nothing alive (kmalloc_leak_scan) */

/* Number of size classes including the unused class 0 (Go's 68, then four
 * of ours above 32 KiB: sizeclasses.h). */
#define KMALLOC_NUM_CLASSES 72
/* Largest size served from a size class; larger requests are large objects. */
#define KMALLOC_MAX_SMALL 65536

/* Set the allocator up. The kernel calls it once, before any other
 * function here; the host port calls it itself on first use. Returns 0, or
 * -1 if the port could not reserve the arena. */
int kmalloc_init(void);

void *kmalloc(size_t size, unsigned flags);
void *kzalloc(size_t size, unsigned flags);
/* n * size bytes, zeroed; NULL when n * size overflows. */
void *kcalloc(size_t n, size_t size, unsigned flags);
/* Resize. Stays in place when the new size still fits the object's size
 * class (or large object), is more than half of it and the object has
 * the alignment promised above for the new size (a typed cache's object
 * may not: it moves to a kmalloc object), when a large object grows
 * into the room krealloc gave its span, or into the free pages after it
 * (taking a quarter more as room where that is free too);
 * an object grown past 8 KiB becomes or stays large, so it grows in
 * place from then on. Otherwise allocates (a growing object with room:
 * twice its old size if small, 5/8 more pages if large), moves the
 * contents (by page-table moves for big objects where the port's are
 * cheaper than a copy, else by copying) and frees p. p == NULL acts as
 * kmalloc. size == 0 keeps p (it fits any class) and returns it; kfree
 * it as usual. On failure returns NULL and p is untouched. */
void *krealloc(void *p, size_t size, unsigned flags);
/* NULL is a no-op. */
void kfree(const void *p);
/* Usable size of the live object p (its size class, or its pages for
 * large objects, without the growth room krealloc may keep after them);
 * ksize(NULL) == 0. */
size_t ksize(const void *p);
/* align must be a power of two; returns NULL for anything else. */
void *kmemalign(size_t align, size_t size, unsigned flags);

/* Flush the calling CPU's caches: the free objects it holds go back to
 * their spans, its cached spans to their mcentrals, its cached large
 * spans to the heap. The host port calls it when a thread exits; a kernel
 * calls it before taking a CPU offline, and tests before checking that
 * every span went back to the heap. */
void kmalloc_flush_cpu(void);
/* Return every free heap page to the port (sys_release): Go's
 * debug.FreeOSMemory. First the caches are emptied: the calling CPU's
 * (as kmalloc_flush_cpu), the shared transfer caches, and every other
 * CPU's at its next kmalloc_safepoint (waited for, boundedly, on CPUs that
 * call it; the others empty theirs at their next slow path). Then the
 * free pages, then the metadata blocks (span records, bitmaps) that hold
 * no live record. */
void kmalloc_trim(void);
/* A safe point for this CPU's caches: if kmalloc_trim or an allocation
 * that ran out of memory asked every CPU to empty its caches, do it now;
 * with the port's clock, also give back this CPU's classes unused for
 * half the release delay and run a kmalloc_background step if one is
 * due. Cheap when nothing was asked (one load and compare, and a clock
 * read). A kernel calls it
 * on every CPU regularly, e.g. from the timer interrupt, with no
 * allocator call in progress on that CPU; the host port does not. */
void kmalloc_safepoint(void);
/* (A host thread that calls kmalloc_safepoint once is from then on a CPU
 * that answers drains, and every kmalloc_trim waits for it: a thread
 * that will not call it regularly follows it with kmalloc_cpu_idle.) */
/* This CPU stops calling kmalloc_safepoint for a while (it goes idle with
 * its timer stopped): drains stop waiting for it until its next
 * kmalloc_safepoint. Its caches stay as they are and are emptied at that
 * safe point or its next slow path; kmalloc_flush_cpu first empties them.
 * Without it, every kmalloc_trim waits seconds for each such CPU. Call
 * with no allocator call in progress on this CPU. */
void kmalloc_cpu_idle(void);
/* One bounded step of the heap's background work if one is due, for a
 * port with a clock (sys_config.now_ns): shared caches nobody used for
 * half of
 * sys_config.release_ms go back to their spans, and free pages nobody
 * reused for release_ms go back to the port, a few MiB per call, oldest
 * chunks first (Go's background scavenger). Returns the nanoseconds to
 * wait before the next call: short while there is a backlog (paced so
 * the work takes about a twentieth of one CPU), a quarter of the delay
 * when there is none, UINT64_MAX without a clock. Safe from any context
 * with no allocator call in progress on this CPU; steps never overlap
 * (a call while another runs returns at once). The port's background
 * thread calls it (sys_config.start_background); kmalloc_safepoint calls
 * it itself when a step is due. */
uint64_t kmalloc_background(void);

/* Guarded sampling (mm/mkfence.c, Linux's KFENCE), where the port has
 * sys_config.guard: about one allocation of up to a sys page per interval
 * sits against an inaccessible page, and its page becomes inaccessible
 * when freed.
 * kmalloc_kfence_fault: the port's page-fault handler calls it for every
 * fault it does not understand itself, with the faulting address, 1 for a
 * write, the faulting instruction (0: unknown) and a line writer (no
 * newline; must not allocate). Returns 0 if the address is not in the
 * pool; else it has written the report (its first line
 * "kfence: out-of-bounds write at 0x... (N bytes right of M-byte object
 * 0x... allocated at f+0x..)", or "left of", or "kfence: use-after-free
 * read at 0x... (object 0x... freed at ...)", then the allocation and
 * free backtraces) and returns 1: the port stops (panic, abort). N counts
 * the accessed byte: p[size] is 1 byte right, p[-1] 1 byte left.
 * kmalloc_kfence_set: the sampling interval in milliseconds from now on
 * (0: off); -1 if the port has no guard hook or the pool cannot be set
 * up. */
int kmalloc_kfence_fault(uintptr_t addr, int write, uintptr_t pc, void (*log)(const char *line));
int kmalloc_kfence_set(unsigned ms);

/* Per size class, both halves (scanned and KM_NOSCAN objects) together;
 * the noscan_ fields are the KM_NOSCAN half alone. */
struct kmalloc_class_stats {
	uint64_t size;   /* bytes per object (0 for class 0) */
	uint64_t allocs; /* objects ever allocated */
	uint64_t frees;  /* objects ever freed */
	uint64_t live;   /* allocs - frees */
	uint64_t spans;  /* spans of this class currently in use */
	uint64_t noscan_live;  /* live objects allocated with KM_NOSCAN */
	uint64_t noscan_spans; /* spans of those */
};

/* Like Go's runtime.MemStats. All byte counts are bytes, not pages. */
struct kmalloc_stats {
	struct kmalloc_class_stats cls[KMALLOC_NUM_CLASSES];
	uint64_t large_allocs;  /* large objects ever allocated */
	uint64_t large_frees;   /* large objects ever freed */
	uint64_t large_live;    /* large objects live now */
	uint64_t large_bytes;   /* bytes of spans holding live large objects */
	uint64_t heap_sys;      /* arena bytes the heap has grown into:
	                           inuse + free + released */
	uint64_t heap_inuse;    /* bytes in spans in use (small and large) */
	uint64_t heap_free;     /* free pages still committed (retained) */
	uint64_t heap_released; /* free pages returned to the port */
	uint64_t meta_sys;      /* committed bytes of allocator metadata */
	uint64_t committed;     /* every byte currently committed through the
	                           port: heap_inuse + heap_free + meta_sys
	                           - mesh_bytes */
	/* meshing (kmalloc_mesh): */
	uint64_t mesh_count;        /* meshes done */
	uint64_t mesh_failed;       /* meshes the port refused */
	uint64_t mesh_spans;        /* aliases now: spans on another's frames */
	uint64_t mesh_bytes;        /* heap bytes whose frames meshing gave back
	                           (counted in heap_inuse) */
	uint64_t mesh_steps;        /* copies + remaps: one mesh, or a run
	                           of them as one range (sys.h mesh_runs) */
	uint64_t mesh_pause_max_ns; /* longest copy + remap of one step */
	uint64_t mesh_pause_sum_ns; /* over mesh_steps */
	/* caches of CPUs that stopped calling kmalloc (the host's idle
	 * threads), drained by the background work (mm/mcache.c) */
	uint64_t idle_drains;
	/* guarded sampling (mkfence.c) */
	uint64_t kfence_allocs;  /* objects served from the guarded pool */
	uint64_t kfence_frees;   /* of those, freed */
	uint64_t kfence_skipped; /* samples due but not taken: pool full (all
	                            live or not yet reusable), no memory */
	uint64_t kfence_bytes;   /* committed pages of live samples (in
	                            committed; the pool's records are in
	                            meta_sys) */
};

void kmalloc_stats(struct kmalloc_stats *st);

/* Mesh now (mm/mmesh.c): merge groups of sparse spans of one class whose
 * objects do not overlap onto one set of frames, through the port's page
 * tables; no object moves to another address. Returns the meshes done (0
 * on a port without the hooks, and while background work is kept out: a
 * leak scan, a fork). The paced background work meshes too, for up to
 * 10 ms every 100 ms, and kmalloc_trim does it first. */
unsigned kmalloc_mesh(void);

/* ---- typed caches (Linux's kmem_cache, on Go's spans) ----
 * A cache serves objects of one type: its own span class, cut at the
 * object's exact size (rounded up only to its alignment), its spans never
 * shared with kmalloc or another cache, so memory freed to a cache comes
 * back only as an object of that cache. Allocation and free take the same
 * per-CPU paths as kmalloc and kfree and cost the same.
 *
 * kmem_cache_create returns NULL for size 0, size above 32 KiB (Go's
 * largest size class; kmalloc's classes above it hold one object a span,
 * and bigger objects are whole spans of their own: nothing to share),
 * align not a power of two or above 8 KiB (a heap page: spans are only
 * that aligned), unknown flags, or when all of the 56 caches of that
 * kind (scanned, KMC_NOSCAN) exist. align 0 means the natural alignment
 * of size up to 16 (at least 8). name is copied
 * (31 characters kept). ctor, if not NULL, runs once per object when the
 * cache makes a new span (SLUB's meaning: not on every allocation), with
 * interrupts off, and must not call the allocator: objects must be freed
 * in their constructed state, since kmem_cache_alloc hands them out as
 * they came back. kmem_cache_alloc with KM_ZERO returns a zeroed object
 * (constructed or not); without a ctor and without KM_ZERO an object may
 * hold old data, as with kmalloc.
 *
 * kmem_cache_free(c, p) checks that p is a live object of c before it
 * touches anything: an object of another cache or of kmalloc ends in
 * "kmalloc: wrong cache: <p>" (after a log line naming both, "kmalloc:
 * wrong cache: 0x... (object of 'inode', freed to 'dentry')"); double and
 * invalid frees are reported as kfree reports them. kfree and ksize accept
 * cache objects too. NULL is a no-op.
 *
 * kmem_cache_destroy returns 0 when no object is live (the cache's spans
 * and class go back for reuse; c is invalid from then on), or -1 after
 * the log line "kmem_cache_destroy: 'inode': 3 objects remaining: 0x...
 * 0x... 0x..." (16 addresses at most, then "and N more"), the cache
 * staying usable. NULL is a no-op. kmem_cache_shrink gives back the
 * cache's empty spans (every CPU's caches are drained first) and returns
 * how many heap pages (8 KiB) went. create, destroy and shrink drain and
 * wait for other CPUs: call them from thread context, not from interrupt
 * handlers; shrink may run while other CPUs use the cache, destroy only
 * once nobody does. A destroyed cache's record and class are reused by a
 * later create once every CPU that used the cache has drained (at its
 * next safe point or slow path, or when its thread exits). */
struct kmem_cache;
#define KMC_NOSCAN  0x1u /* objects hold no pointers (leak detector does not scan them) */
#define KMC_HWALIGN 0x2u /* align objects to the cache line (64 B) */
struct kmem_cache *kmem_cache_create(const char *name, size_t size, size_t align, unsigned flags,
                                     void (*ctor)(void *obj));
void *kmem_cache_alloc(struct kmem_cache *c, unsigned flags); /* flags: 0 or KM_ZERO */
void kmem_cache_free(struct kmem_cache *c, void *obj);
int kmem_cache_shrink(struct kmem_cache *c);  /* give back empty spans; returns pages freed */
int kmem_cache_destroy(struct kmem_cache *c); /* 0, or -1 if objects are live (cache kept) */

/* A cache's counters (kmalloc_dump prints the same as /proc/slabinfo
 * lines, "kmalloc: slabinfo: <name> <active_objs> <num_objs> <objsize>
 * <objperslab> <pagesperslab>", after the class table). */
struct kmem_cache_stats {
	uint64_t objsize;      /* bytes per object: size rounded to align */
	uint64_t align;        /* alignment of every object */
	uint64_t objperslab;   /* objects per span */
	uint64_t pagesperslab; /* heap pages (8 KiB) per span */
	uint64_t allocs;       /* objects ever allocated */
	uint64_t frees;        /* objects ever freed */
	uint64_t active_objs;  /* allocs - frees */
	uint64_t slabs;        /* spans in use */
	uint64_t num_objs;     /* slabs * objperslab */
};
void kmem_cache_stats(struct kmem_cache *c, struct kmem_cache_stats *st);

/* ---- leak detector: Go's mark phase, never freeing anything ----
 * kmalloc_leak_scan marks every live object reachable from the roots
 * (registered ranges, and what the port names: data, bss, stacks),
 * conservatively: any aligned word that points into a live object, its
 * start or its inside, keeps it, and its words are scanned in turn unless
 * it was allocated KM_NOSCAN. Live objects left unmarked are leaks. Free
 * objects, objects waiting in per-CPU caches and the allocator's own
 * metadata are never marked or reported.
 *
 * The heap must hold still while it runs: the port stops every other CPU
 * for the scan (sys_config.stop_world) at a point where it is not inside
 * an allocator call's critical section, and their stacks and registers
 * are roots. The kernel port parks its other CPUs by IPI; the host port
 * stops every other thread of the process by a signal (SIGRTMAX - 2, or
 * KMALLOC_STOP_SIGNAL=n; arch/host/stopworld.c says what happens to a
 * program's own use of it), and also scans their thread-local storage,
 * so a scan may run while other threads allocate, free, start, exit,
 * fork or wait in system calls (calls Linux restarts after a handler
 * resume). A thread that keeps the signal blocked for 2 s makes the scan
 * fail (KMALLOC_LEAK_NO_SCAN) rather than report wrongly; so does any
 * stop that cannot finish. A port without stop_world needs the caller to
 * make sure no other CPU allocates or frees meanwhile. */
struct kmalloc_leaks {
	uint64_t leaks;         /* live objects nothing points to */
	uint64_t leak_bytes;    /* their sizes (object sizes, not requests) */
	uint64_t marked;        /* live objects reached */
	uint64_t scanned_bytes; /* roots and objects read */
	uint64_t rescans;       /* overflow passes (grey stack full) */
	uint64_t suppressed;    /* leaks a kmalloc_leak_suppress pattern
	                           matched: counted here, not reported */
	uint64_t suppressed_bytes;
};
/* Called for every leak with its object, its usable size and the code
 * address that allocated it (0 unless the port tracks sites); the rest of
 * its backtrace is kmalloc_leak_backtrace(obj). Runs with the world
 * stopped and interrupts off: it must not allocate or take a lock another
 * CPU may hold (copy what it needs; name the frames after the scan). */
typedef void (*kmalloc_leak_fn)(const void *obj, size_t size, uintptr_t site, void *arg);
/* Run a scan; report each leak to fn, or (fn NULL) print it through the
 * port's log as "kmemleak: 0x<obj> size <n> [allocated at <site>]",
 * followed (sites tracked) by its backtrace, as kmemleak prints it:
 *     kmemleak:   backtrace:
 *     kmemleak:     [<0x...>] <func>+0x<off>     (up to 8 frames, the site first)
 * then print "kmemleak: <n> leaks, <bytes> bytes (<marked> live objects
 * reached, <KiB> KiB scanned)". Leaks a suppression matches are counted
 * in *out, not reported; after the scan each pattern that matched logs
 * "kmemleak: suppressed <n> leak(s), <bytes> bytes: <pattern>". Fills
 * *out if not NULL. Returns leaks;
 * or KMALLOC_LEAK_NO_SCAN, after the line "kmemleak: could not stop the
 * other CPUs; no scan" (the port may say why first) and with *out all
 * zero, when the port's stop_world failed (a CPU or thread did not stop
 * in time). Only one scan runs at a time; a second caller waits (the
 * host) or is itself stopped by the first.
 * Interrupts: the scan disables them on its own CPU itself, from the
 * moment the world is stopped until it runs again, so an interrupt
 * handler that allocates or frees (a timer tick) never runs on the
 * scanning CPU meanwhile; on the other CPUs the port's stop_world keeps
 * them out (parked with interrupts off), and without stop_world the
 * caller must. Call it with no allocator lock held, from thread context
 * (not from an interrupt handler). */
#define KMALLOC_LEAK_NO_SCAN UINT64_MAX
uint64_t kmalloc_leak_scan(struct kmalloc_leaks *out, kmalloc_leak_fn fn, void *arg);
/* The allocation backtrace of the live object obj (its start), innermost
 * first, pcs[0] its site: up to max (8 are recorded) return addresses;
 * returns how many, 0 when sites are not tracked or obj is not the start
 * of a live object. Never allocates, takes no lock: callable from a
 * kmalloc_leak_fn. */
unsigned kmalloc_leak_backtrace(const void *obj, uintptr_t *pcs, unsigned max);
/* Suppress the leaks whose backtrace has a function whose name pattern
 * matches (LeakSanitizer's `leak:` patterns: a substring, `*` for any
 * run, `^` and `$` anchors; matched against each frame's name as the
 * port's symbolize gives it, without "+0xoff"), as kmemleak's and LSan's
 * users silence known leaks. pattern must stay valid (a literal). At most
 * 64; returns 0, or -1 if the table is full. The names come from the
 * port's symbolize during the scan: the kernel's always, the host's only
 * while no other thread is stopped (dladdr takes the loader's lock); the
 * host's shim matches its KMALLOC_LEAK_SUPPRESS file after the scan
 * instead. */
int kmalloc_leak_suppress(const char *pattern);
/* What the scan cannot see, and how to tell it. The scan reads aligned
 * words of memory it is given and keeps the object a word points into.
 * It cannot see:
 *   - end pointers: a word one past an object's end (a stack's top,
 *     base + size, a buffer's limit) points at whatever follows it, and
 *     keeps that next object alive (hiding a leak there) while its own
 *     object is reported;
 *   - physical addresses (page tables, DMA descriptors, a frame number):
 *     not heap addresses, so they keep nothing;
 *   - pointers stored only where it does not read: device memory, memory
 *     the kernel maps itself outside the heap, KM_NOSCAN objects,
 *     pointers XORed, compressed, or tagged in their high bits.
 * These take the start of a live object and return 0, or -1 (nothing
 * changes) when p is not one or sites are not tracked (the flags live in
 * the object's tracking word: sys_config.track_sites; kmemleak=on, or
 * KMALLOC_LEAK_CHECK=1 on the host). A flag lasts until the object is
 * freed (krealloc's new object starts without). Like kmemleak's:
 *   not_leak  never reported, and scanned: what it points to stays alive
 *             (kmemleak_not_leak); for an object only a physical address
 *             or device memory refers to.
 *   ignore    never reported and never scanned: what only it points to is
 *             reported (kmemleak_ignore); for memory that holds no
 *             pointers worth trusting.
 *   end_ref   the object is referred to by its end pointer, p +
 *             ksize(p): a word equal to that keeps p alive and NOT the
 *             object that starts there (a stack's top then neither hides
 *             a leak behind the stack nor gets the stack reported). By
 *             default an end pointer keeps only the next object: the same
 *             word is exactly a pointer to that object's start, the
 *             commonest pointer there is, and dropping it would report
 *             every object allocated right after a live one. The price of
 *             end_ref: a pointer to the start of the object right after p
 *             counts as p's end; give objects referred to by their end a
 *             kmem_cache of their own so that only such objects follow
 *             them. (An end pointer short of ksize, base + a requested
 *             size below the object's size class, is inside the object
 *             and needs nothing.) */
int kmalloc_leak_not_leak(const void *p);
int kmalloc_leak_ignore(const void *p);
int kmalloc_leak_end_ref(const void *p);
/* Treat [start, start+len) as a root until kmalloc_del_root(start).
 * Returns 0, or -1 if the table (64 ranges) is full. */
int kmalloc_add_root(const void *start, size_t len);
void kmalloc_del_root(const void *start);
/* Print a per-class table (like /proc/slabinfo) and the heap totals
 * through the port's log function. Never allocates. */
void kmalloc_dump(void);
/* Print the arena through the port's log as run-length encoded lines,
 * page by page: small spans with their span class and live objects, large
 * spans, free, released and not yet grown pages (the format is in
 * mm/mheapmap.c; scripts/heapmap draws it). Safe while other CPUs
 * allocate: the lines then show successive moments, each page once.
 * Never allocates; holds no lock while it prints. */
void kmalloc_heapmap(void);

#endif /* KMALLOC_H */
