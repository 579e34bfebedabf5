/*
 * buddy.c: the buddy allocator proper: the free lists, pmm_alloc,
 * pmm_free and pmm_reclaim. init.c fills the lists once through
 * pmm_free_run; after that only this file changes them and the metadata
 * bytes (see pmm_internal.h for both), and report.c only reads them.
 *
 * pmm_alloc(n, align):
 *   1. k = max(ceil(log2 n), log2 align).
 *   2. Take the first block from the lowest non-empty list of order >= k.
 *   3. Split it down to order k, pushing each upper half on its list.
 *   4. Carve n frames from the front: whole halves that fit are marked
 *      allocated, halves beyond n go back to the free lists, so a request
 *      that is not a power of two costs only its own frames.
 *
 * pmm_free(phys, n):
 *   1. Validate the whole range first: it must parse as allocated block
 *      heads that end exactly at phys + n. Anything else is reported and
 *      nothing changes.
 *   2. Free each block: while its buddy (frame ^ 2^k) is a free head of
 *      the same order inside the same section, unlink the buddy and merge.
 *
 * Why a buddy allocator and not Go's page allocator (mpagealloc.c, a
 * bitmap with a radix tree of summaries): the kernel asks for naturally
 * aligned 2 MiB and 1 GiB blocks and for single page-table frames, which
 * a buddy system serves in O(log n) from a list head, with coalescing
 * that costs a metadata byte per frame; Go's structure is tuned for
 * address-ordered first fit over a huge sparse heap, which frames do not
 * need.
 */
#include "pmm_internal.h"

/* ---- the free lists ---- */

static void list_push(struct pmm *p, uint64_t pfn, unsigned order)
{
    struct pmm_node *n = node_of(p, pfn);
    n->prev = NULL;
    n->next = p->free[order];
    n->check = node_check(pfn, order);
    if (n->next)
        n->next->prev = n;
    p->free[order] = n;
    p->nfree[order]++;
}

/* Unlink the free head at pfn from its list. Every link is checked before
 * it is written through; on a mismatch nothing is changed. */
static int list_unlink(struct pmm *p, uint64_t pfn, unsigned order)
{
    struct pmm_node *n = node_of(p, pfn);
    if (n->check != node_check(pfn, order))
        goto corrupt;
    struct pmm_node *next = n->next, *prev = n->prev;
    if (next && (!node_ok(p, next, order) || next->prev != n))
        goto corrupt;
    if (prev ? (!node_ok(p, prev, order) || prev->next != n) : p->free[order] != n)
        goto corrupt;
    if (prev)
        prev->next = next;
    else
        p->free[order] = next;
    if (next)
        next->prev = prev;
    p->nfree[order]--;
    return 0;
corrupt:
    pmm_report(p, "pmm", "free block overwritten after free (corrupt free list)",
               pfn << PMM_FRAME_SHIFT);
    return PMM_ECORRUPT;
}

/* Put the block (pfn, k) on the free lists, merging with free buddies.
 * Its bytes other than the head must already be M_TAIL. */
static int free_block(struct pmm *p, const struct pmm_section *s, uint64_t pfn, unsigned k)
{
    int rc = 0;
    uint64_t end = s->base_pfn + s->npfn;
    while (k < PMM_MAX_ORDER) {
        uint64_t size = (uint64_t)1 << k;
        uint64_t buddy = pfn ^ size;
        if (buddy < s->base_pfn || buddy + size > end || *mb(s, buddy) != (M_FREE | k))
            break;
        if ((rc = list_unlink(p, buddy, k)) != 0)
            break;
        uint64_t lo = pfn < buddy ? pfn : buddy;
        *mb(s, lo + size) = M_TAIL;
        pfn = lo;
        k++;
    }
    *mb(s, pfn) = (unsigned char)(M_FREE | k);
    list_push(p, pfn, k);
    return rc;
}

