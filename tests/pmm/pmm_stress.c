/*
 * pmm_stress.c: a seeded random sequence of allocations and frees (odd
 * sizes, alignments, partial frees, a reclaim half way) checked step by
 * step against a shadow of which frames are handed out. Not a benchmark:
 * pmm_validate walks every free list and every metadata byte after each
 * step, which costs far more than the operations themselves.
 *
 * After each step: every frame handed out is free memory in the map and
 * not handed out twice (shadow_take), the owner's tags in its frames are
 * intact when it frees them, the counters match the shadow, and an
 * ENOMEM is only ever returned when no free block is large enough. When
 * everything has been given back, the free blocks are exactly those of
 * the start: coalescing is complete.
 */
#include "pmm_harness.h"
#include "../lib/fill.h"
#include "../lib/xorshift.h"

#include <stdlib.h>

/* One section with holes, reserved pieces, unaligned edges and boot data. */
static const struct pmm_region map1[] = {
    {1 * MiB, 6 * MiB, PMM_USABLE, 0},
    {7 * MiB + 0x321, 5 * MiB, PMM_USABLE, 0},
    {3 * MiB, 64 * KiB, PMM_KERNEL, 0},
    {9 * MiB, 1 * MiB + 0x10, PMM_RECLAIMABLE, 0},
    {14 * MiB, 3 * MiB, PMM_USABLE, 0},
    {15 * MiB + 8 * KiB, 12 * KiB, PMM_LOADER, 0},
    {5 * MiB, 256 * KiB, PMM_RECLAIMABLE, 0},
    {6 * MiB + 0x800, 0x1000, PMM_ACPI_NVS, 0},
};
/* Two sections; the second starts and ends on odd frames, so blocks at
 * its edges have buddies outside it. */
static const struct pmm_region map2[] = {
    {1 * MiB, 2 * MiB, PMM_USABLE, 0},
    {1 * MiB + 64 * KiB, 8 * KiB, PMM_KERNEL, 0},
    {512 * MiB + 3 * FRAME, 3 * MiB + 5 * FRAME, PMM_USABLE, 0},
    {513 * MiB, 128 * KiB, PMM_RECLAIMABLE, 0},
};

static const struct {
    const struct pmm_region *map;
    size_t n;
    uint64_t span;
    uint64_t seed;
} runs[] = {
    {map1, sizeof map1 / sizeof map1[0], 20 * MiB, 0x9e3779b97f4a7c15ull},
    {map1, sizeof map1 / sizeof map1[0], 20 * MiB, 42},
    {map1, sizeof map1 / sizeof map1[0], 20 * MiB, 0xdeadbeefcafef00dull},
    {map2, sizeof map2 / sizeof map2[0], 520 * MiB, 7},
};

static const struct pmm_region *map;
static size_t map_n;

static uint64_t rng;

static uint64_t next(void)
{
    return xorshift64star(&rng);
}

struct live {
    uint64_t phys, n, id;
};

static struct pmm p;
static struct shadow sh;
static struct live live[4096];
static size_t nlive;
static uint64_t ids;
static int reclaimed;

/* The first word of each frame carries the pattern of its owner and its
 * address. */
static void tag(const struct live *l)
{
    for (uint64_t f = 0; f < l->n; f++) {
        uint64_t phys = l->phys + f * FRAME;
        fill_pattern(phys_ptr(phys), 8, (l->id << 32) ^ phys);
    }
}

static void check_tag(const struct live *l)
{
    for (uint64_t f = 0; f < l->n; f++) {
        uint64_t phys = l->phys + f * FRAME;
        ck_assert_msg(check_pattern(phys_ptr(phys), 8, (l->id << 32) ^ phys) == SIZE_MAX,
                      "frame 0x%llx of allocation %llu was written by someone else",
                      (unsigned long long)phys, (unsigned long long)l->id);
    }
}

static unsigned ceil_log2(uint64_t v)
{
    unsigned k = 0;
    while (((uint64_t)1 << k) < v)
        k++;
    return k;
}

