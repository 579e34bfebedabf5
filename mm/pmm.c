/*
 * pmm.c: the physical frame allocator. See pmm.h for the interface and
 * the glossary (frame, block, section); this file is portable C with no
 * libc and nothing x86-specific, shared by the kernel and the host tests.
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
 * Building (pmm_init), in passes over the resolved memory map:
 *   1. Resolve: entries are clamped to the limit (the end of the direct
 *      map, or 2^52); map_walk sweeps them in address order and yields
 *      maximal pieces of one type; where entries overlap, the more
 *      restrictive type wins (type_rank). Usable and reclaimable pieces
 *      are trimmed inward to whole frames, frame 0 is withheld. Runs of
 *      allocatable frames join the current section while its holes stay
 *      below HOLE_FACTOR times its memory, so metadata spent on holes is
 *      bounded; otherwise a new section starts.
 *   2. Place the metadata of all sections back to back at the top of the
 *      highest usable run that holds it (low memory is precious: SMP
 *      trampolines, legacy DMA). If no run is that large, each section's
 *      goes in its own section, or else in another one; a section with no
 *      room anywhere is dropped and reported.
 *   3. Fill the metadata bytes from the map, then put every run of usable
 *      frames on the free lists as the largest aligned blocks that fit.
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
 *
 * Bookkeeping: metadata is 1 byte per frame of each section, holes
 * included, and holes are at most HOLE_FACTOR times the managed frames,
 * so at most 5 bytes per 4 KiB frame (0.12%), plus one frame of rounding
 * and sizeof(struct pmm) (about 1.3 KiB) in all. That is below 0.5% for
 * anything over 1.5 MiB of memory; a 256 MiB machine pays 0.025%.
 *
 * Checks: a free block's link carries a check word derived from its frame
 * number and order, and every link read from a free frame is verified
 * against the metadata before it is followed or written through, so a
 * write after free is reported (PMM_ECORRUPT) instead of steering the
 * allocator into arbitrary memory. pmm_validate is the whole-structure
 * check the tests run after every step.
 */
#include "pmm.h"
#include "fmt.h"

#define M_TAIL     0x00u
#define M_FREE     0x20u
#define M_ALLOC    0x40u
#define M_RESERVED 0x60u
#define M_STATE(b) ((unsigned)(b) & 0xe0u)
#define M_ARG(b)   ((unsigned)(b) & 0x1fu)

/* A section keeps growing across a hole only while all its holes stay
 * below HOLE_FACTOR times the frames it manages: metadata for holes then
 * costs at most HOLE_FACTOR bytes per managed frame (0.1%). */
#define HOLE_FACTOR 4

#define NODE_MAGIC 0x706d6d2d66726565ull /* "pmm-free" */

/* ---- small helpers (no libc: gcc would turn plain loops into memset) ---- */

static void set_bytes(void *dst, unsigned char v, uint64_t n)
{
    volatile unsigned char *d = dst;
    for (uint64_t i = 0; i < n; i++)
        d[i] = v;
}

static uint64_t frames_up(uint64_t bytes) { return (bytes + PMM_FRAME_SIZE - 1) >> PMM_FRAME_SHIFT; }

static unsigned ceil_log2(uint64_t v)
{
    unsigned k = 0;
    while (k < 63 && ((uint64_t)1 << k) < v)
        k++;
    return k;
}

/* One log line, built on the stack with mm/fmt.h: reporting never
 * allocates. */
struct line {
    char buf[160];
    size_t n;
};

static void l_init(struct line *l) { l->n = 0; l->buf[0] = '\0'; }
static void l_str(struct line *l, const char *s) { l->n = mm_fmt_str(l->buf, l->n, sizeof l->buf, s); }
static void l_dec(struct line *l, uint64_t v) { l->n = mm_fmt_u64(l->buf, l->n, sizeof l->buf, v, 0); }
static void l_hex(struct line *l, uint64_t v) { l->n = mm_fmt_hex(l->buf, l->n, sizeof l->buf, v); }

/* Bytes as "N bytes" below 1 MiB, "N MiB" (rounded down) above. */
static void l_size(struct line *l, uint64_t bytes)
{
    if (bytes >= ((uint64_t)1 << 20)) {
        l_dec(l, bytes >> 20);
        l_str(l, " MiB");
    } else {
        l_dec(l, bytes);
        l_str(l, " bytes");
    }
}

static void l_emit(const struct pmm *p, struct line *l)
{
    if (p->log)
        p->log(l->buf);
}

static void report(const struct pmm *p, const char *who, const char *fault, uint64_t addr)
{
    struct line l;
    l_init(&l);
    l_str(&l, who);
    l_str(&l, ": ");
    l_str(&l, fault);
    l_str(&l, ": ");
    l_hex(&l, addr);
    l_emit(p, &l);
}