/* Free [a, b) (bytes already M_TAIL) as the largest aligned blocks. */
void pmm_free_run(struct pmm *p, const struct pmm_section *s, uint64_t a, uint64_t b)
{
    while (a < b) {
        unsigned k = 0;
        while (k < PMM_MAX_ORDER && !(a & ((2ull << k) - 1)) && a + (2ull << k) <= b)
            k++;
        (void)free_block(p, s, a, k); /* a corrupt neighbour was reported; keep going */
        a += (uint64_t)1 << k;
    }
}

/* ---- allocation ---- */

static unsigned ceil_log2(uint64_t v)
{
    unsigned k = 0;
    while (k < 63 && ((uint64_t)1 << k) < v)
        k++;
    return k;
}

/* Hand out `want` frames from the front of the free block (pfn, k), which
 * is already off the lists and whose bytes other than the head are M_TAIL:
 * halves wholly inside the request become allocated blocks, halves wholly
 * beyond it go back on the free lists (their buddy is in use, so they
 * cannot merge). */
static void carve(struct pmm *p, const struct pmm_section *s, uint64_t pfn, unsigned k,
                  uint64_t want)
{
    for (;;) {
        if (want == ((uint64_t)1 << k)) {
            *mb(s, pfn) = (unsigned char)(M_ALLOC | k);
            return;
        }
        k--;
        uint64_t half = (uint64_t)1 << k;
        if (want <= half) {
            *mb(s, pfn + half) = (unsigned char)(M_FREE | k);
            list_push(p, pfn + half, k);
        } else {
            *mb(s, pfn) = (unsigned char)(M_ALLOC | k);
            pfn += half;
            want -= half;
        }
    }
}

int pmm_alloc(struct pmm *p, size_t nframes, size_t align_frames, uint64_t *phys_out)
{
    if (!phys_out) {
        pmm_report(p, "pmm_alloc", "no place for the result (phys_out NULL)", 0);
        return PMM_EINVAL;
    }
    if (nframes == 0 || nframes > ((size_t)1 << PMM_MAX_ORDER)) {
        pmm_report(p, "pmm_alloc", "bad frame count", nframes);
        return PMM_EINVAL;
    }
    if (align_frames & (align_frames - 1) || align_frames > ((size_t)1 << PMM_MAX_ORDER)) {
        pmm_report(p, "pmm_alloc", "alignment not a power of two up to the largest block",
                   align_frames);
        return PMM_EINVAL;
    }
    unsigned k = ceil_log2(nframes);
    unsigned a = align_frames ? ceil_log2(align_frames) : 0;
    if (a > k)
        k = a;

    unsigned m = k;
    while (m <= PMM_MAX_ORDER && !p->free[m])
        m++;
    if (m > PMM_MAX_ORDER)
        return PMM_ENOMEM;

    uint64_t pfn = (((uint64_t)(uintptr_t)p->free[m]) - p->dmap_offset) >> PMM_FRAME_SHIFT;
    int si = section_of(p, pfn);
    if (si < 0 || *mb(&p->section[si], pfn) != (M_FREE | m)) {
        pmm_report(p, "pmm", "free list head is not a free block (corrupt free list)",
                   pfn << PMM_FRAME_SHIFT);
        return PMM_ECORRUPT;
    }
    const struct pmm_section *s = &p->section[si];
    int rc = list_unlink(p, pfn, m);
    if (rc)
        return rc;
    while (m > k) {
        m--;
        uint64_t upper = pfn + ((uint64_t)1 << m);
        *mb(s, upper) = (unsigned char)(M_FREE | m);
        list_push(p, upper, m);
    }
    carve(p, s, pfn, k, nframes);
    p->free_frames -= nframes;
    p->used_frames += nframes;
    *phys_out = pfn << PMM_FRAME_SHIFT;
    return PMM_OK;
}

/* ---- freeing ---- */

