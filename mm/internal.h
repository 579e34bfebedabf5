/*
 * internal.h: the allocator's shared types, constants, check macros, lock
 * order and cross-file prototypes. See malloc.c for the overview. Tests
 * include this header (and nothing else of mm/ but kmalloc.h and
 * sizeclasses.h): it is the one deliberate way into the internals, like
 * Go's export_test.go. It is split in parts it includes in order:
 * mspan.h (span classes, the span record), mpages.h (page allocator,
 * fixalloc, metadata arrays), mcaches.h (magazines, mcache, transfer
 * caches, mcentral) and mlock.h (the lock order, mm_lock and its
 * checker); the mheap and the prototypes stay here.
 *
 * Words used in one sense only:
 *   heap page  8 KiB, the unit of the page allocator and of spans
 *   sys page   sys_config.page_size (4 KiB), the unit of commit/release
 *   frame      4 KiB of physical memory (kernel port only)
 *   chunk      512 heap pages (4 MiB), the unit of heap growth and of the
 *              page allocator's bitmaps
 *   arena      the part of the reserved region that holds heap pages
 *
 * The lock order and the lock wrappers are in mlock.h.
 */
#ifndef MM_INTERNAL_H
#define MM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h" /* mm_load_acquire, ..., LOAD/STORE */
#include "fmt.h" /* mm_fmt_*: sys_log lines */
#include "kmalloc.h"
#include "msize.h"
#include "sizeclasses.h"
#include "sys.h"

/* Nothing below is part of the library's interface: hidden visibility lets
 * the fast path reach mheap_ and mm_mcaches without a GOT load when the
 * objects are built -fPIC (host library, LD_PRELOAD shim). */
#pragma GCC visibility push(hidden)

/* ---- constants ---- */

#define PAGE_SHIFT _PageShift
#define PAGE_SIZE ((uintptr_t)1 << PAGE_SHIFT)
#define CHUNK_PAGES 512
#define CHUNK_SHIFT (PAGE_SHIFT + 9)
#define CHUNK_BYTES ((uintptr_t)1 << CHUNK_SHIFT)
#define CHUNK_WORDS (CHUNK_PAGES / 64)
#define SPAN_MAX_WORDS (_MaxObjsPerSpan / 64) /* allocBits words, 8 B class */
/* CPUs are named by their slot, id + 1, in mm_mcaches and in
 * mspan.cached_by: slot 0 holds no mcache (an id of 0 - 1 would land
 * there), so code that indexes by slot needs no bounds test. */
#define CPU_NONE 0xffffffffu /* cached_by of an uncached span */
static inline unsigned cpu_slot(unsigned cpu)
{
	return cpu + 1u;
}

/* ---- checks, in grades (like mimalloc's MI_DEBUG) ----
 * MM_CHECK     always on: corruption and misuse; reports through sys_fault
 *              as "kmalloc: <fault>: <pointer>".
 * MM_ASSERT    MM_DEBUG >= 1 (-DMM_DEBUG or -DMM_DEBUG=1): cheap internal
 *              invariants on hot paths, and lock-held assertions
 *              (MM_HELD/MM_UNLOCKED below). The fuzzer runs this grade.
 * MM_VALIDATE  MM_DEBUG >= 2: whole-structure validators (mspan_valid,
 *              pa_valid, mheap_valid), O(structure) each time; tests also
 *              call the validators directly after every step.
 * A failure names the file, line and the condition, so a report from a
 * user's machine points at one line. */
#define MM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MM_LIKELY(x) __builtin_expect(!!(x), 1)
#define MM_CHECK(cond, msg, p)                                   \
	do {                                                     \
		if (MM_UNLIKELY(!(cond)))                        \
			sys_fault((msg), (const void *)(uintptr_t)(p)); \
	} while (0)
#define MM_STR2(x) #x
#define MM_STR(x) MM_STR2(x)
#define MM_WHERE __FILE__ ":" MM_STR(__LINE__)
#if defined(MM_DEBUG) && MM_DEBUG >= 1
#define MM_ASSERT(cond) MM_CHECK(cond, "assertion failed at " MM_WHERE ": " #cond, 0)
#else
#define MM_ASSERT(cond) ((void)0)
#endif
#if defined(MM_DEBUG) && MM_DEBUG >= 2
#define MM_VALIDATE(expr) MM_CHECK(expr, "validation failed at " MM_WHERE ": " #expr, 0)
#else
#define MM_VALIDATE(expr) ((void)0)
#endif