const char *pmm_type_name(uint32_t type)
{
    switch (type) {
    case PMM_USABLE: return "usable";
    case PMM_RECLAIMABLE: return "reclaimable";
    case PMM_ACPI_RECLAIM: return "acpi-reclaim";
    case PMM_ACPI_NVS: return "acpi-nvs";
    case PMM_RESERVED: return "reserved";
    case PMM_KERNEL: return "kernel";
    case PMM_LOADER: return "loader";
    case PMM_BAD: return "bad";
    case PMM_METADATA: return "pmm-metadata";
    default: return "unknown";
    }
}

/* ---- pass 1: resolving the map ---- */

static uint32_t canon_type(uint32_t t) { return (t >= PMM_USABLE && t <= PMM_BAD) ? t : PMM_RESERVED; }

/* Precedence on overlap. Free memory loses to everything; memory we may
 * reuse later (ACPI tables, our own loader data, the kernel) loses to
 * memory the firmware owns for good; bad memory beats all. */
static int type_rank(uint32_t t)
{
    switch (t) {
    case PMM_USABLE: return 1;
    case PMM_RECLAIMABLE: return 2;
    case PMM_ACPI_RECLAIM: return 3;
    case PMM_LOADER: return 4;
    case PMM_KERNEL: return 5;
    case PMM_ACPI_NVS: return 6;
    case PMM_RESERVED: return 7;
    default: return 8; /* PMM_BAD */
    }
}

/* [*s, *e) of an entry, clamped to limit; 0 if nothing is left. */
static int entry_span(const struct pmm_region *r, uint64_t limit, uint64_t *s, uint64_t *e)
{
    if (r->length == 0 || r->base >= limit)
        return 0;
    uint64_t end = r->base + r->length;
    if (end < r->base || end > limit)
        end = limit;
    *s = r->base;
    *e = end;
    return 1;
}

typedef void (*piece_fn)(void *ctx, uint64_t start, uint64_t end, uint32_t type);

/*
 * Call fn on the resolved map in address order: maximal pieces [start, end)
 * of one type, gaps skipped; add to *downgraded (if not NULL) the bytes
 * that a usable or reclaimable entry claims but a stronger type took. Each step finds the next boundary and the
 * winning type at the current address by scanning every entry: O(n^2),
 * but it needs no scratch memory (there is none before pass 2) and leaves
 * the caller's array untouched. Boot maps hold a few hundred entries.
 */
static void map_walk(const struct pmm_region *rg, size_t n, uint64_t limit, piece_fn fn, void *ctx,
                     uint64_t *downgraded)
{
    uint64_t cur = 0, ps = 0, pe = 0;
    uint32_t pt = 0; /* pending piece type; 0 = none */
    for (;;) {
        uint64_t next = UINT64_MAX;
        int best = 0, any_free = 0;
        uint32_t bt = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t s, e;
            if (!entry_span(&rg[i], limit, &s, &e))
                continue;
            if (s > cur && s < next)
                next = s;
            if (e > cur && e < next)
                next = e;
            if (s <= cur && cur < e) {
                uint32_t t = canon_type(rg[i].type);
                any_free |= t == PMM_USABLE || t == PMM_RECLAIMABLE;
                if (type_rank(t) > best) {
                    best = type_rank(t);
                    bt = t;
                }
            }
        }
        if (next == UINT64_MAX)
            break;
        if (downgraded && any_free && bt != PMM_USABLE && bt != PMM_RECLAIMABLE)
            *downgraded += next - cur;
        if (bt) {
            if (bt == pt && pe == cur) {
                pe = next;
            } else {
                if (pt)
                    fn(ctx, ps, pe, pt);
                ps = cur;
                pe = next;
                pt = bt;
            }
        }
        cur = next;
    }
    if (pt)
        fn(ctx, ps, pe, pt);
}

/* Whole frames [*fs, *fe) inside an allocatable piece, frame 0 excluded. */
static int piece_frames(uint64_t s, uint64_t e, uint64_t *fs, uint64_t *fe)
{
    uint64_t a = frames_up(s), b = e >> PMM_FRAME_SHIFT;
    if (a == 0)
        a = 1;
    if (b <= a)
        return 0;
    *fs = a;
    *fe = b;
    return 1;
}

/* Could the frame at phys be handed out (or written during init)? Only
 * if usable entries cover all of it and no other entry touches it. */
