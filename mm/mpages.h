/*
 * mpages.h: the page allocator's summaries and chunks (mpagealloc.c), the
 * fixalloc of span records (mfixalloc.c) and the metadata arrays.
 * Part of internal.h, which includes it at its place; include internal.h,
 * not this file.
 */
#ifndef MM_MPAGES_H
#define MM_MPAGES_H

/* ---- page allocator (mpagealloc.c) ---- */

/* Free-run summary of a chunk or of a subtree of chunks, in heap pages:
 * free pages at the start, the longest free run, free pages at the end. */
struct psum {
	uint32_t start, max, end;
};

/* Per chunk: alloc 1 = page allocated (or not grown); ready 0 = page
 * free and released to the port (Reserved: scavenged). An allocated
 * page is never scavenged. All zeros: every page free and released (a
 * record trim gave back reads so, mmeta.c). */
struct pchunk {
	uint64_t alloc[CHUNK_WORDS];
	uint64_t ready[CHUNK_WORDS];
	uint32_t touched;  /* pagealloc.epoch of its last allocation or free
	                      (the scavenger releases cold chunks first) */
	uint8_t mapstate;  /* mheap.lock, in a map unit's first chunk: enum
	                      map_state of the unit's page-map words (mmeta.c) */
};

/* Whether a unit of page-map words is there (mmeta.c). RELEASED is 0:
 * a chunk record trim gave back reads so. */
enum map_state { MAP_RELEASED = 0, MAP_READY = 1, MAP_INFLIGHT = 2, MAP_HALF = 3 };
/* Whether a sys page of the chunk records (pagealloc.chunks) is there
 * (pagealloc.pgstate, mmeta.c). */
enum cpage_state { CP_READY = 0, CP_INFLIGHT = 1, CP_RELEASED = 2 };

#define PA_MAX_LEVELS 8
#define PA_FANOUT 8

struct pagealloc {
	struct pchunk *chunks;               /* [cap_chunks] */
	struct psum *sum[PA_MAX_LEVELS];     /* sum[0]: one per chunk;
	                                        sum[k]: one per 8^k chunks */
	size_t level_len[PA_MAX_LEVELS];
	unsigned nlevels;                    /* sum[nlevels-1] has 1 entry */
	unsigned top;                        /* the lowest level whose node 0
	                                        covers every grown chunk:
	                                        summaries are kept up to it
	                                        and pa_find starts there */
	size_t cap_chunks;                   /* chunks the arena can hold */
	size_t nchunks;                      /* chunks grown so far */
	uint32_t epoch;                      /* the scavenger's epoch count */
	uint8_t *pgstate;                    /* per sys page of chunks: enum
	                                        cpage_state, mheap.lock
	                                        (mmeta.c); the pointer is NULL
	                                        where records are never given
	                                        back (immutable after init) */
};

/* Sys pages that hold the records of nchunks chunks. */
static inline size_t pa_record_pages(size_t nchunks)
{
	size_t ps = sys_config.page_size;
	return (nchunks * sizeof(struct pchunk) + ps - 1) / ps;
}

size_t pa_level_len(size_t cap_chunks, unsigned level, unsigned *nlevels);
void pa_init(struct pagealloc *pa, size_t cap_chunks);
void pa_grow(struct pagealloc *pa, size_t new_nchunks);
long pa_find(const struct pagealloc *pa, size_t npages);
void pa_set_alloc(struct pagealloc *pa, size_t pg, size_t n, bool alloc);
void pa_set_alloc_quiet(struct pagealloc *pa, size_t pg, size_t n, bool alloc);
size_t pa_scav_count(const struct pagealloc *pa, size_t pg, size_t n);
void pa_set_scav(struct pagealloc *pa, size_t pg, size_t n, bool scav);
bool pa_scav_next_run(const struct pagealloc *pa, size_t pg, size_t n,
                      size_t *run_pg, size_t *run_n);
bool pa_highest_unscav_free(const struct pagealloc *pa, uint32_t min_age, size_t *pg,
                            size_t *n);
bool pa_highest_free_granules(const struct pagealloc *pa, size_t gran, uint32_t min_age, size_t *pg,
                              size_t *n);
bool pa_is_alloc(const struct pagealloc *pa, size_t pg);
bool pa_range_free(const struct pagealloc *pa, size_t pg, size_t n);
bool pa_is_scav(const struct pagealloc *pa, size_t pg);
void pa_hide_chunk(struct pagealloc *pa, size_t ci, bool hide);
struct psum pa_chunk_sum(const struct pchunk *c);
int pa_valid(const struct pagealloc *pa);

/* ---- fixalloc (mfixalloc.c): metadata records, under mheap.lock ---- */

struct fixalloc {
	size_t size;      /* bytes per record */
	bool zero;        /* hand out zeroed records */
	void *list;       /* free records, linked through their first word;
	                     FIFO so a freed record keeps its old contents as
	                     long as possible (a repeated kfree of a large
	                     object then still finds it and says "double free") */
	void *tail;
	uintptr_t chunk;  /* bump pointer into the current block */
	uintptr_t end;
	size_t inuse;     /* records handed out */
};

void fixalloc_init(struct fixalloc *f, size_t size, bool zero);
void *fixalloc_alloc(struct fixalloc *f);
void fixalloc_free(struct fixalloc *f, void *p);
void fixalloc_trim(void);

/* The fixalloc area is carved in FIX_BLOCK blocks, one fixalloc each.
 * Per block (in mheap.m_fixblk, mheap.lock): how many of its records are
 * handed out, and whether its memory is there (see mfixalloc.c). */
#define FIX_BLOCK ((size_t)16 << 10)
/* READY -> RELEASING (idle, off every list) -> INFLIGHT (one trim is
 * releasing it, outside the lock) -> RELEASED (on mheap.fix_released)
 * -> READY (a refill committed it again). */
enum fixblk_state { FB_READY = 0, FB_RELEASING = 1, FB_INFLIGHT = 2, FB_RELEASED = 3 };
struct fixblk {
	uint16_t live;      /* records of this block handed out */
	uint16_t state;     /* enum fixblk_state */
	uint32_t next;      /* FB_RELEASED: next released block + 1, 0 = end */
};

/* ---- metadata area: bump allocation of reserved space, committed on
 * demand (mheap.lock) ---- */

struct metaarr {
	uintptr_t base;
	size_t size;      /* reserved bytes */
	size_t committed; /* bytes from base that are Ready */
	size_t used;      /* bump pointer (fixalloc area, m_caches) */
};
int meta_ensure(struct metaarr *m, size_t bytes);
void *meta_alloc(struct metaarr *m, size_t bytes);
void *meta_alloc_aligned(struct metaarr *m, size_t bytes, size_t align);


#endif /* MM_MPAGES_H */
