/*
 * test_pmm.c: Check runner for the physical frame allocator (kernel/pmm/),
 * and the map suite: how pmm_init turns a boot memory map (unsorted,
 * overlapping, odd edges, holes, far-apart regions) into managed frames,
 * with every dropped byte accounted for. Expected figures are worked out
 * by hand from each map in the comments beside them.
 *
 * The other suites: pmm_table.c (exact split and merge behaviour, as a
 * table), pmm_randmap.c (random maps against an independent oracle),
 * pmm_alloc.c (allocation, freeing, coalescing,
 * reclaim, bookkeeping overhead), pmm_misuse.c (bad frees and corrupted
 * free frames), pmm_stress.c (seeded random sequence against a shadow).
 */
#include "pmm_harness.h"

#include <stdlib.h>
#include <string.h>

/* One usable region [1 MiB, 64 MiB): 16128 frames, 4 of them metadata
 * (16128 bytes) carved from the top, the rest split greedily into the
 * largest aligned blocks. */
START_TEST(one_region)
{
    struct pmm p;
    struct pmm_region rg[] = {{1 * MiB, 63 * MiB, PMM_USABLE, 0}};
    struct pmm_stats st;
    build_stats(&p, rg, 1, 64 * MiB, &st);
    ck_assert_uint_eq(st.sections, 1);
    ck_assert_uint_eq(st.managed_frames, 16128);
    ck_assert_uint_eq(st.metadata_frames, 4);
    ck_assert_uint_eq(st.metadata_bytes, 16128);
    ck_assert_uint_eq(st.free_frames, 16124);
    ck_assert_uint_eq(st.used_frames, 0);
    ck_assert_uint_eq(st.type_bytes[PMM_USABLE], 63 * MiB);
    ck_assert_uint_eq(meta_phys(&p, 0), 64 * MiB - 4 * FRAME);
    /* pfn 256..16380: 256/8 512/9 1024/10 2048/11 4096/12 8192/12, then
     * 4092 frames from 12288 as orders 11 down to 2. */
    static const uint64_t want[PMM_MAX_ORDER + 1] = {0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2};
    expect_blocks(&p, want);
    ck_assert_uint_eq(st.dropped.unaligned_bytes + st.dropped.overlap_bytes + st.dropped.frame0_bytes, 0);
    arena_unmap();
}
END_TEST

/* A region straddling a 2 MiB boundary on both sides: [2M-12K, 4M+20K)
 * is pfn 509..1029; the metadata frame takes pfn 1028, leaving 509/0,
 * 510/1, 512/9 (exactly [2M, 4M)) and 1024/2. */
START_TEST(crossing_order_boundaries)
{
    struct pmm p;
    struct pmm_region rg[] = {{2 * MiB - 12 * KiB, 2 * MiB + 32 * KiB, PMM_USABLE, 0}};
    build(&p, rg, 1, 8 * MiB);
    static const uint64_t want[PMM_MAX_ORDER + 1] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 1};
    expect_blocks(&p, want);
    uint64_t a;
    ck_assert_int_eq(pmm_alloc(&p, 512, 512, &a), PMM_OK);
    ck_assert_uint_eq(a, 2 * MiB);
    ck_assert_int_eq(pmm_alloc(&p, 512, 1, &a), PMM_ENOMEM);
    ck_assert_int_eq(pmm_alloc(&p, 8, 1, &a), PMM_ENOMEM); /* 7 frames left, in 3 pieces */
    ck_assert_int_eq(pmm_alloc(&p, 4, 4, &a), PMM_OK);
    ck_assert_uint_eq(a, 4 * MiB);
    ck_valid(&p);
    ck_assert_int_eq(pmm_free(&p, 4 * MiB, 4), PMM_OK);
    ck_assert_int_eq(pmm_free(&p, 2 * MiB, 512), PMM_OK);
    expect_blocks(&p, want);
    ck_valid(&p);
    arena_unmap();
}
END_TEST

/* A PC-like map: low memory ending mid-frame, the EBDA and BIOS area,
 * an unaligned main region, ACPI tables, a hole, more memory, and a
 * region at 4 GiB far enough away to need its own section. */
