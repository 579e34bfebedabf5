/*
 * pmm_internal.h: what the frame allocator's files share: the per-frame
 * metadata byte, the free-list link and its check word, the section
 * lookup, the log line, and the few functions one file defines for
 * another. The interface and the glossary (frame, block, section) are in
 * pmm.h; this is portable C with no libc and nothing x86-specific, shared
 * by the kernel and the host tests.
 *
 * The files, in the order data flows through them:
 *   map.c     the boot memory map, resolved: pmm_map_walk yields maximal
 *             pieces of one type in address order (the more restrictive
 *             type wins an overlap), trimmed to whole frames
 *   init.c    pmm_init: groups those pieces into sections, places their
 *             metadata, fills it, and hands every usable run to buddy.c
 *             (pmm_free_run) as the first free blocks
 *   buddy.c   the free lists, pmm_alloc, pmm_free, pmm_reclaim
 *   report.c  what it says: fault lines (pmm_report), type names,
 *             pmm_stats, pmm_dump, and pmm_validate over all of the above
 *
 * Data structures:
 *   free[k]   one doubly linked list per order k of the free blocks of
 *             2^k frames. The links live in the free block's first frame
 *             (struct pmm_node), reached through the direct map: free
 *             memory holds its own bookkeeping, so it costs nothing.
 *   section   a stretch of frames [base_pfn, base_pfn + npfn) with a byte
 *             of metadata per frame (meta[]). The byte says what the frame
 *             is, in the top three bits, with an argument in the low five:
 *               M_FREE|k    first frame of a free block of order k
 *               M_ALLOC|k   first frame of an allocated block of order k
 *               M_TAIL      any other frame of a free or allocated block
 *               M_RESERVED|t  never handed out; t is the pmm_type (0: a
 *                           hole in the map). Reclaimable frames are
 *                           M_RESERVED|PMM_RECLAIMABLE until pmm_reclaim.
 *             Only block heads carry an order, and every split or merge
 *             rewrites exactly the heads it creates or removes, so the
 *             bytes are always exact and both paths stay O(log n).
 *             One byte per frame is 0.025% of the memory it describes.
 *
 * Checks: a free block's link carries a check word derived from its frame
 * number and order, and every link read from a free frame is verified
 * against the metadata (node_ok) before it is followed or written
 * through, so a write after free is reported (PMM_ECORRUPT) instead of
 * steering the allocator into arbitrary memory. pmm_validate is the
 * whole-structure check the tests run after every step.
 */
#ifndef MM_PMM_INTERNAL_H
#define MM_PMM_INTERNAL_H

#include "../../mm/fmt.h"
#include "pmm.h"

/* The metadata byte of a frame (see "Data structures" above). */
#define M_TAIL     0x00u
#define M_FREE     0x20u
#define M_ALLOC    0x40u
#define M_RESERVED 0x60u
#define M_STATE(b) ((unsigned)(b)&0xe0u)
#define M_ARG(b)   ((unsigned)(b)&0x1fu)

#define NODE_MAGIC 0x706d6d2d66726565ull /* "pmm-free" */

/* ---- small helpers (no libc: gcc would turn plain loops into memset) ---- */

static inline void set_bytes(void *dst, unsigned char v, uint64_t n)
{
    volatile unsigned char *d = dst;
    for (uint64_t i = 0; i < n; i++)
        d[i] = v;
}

static inline uint64_t frames_up(uint64_t bytes)
{
    return (bytes + PMM_FRAME_SIZE - 1) >> PMM_FRAME_SHIFT;
}

/* One log line, built on the stack with mm/fmt.h: reporting never
 * allocates. */
struct line {
    char buf[160];
    size_t n;
};

static inline void l_init(struct line *l)
{
    l->n = 0;
    l->buf[0] = '\0';
}
static inline void l_str(struct line *l, const char *s)
{
    l->n = mm_fmt_str(l->buf, l->n, sizeof l->buf, s);
}
static inline void l_dec(struct line *l, uint64_t v)
{
    l->n = mm_fmt_u64(l->buf, l->n, sizeof l->buf, v, 0);
}
static inline void l_hex(struct line *l, uint64_t v)
{
    l->n = mm_fmt_hex(l->buf, l->n, sizeof l->buf, v);
}

static inline void l_emit(const struct pmm *p, struct line *l)
{
    if (p->log)
        p->log(l->buf);
}

/* The section holding pfn, or -1. Binary search: init.c keeps sections
 * sorted and disjoint, and every free and every link check asks. */
static inline int section_of(const struct pmm *p, uint64_t pfn)
{
    uint32_t lo = 0, hi = p->nsections;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const struct pmm_section *s = &p->section[mid];
        if (pfn < s->base_pfn)
            hi = mid;
        else if (pfn >= s->base_pfn + s->npfn)
            lo = mid + 1;
        else
            return (int)mid;
    }
    return -1;
}

static inline unsigned char *mb(const struct pmm_section *s, uint64_t pfn)
{
    return &s->meta[pfn - s->base_pfn];
}

static inline struct pmm_node *node_of(const struct pmm *p, uint64_t pfn)
{
    return (struct pmm_node *)(uintptr_t)((pfn << PMM_FRAME_SHIFT) + p->dmap_offset);
}

static inline uint64_t node_check(uint64_t pfn, unsigned order)
{
    return pfn ^ ((uint64_t)order << 56) ^ NODE_MAGIC;
}

/* Is n a link we may follow: the direct-map address of a free block head
 * of this order, carrying its check word? Metadata is consulted before
 * n is dereferenced. */
static inline int node_ok(const struct pmm *p, const struct pmm_node *n, unsigned order)
{
    uint64_t v = (uint64_t)(uintptr_t)n - p->dmap_offset;
    if (v & (PMM_FRAME_SIZE - 1))
        return 0;
    uint64_t pfn = v >> PMM_FRAME_SHIFT;
    int si = section_of(p, pfn);
    if (si < 0 || *mb(&p->section[si], pfn) != (M_FREE | order))
        return 0;
    return n->check == node_check(pfn, order);
}

/* ---- defined in one file, used in another ---- */

/* map.c */
typedef void (*pmm_piece_fn)(void *ctx, uint64_t start, uint64_t end, uint32_t type);
void pmm_map_walk(const struct pmm_region *rg, size_t n, uint64_t limit, pmm_piece_fn fn, void *ctx,
                  uint64_t *downgraded);
uint32_t pmm_canon_type(uint32_t t);
int pmm_entry_span(const struct pmm_region *r, uint64_t limit, uint64_t *s, uint64_t *e);
int pmm_piece_frames(uint64_t s, uint64_t e, uint64_t *fs, uint64_t *fe);
int pmm_in_usable(const struct pmm_region *rg, size_t n, uint64_t limit, uint64_t dmap,
                  const void *virt, uint64_t len);

/* buddy.c */
void pmm_free_run(struct pmm *p, const struct pmm_section *s, uint64_t a, uint64_t b);

/* report.c */
void pmm_report(const struct pmm *p, const char *who, const char *fault, uint64_t addr);
void pmm_say_count(const struct pmm *p, const char *before, uint64_t n, const char *after);

#endif /* MM_PMM_INTERNAL_H */