static int frame_usable(const struct pmm_region *rg, size_t n, uint64_t limit, uint64_t phys)
{
    uint64_t a = phys, b = phys + PMM_FRAME_SIZE, s, e;
    if (phys == 0 || b > limit)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (entry_span(&rg[i], limit, &s, &e) && canon_type(rg[i].type) != PMM_USABLE && s < b && e > a)
            return 0;
    while (a < b) {
        uint64_t reach = a;
        for (size_t i = 0; i < n; i++)
            if (entry_span(&rg[i], limit, &s, &e) && rg[i].type == PMM_USABLE && s <= a && e > reach)
                reach = e;
        if (reach == a)
            return 0;
        a = reach;
    }
    return 1;
}

/* Does [virt, virt + len) lie, through the direct map, in usable memory
 * that pmm_init would overwrite with metadata or free-list links? */
static int in_usable(const struct pmm_region *rg, size_t n, uint64_t limit, uint64_t dmap, const void *virt,
                     uint64_t len)
{
    uint64_t phys = (uint64_t)(uintptr_t)virt - dmap;
    if (phys >= limit || len > limit - phys)
        return 0;
    for (uint64_t f = phys & ~(PMM_FRAME_SIZE - 1); f < phys + len; f += PMM_FRAME_SIZE)
        if (frame_usable(rg, n, limit, f))
            return 1;
    return 0;
}

/* Scratch state of pmm_init, on the caller's stack. */
struct plan {
    struct pmm *p;
    uint64_t holes[PMM_MAX_SECTIONS];   /* hole frames inside each section */
    uint64_t managed[PMM_MAX_SECTIONS]; /* allocatable frames in each section */
    uint64_t meta_at[PMM_MAX_SECTIONS]; /* physical address of each metadata array; 0 = none yet */
    uint64_t carve_pfn[PMM_MAX_SECTIONS]; /* frames taken for metadata: [pfn, pfn + n) */
    uint64_t carve_n[PMM_MAX_SECTIONS];
    uint32_t ncarves;
    int host;                           /* pass 2: section to search; ANY_SECTION, PLACED_SECTION */
    uint64_t need, best_end;            /* pass 2: search state */
};

#define ANY_SECTION (-2)
#define PLACED_SECTION (-1) /* any section whose own metadata is placed */

static void plan_piece(void *ctx, uint64_t s, uint64_t e, uint32_t t)
{
    struct plan *pl = ctx;
    struct pmm *p = pl->p;
    p->type_bytes[t] += e - s;
    if (t != PMM_USABLE && t != PMM_RECLAIMABLE)
        return;
    uint64_t fs = 0, fe = 0;
    int whole = piece_frames(s, e, &fs, &fe);
    uint64_t f0 = s < PMM_FRAME_SIZE ? (e < PMM_FRAME_SIZE ? e : PMM_FRAME_SIZE) - s : 0;
    p->dropped.frame0_bytes += f0;
    p->dropped.unaligned_bytes += (e - s) - f0 - ((fe - fs) << PMM_FRAME_SHIFT);
    if (!whole)
        return;

    uint64_t len = fe - fs;
    uint32_t last = p->nsections;
    if (last > 0) {
        struct pmm_section *sec = &p->section[last - 1];
        uint64_t gap = fs - (sec->base_pfn + sec->npfn);
        if (pl->holes[last - 1] + gap <= HOLE_FACTOR * (pl->managed[last - 1] + len)) {
            sec->npfn = fe - sec->base_pfn;
            pl->holes[last - 1] += gap;
            pl->managed[last - 1] += len;
            return;
        }
    }
    if (last == PMM_MAX_SECTIONS) {
        p->dropped.section_bytes += len << PMM_FRAME_SHIFT;
        return;
    }
    p->section[last].base_pfn = fs;
    p->section[last].npfn = len;
    pl->holes[last] = 0;
    pl->managed[last] = len;
    p->nsections = last + 1;
}

/* ---- pass 2: placing the metadata ---- */

static int section_of(const struct pmm *p, uint64_t pfn)
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

static void place_piece(void *ctx, uint64_t s, uint64_t e, uint32_t t)
{
    struct plan *pl = ctx;
    uint64_t fs, fe;
    if (t != PMM_USABLE || !piece_frames(s, e, &fs, &fe))
        return;
    int sec = section_of(pl->p, fs);
    if (sec < 0)
        return; /* dropped for lack of a section slot */
    if (pl->host >= 0 ? sec != pl->host : pl->host == PLACED_SECTION && !pl->meta_at[sec])
        return;
    /* Earlier carves take the top of a run, so the run now ends below
     * the lowest carve inside it. */
    for (uint32_t j = 0; j < pl->ncarves; j++)
        if (pl->carve_pfn[j] >= fs && pl->carve_pfn[j] < fe)
            fe = pl->carve_pfn[j];
    if (fe - fs >= pl->need && fe > pl->best_end)
        pl->best_end = fe;
}

/* Take `bytes` of metadata from the top of the highest usable run that
 * fits, in the sections `host` allows; its physical address, or 0. */