static const struct pmm_region pc_map[] = {
    {0x0, 0x9fc00, PMM_USABLE, 0},                  /* frame 0 withheld, 0xc00 bytes trimmed */
    {0x9fc00, 0x400, PMM_RESERVED, 0},              /* EBDA */
    {0xf0000, 0x10000, PMM_RESERVED, 0},            /* BIOS */
    {0x100123, 0x7fffbaa - 0x100123, PMM_USABLE, 0},/* trims 0xedd + 0xbaa */
    {0x8000000, 1 * MiB, PMM_ACPI_RECLAIM, 0},
    {0x9000000, 16 * MiB, PMM_USABLE, 0},
    {4 * GiB, 8 * MiB + 0x800, PMM_USABLE, 0},      /* trims 0x800 */
};
#define PC_N (sizeof pc_map / sizeof pc_map[0])

START_TEST(holes_and_odd_edges)
{
    struct pmm p;
    struct pmm_stats st;
    build_stats(&p, pc_map, PC_N, 4 * GiB + 16 * MiB, &st);
    ck_assert_uint_eq(st.sections, 2);
    ck_assert_uint_eq(st.dropped.frame0_bytes, FRAME);
    ck_assert_uint_eq(st.dropped.unaligned_bytes, 0xc00 + 0xedd + 0xbaa + 0x800);
    ck_assert_uint_eq(st.dropped.overlap_bytes, 0);
    ck_assert_uint_eq(st.type_bytes[PMM_RESERVED], 0x400 + 0x10000);
    ck_assert_uint_eq(st.type_bytes[PMM_ACPI_RECLAIM], 1 * MiB);
    ck_assert_uint_eq(st.reserved_bytes, 0x400 + 0x10000 + 1 * MiB);
    ck_assert_uint_eq(st.type_bytes[PMM_USABLE],
                      0x9fc00 + (0x7fffbaa - 0x100123) + 16 * MiB + 8 * MiB + 0x800);
    /* pfn 1..158, 257..32766, 36864..40959, 1048576..1050623 */
    ck_assert_uint_eq(st.managed_frames, 158 + 32510 + 4096 + 2048);
    /* section 0 spans pfn 1..40959 (10 metadata frames), section 1 2048 (1) */
    ck_assert_uint_eq(st.metadata_frames, 11);
    ck_assert_uint_eq(st.free_frames, st.managed_frames - 11);
    ck_assert(log_has("in frame 0; never handed out"));
    ck_assert(log_has("in partial frames; trimmed"));

    /* Exhaust with single frames: each one must be free memory in the map. */
    struct shadow sh;
    shadow_init(&sh, 4 * GiB + 16 * MiB);
    uint64_t initial = st.free_frames;
    struct pmm_stats before = st;
    shadow_exhaust(&sh, &p, pc_map, PC_N, 0);
    ck_assert_uint_eq(sh.count, initial);
    ck_valid(&p);
    shadow_give_all(&sh, &p);
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.free_frames, initial);
    expect_blocks(&p, before.free_blocks);
    ck_valid(&p);
    shadow_free(&sh);
    arena_unmap();
}
END_TEST

/* Unsorted and overlapping entries; the more restrictive type wins:
 *   [8M,12M) usable, [1M,9M) usable (1M overlaps the first), [4M,5M)
 *   reserved, [2M+2K,3M) kernel, an empty entry, [6M,6M+64K) of type 77.
 * Resolved: usable [1M,2M+2K) [3M,4M) [5M,6M) [6M+64K,12M); the kernel
 * piece rounds outward to [2M,3M), so frame 2M is not usable. */
static const struct pmm_region unsorted_map[] = {
    {8 * MiB, 4 * MiB, PMM_USABLE, 0},
    {1 * MiB, 8 * MiB, PMM_USABLE, 0},
    {4 * MiB, 1 * MiB, PMM_RESERVED, 0},
    {2 * MiB + 2 * KiB, 1 * MiB - 2 * KiB, PMM_KERNEL, 0},
    {0, 0, PMM_USABLE, 0},
    {6 * MiB, 64 * KiB, 77, 0},
};

