/*
 * pmm_randmap.c: pmm_init on random memory maps, checked against the map
 * alone. Each seed draws a dozen or so entries anywhere in 16 MiB:
 * unsorted, overlapping, frame-aligned or not, of every type including
 * unknown ones. For each map:
 *   - the byte accounting closes: the resolved types plus the overlap
 *     equal the entries' total, and usable + reclaimable bytes equal
 *     managed frames plus every dropped byte;
 *   - the frames handed out are exactly the frames wholly covered by
 *     usable entries and touched by nothing else (minus the metadata),
 *     and after pmm_reclaim also those wholly covered by reclaimable
 *     entries and touched by no reserved type.
 * The second point is an independent oracle (pmm_harness.c) against the
 * sweep, trim and section logic of kernel/pmm/map.c and init.c.
 */
#include "pmm_harness.h"
#include "../lib/xorshift.h"

#define SPAN (16 * MiB)

static uint64_t rng;

static uint64_t next(void)
{
    return xorshift64star(&rng);
}

static uint32_t random_type(void)
{
    uint64_t r = next() % 20;
    if (r < 9)
        return PMM_USABLE;
    if (r < 12)
        return PMM_RECLAIMABLE;
    if (r == 19)
        return (uint32_t)(next() % 2 ? 0 : 99); /* unknown: reserved */
    return (uint32_t)(3 + next() % 6); /* ACPI reclaim .. bad */
}

/* Wholly covered by entries of type t, and touched by no entry whose type
 * is neither usable nor reclaimable. */
static int wholly(const struct pmm_region *rg, size_t n, uint64_t phys, uint32_t t)
{
    uint64_t a = phys, b = phys + FRAME;
    if (phys == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t ti = rg[i].type;
        if (ti != PMM_USABLE && ti != PMM_RECLAIMABLE && rg[i].length && rg[i].base < b &&
            rg[i].base + rg[i].length > a)
            return 0;
        /* Reclaimable beats usable, so a usable frame must not be touched by it. */
        if (t == PMM_USABLE && ti == PMM_RECLAIMABLE && rg[i].length && rg[i].base < b &&
            rg[i].base + rg[i].length > a)
            return 0;
    }
    uint64_t cur = a;
    while (cur < b) {
        uint64_t reach = cur;
        for (size_t i = 0; i < n; i++)
            if (rg[i].type == t && rg[i].base <= cur && rg[i].base + rg[i].length > reach)
                reach = rg[i].base + rg[i].length;
        if (reach == cur)
            return 0;
        cur = reach;
    }
    return 1;
}

START_TEST(random_maps)
{
    for (uint64_t seed = 1; seed <= 60; seed++) {
        rng = seed * 0x9e3779b97f4a7c15ull;
        struct pmm_region rg[24];
        size_t n = 4 + next() % 20;
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t base = next() % SPAN, len;
            switch (next() % 3) {
            case 0: len = 1 + next() % (64 * KiB); break;        /* small, odd */
            case 1: len = (1 + next() % 1024) * FRAME; break;   /* frame multiple */
            default: len = next() % (SPAN / 2); break;          /* large */
            }
            if (next() % 2)
                base &= ~(FRAME - 1);
            if (len > SPAN - base)
                len = SPAN - base;
            rg[i] = (struct pmm_region){base, len, random_type(), 0};
            total += len;
        }
        struct pmm p;
        struct pmm_stats st;
        build_stats(&p, rg, n, SPAN, &st);
        const struct pmm_dropped *d = &st.dropped;

        uint64_t resolved = 0;
        for (int t = 1; t <= PMM_BAD; t++)
            resolved += st.type_bytes[t];
        ck_assert_msg(resolved + d->overlap_bytes == total, "seed %llu: bytes do not add up",
                      (unsigned long long)seed);
        ck_assert_msg(st.type_bytes[PMM_USABLE] + st.type_bytes[PMM_RECLAIMABLE] ==
                          st.managed_frames * FRAME + d->unaligned_bytes + d->frame0_bytes + d->section_bytes,
                      "seed %llu: usable bytes do not add up", (unsigned long long)seed);

        uint64_t want_usable = 0, want_recl = 0;
        for (uint64_t f = 0; f < SPAN / FRAME; f++) {
            want_usable += (uint64_t)wholly(rg, n, f * FRAME, PMM_USABLE);
            want_recl += (uint64_t)wholly(rg, n, f * FRAME, PMM_RECLAIMABLE);
        }
        if (d->section_bytes == 0) {
            ck_assert_msg(st.free_frames + st.metadata_frames == want_usable,
                          "seed %llu: %llu free + %llu metadata frames, the map has %llu usable", (unsigned long long)seed,
                          (unsigned long long)st.free_frames, (unsigned long long)st.metadata_frames,
                          (unsigned long long)want_usable);
            ck_assert_uint_eq(st.reclaimable_frames, want_recl);
        }

        for (int reclaimed = 0; reclaimed < 2; reclaimed++) {
            struct shadow sh;
            uint64_t a;
            shadow_init(&sh, SPAN);
            while (pmm_alloc(&p, 1, 1, &a) == PMM_OK) {
                ck_assert_msg(wholly(rg, n, a, PMM_USABLE) || (reclaimed && wholly(rg, n, a, PMM_RECLAIMABLE)),
                              "seed %llu: frame 0x%llx handed out", (unsigned long long)seed, (unsigned long long)a);
                shadow_take(&sh, &p, rg, n, a, 1, reclaimed);
            }
            pmm_stats(&p, &st);
            ck_assert_uint_eq(st.free_frames, 0);
            ck_assert_uint_eq(sh.count, st.used_frames);
            shadow_give_all(&sh, &p);
            shadow_free(&sh);
            ck_valid(&p);
            if (!reclaimed) {
                pmm_stats(&p, &st);
                uint64_t before = st.free_frames;
                ck_assert_uint_eq(pmm_reclaim(&p), st.reclaimable_frames);
                pmm_stats(&p, &st);
                ck_assert_uint_eq(st.free_frames, before + (d->section_bytes ? st.free_frames - before : want_recl));
                ck_valid(&p);
            }
        }
        arena_unmap();
    }
}
END_TEST

CHECK_SUITE(pmm_randmap_suite, "pmm random maps", 300,
            CHECK_TEST(random_maps))