static uint64_t carve_meta(struct plan *pl, const struct pmm_region *rg, size_t n, uint64_t bytes, int host)
{
    pl->host = host;
    pl->need = frames_up(bytes);
    pl->best_end = 0;
    map_walk(rg, n, pl->p->limit, place_piece, pl, NULL);
    if (!pl->best_end)
        return 0;
    uint32_t c = pl->ncarves++;
    pl->carve_pfn[c] = pl->best_end - pl->need;
    pl->carve_n[c] = pl->need;
    return pl->carve_pfn[c] << PMM_FRAME_SHIFT;
}

/* ---- the buddy core ---- */

static unsigned char *mb(const struct pmm_section *s, uint64_t pfn) { return &s->meta[pfn - s->base_pfn]; }

static struct pmm_node *node_of(const struct pmm *p, uint64_t pfn)
{
    return (struct pmm_node *)(uintptr_t)((pfn << PMM_FRAME_SHIFT) + p->dmap_offset);
}

static uint64_t node_check(uint64_t pfn, unsigned order) { return pfn ^ ((uint64_t)order << 56) ^ NODE_MAGIC; }

/* Is n a link we may follow: the direct-map address of a free block head
 * of this order, carrying its check word? Metadata is consulted before
 * n is dereferenced. */
static int node_ok(const struct pmm *p, const struct pmm_node *n, unsigned order)
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
    report(p, "pmm", "free block overwritten after free (corrupt free list)", pfn << PMM_FRAME_SHIFT);
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
static void free_run(struct pmm *p, const struct pmm_section *s, uint64_t a, uint64_t b)
{
    while (a < b) {
        unsigned k = 0;
        while (k < PMM_MAX_ORDER && !(a & ((2ull << k) - 1)) && a + (2ull << k) <= b)
            k++;
        (void)free_block(p, s, a, k); /* a corrupt neighbour was reported; keep going */
        a += (uint64_t)1 << k;
    }
}

/* ---- pass 3: filling the metadata ---- */

static void fill_piece(void *ctx, uint64_t s, uint64_t e, uint32_t t)
{
    struct pmm *p = ((struct plan *)ctx)->p;
    uint64_t fs, fe;
    unsigned char v;
    if (t == PMM_USABLE || t == PMM_RECLAIMABLE) {
        if (!piece_frames(s, e, &fs, &fe))
            return;
        v = (t == PMM_USABLE) ? M_TAIL : (unsigned char)(M_RESERVED | PMM_RECLAIMABLE);
    } else {
        /* Any frame this piece touches, so a free of it names its type. */
        fs = s >> PMM_FRAME_SHIFT;
        fe = frames_up(e);
        v = (unsigned char)(M_RESERVED | t);
    }
    for (uint32_t i = 0; i < p->nsections; i++) {
        const struct pmm_section *sec = &p->section[i];
        uint64_t a = fs > sec->base_pfn ? fs : sec->base_pfn;
        uint64_t b = fe < sec->base_pfn + sec->npfn ? fe : sec->base_pfn + sec->npfn;
        for (uint64_t f = a; f < b; f++)
            if (v != M_TAIL ? *mb(sec, f) == M_RESERVED : 1)
                *mb(sec, f) = v;
    }
}

static void log_dropped(struct pmm *p, uint64_t bytes, const char *why)
{
    if (!bytes)
        return;
    struct line l;
    l_init(&l);
    l_str(&l, "pmm: map: ");
    l_dec(&l, bytes);
    l_str(&l, " bytes ");
    l_str(&l, why);
    l_emit(p, &l);
}

int pmm_init(struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t dmap_offset,
             void (*log)(const char *line))
{
    return pmm_init_limit(p, rg, n, dmap_offset, PMM_PHYS_LIMIT, log);
}