START_TEST(unsorted_overlapping)
{
    struct pmm p;
    struct pmm_stats st;
    build_stats(&p, unsorted_map, 6, 16 * MiB, &st);
    ck_assert_uint_eq(st.dropped.unsorted_entries, 2);
    ck_assert_uint_eq(st.dropped.empty_entries, 1);
    ck_assert_uint_eq(st.dropped.overlap_bytes, 3 * MiB - 2 * KiB + 64 * KiB);
    ck_assert_uint_eq(st.dropped.downgraded_bytes, 2 * MiB - 2 * KiB + 64 * KiB);
    ck_assert_uint_eq(st.dropped.unknown_bytes, 64 * KiB);
    ck_assert_uint_eq(st.dropped.unaligned_bytes, 2 * KiB);
    ck_assert_uint_eq(st.type_bytes[PMM_USABLE], 9 * MiB + 2 * KiB - 64 * KiB);
    ck_assert_uint_eq(st.type_bytes[PMM_KERNEL], 1 * MiB - 2 * KiB);
    ck_assert_uint_eq(st.type_bytes[PMM_RESERVED], 1 * MiB + 64 * KiB);
    ck_assert_uint_eq(st.managed_frames, 256 + 256 + 256 + 1520);
    ck_assert_uint_eq(st.free_frames, st.managed_frames - 1);
    ck_assert(log_has("2 entries out of address order; sorted"));
    ck_assert(log_has("bytes in overlapping entries; the more restrictive type kept"));
    ck_assert(log_has("of usable memory overlapped by reserved entries"));
    ck_assert(log_has("65536 bytes of unknown type; kept reserved"));

    struct shadow sh;
    shadow_init(&sh, 16 * MiB);
    shadow_exhaust(&sh, &p, unsorted_map, 6, 0);
    ck_assert_uint_eq(sh.count, st.free_frames);
    shadow_free(&sh);
    ck_valid(&p);
    arena_unmap();
}
END_TEST

/* Entries at or past the 52-bit limit are clamped or dropped; the part
 * below it still works (the direct map offset wraps it into a small
 * arena). */
START_TEST(physical_limit)
{
    struct pmm p;
    struct pmm_region rg[] = {
        {PMM_PHYS_LIMIT - 8 * KiB, 16 * KiB, PMM_USABLE, 0},
        {UINT64_MAX - 4 * KiB, 8 * KiB, PMM_RESERVED, 0},
    };
    uint64_t arena = arena_map(16 * KiB);
    log_reset();
    ck_assert_int_eq(pmm_init(&p, rg, 2, arena - (PMM_PHYS_LIMIT - 8 * KiB), cap_log), PMM_OK);
    ck_valid(&p);
    struct pmm_stats st;
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.dropped.limit_bytes, 16 * KiB);
    ck_assert_uint_eq(st.free_frames, 1);
    ck_assert(log_has("16384 bytes above the direct map or physical address limit; dropped"));
    uint64_t a;
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_OK);
    ck_assert_uint_eq(a, PMM_PHYS_LIMIT - 8 * KiB);
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_ENOMEM);
    arena_unmap();
}
END_TEST

/* A direct map shorter than memory: nothing at or above its end is
 * touched or handed out (the limit rounds down to a frame). */
START_TEST(direct_map_limit)
{
    struct pmm p;
    struct pmm_region rg[] = {{1 * MiB, 63 * MiB, PMM_USABLE, 0}, {40 * MiB, 1 * MiB, PMM_KERNEL, 0}};
    uint64_t arena = arena_map(64 * MiB);
    log_reset();
    ck_assert_int_eq(pmm_init_limit(&p, rg, 2, arena, 32 * MiB + 0x800, cap_log), PMM_OK);
    ck_valid(&p);
    struct pmm_stats st;
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.dropped.limit_bytes, 32 * MiB + 1 * MiB);
    ck_assert_uint_eq(st.managed_frames, 31 * 256);
    ck_assert_uint_eq(st.type_bytes[PMM_KERNEL], 0);
    ck_assert_uint_lt((uint64_t)(uintptr_t)p.section[0].meta - arena, 32 * MiB);
    uint64_t a, n = 0;
    while (pmm_alloc(&p, 1, 1, &a) == PMM_OK) {
        ck_assert_uint_lt(a, 32 * MiB);
        n++;
    }
    ck_assert_uint_eq(n, st.free_frames);
    arena_unmap();
}
END_TEST

/* pmm_init writes metadata and free-list links into usable frames, so a
 * map or struct pmm living there is refused; in loader memory it is fine
 * even where that memory is declared on top of a usable entry. */
