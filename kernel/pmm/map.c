/*
 * map.c: memory-map intake, pass 1 of pmm_init (init.c). The boot memory
 * map arrives as the loader wrote it: entries in any order, overlapping,
 * with edges that are not frame aligned, and types we do not know. This
 * file turns it into what the rest of the allocator reasons about:
 *
 *   struct pmm_region[n] --pmm_map_walk--> maximal pieces [start, end) of
 *   one type, in address order, gaps skipped --> a callback in init.c
 *
 * Entries are clamped to the limit (the end of the direct map, or 2^52);
 * where they overlap, the more restrictive type wins (type_rank); types we
 * do not know count as PMM_RESERVED (pmm_canon_type). Usable and
 * reclaimable pieces are trimmed inward to whole frames, frame 0 withheld
 * (pmm_piece_frames). pmm_in_usable tells pmm_init whether its own inputs
 * lie where it is about to write. Nothing here writes anything but the
 * callers' out-parameters, and the caller's array is never changed.
 */
#include "pmm_internal.h"

uint32_t pmm_canon_type(uint32_t t) { return (t >= PMM_USABLE && t <= PMM_BAD) ? t : PMM_RESERVED; }

/* Precedence on overlap. Free memory loses to everything; memory we may
 * reuse later (ACPI tables, our own loader data, the kernel) loses to
 * memory the firmware owns for good; bad memory beats all. */
static int type_rank(uint32_t t)
{
    switch (t) {
    case PMM_USABLE:
        return 1;
    case PMM_RECLAIMABLE:
        return 2;
    case PMM_ACPI_RECLAIM:
        return 3;
    case PMM_LOADER:
        return 4;
    case PMM_KERNEL:
        return 5;
    case PMM_ACPI_NVS:
        return 6;
    case PMM_RESERVED:
        return 7;
    default:
        return 8; /* PMM_BAD */
    }
}

/* [*s, *e) of an entry, clamped to limit; 0 if nothing is left. */
int pmm_entry_span(const struct pmm_region *r, uint64_t limit, uint64_t *s, uint64_t *e)
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

/*
 * Call fn on the resolved map in address order: maximal pieces [start, end)
 * of one type, gaps skipped; add to *downgraded (if not NULL) the bytes
 * that a usable or reclaimable entry claims but a stronger type took.
 * Each step finds the next boundary and the winning type at the current
 * address by scanning every entry: O(n^2), but it needs no scratch memory
 * (there is none before pass 2) and leaves the caller's array untouched.
 * Boot maps hold a few hundred entries.
 */
void pmm_map_walk(const struct pmm_region *rg, size_t n, uint64_t limit, pmm_piece_fn fn, void *ctx,
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
            if (!pmm_entry_span(&rg[i], limit, &s, &e))
                continue;
            if (s > cur && s < next)
                next = s;
            if (e > cur && e < next)
                next = e;
            if (s <= cur && cur < e) {
                uint32_t t = pmm_canon_type(rg[i].type);
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
int pmm_piece_frames(uint64_t s, uint64_t e, uint64_t *fs, uint64_t *fe)
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
        if (pmm_entry_span(&rg[i], limit, &s, &e) && pmm_canon_type(rg[i].type) != PMM_USABLE &&
            s < b && e > a)
            return 0;
    while (a < b) {
        uint64_t reach = a;
        for (size_t i = 0; i < n; i++)
            if (pmm_entry_span(&rg[i], limit, &s, &e) && rg[i].type == PMM_USABLE && s <= a &&
                e > reach)
                reach = e;
        if (reach == a)
            return 0;
        a = reach;
    }
    return 1;
}

/* Does [virt, virt + len) lie, through the direct map, in usable memory
 * that pmm_init would overwrite with metadata or free-list links? */
int pmm_in_usable(const struct pmm_region *rg, size_t n, uint64_t limit, uint64_t dmap,
                  const void *virt, uint64_t len)
{
    uint64_t phys = (uint64_t)(uintptr_t)virt - dmap;
    if (phys >= limit || len > limit - phys)
        return 0;
    for (uint64_t f = phys & ~(PMM_FRAME_SIZE - 1); f < phys + len; f += PMM_FRAME_SIZE)
        if (frame_usable(rg, n, limit, f))
            return 1;
    return 0;
}
