/*
 * init.c: pmm_init, which builds the allocator from the boot memory map in
 * three passes over the map as map.c resolves it (pmm_map_walk), with its
 * scratch state (struct plan) on the caller's stack:
 *
 *   1. Sections (plan_piece): runs of allocatable frames join the current
 *      section while its holes stay below HOLE_FACTOR times its memory,
 *      so metadata spent on holes is bounded; otherwise a new section
 *      starts. Bytes that cannot become frames are counted by reason.
 *   2. Metadata (carve_meta): the metadata of all sections goes back to
 *      back at the top of the highest usable run that holds it (low
 *      memory is precious: SMP trampolines, legacy DMA). If no run is
 *      that large, each section's goes in its own section, or else in
 *      another one; a section with no room anywhere is dropped and
 *      reported.
 *   3. Fill (fill_piece): the metadata bytes from the map, then every run
 *      of usable frames goes to buddy.c's free lists (pmm_free_run) as
 *      the largest aligned blocks that fit.
 *
 * Then one log line per reason any bytes were dropped; pmm_stats
 * (report.c) returns the same figures.
 *
 * Bookkeeping: metadata is 1 byte per frame of each section, holes
 * included, and holes are at most HOLE_FACTOR times the managed frames,
 * so at most 5 bytes per 4 KiB frame (0.12%), plus one frame of rounding
 * and sizeof(struct pmm) (about 1.3 KiB) in all. That is below 0.5% for
 * anything over 1.5 MiB of memory; a 256 MiB machine pays 0.025%.
 */
#include "pmm_internal.h"

/* A section keeps growing across a hole only while all its holes stay
 * below HOLE_FACTOR times the frames it manages: metadata for holes then
 * costs at most HOLE_FACTOR bytes per managed frame (0.1%). */
#define HOLE_FACTOR 4

/* Scratch state of pmm_init, on the caller's stack. */
struct plan {
    struct pmm *p;
    uint64_t holes[PMM_MAX_SECTIONS];   /* hole frames inside each section */
    uint64_t managed[PMM_MAX_SECTIONS]; /* allocatable frames in each section */
    uint64_t meta_at[PMM_MAX_SECTIONS]; /* physical address of each metadata array; 0 = none yet */
    uint64_t carve_pfn[PMM_MAX_SECTIONS]; /* frames taken for metadata: [pfn, pfn + n) */
    uint64_t carve_n[PMM_MAX_SECTIONS];
    uint32_t ncarves;
    int host;                /* pass 2: section to search; ANY_SECTION, PLACED_SECTION */
    uint64_t need, best_end; /* pass 2: search state */
};

#define ANY_SECTION    (-2)
#define PLACED_SECTION (-1) /* any section whose own metadata is placed */

/* ---- pass 1: grouping the pieces into sections ---- */