START_TEST(inputs_in_usable_memory)
{
    static const struct pmm_region src[] = {
        {1 * MiB, 15 * MiB, PMM_USABLE, 0},
        {8 * MiB, 64 * KiB, PMM_LOADER, 0},
    };
    struct pmm p;
    uint64_t arena = arena_map(16 * MiB);
    struct pmm_region *in_usable = phys_ptr(2 * MiB + 96);
    memcpy(in_usable, src, sizeof src);
    log_reset();
    ck_assert_int_eq(pmm_init(&p, in_usable, 2, arena, cap_log), PMM_EINVAL);
    ck_assert(log_has("pmm_init: memory map lies in usable memory it describes: 0x200060"));

    struct pmm *p_in_usable = phys_ptr(3 * MiB);
    ck_assert_int_eq(pmm_init(p_in_usable, src, 2, arena, cap_log), PMM_EINVAL);
    ck_assert(log_has("pmm_init: struct pmm lies in usable memory: 0x300000"));

    struct pmm_region *in_loader = phys_ptr(8 * MiB + 4 * KiB - 24); /* straddles two loader frames */
    memcpy(in_loader, src, sizeof src);
    struct pmm *p_in_loader = phys_ptr(8 * MiB + 16 * KiB);
    ck_assert_int_eq(pmm_init(p_in_loader, in_loader, 2, arena, cap_log), PMM_OK);
    ck_assert_int_eq(pmm_validate(p_in_loader), 0);
    ck_assert_mem_eq(in_loader, src, sizeof src); /* init did not write over it */
    arena_unmap();
}
END_TEST

START_TEST(empty_map)
{
    struct pmm p;
    uint64_t a = 0;
    log_reset();
    ck_assert_int_eq(pmm_init(&p, NULL, 0, 0, cap_log), PMM_OK);
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_ENOMEM);
    ck_assert_uint_eq(a, 0);
    ck_assert_int_eq(pmm_validate(&p), 0);
    struct pmm_stats st;
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.managed_frames + st.free_frames + st.sections, 0);
    ck_assert_int_eq(pmm_init(&p, NULL, 3, 0, cap_log), PMM_EINVAL);
    ck_assert(log_has("pmm_init: no memory map"));
    /* Only non-usable memory: nothing to manage, nothing handed out. */
    struct pmm_region rg[] = {{1 * MiB, 1 * MiB, PMM_KERNEL, 0}, {0, 4 * MiB, PMM_BAD, 0}};
    ck_assert_int_eq(pmm_init(&p, rg, 2, 0, cap_log), PMM_OK);
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_ENOMEM);
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.type_bytes[PMM_BAD], 4 * MiB); /* bad beats kernel */
    ck_assert_uint_eq(st.type_bytes[PMM_KERNEL], 0);
}
END_TEST

/* 40 islands of 64 KiB, 1 MiB apart: too far apart to share a metadata
 * array, so each is a section; the 8 beyond PMM_MAX_SECTIONS are dropped.
 * The 32 arrays of 16 bytes share one frame, taken from the top island. */
START_TEST(too_many_sections)
{
    struct pmm p;
    struct pmm_region rg[40];
    for (int i = 0; i < 40; i++)
        rg[i] = (struct pmm_region){(uint64_t)(i + 1) * MiB, 64 * KiB, PMM_USABLE, 0};
    struct pmm_stats st;
    build_stats(&p, rg, 40, 42 * MiB, &st);
    ck_assert_uint_eq(st.sections, PMM_MAX_SECTIONS);
    ck_assert_uint_eq(st.dropped.section_bytes, 8 * 64 * KiB);
    ck_assert_uint_eq(st.metadata_frames, 1);
    ck_assert_uint_eq(st.metadata_bytes, PMM_MAX_SECTIONS * 16);
    ck_assert_uint_eq(st.free_frames, PMM_MAX_SECTIONS * 16 - 1);
    ck_assert(is_metadata_frame(&p, 32 * MiB + 15 * FRAME));
    ck_assert(log_has("without a section or metadata room; dropped"));
    uint64_t a;
    ck_assert_int_eq(pmm_alloc(&p, 17, 1, &a), PMM_ENOMEM); /* islands are 16 frames */
    ck_assert_int_eq(pmm_alloc(&p, 16, 16, &a), PMM_OK);
    ck_assert_uint_lt(a, 32 * MiB);
    arena_unmap();
}
END_TEST

/* All metadata arrays go back to back in one carve at the top of the
 * highest usable run, even for a section with no usable room of its own. */
