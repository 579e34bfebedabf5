/*
 * mcaches.h: the per-CPU caches (magazines, mcache, large bins), the
 * transfer caches and the mcentral lists, with their sizes.
 * Part of internal.h, which includes it at its place; include internal.h,
 * not this file.
 */
#ifndef MM_MCACHES_H
#define MM_MCACHES_H

/* ---- per-CPU object caches (mcache.c) and transfer caches ----
 *
 * A magazine (Bonwick's word) is a bounded stack of free objects of one
 * class, per CPU; the transfer cache is a bounded array of free objects of
 * one class shared by all CPUs, which moves them between CPUs in batches
 * (tcmalloc's transfer cache, Bonwick's depot). An entry carries the
 * object and its live byte, so popping it marks it live without finding
 * its span. Bounds are in bytes (see mm_cache_init), with a floor in
 * objects: the 2 KiB class holds 8 and larger ones 16, so a class whose
 * spans hold one to eight objects does not send a span to the mheap and
 * take it back every few frees. The transfer cache, shared and not per
 * CPU, gets the larger bound. Measured with callgrind through the shim (workloads
 * loguni / aligned, instructions): floor 4 and 64 KiB 848M / 269M; floor
 * 4, 256 KiB 773M / 234M; floor 8, 256 KiB 719M / 210M (tcmalloc 583M /
 * 168M), peak RSS unchanged within 1 MiB; more spare spans per class
 * instead (MCENTRAL_SPARE 4) gave 814M / 263M. Above 2 KiB the floor
 * is 16 (MAG_MIN_BIG): a working set whose population drifts among
 * those classes otherwise spills and refills through the transfer cache
 * and the spans every few operations. Measured again on the code of
 * 2026-12-07: floor 8 above 2 KiB 795M / 226M, 16 765M / 214M, 32 760M /
 * 207M; peak RSS not higher (loguni 14.7 -> 13.2 MiB, aligned 24.4
 * both); an idle thread's KiB unchanged (its objects are up to 2 KiB; a
 * floor of 16 for every class raised it from 636 to 662 KiB). */
#define MAG_BYTES ((size_t)16 << 10)  /* per CPU and class */
#define MAG_MIN     8
#define MAG_BIG     2048 /* object bytes above which MAG_MIN_BIG applies */
#define MAG_MIN_BIG 16
#define MAG_MAX     128
#define TC_BYTES    ((size_t)256 << 10) /* per class, shared */
#define TC_MAX      1024

struct magentry {
	void *p;        /* a free object, held by this cache */
	uint8_t *live;  /* its live byte (0 while cached) */
};

/* One class of one CPU's mcache: only that CPU touches it, with
 * interrupts off, except that kmalloc_stats reads the counters (written
 * with COUNT, read with LOAD). [base, top) are the entries held. One
 * cache line. The entries are carved on the class's first slow path
 * (mcache_mag_ready): until then all three pointers are NULL, which
 * fails both fast paths, so a CPU pays only for the classes it uses. */
struct magazine {
	struct magentry *top;   /* next free entry */
	struct magentry *base;  /* [mheap_.cs.mag_cap[class]], once set */
	struct magentry *limit; /* base + capacity */
	uint64_t allocs;        /* objects handed out on this CPU */
	uint64_t frees;         /* objects freed on this CPU */
	/* Set with base (mcache_mag_ready), then immutable until a drain
	 * retires a typed cache's class: the class's constants kfree's fast
	 * path checks a pointer with (malloc.c), here because kfree reads
	 * this line anyway. A span of the class holds slot_bytes bytes of
	 * slots; slot starts are the offsets slot_exact accepts with
	 * div_exact; a slot's live byte is at offset >> liveshift
	 * (mspan.h). slot_bytes 0 means the constants are not known (not
	 * carved yet, the large classes 0 and 1, whose magazines never
	 * are, or a retired typed class): every offset fails the bound, so
	 * kfree goes to its slow path, which sets them (mag_class_known). */
	uint64_t div_exact;
	uint32_t slot_bytes;
	uint8_t liveshift;
	uint8_t pad[3];
	uint32_t aged_ops; /* low bits of allocs + frees when
	                           mcache_age last saw them change */
	uint32_t aged_ms;  /* clock time of that, in ms */
};
_Static_assert(sizeof(struct magazine) == 64, "a magazine is one cache line");

static inline bool mag_class_known(const struct magazine *m) { return m->slot_bytes != 0; }

static inline uint32_t mag_count(const struct magazine *m)
{
	return (uint32_t)(m->top - m->base);
}