/* Why the frame at pfn cannot start a block being freed; NULL if it can. */
static const char *bad_head(const struct pmm_section *s, uint64_t pfn, uint64_t end,
                            uint64_t *where)
{
    unsigned char b = *mb(s, pfn);
    *where = pfn;
    switch (M_STATE(b)) {
    case M_ALLOC:
        if (pfn + ((uint64_t)1 << M_ARG(b)) > end)
            return "range ends inside an allocated block";
        return NULL;
    case M_FREE:
        return "double free";
    case M_RESERVED:
        switch (M_ARG(b)) {
        case 0:
            return "frame in a hole of the memory map";
        case PMM_RECLAIMABLE:
            return "reclaimable frame not yet reclaimed";
        case PMM_METADATA:
            return "frame holds pmm metadata";
        default:
            return "reserved frame";
        }
    default:
        break;
    }
    /* A tail: find the block around it to say which mistake this is. */
    for (unsigned k = 1; k <= PMM_MAX_ORDER; k++) {
        uint64_t h = pfn & ~(((uint64_t)1 << k) - 1);
        if (h < s->base_pfn)
            break;
        unsigned char hb = *mb(s, h);
        if ((M_STATE(hb) == M_FREE || M_STATE(hb) == M_ALLOC) &&
            h + ((uint64_t)1 << M_ARG(hb)) > pfn) {
            *where = h;
            return M_STATE(hb) == M_FREE
                       ? "double free (inside a free block)"
                       : "not the start of an allocation (inside an allocated block)";
        }
    }
    return "frame metadata inconsistent";
}

int pmm_free(struct pmm *p, uint64_t phys, size_t nframes)
{
    if (phys & (PMM_FRAME_SIZE - 1)) {
        pmm_report(p, "pmm_free", "address not frame aligned", phys);
        return PMM_EBADFREE;
    }
    if (nframes == 0) {
        pmm_report(p, "pmm_free", "zero frames", phys);
        return PMM_EBADFREE;
    }
    uint64_t pfn = phys >> PMM_FRAME_SHIFT;
    int si = section_of(p, pfn);
    if (si < 0) {
        pmm_report(p, "pmm_free", "frame not managed by this allocator", phys);
        return PMM_EBADFREE;
    }
    const struct pmm_section *s = &p->section[si];
    uint64_t end = pfn + nframes;
    if (end < pfn || end > s->base_pfn + s->npfn) {
        pmm_report(p, "pmm_free", "range runs past managed memory", phys);
        return PMM_EBADFREE;
    }
    for (uint64_t f = pfn; f < end; f += (uint64_t)1 << M_ARG(*mb(s, f))) {
        uint64_t where;
        const char *why = bad_head(s, f, end, &where);
        if (why) {
            struct line l;
            l_init(&l);
            l_str(&l, "pmm_free: ");
            l_str(&l, why);
            l_str(&l, ": ");
            l_hex(&l, f << PMM_FRAME_SHIFT);
            if (f != pfn) {
                l_str(&l, " (freeing ");
                l_hex(&l, phys);
                l_str(&l, ")");
            }
            if (where != f) {
                l_str(&l, " block at ");
                l_hex(&l, where << PMM_FRAME_SHIFT);
            }
            l_emit(p, &l);
            return PMM_EBADFREE;
        }
    }
    int rc = 0;
    for (uint64_t f = pfn; f < end;) {
        unsigned k = M_ARG(*mb(s, f));
        *mb(s, f) = M_TAIL;
        int r = free_block(p, s, f, k);
        if (r)
            rc = r;
        f += (uint64_t)1 << k;
    }
    p->used_frames -= nframes;
    p->free_frames += nframes;
    return rc;
}

uint64_t pmm_reclaim(struct pmm *p)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < p->nsections; i++) {
        const struct pmm_section *s = &p->section[i];
        uint64_t f = 0;
        while (f < s->npfn) {
            if (s->meta[f] != (M_RESERVED | PMM_RECLAIMABLE)) {
                f++;
                continue;
            }
            uint64_t g = f;
            while (g < s->npfn && s->meta[g] == (M_RESERVED | PMM_RECLAIMABLE))
                s->meta[g++] = M_TAIL;
            pmm_free_run(p, s, s->base_pfn + f, s->base_pfn + g);
            total += g - f;
            f = g;
        }
    }
    p->reclaimable_frames -= total;
    p->free_frames += total;
    if (total)
        pmm_say_count(p, "pmm: reclaimed ", total, " frames of boot memory");
    return total;
}