/* Test hooks, in the MM_DEBUG >= 2 build only (nothing in any other):
 * MM_TEST_HOOK(at, p) calls mm_test_hook, if a test set it, on the
 * thread that is inside the window `at` names, so a test can make a race
 * that no scheduling would hit on purpose (another thread's kfree of
 * the same object, between the check and the compare-and-swap). */
enum mm_hook_at {
	MM_HOOK_KFREE_LARGE = 1,   /* mlarge_free: state checked, not yet claimed */
	MM_HOOK_KFREE_FAST = 2,    /* kfree's fast path: descriptor read, live
	                            byte not yet (interrupts off) */
	MM_HOOK_LIVE_BYTE = 3,     /* live_byte: the byte read, the state word
	                            not yet again */
	MM_HOOK_TRANSFER_HELD = 4, /* mm_transfer_drain_class: a batch taken
	                              from the transfer cache, not yet back in
	                              its spans */
};
#if defined(MM_DEBUG) && MM_DEBUG >= 2
extern void (*mm_test_hook)(enum mm_hook_at at, const void *p);
#define MM_TEST_HOOK(at, p)                                                                 \
	do {                                                                                \
		void (*h_)(enum mm_hook_at, const void *) = mm_load_acquire(&mm_test_hook); \
		if (h_ != NULL)                                                             \
			h_((at), (p));                                                      \
	} while (0)
#else
#define MM_TEST_HOOK(at, p) ((void)0)
#endif

/* An out-of-line function the compiler must treat as opaque: GCC would
 * otherwise see that it never returns and give its caller a stack frame
 * for the call (noipa is GCC's; clang does not do that analysis). */
#if defined(__GNUC__) && !defined(__clang__)
#define MM_OUTLINE __attribute__((noipa))
#else
#define MM_OUTLINE __attribute__((noinline))
#endif

/* Population count without libgcc's __popcountdi2 (the kernel build has
 * no -mpopcnt and links no libgcc). */
