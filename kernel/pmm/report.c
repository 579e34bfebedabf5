/*
 * report.c: what the frame allocator tells its caller, all through the
 * log callback given to pmm_init, one line at a time, built on the stack:
 *   pmm_report     the one-line fault ("who: fault: 0xaddr") that every
 *                  rejected argument, bad free and corrupt link ends in
 *   pmm_say_count  a line around one count (what init and reclaim log)
 *   pmm_type_name  a map type's short name
 *   pmm_stats      the counters init.c and buddy.c keep, copied out
 *   pmm_dump       those counters as the summary the kernel prints
 *   pmm_validate   a walk over every section's metadata and every free
 *                  list that recounts what the counters claim
 * It only reads the allocator; nothing here changes a list or a byte.
 */
#include "pmm_internal.h"

/* ---- lines ---- */

void pmm_report(const struct pmm *p, const char *who, const char *fault, uint64_t addr)
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
    case PMM_USABLE:
        return "usable";
    case PMM_RECLAIMABLE:
        return "reclaimable";
    case PMM_ACPI_RECLAIM:
        return "acpi-reclaim";
    case PMM_ACPI_NVS:
        return "acpi-nvs";
    case PMM_RESERVED:
        return "reserved";
    case PMM_KERNEL:
        return "kernel";
    case PMM_LOADER:
        return "loader";
    case PMM_BAD:
        return "bad";
    case PMM_METADATA:
        return "pmm-metadata";
    default:
        return "unknown";
    }
}

/* One line "before<n>after": most of what init and reclaim tell is a
 * count. */
void pmm_say_count(const struct pmm *p, const char *before, uint64_t n, const char *after)
{
    struct line l;
    l_init(&l);
    l_str(&l, before);
    l_dec(&l, n);
    l_str(&l, after);
    l_emit(p, &l);
}

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

/* The summary's rows of counts, as label/value pairs. */
struct field {
    const char *label;
    uint64_t v;
};

static void l_fields(struct line *l, const struct field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        l_str(l, f[i].label);
        l_dec(l, f[i].v);
    }
}

/* ---- statistics and dump ---- */

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
    const struct field frames[] = {
        {"pmm: frames: free ", st.free_frames},    {", used ", st.used_frames},
        {", reclaimable ", st.reclaimable_frames}, {", metadata ", st.metadata_frames},
        {"; reserved ", st.reserved_bytes},
    };
    l_init(&l);
    l_fields(&l, frames, sizeof frames / sizeof frames[0]);
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
    const struct field dropped[] = {
        {"pmm: dropped bytes: overlap ", d->overlap_bytes},
        {", downgraded ", d->downgraded_bytes},
        {", unaligned ", d->unaligned_bytes},
        {", frame0 ", d->frame0_bytes},
        {", limit ", d->limit_bytes},
        {", unknown ", d->unknown_bytes},
        {", section ", d->section_bytes},
    };
    l_init(&l);
    l_fields(&l, dropped, sizeof dropped / sizeof dropped[0]);
    l_emit(p, &l);

    /* A percentage with three decimals: the bookkeeping budget is 0.5%. */
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

/* ---- validation ---- */

struct vstate {
    const struct pmm *p;
    int faults;
};

static void vfault(struct vstate *v, const char *what, uint64_t addr)
{
    if (v->faults++ < 4)
        pmm_report(v->p, "pmm_validate", what, addr);
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
        if (!s->meta || !s->npfn ||
            (i && s->base_pfn < p->section[i - 1].base_pfn + p->section[i - 1].npfn)) {
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
    if (p->free_frames + p->used_frames + p->reclaimable_frames + p->metadata_frames !=
        p->managed_frames)
        vfault(&v, "frame counters do not add up to managed frames", p->managed_frames);
    return v.faults;
}