int pmm_init_limit(struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t dmap_offset, uint64_t limit,
                   void (*log)(const char *line))
{
    if (!p)
        return PMM_EINVAL;
    set_bytes(p, 0, sizeof *p);
    p->dmap_offset = dmap_offset;
    p->limit = limit < PMM_PHYS_LIMIT ? limit & ~(PMM_FRAME_SIZE - 1) : PMM_PHYS_LIMIT;
    p->log = log;
    if (n && !rg) {
        report(p, "pmm_init", "no memory map", 0);
        return PMM_EINVAL;
    }
    /* Init writes into usable frames, so neither input may live there. */
    if (n && in_usable(rg, n, p->limit, dmap_offset, rg, n * sizeof *rg)) {
        report(p, "pmm_init", "memory map lies in usable memory it describes",
               (uint64_t)(uintptr_t)rg - dmap_offset);
        return PMM_EINVAL;
    }
    if (n && in_usable(rg, n, p->limit, dmap_offset, p, sizeof *p)) {
        report(p, "pmm_init", "struct pmm lies in usable memory", (uint64_t)(uintptr_t)p - dmap_offset);
        return PMM_EINVAL;
    }

    /* Input statistics the resolved map cannot show. */
    uint64_t total = 0, prev_base = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t s, e;
        if (rg[i].length == 0) {
            p->dropped.empty_entries++;
            continue;
        }
        if (i && rg[i].base < prev_base)
            p->dropped.unsorted_entries++;
        prev_base = rg[i].base;
        if (!entry_span(&rg[i], p->limit, &s, &e)) {
            p->dropped.limit_bytes += rg[i].length;
            continue;
        }
        p->dropped.limit_bytes += rg[i].length - (e - s);
        total += e - s;
        if (canon_type(rg[i].type) != rg[i].type)
            p->dropped.unknown_bytes += e - s;
    }

    struct plan pl;
    set_bytes(&pl, 0, sizeof pl);
    pl.p = p;
    map_walk(rg, n, p->limit, plan_piece, &pl, &p->dropped.downgraded_bytes);

    uint64_t resolved = 0;
    for (int t = 0; t < PMM_NTYPES; t++)
        resolved += p->type_bytes[t];
    p->dropped.overlap_bytes = total - resolved;

    /* Pass 2: all metadata arrays back to back in one carve, so a frame is
     * rounded up once, not once per section. If no run holds them all:
     * each in its own section, else in any section already placed. */
    uint64_t meta_total = 0, at;
    for (uint32_t i = 0; i < p->nsections; i++)
        meta_total += p->section[i].npfn;
    if (meta_total && (at = carve_meta(&pl, rg, n, meta_total, ANY_SECTION)) != 0) {
        for (uint32_t i = 0; i < p->nsections; i++) {
            pl.meta_at[i] = at;
            at += p->section[i].npfn;
        }
    } else {
        for (uint32_t i = 0; i < p->nsections; i++)
            pl.meta_at[i] = carve_meta(&pl, rg, n, p->section[i].npfn, (int)i);
    }
    for (uint32_t i = 0; i < p->nsections; i++) {
        if (pl.meta_at[i] || (pl.meta_at[i] = carve_meta(&pl, rg, n, p->section[i].npfn, PLACED_SECTION)))
            continue;
        struct line l;
        l_init(&l);
        l_str(&l, "pmm: map: no room for the metadata of section ");
        l_hex(&l, p->section[i].base_pfn << PMM_FRAME_SHIFT);
        l_str(&l, "; dropped");
        l_emit(p, &l);
        p->dropped.section_bytes += pl.managed[i] << PMM_FRAME_SHIFT;
    }
    /* Keep the placed sections, in order. Carves only ever sit in placed
     * sections, so every carve stays inside a kept one. */
    uint32_t kept_n = 0;
    for (uint32_t i = 0; i < p->nsections; i++) {
        if (!pl.meta_at[i])
            continue;
        p->section[kept_n] = p->section[i];
        p->section[kept_n].meta = (unsigned char *)(uintptr_t)(pl.meta_at[i] + dmap_offset);
        p->metadata_bytes += p->section[i].npfn;
        kept_n++;
    }
    p->nsections = kept_n;

    /* Pass 3: holes first, then the map, then the carves, then free runs. */
    for (uint32_t i = 0; i < kept_n; i++)
        set_bytes(p->section[i].meta, M_RESERVED, p->section[i].npfn);
    map_walk(rg, n, p->limit, fill_piece, &pl, NULL);
    for (uint32_t c = 0; c < pl.ncarves; c++) {
        const struct pmm_section *host = &p->section[section_of(p, pl.carve_pfn[c])];
        for (uint64_t f = pl.carve_pfn[c]; f < pl.carve_pfn[c] + pl.carve_n[c]; f++)
            *mb(host, f) = M_RESERVED | PMM_METADATA;
        p->metadata_frames += pl.carve_n[c];
    }
    for (uint32_t i = 0; i < kept_n; i++) {
        const struct pmm_section *s = &p->section[i];
        uint64_t f = 0;
        while (f < s->npfn) {
            unsigned char b = s->meta[f];
            if (b == (M_RESERVED | PMM_RECLAIMABLE))
                p->reclaimable_frames++;
            if (b != M_TAIL) {
                f++;
                continue;
            }
            uint64_t g = f;
            while (g < s->npfn && s->meta[g] == M_TAIL)
                g++;
            free_run(p, s, s->base_pfn + f, s->base_pfn + g);
            p->free_frames += g - f;
            f = g;
        }
    }
    p->managed_frames = p->free_frames + p->reclaimable_frames + p->metadata_frames;

    if (p->dropped.unsorted_entries) {
        struct line l;
        l_init(&l);
        l_str(&l, "pmm: map: ");
        l_dec(&l, p->dropped.unsorted_entries);
        l_str(&l, " entries out of address order; sorted");
        l_emit(p, &l);
    }
    log_dropped(p, p->dropped.overlap_bytes, "in overlapping entries; the more restrictive type kept");
    log_dropped(p, p->dropped.downgraded_bytes, "of usable memory overlapped by reserved entries; not used");
    log_dropped(p, p->dropped.unaligned_bytes, "of usable memory in partial frames; trimmed");
    log_dropped(p, p->dropped.frame0_bytes, "in frame 0; never handed out");
    log_dropped(p, p->dropped.limit_bytes, "above the direct map or physical address limit; dropped");
    log_dropped(p, p->dropped.unknown_bytes, "of unknown type; kept reserved");
    log_dropped(p, p->dropped.section_bytes, "of usable memory without a section or metadata room; dropped");
    return PMM_OK;
}