static void plan_piece(void *ctx, uint64_t s, uint64_t e, uint32_t t)
{
    struct plan *pl = ctx;
    struct pmm *p = pl->p;
    p->type_bytes[t] += e - s;
    if (t != PMM_USABLE && t != PMM_RECLAIMABLE)
        return;
    uint64_t fs = 0, fe = 0;
    int whole = pmm_piece_frames(s, e, &fs, &fe);
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

static void place_piece(void *ctx, uint64_t s, uint64_t e, uint32_t t)
{
    struct plan *pl = ctx;
    uint64_t fs, fe;
    if (t != PMM_USABLE || !pmm_piece_frames(s, e, &fs, &fe))
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
static uint64_t carve_meta(struct plan *pl, const struct pmm_region *rg, size_t n, uint64_t bytes,
                           int host)
{
    pl->host = host;
    pl->need = frames_up(bytes);
    pl->best_end = 0;
    pmm_map_walk(rg, n, pl->p->limit, place_piece, pl, NULL);
    if (!pl->best_end)
        return 0;
    uint32_t c = pl->ncarves++;
    pl->carve_pfn[c] = pl->best_end - pl->need;
    pl->carve_n[c] = pl->need;
    return pl->carve_pfn[c] << PMM_FRAME_SHIFT;
}

/* ---- pass 3: filling the metadata ---- */

static void fill_piece(void *ctx, uint64_t s, uint64_t e, uint32_t t)
{
    struct pmm *p = ((struct plan *)ctx)->p;
    uint64_t fs, fe;
    unsigned char v;
    if (t == PMM_USABLE || t == PMM_RECLAIMABLE) {
        if (!pmm_piece_frames(s, e, &fs, &fe))
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

/* One line per reason any bytes of the map did not become frames. */
static void log_dropped(const struct pmm *p)
{
    const struct pmm_dropped *d = &p->dropped;
    const struct {
        uint64_t bytes;
        const char *why;
    } lost[] = {
        {d->overlap_bytes, " bytes in overlapping entries; the more restrictive type kept"},
        {d->downgraded_bytes, " bytes of usable memory overlapped by reserved entries; not used"},
        {d->unaligned_bytes, " bytes of usable memory in partial frames; trimmed"},
        {d->frame0_bytes, " bytes in frame 0; never handed out"},
        {d->limit_bytes, " bytes above the direct map or physical address limit; dropped"},
        {d->unknown_bytes, " bytes of unknown type; kept reserved"},
        {d->section_bytes, " bytes of usable memory without a section or metadata room; dropped"},
    };
    if (d->unsorted_entries)
        pmm_say_count(p, "pmm: map: ", d->unsorted_entries,
                      " entries out of address order; sorted");
    for (size_t i = 0; i < sizeof lost / sizeof lost[0]; i++)
        if (lost[i].bytes)
            pmm_say_count(p, "pmm: map: ", lost[i].bytes, lost[i].why);
}

int pmm_init(struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t dmap_offset,
             void (*log)(const char *line))
{
    return pmm_init_limit(p, rg, n, dmap_offset, PMM_PHYS_LIMIT, log);
}

/* Neither input may live in usable memory, which init writes. Returns
 * PMM_OK or PMM_EINVAL (reported). */
static int check_inputs(struct pmm *p, const struct pmm_region *rg, size_t n)
{
    if (n && !rg) {
        pmm_report(p, "pmm_init", "no memory map", 0);
        return PMM_EINVAL;
    }
    if (n && pmm_in_usable(rg, n, p->limit, p->dmap_offset, rg, n * sizeof *rg)) {
        pmm_report(p, "pmm_init", "memory map lies in usable memory it describes",
                   (uint64_t)(uintptr_t)rg - p->dmap_offset);
        return PMM_EINVAL;
    }
    if (n && pmm_in_usable(rg, n, p->limit, p->dmap_offset, p, sizeof *p)) {
        pmm_report(p, "pmm_init", "struct pmm lies in usable memory",
                   (uint64_t)(uintptr_t)p - p->dmap_offset);
        return PMM_EINVAL;
    }
    return PMM_OK;
}

/* Input statistics the resolved map cannot show; returns the bytes the
 * entries cover below the limit. */
static uint64_t count_input(struct pmm *p, const struct pmm_region *rg, size_t n)
{
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
        if (!pmm_entry_span(&rg[i], p->limit, &s, &e)) {
            p->dropped.limit_bytes += rg[i].length;
            continue;
        }
        p->dropped.limit_bytes += rg[i].length - (e - s);
        total += e - s;
        if (pmm_canon_type(rg[i].type) != rg[i].type)
            p->dropped.unknown_bytes += e - s;
    }
    return total;
}

/* Pass 2: all metadata arrays back to back in one carve, so a frame is
 * rounded up once, not once per section. If no run holds them all: each
 * in its own section, else in any section already placed. A section
 * whose metadata finds no room is dropped; the placed ones are kept, in
 * order (carves only ever sit in placed sections, so every carve stays
 * inside a kept one). */
static void place_metadata(struct pmm *p, struct plan *pl, const struct pmm_region *rg, size_t n)
{
    uint64_t meta_total = 0, at;
    for (uint32_t i = 0; i < p->nsections; i++)
        meta_total += p->section[i].npfn;
    if (meta_total && (at = carve_meta(pl, rg, n, meta_total, ANY_SECTION)) != 0) {
        for (uint32_t i = 0; i < p->nsections; i++) {
            pl->meta_at[i] = at;
            at += p->section[i].npfn;
        }
    } else {
        for (uint32_t i = 0; i < p->nsections; i++)
            pl->meta_at[i] = carve_meta(pl, rg, n, p->section[i].npfn, (int)i);
    }
    for (uint32_t i = 0; i < p->nsections; i++) {
        if (pl->meta_at[i] ||
            (pl->meta_at[i] = carve_meta(pl, rg, n, p->section[i].npfn, PLACED_SECTION)))
            continue;
        struct line l;
        l_init(&l);
        l_str(&l, "pmm: map: no room for the metadata of section ");
        l_hex(&l, p->section[i].base_pfn << PMM_FRAME_SHIFT);
        l_str(&l, "; dropped");
        l_emit(p, &l);
        p->dropped.section_bytes += pl->managed[i] << PMM_FRAME_SHIFT;
    }
    uint32_t kept_n = 0;
    for (uint32_t i = 0; i < p->nsections; i++) {
        if (!pl->meta_at[i])
            continue;
        p->section[kept_n] = p->section[i];
        p->section[kept_n].meta = (unsigned char *)(uintptr_t)(pl->meta_at[i] + p->dmap_offset);
        p->metadata_bytes += p->section[i].npfn;
        kept_n++;
    }
    p->nsections = kept_n;
}

/* Pass 3: holes first, then the map, then the carves, then free runs. */
static void fill_sections(struct pmm *p, struct plan *pl, const struct pmm_region *rg, size_t n)
{
    for (uint32_t i = 0; i < p->nsections; i++)
        set_bytes(p->section[i].meta, M_RESERVED, p->section[i].npfn);
    pmm_map_walk(rg, n, p->limit, fill_piece, pl, NULL);
    for (uint32_t c = 0; c < pl->ncarves; c++) {
        const struct pmm_section *host = &p->section[section_of(p, pl->carve_pfn[c])];
        for (uint64_t f = pl->carve_pfn[c]; f < pl->carve_pfn[c] + pl->carve_n[c]; f++)
            *mb(host, f) = M_RESERVED | PMM_METADATA;
        p->metadata_frames += pl->carve_n[c];
    }
    for (uint32_t i = 0; i < p->nsections; i++) {
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
            pmm_free_run(p, s, s->base_pfn + f, s->base_pfn + g);
            p->free_frames += g - f;
            f = g;
        }
    }
    p->managed_frames = p->free_frames + p->reclaimable_frames + p->metadata_frames;
}

int pmm_init_limit(struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t dmap_offset,
                   uint64_t limit, void (*log)(const char *line))
{
    if (!p)
        return PMM_EINVAL;
    set_bytes(p, 0, sizeof *p);
    p->dmap_offset = dmap_offset;
    p->limit = limit < PMM_PHYS_LIMIT ? limit & ~(PMM_FRAME_SIZE - 1) : PMM_PHYS_LIMIT;
    p->log = log;
    if (check_inputs(p, rg, n) != PMM_OK)
        return PMM_EINVAL;
    uint64_t total = count_input(p, rg, n);

    /* Pass 1: the resolved map, planned per section. */
    struct plan pl;
    set_bytes(&pl, 0, sizeof pl);
    pl.p = p;
    pmm_map_walk(rg, n, p->limit, plan_piece, &pl, &p->dropped.downgraded_bytes);
    uint64_t resolved = 0;
    for (int t = 0; t < PMM_NTYPES; t++)
        resolved += p->type_bytes[t];
    p->dropped.overlap_bytes = total - resolved;

    place_metadata(p, &pl, rg, n);
    fill_sections(p, &pl, rg, n);
    log_dropped(p);
    return PMM_OK;
}