START_TEST(metadata_shared)
{
    struct pmm p;
    struct pmm_region rg[] = {
        {16 * MiB, 32 * MiB, PMM_RECLAIMABLE, 0}, /* with the next: a section of 8193 frames */
        {48 * MiB, 4 * KiB, PMM_USABLE, 0},       /* its only usable run, one frame */
        {1 * GiB, 8 * MiB, PMM_USABLE, 0},        /* a section of 2048 frames */
    };
    struct pmm_stats st;
    build_stats(&p, rg, 3, 1 * GiB + 8 * MiB, &st);
    ck_assert_uint_eq(st.sections, 2);
    ck_assert_uint_eq(st.metadata_frames, 3); /* 8193 + 2048 bytes */
    uint64_t m0 = meta_phys(&p, 0);
    uint64_t m1 = meta_phys(&p, 1);
    ck_assert_uint_eq(m0, 1 * GiB + 8 * MiB - 3 * FRAME);
    ck_assert_uint_eq(m1, m0 + 8193);
    ck_assert_uint_eq(st.reclaimable_frames, 8192);
    ck_assert_uint_eq(st.free_frames, 1 + 2048 - 3);
    ck_assert_uint_eq(pmm_reclaim(&p), 8192);
    ck_valid(&p);
    /* [16M, 48M) is now free: two 16 MiB blocks. */
    uint64_t a;
    ck_assert_int_eq(pmm_alloc(&p, 4096, 4096, &a), PMM_OK);
    ck_assert(a == 16 * MiB || a == 32 * MiB);
    arena_unmap();
}
END_TEST

/* When no single run holds every array: each section's own run, else a
 * run in a section already placed, else the section is dropped, loudly.
 *   A: 16384 reclaimable frames + 1 usable: needs 5 metadata frames
 *   C: 6 usable frames at 1 GiB: needs 1, and has room for A's 5
 *   D: 3 usable + 8192 reclaimable at 3 GiB: needs 3, exactly its run
 * Together they need 7 frames; no run has 7. */
START_TEST(metadata_fallback)
{
    struct pmm p;
    struct pmm_region rg[] = {
        {16 * MiB, 64 * MiB, PMM_RECLAIMABLE, 0},
        {80 * MiB, 4 * KiB, PMM_USABLE, 0},
        {1 * GiB, 24 * KiB, PMM_USABLE, 0},
        {3 * GiB, 12 * KiB, PMM_USABLE, 0},
        {3 * GiB + 12 * KiB, 32 * MiB, PMM_RECLAIMABLE, 0},
    };
    struct pmm_stats st;
    build_stats(&p, rg, 5, 3 * GiB + 48 * MiB, &st);
    ck_assert_uint_eq(st.sections, 3);
    ck_assert_uint_eq(st.metadata_frames, 5 + 1 + 3);
    ck_assert_uint_eq(meta_phys(&p, 0), 1 * GiB);
    ck_assert_uint_eq(meta_phys(&p, 1), 1 * GiB + 5 * FRAME);
    ck_assert_uint_eq(meta_phys(&p, 2), 3 * GiB);
    ck_assert_uint_eq(st.free_frames, 1);
    ck_assert_uint_eq(st.reclaimable_frames, 16384 + 8192);
    ck_assert_uint_eq(pmm_reclaim(&p), 16384 + 8192);
    ck_valid(&p);
    uint64_t a;
    ck_assert_int_eq(pmm_alloc(&p, 4096, 4096, &a), PMM_OK);
    ck_assert(a % (16 * MiB) == 0 && ((a >= 16 * MiB && a < 80 * MiB) || a >= 3 * GiB));
    arena_unmap();

    struct pmm_region only_boot[] = {{16 * MiB, 16 * MiB, PMM_RECLAIMABLE, 0}};
    build_stats(&p, only_boot, 1, 32 * MiB, &st);
    ck_assert_uint_eq(st.sections, 0);
    ck_assert_uint_eq(st.dropped.section_bytes, 16 * MiB);
    ck_assert(log_has("no room for the metadata of section 0x1000000; dropped"));
    ck_assert_uint_eq(pmm_reclaim(&p), 0);
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_ENOMEM);
    arena_unmap();
}
END_TEST

CHECK_SUITE(pmm_map_suite, "pmm map", 120,
            CHECK_TEST(one_region),
            CHECK_TEST(crossing_order_boundaries),
            CHECK_TEST(holes_and_odd_edges),
            CHECK_TEST(unsorted_overlapping),
            CHECK_TEST(physical_limit),
            CHECK_TEST(direct_map_limit),
            CHECK_TEST(inputs_in_usable_memory),
            CHECK_TEST(empty_map),
            CHECK_TEST(too_many_sections),
            CHECK_TEST(metadata_shared),
            CHECK_TEST(metadata_fallback))

int main(void)
{
    Suite *suites[] = {
        pmm_map_suite(), pmm_table_suite(), pmm_randmap_suite(),
        pmm_alloc_suite(), pmm_misuse_suite(), pmm_stress_suite(),
    };
    return check_run_suites(suites, sizeof(suites) / sizeof(suites[0]));
}