/* Freed large spans kept per CPU for reuse without mheap.lock (see
 * mlarge.c). At most LARGE_CACHE_N spans and LARGE_CACHE_BYTES: as many
 * of the smallest large objects (one page over the largest class: 9
 * pages, 28 of them) as fill the bytes, so either bound can be the one
 * that refuses. */
#define LARGE_CACHE_BYTES ((size_t)2 << 20)
#define LARGE_CACHE_N        (LARGE_CACHE_BYTES / (_MaxSmallSize + PAGE_SIZE))
#define LARGE_CACHE_MAXPAGES 32 /* spans up to 256 KiB are cached */

/* Who may use an mcache (mcache.c, "idle CPUs"). OWNED: its CPU. The
 * background work, on a port with the idle hooks, moves OWNED -> MARKED
 * (and unpublishes the CPU's slot), then MARKED -> STOLEN while it
 * checks and drains, -> DRAINED; the CPU takes it back from MARKED or
 * DRAINED (mcache_claim) and waits while it is STOLEN. */
enum mc_idle { MC_OWNED = 0, MC_MARKED = 1, MC_STOLEN = 2, MC_DRAINED = 3 };

/* Per CPU; only that CPU touches it, with interrupts off, except the
 * counters kmalloc_stats reads (LOAD/STORE), drain_seen (atomic), and
 * the background work while it holds it STOLEN. */
struct mcache {
	struct magazine mag[NUM_SPANCLASSES];
	/* the span cached for each span class, or &mspan_none */
	struct mspan *alloc[NUM_SPANCLASSES];
	struct mspan *lbin[LARGE_CACHE_MAXPAGES + 1]; /* cached large spans
	                                         by page count, linked through
	                                         mspan.next */
	uint32_t nlarge;                      /* spans in lbin */
	uint64_t large_cached_bytes;
	uint64_t large_allocs, large_frees;   /* large objects, this CPU */
	uint64_t large_alloc_bytes, large_free_bytes;
	uint64_t drain_seen;                  /* atomic: the mheap.drain_gen
	                                         this CPU last drained at */
	uint64_t aged_at;                     /* clock time of the last
	                                         mcache_age */
	uint64_t large_aged_ops;              /* large_allocs + large_frees
	                                         when they last changed */
	uint64_t large_aged_at;               /* clock time of that */
	uint32_t age_tick;                    /* slow paths, to pace the
	                                         clock reads of aging */
	uint32_t cpu;                         /* immutable: its CPU id */
	uint32_t idle;                        /* atomic: enum mc_idle, who
	                                         may use it (mcache.c, "idle
	                                         CPUs") */
	uint32_t kmc_clean;                   /* atomic: 1 when made and from
	                                         mcache_flush on, until this
	                                         CPU next sets up a
	                                         typed cache's class
	                                         (mcache_mag_ready): it holds
	                                         nothing of any (mkmemcache.c) */
	uint32_t kfence_left;                 /* this CPU, interrupts off:
	                                         kmalloc's fast path counts it
	                                         down; at 0 it asks whether a
	                                         guarded sample is due
	                                         (mkfence.c) */
};

/* Whether a transfer cache's entry array is there: kmalloc_trim gives
 * back an empty one's pages (mtransfer.c). An array of a sys page or
 * more is carved as whole sys pages of its own (tc_carve bytes at a sys
 * page boundary), so all of it can go; a smaller one is kept. */
static inline size_t tc_carve(size_t bytes)
{
	size_t ps = sys_config.page_size;
	return bytes >= ps ? (bytes + ps - 1) & ~(ps - 1) : bytes;
}
static inline size_t tc_align(size_t bytes)
{
	return bytes >= sys_config.page_size ? sys_config.page_size : 64;
}
enum tc_state { TC_READY = 0, TC_INFLIGHT = 1, TC_RELEASED = 2 };

/* The transfer cache of one class. */
struct transfer {
	struct sys_lock lock;
	uint32_t n;            /* lock: entries held */
	uint32_t cap;          /* immutable: entries carved; a typed
	                          cache's class: TC_MAX, for any cache */
	uint32_t lim;          /* lock (read racily): entries used, the
	                          class's mheap_.cs.tc_cap (mm_cache_set_class) */
	struct magentry *e;    /* lock: [cap], set on first use */
	uint8_t state;         /* enum tc_state: written under mheap.lock
	                          and this lock, read under either (racily
	                          as a hint) */
	uint64_t puts, takes;  /* lock (read racily): batches moved, for
	                          tests, reports and aging */
	uint64_t aged_ops;     /* mheap.bg_busy: puts + takes when
	                          mm_transfer_age last saw them change */
	uint64_t aged_at;      /* mheap.bg_busy: clock time of that */
};
struct transfer_padded {
	struct transfer t;
	char pad[(64 - sizeof(struct transfer) % 64) % 64];
} __attribute__((aligned(64)));