static inline unsigned mm_popcount64(uint64_t x)
{
	x = x - ((x >> 1) & 0x5555555555555555ull);
	x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

/* Population count of a word with few bits set (a sweep's freed bits):
 * one step per bit instead of the full reduction. */
static inline unsigned mm_popcount_sparse(uint64_t x)
{
	unsigned n = 0;
	for (; x != 0; x &= x - 1)
		n++;
	return n;
}

/* A statistics counter only its CPU writes and others read racily: a plain
 * increment (one add to memory on the fast paths), a relaxed store under
 * ThreadSanitizer so the racy reads stay reported as benign. */
#if defined(__SANITIZE_THREAD__)
#define COUNT(x) STORE(x, (x) + 1)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COUNT(x) STORE(x, (x) + 1)
#endif
#endif
#ifndef COUNT
#define COUNT(x) ((x)++)
#endif

#include "mspan.h"
#include "mpages.h"
#include "mcaches.h"

/* ---- typed caches (mkmemcache.c) ----
 * struct kmem_cache (kmalloc.h) is one of KMC_MAX records in a static
 * table (no metadata to leak as caches come and go): record i owns span
 * class KMALLOC_SPANCLASSES + i while the cache lives, and its geometry
 * is that class's (spanclass_elemsize below). */
#define KMC_MAX      (NUM_SPANCLASSES - KMALLOC_SPANCLASSES)
#define KMC_NAME_MAX 32 /* bytes of a name kept, with its NUL */
enum kmc_state {
	KMC_FREE = 0,    /* class unused: create may take it */
	KMC_LIVE = 1,    /* a cache the user holds */
	KMC_BUSY = 2,    /* being created, destroyed or reclaimed */
	KMC_RETIRED = 3, /* destroyed; waits until every CPU drained
	                    since retire_gen (no magazine holds its
	                    objects or stale constants) before reuse */
};
/* Guards: "state" = written by the thread holding the record BUSY,
 * immutable while LIVE (the release store of LIVE publishes them). */
struct kmem_cache {
	/* kmem_cache_alloc's and _free's reads: */
	uint8_t spanclass;       /* KMALLOC_SPANCLASSES + index, set by the
	                            first create, never changed */
	uint8_t state;           /* atomic: enum kmc_state; changed under
	                          kmc_lock (mkmemcache.c) */
	uint16_t npages;         /* state: span size in heap pages */
	uint32_t size;           /* state: object size (rounded to align) */
	uint32_t divmagic;       /* state: Go's divMul for size */
	uint16_t nelems;         /* state: objects per span */
	uint16_t align;          /* state: object alignment */
	void (*ctor)(void *);    /* state: run on each slot of a new span */
	unsigned flags;          /* state: KMC_* */
	uint64_t retire_gen;     /* written by destroy while BUSY, read by
	                            whoever makes it BUSY next (kmc_lock
	                            orders the two): the mheap.drain_gen every
	                            CPU must have drained at before reuse */
	uint64_t base_allocs;    /* state: the class's counters (struct
	                          magazine) summed at create: stats count */
	uint64_t base_frees;     /* from there */
	char name[KMC_NAME_MAX]; /* state */
};
extern struct kmem_cache mm_kmcaches[KMC_MAX];
extern struct sys_lock mm_kmc_lock; /* a leaf: see mkmemcache.c */

/* Geometry of span class spc (>= 2): kmalloc's from the generated
 * tables, a typed cache's from its record. Slow paths only. */
static inline const struct kmem_cache *kmc_of_class(unsigned spc)
{
	return &mm_kmcaches[spc - KMALLOC_SPANCLASSES];
}
static inline size_t spanclass_elemsize(unsigned spc)
{
	return spc < KMALLOC_SPANCLASSES ? class_to_size[spanclass_size(spc)]
	                                 : kmc_of_class(spc)->size;
}
static inline size_t spanclass_npages(unsigned spc)
{
	return spc < KMALLOC_SPANCLASSES ? class_to_allocnpages[spanclass_size(spc)]
	                                 : kmc_of_class(spc)->npages;
}
static inline uint32_t spanclass_divmagic(unsigned spc)
{
	return spc < KMALLOC_SPANCLASSES ? class_to_divmagic[spanclass_size(spc)]
	                                 : kmc_of_class(spc)->divmagic;
}
/* Objects in one span of spc. */
static inline unsigned spanclass_nelems(unsigned spc)
{
	return obj_index(spanclass_divmagic(spc), spanclass_npages(spc) * PAGE_SIZE);
}
/* Whether spc is a typed cache's class that was destroyed: drains reset
 * their magazine's constants for it (mcache.c). */
static inline bool spanclass_retired(unsigned spc)
{
	return spc >= KMALLOC_SPANCLASSES &&
	       mm_load_acquire(&mm_kmcaches[spc - KMALLOC_SPANCLASSES].state) != KMC_LIVE;
}
/* Run the cache's constructor on every slot of the fresh span s (ctor's
 * meaning is SLUB's: once per object when its span is made). pre: s not
 * yet published; no mm lock held. */
void mm_kmc_construct(struct mspan *s, unsigned spanclass);
/* "wrong cache": p is a live object of span class have, freed to the
 * typed cache of class want. Never returns. */
_Noreturn void mm_kmc_wrong(const void *p, unsigned have, unsigned want);
/* The slabinfo lines of kmalloc_dump. */
void mm_kmc_dump(void);

/* ---- mheap (mheap.c) ---- */

#define SCAV_EPOCHS 4 /* epochs the scavenger's recent peak spans */
#define SCAV_COLD 2   /* epochs a chunk stays untouched before the paced
                         scavenger releases from it */

/* A page descriptor (mheap_.pagedesc) for page i of a small span s:
 *   bits  0-7   s's span class (>= 2; 0: not a small span's page)
 *   bits  8-12  the record's incarnation count, low 5 bits
 *   bits 13-20  i, so d & PD_PAGEOFF_MASK is the page's offset in s
 *   bits 21-63  (s - m_fix.base) / 64: records are 64-byte aligned
 * One word per page holds all kfree's fast path checks against besides
 * the class's constants (struct magazine), so a random free touches this
 * map and the live byte, not the span record too (cachegrind on churn:
 * the record's line was one miss per free). The incarnation bits make a
 * descriptor read before and after the live byte differ if the span died
 * and came back in between. */
#define PD_CLASS(d)     ((unsigned)(uint8_t)(d))
#define PD_GEN_MASK     0x1fu
#define PD_GEN(d)       ((unsigned)((d) >> 8) & PD_GEN_MASK)
#define PD_PAGEOFF_MASK ((uint64_t)0xff << PAGE_SHIFT)
#define PD_RECOFF(d)    (((uintptr_t)(d) >> 21) << 6)

struct mheap {
	struct sys_lock lock;
	/* immutable after kmalloc_init */
	uintptr_t region;          /* sys_reserve'd base */
	size_t region_size;
	uintptr_t arena_start;     /* CHUNK_BYTES-aligned */
	uintptr_t arena_end;
	size_t gran;               /* heap pages per commit unit: 1, or
	                              sys_config.page_size / PAGE_SIZE when the
	                              port commits in units above 8 KiB (e.g.
	                              2 MiB pages): then a unit's pages are all
	                              scavenged or none */
	struct mspan **spans;      /* page -> span map, one per arena page;
	                              entries written under lock (release),
	                              read lock-free; stale on free pages */
	uint64_t *pagedesc;        /* page -> small-span descriptor (below),
	                              0 on every page not in a small INUSE
	                              span; written by the span's publisher
	                              and killer (release), read by kfree.
	                              Both maps read as 0 (NULL) on chunks
	                              whose words trim gave back (mmeta.c) */
	uintptr_t livebase;        /* m_fix.base + sizeof(struct mspan): a
	                              record's live bytes, from a descriptor */
	struct mm_cache_sizes cs;
	/* mheap.lock */
	uintptr_t arena_used;      /* end of grown arena (atomic for readers) */
	uintptr_t arena_used_bytes; /* arena_used - arena_start (atomic) */
	struct pagealloc pages;
	struct metaarr m_spans, m_pagedesc, m_chunks, m_chunkpg, m_sum[PA_MAX_LEVELS], m_fix,
	        m_fixblk, m_caches;
	struct metaarr m_depot;       /* the stack depot (mstack.c): reserved
	                                 only where sites are tracked */
	struct metaarr m_mesh;        /* meshing's scratch (mmesh.c): committed
	                                 by the gate's holder when it meshes,
	                                 given back after kmalloc_mesh */
	struct fixalloc greyalloc;    /* the leak detector's grey blocks */
	struct fixalloc spanalloc[6]; /* span records: [0] large, [1 + b]
	                                 small with bitmap bucket b */
	uint32_t fix_released;     /* released fixalloc blocks: index + 1 of
	                              the first (struct fixblk.next), 0 = none */
	uint64_t pages_inuse;      /* in spans (including large spans held
	                              by CPUs' large caches) */
	uint64_t pages_free;       /* free, committed */
	uint64_t pages_released;   /* free, Reserved (includes in-flight
	                              scavenging) */
	uint64_t pages_sys;        /* grown */
	uint64_t meta_sys;         /* committed metadata bytes (less what
	                              trim gave back: map units, fixalloc
	                              blocks) */
	uint64_t large_pages;      /* pages of large spans (live or cached) */
	/* scavenger pacing (mscavenge.c), mheap.lock */
	uint64_t scav_peaks[SCAV_EPOCHS]; /* highest pages_inuse in this
	                              epoch ([0]) and the ones before */
	uint64_t scav_epoch_alloc; /* pages allocated this epoch */
	int scav_pending;          /* atomic: free pages above the goal */
	/* aging by the port's clock (mscavenge.c); without one, now_ns is
	 * NULL and none of this is used */
	uint64_t (*now_ns)(void); /* immutable after init: sys_config's
	                              (tests set a fake clock before init) */
	uint64_t (*coarse)(void); /* immutable after init: now_coarse_ns,
	                              else now_ns; NULL without now_ns. For
	                              readings compared only with its own
	                              (page stamps) or with a due time */
	uint64_t release_ns;      /* immutable after init: the delay */
	uint32_t release_epochs;  /* immutable: the delay in pages.epoch
	                              units (2^20 ns with a clock) */
	uint64_t bg_due;          /* atomic: clock time the next
	                              background step is due */
	uint64_t bg_aged;         /* bg_busy: when shared caches were last
	                              looked at */
	uint64_t idle_pass_at;    /* bg_busy: when idle CPUs were last
	                              looked at (mcache_idle_pass) */
	uint64_t idle_drains;     /* atomic: caches of idle CPUs drained */
	int bg_busy;              /* atomic: 1 while a background step runs */
	int bg_excl;              /* atomic: mheap_bg_exclude holders */
	int aging;                /* atomic: caches being aged now */
	int bg_state;             /* atomic: enum bg_state (mscavenge.c) */
	uint64_t bg_threshold;    /* immutable after init: heap bytes
	                              before start_background is asked */
	int inited;
	bool track_sites;          /* immutable after init: record where each
	                              object was allocated (sys_config) */
	uint8_t site_frames;       /* immutable after init: frames to record
	                              per object, 1..LEAK_FRAMES */
	uint64_t drain_gen;        /* atomic: drain requests (mm_drain_all) */
	struct mcentral_padded central[NUM_SPANCLASSES];
	struct transfer_padded transfer[NUM_SPANCLASSES];
};

extern struct mheap mheap_;

#include "mlock.h"

/* Per-CPU mcache pointers, indexed by cpu_slot (entry 0 stays NULL),
 * published by their CPU, read by it and by kmalloc_stats. A static
 * array (not metadata) so the fast path works before kmalloc_init: a NULL
 * entry sends it to the slow path, which initialises the heap on the
 * host. sys_config.max_cpus must not exceed MM_MAX_CPUS, the port's
 * SYS_MAX_CPUS (sys.h; the host's default 32768 is what a Linux process
 * reaches with its default limits: vm.max_map_count allows about 32,000
 * thread stacks, and the host port's CPUs are threads). The array costs
 * 8 bytes a CPU of zero pages, touched as CPUs appear. */
#define MM_MAX_CPUS SYS_MAX_CPUS
extern struct mcache *mm_mcaches[MM_MAX_CPUS + 1];
/* The mcache published at slot, or NULL. Acquire: pairs with mcache_get's
 * release store, so the mcache's fields are initialised when seen. */
static inline struct mcache *mcache_at(unsigned slot)
{
	return mm_load_acquire(&mm_mcaches[slot]);
}
/* Per-CPU, indexed by cpu_slot: 1 while the port calls kmalloc_safepoint
 * on that CPU (set there, cleared by kmalloc_cpu_idle), so mm_drain_all
 * waits for it. Written only by its own CPU (release), read by drainers
 * (acquire). Kept apart from the mcache because a CPU's first safe point
 * may come before its first allocation: a flag in the mcache would be
 * lost then, and drains would skip a working CPU until its next tick. */
extern uint8_t mm_cpu_polls[MM_MAX_CPUS + 1];

/* atomic: the highest slot that has an mcache, raised under mheap.lock
 * before the mcache is published, never lowered. Walks over every CPU's
 * mcache (drain, stats) stop there instead of at MM_MAX_CPUS: on the
 * host that is 32,768 slots for a process with a few threads. */
extern unsigned mm_mcache_hi;
static inline unsigned mcache_slots(void)
{
	return mm_load_relaxed(&mm_mcache_hi); /* mcache_at orders each entry */
}

/* This CPU's mcache for kmalloc's fast path, or NULL (then the slow path
 * finds or makes it and calls mcache_fast_set). pre: interrupts off. */
#if defined(SYS_MCACHE_GET)
static inline struct mcache *mcache_fast(void)
{
	return SYS_MCACHE_GET();
}
static inline void mcache_fast_set(struct mcache *c)
{
	SYS_MCACHE_SET(c);
}
#else
/* The port has no slot of its own: a second table, filled only through
 * mcache_fast_set, so that it can stay empty (site tracking). */
extern struct mcache *mm_fast_mcaches[MM_MAX_CPUS + 1];
static inline struct mcache *mcache_fast(void)
{
	return mm_fast_mcaches[cpu_slot(sys_cpu_id())];
}
static inline void mcache_fast_set(struct mcache *c)
{
	mm_fast_mcaches[cpu_slot(sys_cpu_id())] = c;
}
#endif

int mheap_init(void);
/* Whether mheap_init has run. Acquire: pairs with the release store that
 * ends mheap_init, so every field it set is visible. */
static inline bool mheap_inited(void)
{
	return mm_load_acquire(&mheap_.inited);
}
/* mheap_init, inline when it already ran. */
static inline int mheap_ready(void)
{
	if (MM_LIKELY(mheap_inited()))
		return 0;
	return mheap_init();
}
/* This CPU's mcache: the port's fast slot, else mcache_get (which may
 * create it, or take it back from the idle-CPU drain). pre: interrupts
 * off. */
static inline struct mcache *mcache_this(void)
{
	struct mcache *c = mcache_fast();
	if (MM_LIKELY(c != NULL))
		return c;
	c = mcache_get(sys_cpu_id());
	/* With allocation sites tracked the fast slot stays empty, so every
	 * kmalloc and kfree takes the slow path, which records them. */
	if (c != NULL && !mheap_.track_sites)
		mcache_fast_set(c);
	return c;
}
/* This CPU's mcache if it has one, never creating it; taken back from
 * the idle-CPU drain if that had it (mcache_claim). For paths that do
 * not go through the fast slot. pre: interrupts off. */
static inline struct mcache *mcache_mine(void)
{
	struct mcache *c = mcache_at(cpu_slot(sys_cpu_id()));
	if (c != NULL && MM_UNLIKELY(mm_load_acquire(&c->idle) != MC_OWNED))
		mcache_claim(c);
	return c;
}
struct mspan *mheap_alloc_span(size_t npages, unsigned spanclass,
                               size_t align_pages);
void mheap_free_span(struct mspan *s, bool released);
/* A try of mheap_extend_span: grow to `take` pages if the pages from
 * s's end up to `clear` pages from its base are free (a clear below
 * take counts as take). */
struct span_extend {
	size_t take, clear;
};
size_t mheap_extend_span(struct mspan *s, const struct span_extend *tries, unsigned n);
void mheap_publish_small(struct mspan *s);
void mheap_unpublish_small(struct mspan *s);
/* The page maps of chunks with no span, given back by trim (mmeta.c). */
int mheap_maps_ensure(size_t pg, size_t n);
void mheap_maps_grow(size_t first, size_t end);
void mheap_maps_init(void);
void mheap_trim_maps(void);
bool mheap_maps_ready(size_t chunk);
long mheap_maps_check(void);
/* p's span: a record (maybe DEAD), or NULL for a pointer outside the grown
 * arena or on a page whose map words trim gave back (mmeta.c). */
static inline struct mspan *spanOf(uintptr_t p)
{
	/* unsigned wrap makes p < arena_start fail the same test; acquire
	 * before arena_start, as in kfree (0 before mheap_init) */
	uintptr_t used = mm_load_acquire(&mheap_.arena_used_bytes);
	if (p - mheap_.arena_start >= used)
		return NULL;
	/* acquire: pairs with mheap_alloc_span's store of the entry */
	return mm_load_acquire(&mheap_.spans[(p - mheap_.arena_start) >> PAGE_SHIFT]);
}

/* ---- large objects (mlarge.c) ---- */

void *mlarge_alloc(size_t size, size_t align, unsigned flags, uintptr_t site);
void mlarge_free(struct mspan *s, uintptr_t p);
void *mlarge_realloc(struct mspan *s, void *p, size_t size, unsigned flags, uintptr_t site);
/* krealloc's large object for a small one grown past a heap page: with
 * growth room (mlarge.c). pre: size > 0. */
void *mm_alloc_grown(size_t size, unsigned flags, uintptr_t site);
void mlarge_drain(struct mcache *c);

/* ---- scavenger (mscavenge.c) ---- */

/* Release free committed pages until at most keep_bytes stay committed
 * free. pre: no mm lock held. */
void mheap_scavenge(uint64_t keep_bytes);
/* A bounded step toward the retain goal, if the free pages exceed it.
 * pre: no mm lock held. */
void mheap_scavenge_paced(void);
uint64_t mheap_retain_goal(void);
uint64_t mheap_recent_peak(void);
/* Account npages just taken from the page allocator. pre: mheap.lock. */
void mheap_scav_note_alloc(size_t npages);
/* Wait for a running background step and keep others out (on), or let
 * them run again (off). pre: no mm lock held. */
void mheap_bg_exclude(bool on);
/* Take and leave the background gate (bg_busy) as a step does, waiting
 * for a step running elsewhere: kmalloc_mesh. false (not taken) while
 * someone excludes background work, the caller itself perhaps. pre: no
 * mm lock held. */
bool mheap_bg_enter(void);
void mheap_bg_leave(void);

/* ---- meshing (mmesh.c) ---- */

bool mesh_supported(void);
/* Bytes of the mesher's scratch (m_mesh). */
size_t mesh_work_bytes(void);
/* Objects came back to an alias: forward them to its dst. pre: c->lock. */
void mesh_alias_sweep(struct mcentral *c, struct mspan *s);
/* Up to max_pairs meshes over all classes until the clock passes until,
 * after reaping empty aliases. pre: the background gate held, no mm lock. */
unsigned mesh_run(unsigned max_pairs, uint64_t until);
#define MESH_PERIOD_NS (100u * 1000 * 1000) /* Mesh's default rate */
/* From the paced background step: reap, and mesh for up to 10 ms every
 * MESH_PERIOD_NS. Returns the meshes done. */
unsigned mesh_paced(uint64_t now);
void mesh_stats(struct kmalloc_stats *st);
/* Reap the aliases with no object left now (a typed cache's class can go
 * back only once none of its spans is left: mkmemcache.c); nothing while
 * background work is kept out. pre: no mm lock. */
void mesh_reap_now(void);
/* The scavenger's clock settings from sys_config. pre: mheap_init. */
void mheap_scav_init(void);
/* With a clock: stamp pages.epoch with the time, so the chunks the
 * caller is about to touch get their age from now. pre: mheap.lock. */
void mheap_scav_clock(void);
/* Around a cache's aging: +1 before, -1 after (mheap_scav_clock). */
void mheap_aging(int delta);
/* The port's clock, or 0 without one. */
static inline uint64_t mm_now(void) { return mheap_.now_ns != NULL ? mheap_.now_ns() : 0; }
enum bg_state { BG_NONE = 0, BG_STARTING = 1, BG_RUNNING = 2, BG_REFUSED = 3 };
/* Flush the classes this CPU has not used for half the release delay.
 * pre: interrupts off; c is this CPU's mcache. */
void mcache_age(struct mcache *c, uint64_t now);
/* Return the objects of transfer caches that saw no put or take for half
 * the release delay to their spans. pre: no mm lock held. */
void mm_transfer_age(uint64_t now);

/* ---- the heap walk (mheapmap.c) ---- */

/* A run of pages as mheap_run_at finds it: pages [pg, pg + n), and for
 * RUN_SPAN the record the page map names, in any state (DEAD while a span
 * is being set up). */
enum mm_run_kind { RUN_FREE, RUN_RELEASED, RUN_SPAN };
struct mm_run {
	size_t pg, n;
	enum mm_run_kind kind;
	struct mspan *s;
};
void mheap_run_at(size_t pg, struct mm_run *r);

/* ---- validation and census (mvalid.c) ---- */

struct mm_census {
	uint64_t spans_cached;   /* small spans in some mcache */
	uint64_t spans_partial;  /* on mcentral partial lists */
	uint64_t spans_full;     /* on mcentral full lists */
	uint64_t spans_large;    /* large spans (live or in a large cache) */
	uint64_t spans_small;    /* every small span in use */
	uint64_t pages_inuse;    /* pages of in-use spans (page map walk) */
	uint64_t pages_free;     /* free committed pages (bitmap walk) */
	uint64_t pages_released; /* free released pages (bitmap walk) */
	uint64_t objs_cached;    /* objects in magazines and transfer caches */
};
void mm_census(struct mm_census *out);
int mheap_valid(void);

/* ---- malloc.c helpers ---- */

/* NULL for "out of memory or impossible size", told to the port first
 * (sys_config.nomem). pre: no mm lock held. */
static inline void *mm_nomem(void)
{
	if (sys_config.nomem != NULL)
		sys_config.nomem();
	return NULL;
}

void *mm_alloc_class(unsigned spanclass, unsigned flags, uintptr_t site);

/* ---- leak detector (mgcmark.c) ---- */

/* A grey block: fixed size, from mheap.greyalloc (one per fixalloc
 * block), chained. */
#define GREY_BLOCK FIX_BLOCK
#define GREY_N ((GREY_BLOCK - 2 * sizeof(void *)) / sizeof(uintptr_t))
#define GREY_MAX_BLOCKS 64 /* then marked objects wait for a rescan */
struct greyblk {
	struct greyblk *next;
	size_t n;
	uintptr_t obj[GREY_N];
};
#define MAX_ROOTS 64 /* kmalloc_add_root ranges */
void mm_record_site(void *v, uintptr_t site);
/* mstack.c: up to max (<= MM_BACKTRACE_MAX) return addresses of the
 * current call chain from site (the kmalloc-family caller's return
 * address) outwards; pcs[0] == site. pre: as sys_config.backtrace (no mm
 * lock, interrupts on). */
#define MM_BACKTRACE_MAX 16
unsigned mm_backtrace(uintptr_t *pcs, unsigned max, uintptr_t site);

/* A tracked object's word (mspan.sites[], site1): the stack depot's
 * handle of its allocation backtrace in the low 32 bits (0: none), the
 * leak scan's per-object flags above (mleak.c). Written by the allocating
 * CPU (the word) and the object's owner (flags, atomic OR); read by the
 * scan with the world stopped. */
#define LEAK_HANDLE(w) ((uint32_t)(w))
#define LEAK_NOT_LEAK  ((uintptr_t)1 << 32) /* never reported; scanned */
#define LEAK_IGNORE    ((uintptr_t)1 << 33) /* never reported, not scanned */
#define LEAK_END_REF   ((uintptr_t)1 << 34) /* its end pointer keeps it */
#define LEAK_FRAMES    8                    /* frames recorded per object */
#define MM_DEPOT_BYTES ((size_t)32 << 20)   /* m_depot's reservation */
/* mstack.c, the stack depot: the word for a new object allocated at site
 * (its backtrace saved once per distinct trace; the single site when the
 * depot has no room for it; 0 when not even that). pre: as mm_backtrace. */
uint32_t mm_depot_record(uintptr_t site);
/* The frames of handle h into pcs[0..max); returns how many (0 for h 0).
 * Lock-free: callable with the world stopped and interrupts off. */
unsigned mm_depot_fetch(uint32_t h, uintptr_t *pcs, unsigned max);
struct mm_depot_stats {
	uint64_t traces, bytes, fallbacks, lost;
};
void mm_depot_stats(struct mm_depot_stats *st);
/* Host fork (arch/host/fork.c): the depot's lock around fork. */
void mm_depot_lock(void);
void mm_depot_unlock(void);

/* mleak.c: the report side of the scan (mgcmark.c). Begin (world
 * stopped) resets the suppressions' counts; report is called for each
 * live object left unmarked with its word (0 where sites are not
 * tracked): a flagged or suppressed object is counted and skipped, any
 * other goes to fn, or (fn NULL) is printed with its backtrace; end
 * (world running again) logs a line per suppression that matched. */
void mm_leak_report_begin(void);
void mm_leak_report(struct kmalloc_leaks *st, kmalloc_leak_fn fn, void *arg, uintptr_t obj,
                    size_t size, uintptr_t word);
/* The same for an object whose frames are at hand (a guarded sample's,
 * mkfence.c) rather than in the depot. */
void mm_leak_report_pcs(struct kmalloc_leaks *st, kmalloc_leak_fn fn, void *arg, uintptr_t obj,
                        size_t size, const uintptr_t *pcs, unsigned n);
void mm_leak_report_end(void);
/* Nonzero once any object was flagged (kmalloc_leak_not_leak, _ignore,
 * _end_ref): the scan's passes for flags are skipped until then
 * (atomic; never cleared). */
extern int mm_leak_flags_used;
#define LEAK_FLAGS_ANY     1 /* some object has a LEAK_* flag */
#define LEAK_FLAGS_END_REF 2 /* some object has LEAK_END_REF */
/* ---- guarded sampling (mkfence.c) ----
 * The pool lies after the arena, outside every span: kfree's fast path
 * sends its pointers to kfree_outside (arena bounds test), ksize,
 * krealloc and the leak scan ask kfence_owns. */
struct kfence_pool {
	uintptr_t objs; /* immutable after mheap_init: the first guard page */
	size_t bytes;   /* immutable: (2n + 1) sys pages from objs; 0: none */
};
extern struct kfence_pool kfence_pool;
/* The pool's free list and slot states: a leaf (no mm lock or hook is
 * taken under it); the host's fork handlers hold it across a fork. */
extern struct sys_lock kfence_lock;
static inline bool kfence_owns(uintptr_t p) { return p - kfence_pool.objs < kfence_pool.bytes; }
/* Allocations per CPU between two "is a sample due" checks (mcache.
 * kfence_left), sampling on or off: a check reads the clock (~20 ns) only
 * when on, so it costs ~0.005 ns per allocation; off, two loads. A
 * constant: the fast path's reload is a store of an immediate, and a
 * port may turn sampling on at any time (kmalloc_kfence_set). */
#define KFENCE_CHECK_EVERY 4096
/* Bytes of address space the pool needs after the arena (0: no guard
 * hook, or page_size too big), and its setup once the region exists.
 * pre: mheap_init, init lock. */
size_t kfence_reserve_bytes(void);
void kfence_init(uintptr_t base);
/* After mheap_init, no lock held: sampling on from the start opens the
 * pool's records now, not in the middle of what the first sample
 * interrupts (a kernel counting its frames). */
void kfence_start(void);
/* kmalloc's sample path: when a sample is due (or forced), an object of
 * size bytes from the pool, counted as one of spanclass (a kmalloc
 * class) in the statistics; else NULL (the caller allocates as usual).
 * pre: no mm lock held, outside sys_irq_save sections. */
void *kfence_sample(size_t size, unsigned spanclass, unsigned flags, uintptr_t site);
/* pre: kfence_owns(p). Free (faults on a double or invalid free and, for
 * a typed cache's free (want != 0), on any live sample), its size (a
 * fault naming what, "invalid pointer", unless p is a live sample's
 * start). */
void kfence_free(uintptr_t p, unsigned want, uintptr_t site);
size_t kfence_ksize(uintptr_t p, const char *what);
void kfence_stats(struct kmalloc_stats *st);
/* The pool's records' bytes in mheap.meta_sys (0 until they open). */
uint64_t kfence_meta_sys(void);
/* Tests and the fuzzer: the calling CPU's next kmalloc of up to a sys
 * page is sampled (if the pool has room). 0, or -1 without a pool. */
int kfence_sample_next(void);
/* The leak scan (mgcmark.c), the world stopped: clear the marks; mark
 * the live sample v points into (returns it in *obj: 1 new and noscan,
 * 2 new and to be scanned, 0 otherwise); its size; flag one the grey
 * stack had no room for and scan the flagged; report the unmarked. */
void kfence_clear_marks(void);
int kfence_mark(uintptr_t v, uintptr_t *obj);
void kfence_set_rescan(uintptr_t obj);
void kfence_rescan(void (*scan)(uintptr_t obj, void *arg), void *arg);
void kfence_report_leaks(void (*fn)(uintptr_t obj, size_t size, const uintptr_t *pcs, unsigned n,
                                    void *arg),
                         void *arg);

#pragma GCC visibility pop

#endif /* MM_INTERNAL_H */