/* ---- allocation ---- */

/* Hand out `want` frames from the front of the free block (pfn, k), which
 * is already off the lists and whose bytes other than the head are M_TAIL:
 * halves wholly inside the request become allocated blocks, halves wholly
 * beyond it go back on the free lists (their buddy is in use, so they
 * cannot merge). */
static void carve(struct pmm *p, const struct pmm_section *s, uint64_t pfn, unsigned k, uint64_t want)
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
        report(p, "pmm_alloc", "no place for the result (phys_out NULL)", 0);
        return PMM_EINVAL;
    }
    if (nframes == 0 || nframes > ((size_t)1 << PMM_MAX_ORDER)) {
        report(p, "pmm_alloc", "bad frame count", nframes);
        return PMM_EINVAL;
    }
    if (align_frames & (align_frames - 1) || align_frames > ((size_t)1 << PMM_MAX_ORDER)) {
        report(p, "pmm_alloc", "alignment not a power of two up to the largest block", align_frames);
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
        report(p, "pmm", "free list head is not a free block (corrupt free list)", pfn << PMM_FRAME_SHIFT);
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
static const char *bad_head(const struct pmm_section *s, uint64_t pfn, uint64_t end, uint64_t *where)
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
        case 0: return "frame in a hole of the memory map";
        case PMM_RECLAIMABLE: return "reclaimable frame not yet reclaimed";
        case PMM_METADATA: return "frame holds pmm metadata";
        default: return "reserved frame";
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
        if ((M_STATE(hb) == M_FREE || M_STATE(hb) == M_ALLOC) && h + ((uint64_t)1 << M_ARG(hb)) > pfn) {
            *where = h;
            return M_STATE(hb) == M_FREE ? "double free (inside a free block)"
                                         : "not the start of an allocation (inside an allocated block)";
        }
    }
    return "frame metadata inconsistent";
}

int pmm_free(struct pmm *p, uint64_t phys, size_t nframes)
{
    if (phys & (PMM_FRAME_SIZE - 1)) {
        report(p, "pmm_free", "address not frame aligned", phys);
        return PMM_EBADFREE;
    }
    if (nframes == 0) {
        report(p, "pmm_free", "zero frames", phys);
        return PMM_EBADFREE;
    }
    uint64_t pfn = phys >> PMM_FRAME_SHIFT;
    int si = section_of(p, pfn);
    if (si < 0) {
        report(p, "pmm_free", "frame not managed by this allocator", phys);
        return PMM_EBADFREE;
    }
    const struct pmm_section *s = &p->section[si];
    uint64_t end = pfn + nframes;
    if (end < pfn || end > s->base_pfn + s->npfn) {
        report(p, "pmm_free", "range runs past managed memory", phys);
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
            free_run(p, s, s->base_pfn + f, s->base_pfn + g);
            total += g - f;
            f = g;
        }
    }
    p->reclaimable_frames -= total;
    p->free_frames += total;
    if (total) {
        struct line l;
        l_init(&l);
        l_str(&l, "pmm: reclaimed ");
        l_dec(&l, total);
        l_str(&l, " frames of boot memory");
        l_emit(p, &l);
    }
    return total;
}

/* ---- statistics, dump, validation ---- */