static void step_alloc(void)
{
    uint64_t n = 1 + next() % ((next() % 4 == 0) ? 64 : 4);
    uint64_t align = (next() % 3 == 0) ? (uint64_t)1 << (next() % 7) : 1;
    uint64_t a;
    int rc = pmm_alloc(&p, n, align, &a);
    if (rc == PMM_ENOMEM) {
        unsigned k = ceil_log2(n) > ceil_log2(align) ? ceil_log2(n) : ceil_log2(align);
        struct pmm_stats st;
        pmm_stats(&p, &st);
        for (unsigned o = k; o <= PMM_MAX_ORDER; o++)
            ck_assert_msg(st.free_blocks[o] == 0, "ENOMEM for order %u with a free block of order %u", k, o);
        return;
    }
    ck_assert_int_eq(rc, PMM_OK);
    ck_assert_uint_eq(a % (align * FRAME), 0);
    ck_assert_uint_lt(nlive, sizeof live / sizeof live[0]);
    shadow_take(&sh, &p, map, map_n, a, n, reclaimed);
    live[nlive] = (struct live){a, n, ++ids};
    tag(&live[nlive]);
    nlive++;
}

static void step_free(void)
{
    if (!nlive)
        return;
    size_t i = next() % nlive;
    struct live l = live[i];
    live[i] = live[--nlive];
    check_tag(&l);
    /* An allocation of n frames is blocks of descending powers of two;
     * sometimes give back the first block, then the rest. */
    uint64_t first = (uint64_t)1 << (63 - __builtin_clzll(l.n));
    if (first != l.n && next() % 2) {
        ck_assert_int_eq(pmm_free(&p, l.phys + first * FRAME, l.n - first), PMM_OK);
        ck_assert_int_eq(pmm_free(&p, l.phys, first), PMM_OK);
    } else {
        ck_assert_int_eq(pmm_free(&p, l.phys, l.n), PMM_OK);
    }
    shadow_give(&sh, l.phys, l.n);
}

static void check_counters(void)
{
    struct pmm_stats st;
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.used_frames, sh.count);
    ck_assert_uint_eq(st.free_frames + st.used_frames + st.reclaimable_frames + st.metadata_frames,
                      st.managed_frames);
}

static void free_all_and_compare(const struct pmm_stats *start)
{
    while (nlive)
        step_free();
    struct pmm_stats st;
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.free_frames, start->free_frames);
    expect_blocks(&p, start->free_blocks);
    ck_valid(&p);
}

static void run(int which, int steps)
{
    map = runs[which].map;
    map_n = runs[which].n;
    rng = runs[which].seed;
    nlive = 0;
    reclaimed = 0;
    build(&p, map, map_n, runs[which].span);
    shadow_init(&sh, runs[which].span);
    struct pmm_stats start;
    pmm_stats(&p, &start);
    for (int phase = 0; phase < 2; phase++) {
        for (int i = 0; i < steps; i++) {
            /* Lean towards allocating until memory runs out, then towards freeing. */
            if (next() % 100 < (nlive < 300 ? 60u : 35u))
                step_alloc();
            else
                step_free();
            ck_valid(&p);
            check_counters();
        }
        free_all_and_compare(&start);
        if (phase == 0) {
            ck_assert_uint_eq(pmm_reclaim(&p), start.reclaimable_frames);
            reclaimed = 1;
            ck_valid(&p);
            pmm_stats(&p, &start);
        }
    }
    shadow_free(&sh);
    arena_unmap();
}

START_TEST(random_sequence)
{
    if (_i == 3) {
        struct pmm_stats st;
        build(&p, map2, sizeof map2 / sizeof map2[0], 520 * MiB);
        pmm_stats(&p, &st);
        ck_assert_uint_eq(st.sections, 2);
        arena_unmap();
    }
    run(_i, 3000);
}
END_TEST

CHECK_SUITE(pmm_stress_suite, "pmm stress", 300,
            CHECK_TEST_LOOP(random_sequence, sizeof runs / sizeof runs[0]))