/* Immutable after mheap_init: per-class cache sizes. */
struct mm_cache_sizes {
	uint16_t mag_cap[NUM_SPANCLASSES];  /* magazine capacity */
	uint16_t batch[NUM_SPANCLASSES];    /* objects moved at once */
	uint16_t tc_cap[NUM_SPANCLASSES];   /* transfer cache capacity */
	size_t mcache_bytes;                /* an mcache without entries */
	size_t mcache_max_bytes;            /* ... with every magazine's */
	size_t tc_bytes;                    /* every transfer cache's entries */
};

struct mcache *mcache_get(unsigned cpu);
void *mcache_refill_alloc(struct mcache *c, unsigned spanclass, bool *needzero);
void *mcache_alloc_slow(struct mcache *c, unsigned spanclass, bool *needzero);
void mcache_spill(struct mcache *c, unsigned spanclass);
bool mcache_mag_ready(struct mcache *c, unsigned spanclass);
void mcache_drain(struct mcache *c, bool keep_spans);
void mcache_poll(struct mcache *c);
void mcache_flush(struct mcache *c);
void mcache_claim(struct mcache *c);
void mcache_idle_pass(uint64_t now);
size_t mm_mag_cap(size_t size);
void mm_cache_set_class(unsigned i, size_t size);
uint64_t mm_drain_request(bool wait);
size_t mm_transfer_drain_class(unsigned i);
void mcentral_free_spares_class(unsigned i);
void mm_cache_init(void);
size_t mm_transfer_take(unsigned spanclass, struct magentry *out, size_t want);
size_t mm_transfer_put(unsigned spanclass, const struct magentry *in, size_t n);
void mm_transfer_drain_all(void);
void mm_transfer_trim(void);
size_t mm_transfer_released_bytes(void);
void mm_drain_all(bool wait);

/* ---- mcentral (mcentral.c) ---- */

/* LIST_MESHED: aliases (mmesh.c), which never hand out slots; their
 * objects only come back. */
enum mcentral_list { LIST_NONE = 0, LIST_PARTIAL = 1, LIST_FULL = 2, LIST_MESHED = 3 };

/* A list of spans linked through mspan.next/prev, used as a stack (see
 * mcentral.c). mcentral.lock. */
struct spanlist {
	struct mspan *head, *tail;
	uint64_t len;
};

struct mcentral {
	struct sys_lock lock;
	unsigned spanclass;      /* immutable */
	struct spanlist partial; /* lock: swept uncached spans with a free slot */
	struct spanlist full;    /* lock: swept uncached spans without */
	struct spanlist meshed;  /* lock: aliases (mmesh.c) */
	uint64_t nspans;         /* lock: spans of this class in use */
	uint64_t returned;       /* lock: objects given back to spans */
	uint32_t nempty;         /* lock (read racily as a hint): spare
	                            empty spans at the tail of partial (up to
	                            MCENTRAL_SPARE, and those of a batch,
	                            MCENTRAL_GROW - 1, until taken) */
	/* lock: where meshing's next round goes on down partial in its pass
	 * mesh_pass (NULL: from the head), so a pass walks the list once
	 * instead of once a round (mmeshpick.c collect); a span leaving the
	 * list moves it on (mcentral_list_remove) */
	struct mspan *mesh_cursor;
	uint8_t mesh_pass;
};
#define MCENTRAL_SPARE 1         /* empty spans a class keeps */
/* spans a big class takes from the mheap at once, at most (mcentral_refill) */
#define MCENTRAL_GROW 64

/* Go pads mheap.central entries to a cache line so CPUs working on
 * different classes do not share lines. */
struct mcentral_padded {
	struct mcentral c;
	char pad[(64 - sizeof(struct mcentral) % 64) % 64];
} __attribute__((aligned(64)));

struct mspan *mcentral_cacheSpan(struct mcentral *c, unsigned cpu);
struct mspan *mcentral_refill(struct mcentral *c, struct mspan *old, unsigned cpu);
void mcentral_uncacheSpan(struct mcentral *c, struct mspan *s);
void mcentral_return(struct mcentral *c, struct magentry *e, size_t n);
void mcentral_free_spares(void);
/* For mmesh.c. pre: c->lock. */
void mcentral_list_remove(struct mcentral *c, struct mspan *s);
void mcentral_list_push(struct mcentral *c, struct mspan *s, enum mcentral_list which);
void mcentral_place(struct mcentral *c, struct mspan *s);
void mcentral_mark_returned(struct mspan *s, unsigned w, uint64_t bits);


#endif /* MM_MCACHES_H */