void pmm_stats(const struct pmm *p, struct pmm_stats *o)
{
    set_bytes(o, 0, sizeof *o);
    o->managed_frames = p->managed_frames;
    o->free_frames = p->free_frames;
    o->used_frames = p->used_frames;
    o->reclaimable_frames = p->reclaimable_frames;
    o->metadata_frames = p->metadata_frames;
    o->metadata_bytes = p->metadata_bytes;
    o->overhead_bytes = (p->metadata_frames << PMM_FRAME_SHIFT) + sizeof *p;
    for (int k = 0; k <= PMM_MAX_ORDER; k++)
        o->free_blocks[k] = p->nfree[k];
    for (int t = 0; t < PMM_NTYPES; t++) {
        o->type_bytes[t] = p->type_bytes[t];
        if (t >= PMM_ACPI_RECLAIM && t <= PMM_BAD)
            o->reserved_bytes += p->type_bytes[t];
    }
    o->type_bytes[PMM_METADATA] = p->metadata_frames << PMM_FRAME_SHIFT;
    o->sections = p->nsections;
    o->dropped.overlap_bytes = p->dropped.overlap_bytes;
    o->dropped.downgraded_bytes = p->dropped.downgraded_bytes;
    o->dropped.unaligned_bytes = p->dropped.unaligned_bytes;
    o->dropped.frame0_bytes = p->dropped.frame0_bytes;
    o->dropped.limit_bytes = p->dropped.limit_bytes;
    o->dropped.unknown_bytes = p->dropped.unknown_bytes;
    o->dropped.section_bytes = p->dropped.section_bytes;
    o->dropped.unsorted_entries = p->dropped.unsorted_entries;
    o->dropped.empty_entries = p->dropped.empty_entries;
}

void pmm_dump(const struct pmm *p)
{
    struct pmm_stats st;
    struct line l;
    pmm_stats(p, &st);

    l_init(&l);
    l_str(&l, "pmm: ");
    l_dec(&l, st.managed_frames);
    l_str(&l, " frames managed (");
    l_size(&l, st.managed_frames << PMM_FRAME_SHIFT);
    l_str(&l, ") in ");
    l_dec(&l, st.sections);
    l_str(&l, st.sections == 1 ? " section" : " sections");
    l_emit(p, &l);
    for (uint32_t i = 0; i < p->nsections; i++) {
        const struct pmm_section *s = &p->section[i];
        l_init(&l);
        l_str(&l, "pmm:   section ");
        l_hex(&l, s->base_pfn << PMM_FRAME_SHIFT);
        l_str(&l, "-");
        l_hex(&l, (s->base_pfn + s->npfn) << PMM_FRAME_SHIFT);
        l_str(&l, ": ");
        l_dec(&l, s->npfn);
        l_str(&l, " frames, metadata at ");
        l_hex(&l, (uint64_t)(uintptr_t)s->meta - p->dmap_offset);
        l_emit(p, &l);
    }
    for (int t = 1; t < PMM_NTYPES; t++) {
        if (!st.type_bytes[t])
            continue;
        l_init(&l);
        l_str(&l, "pmm:   map ");
        l_str(&l, pmm_type_name((uint32_t)t));
        l_str(&l, ": ");
        l_dec(&l, st.type_bytes[t]);
        l_str(&l, " bytes");
        if (st.type_bytes[t] >= ((uint64_t)1 << 20)) {
            l_str(&l, " (");
            l_size(&l, st.type_bytes[t]);
            l_str(&l, ")");
        }
        l_emit(p, &l);
    }
    l_init(&l);
    l_str(&l, "pmm: frames: free ");
    l_dec(&l, st.free_frames);
    l_str(&l, ", used ");
    l_dec(&l, st.used_frames);
    l_str(&l, ", reclaimable ");
    l_dec(&l, st.reclaimable_frames);
    l_str(&l, ", metadata ");
    l_dec(&l, st.metadata_frames);
    l_str(&l, "; reserved ");
    l_dec(&l, st.reserved_bytes);
    l_str(&l, " bytes");
    l_emit(p, &l);

    l_init(&l);
    l_str(&l, "pmm: free blocks by order:");
    for (int k = 0; k <= PMM_MAX_ORDER; k++) {
        if (!st.free_blocks[k])
            continue;
        l_str(&l, " ");
        l_dec(&l, (uint64_t)k);
        l_str(&l, ":");
        l_dec(&l, st.free_blocks[k]);
    }
    l_emit(p, &l);

    const struct pmm_dropped *d = &st.dropped;
    l_init(&l);
    l_str(&l, "pmm: dropped bytes: overlap ");
    l_dec(&l, d->overlap_bytes);
    l_str(&l, ", downgraded ");
    l_dec(&l, d->downgraded_bytes);
    l_str(&l, ", unaligned ");
    l_dec(&l, d->unaligned_bytes);
    l_str(&l, ", frame0 ");
    l_dec(&l, d->frame0_bytes);
    l_str(&l, ", limit ");
    l_dec(&l, d->limit_bytes);
    l_str(&l, ", unknown ");
    l_dec(&l, d->unknown_bytes);
    l_str(&l, ", section ");
    l_dec(&l, d->section_bytes);
    l_emit(p, &l);

    /* Per mille with three decimals: the bookkeeping budget is 0.5%. */
    uint64_t managed = st.managed_frames << PMM_FRAME_SHIFT;
    uint64_t milli = managed ? st.overhead_bytes * 100000 / managed : 0;
    l_init(&l);
    l_str(&l, "pmm: bookkeeping ");
    l_dec(&l, st.overhead_bytes);
    l_str(&l, " bytes = ");
    l_dec(&l, milli / 1000);
    l_str(&l, ".");
    l_str(&l, milli % 1000 < 100 ? (milli % 1000 < 10 ? "00" : "0") : "");
    l_dec(&l, milli % 1000);
    l_str(&l, "% of managed memory");
    l_emit(p, &l);
}

struct vstate {
    const struct pmm *p;
    int faults;
};

static void vfault(struct vstate *v, const char *what, uint64_t addr)
{
    if (v->faults++ < 4)
        report(v->p, "pmm_validate", what, addr);
}

int pmm_validate(const struct pmm *p)
{
    struct vstate v = {p, 0};
    uint64_t heads[PMM_MAX_ORDER + 1];
    uint64_t nfree = 0, nused = 0, nrecl = 0, nmeta = 0;
    for (int k = 0; k <= PMM_MAX_ORDER; k++)
        heads[k] = 0;

    for (uint32_t i = 0; i < p->nsections; i++) {
        const struct pmm_section *s = &p->section[i];
        if (!s->meta || !s->npfn || (i && s->base_pfn < p->section[i - 1].base_pfn + p->section[i - 1].npfn)) {
            vfault(&v, "section out of order or empty", s->base_pfn << PMM_FRAME_SHIFT);
            continue;
        }
        uint64_t f = 0;
        while (f < s->npfn) {
            unsigned char b = s->meta[f];
            uint64_t pfn = s->base_pfn + f;
            unsigned st = M_STATE(b), k = M_ARG(b);
            if (st == M_RESERVED) {
                nrecl += k == PMM_RECLAIMABLE;
                nmeta += k == PMM_METADATA;
                f++;
                continue;
            }
            if (st != M_FREE && st != M_ALLOC) {
                vfault(&v, "frame belongs to no block", pfn << PMM_FRAME_SHIFT);
                f++;
                continue;
            }
            uint64_t size = (uint64_t)1 << k;
            if (k > PMM_MAX_ORDER || (pfn & (size - 1)) || f + size > s->npfn) {
                vfault(&v, "block misaligned or past its section", pfn << PMM_FRAME_SHIFT);
                f++;
                continue;
            }
            for (uint64_t j = 1; j < size; j++)
                if (s->meta[f + j] != M_TAIL) {
                    vfault(&v, "block overlaps another", (pfn + j) << PMM_FRAME_SHIFT);
                    break;
                }
            if (st == M_FREE) {
                heads[k]++;
                nfree += size;
                uint64_t buddy = pfn ^ size;
                if (k < PMM_MAX_ORDER && buddy > pfn && buddy + size <= s->base_pfn + s->npfn &&
                    *mb(s, buddy) == (M_FREE | k))
                    vfault(&v, "free buddies not merged", pfn << PMM_FRAME_SHIFT);
                if (node_of(p, pfn)->check != node_check(pfn, k))
                    vfault(&v, "free block's check word overwritten", pfn << PMM_FRAME_SHIFT);
            } else {
                nused += size;
            }
            f += size;
        }
    }

    for (int k = 0; k <= PMM_MAX_ORDER; k++) {
        uint64_t count = 0;
        const struct pmm_node *prev = NULL;
        for (const struct pmm_node *n = p->free[k]; n; n = n->next) {
            if (count >= heads[k]) {
                vfault(&v, "free list longer than its free blocks (cycle or stray)", (uint64_t)k);
                break;
            }
            if (!node_ok(p, n, (unsigned)k) || n->prev != prev) {
                vfault(&v, "free list link is not a free block of its order",
                       (uint64_t)(uintptr_t)n - p->dmap_offset);
                break;
            }
            prev = n;
            count++;
        }
        if (count != heads[k] || count != p->nfree[k])
            vfault(&v, "free list length differs from its free blocks, order", (uint64_t)k);
    }

    if (nfree != p->free_frames)
        vfault(&v, "free frame counter wrong, counted", nfree);
    if (nused != p->used_frames)
        vfault(&v, "used frame counter wrong, counted", nused);
    if (nrecl != p->reclaimable_frames)
        vfault(&v, "reclaimable frame counter wrong, counted", nrecl);
    if (nmeta != p->metadata_frames)
        vfault(&v, "metadata frame counter wrong, counted", nmeta);
    if (p->free_frames + p->used_frames + p->reclaimable_frames + p->metadata_frames != p->managed_frames)
        vfault(&v, "frame counters do not add up to managed frames", p->managed_frames);
    return v.faults;
}
