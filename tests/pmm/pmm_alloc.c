/*
 * pmm_alloc.c: the allocation suite. Exhaustion and full coalescing,
 * aligned multi-frame runs whose contents survive other traffic, requests
 * that are not a power of two, partial frees, reclaim of boot memory, the
 * dump, and the bookkeeping overhead (budget: 0.5% of managed memory).
 */
#include "pmm_harness.h"
#include "../lib/fill.h"

#include <stdio.h>
#include <string.h>

/* 64 MiB from 1 MiB with the kernel and loader data inside it, as the
 * loader hands it over. */
static const struct pmm_region boot_map[] = {
    {1 * MiB, 63 * MiB, PMM_USABLE, 0},
    {2 * MiB, 1 * MiB + 12 * KiB, PMM_KERNEL, 0},
    {8 * MiB, 64 * KiB, PMM_LOADER, 0},
    {12 * MiB, 3 * MiB, PMM_RECLAIMABLE, 0},
};
#define BOOT_N (sizeof boot_map / sizeof boot_map[0])

static int max_free_order(const struct pmm *p)
{
    struct pmm_stats st;
    pmm_stats(p, &st);
    for (int k = PMM_MAX_ORDER; k >= 0; k--)
        if (st.free_blocks[k])
            return k;
    return -1;
}

/* Take every frame one at a time, give them all back: the count matches,
 * failure is clean, and the buddies merge back to the same blocks, so the
 * largest block can be allocated again. */
START_TEST(exhaust_and_coalesce)
{
    struct pmm p;
    build(&p, boot_map, BOOT_N, 64 * MiB);
    struct pmm_stats st0, st;
    pmm_stats(&p, &st0);
    int top = max_free_order(&p);
    ck_assert_int_ge(top, 9); /* a 2 MiB block exists */

    struct shadow sh;
    shadow_init(&sh, 64 * MiB);
    shadow_exhaust(&sh, &p, boot_map, BOOT_N, 0);
    ck_assert_uint_eq(sh.count, st0.free_frames);
    uint64_t a;
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_ENOMEM);
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_ENOMEM);
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.free_frames, 0);
    ck_assert_uint_eq(st.used_frames, st0.free_frames);
    ck_valid(&p);

    /* Free in an interleaved order so merges happen in both directions. */
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t f = (uint64_t)pass; f < sh.nframes; f += 2)
            if (sh.used[f]) {
                ck_assert_int_eq(pmm_free(&p, f * FRAME, 1), PMM_OK);
                sh.used[f] = 0;
            }
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.free_frames, st0.free_frames);
    ck_assert_uint_eq(st.used_frames, 0);
    expect_blocks(&p, st0.free_blocks);
    ck_valid(&p);
    ck_assert_int_eq(pmm_alloc(&p, (size_t)1 << top, (size_t)1 << top, &a), PMM_OK);
    ck_assert_uint_eq(a % (FRAME << top), 0);
    shadow_free(&sh);
    arena_unmap();
}
END_TEST

struct run {
    uint64_t phys, n;
};

/* Each frame of a run carries the pattern of its tag and its own address. */
static void fill(const struct run *r, unsigned tag)
{
    for (uint64_t f = 0; f < r->n; f++) {
        uint64_t phys = r->phys + f * FRAME;
        fill_pattern(phys_ptr(phys), FRAME, ((uint64_t)tag << 32) ^ phys);
    }
}

static void verify(const struct run *r, unsigned tag)
{
    for (uint64_t f = 0; f < r->n; f++) {
        uint64_t phys = r->phys + f * FRAME;
        ck_assert_msg(
            check_pattern(phys_ptr(phys), FRAME, ((uint64_t)tag << 32) ^ phys) == SIZE_MAX,
            "allocation %u at 0x%llx changed under its owner", tag, (unsigned long long)r->phys);
    }
}

/* Aligned multi-frame runs: aligned, inside free memory, disjoint, and
 * their contents (written through the direct map) untouched while other
 * runs are allocated and freed around them. */
START_TEST(aligned_runs)
{
    static const struct {
        size_t n, align;
    } req[] = {
        {1, 1}, {2, 2}, {3, 1}, {3, 4}, {5, 8}, {7, 1}, {8, 8}, {16, 512}, {1, 512}, {100, 64},
        {511, 1}, {512, 512}, {513, 1}, {1, 4096}, {33, 32}, {6, 2}, {1000, 1}, {2, 1024},
    };
    enum { NREQ = sizeof req / sizeof req[0] };
    struct pmm p;
    build(&p, boot_map, BOOT_N, 64 * MiB);
    struct shadow sh;
    shadow_init(&sh, 64 * MiB);
    struct run r[NREQ];
    struct pmm_stats st0, st;
    pmm_stats(&p, &st0);
    uint64_t total = 0;
    for (int i = 0; i < NREQ; i++) {
        ck_assert_int_eq(pmm_alloc(&p, req[i].n, req[i].align, &r[i].phys), PMM_OK);
        r[i].n = req[i].n;
        total += r[i].n;
        ck_assert_msg(r[i].phys % (req[i].align * FRAME) == 0, "0x%llx not aligned to %zu frames",
                      (unsigned long long)r[i].phys, req[i].align);
        shadow_take(&sh, &p, boot_map, BOOT_N, r[i].phys, r[i].n, 0);
        fill(&r[i], (unsigned)i);
        ck_valid(&p);
    }
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.used_frames, total); /* tails went back: exact cost */
    ck_assert_uint_eq(st.free_frames, st0.free_frames - total);
    /* Churn single and odd-sized runs around the live ones. */
    for (int round = 0; round < 200; round++) {
        struct run t = {0, (uint64_t)(round % 7) + 1};
        ck_assert_int_eq(pmm_alloc(&p, t.n, 1, &t.phys), PMM_OK);
        shadow_take(&sh, &p, boot_map, BOOT_N, t.phys, t.n, 0);
        fill(&t, 1000);
        ck_assert_int_eq(pmm_free(&p, t.phys, t.n), PMM_OK);
        shadow_give(&sh, t.phys, t.n);
    }
    for (int i = 0; i < NREQ; i += 2) {
        verify(&r[i], (unsigned)i);
        ck_assert_int_eq(pmm_free(&p, r[i].phys, r[i].n), PMM_OK);
        ck_valid(&p);
    }
    for (int i = 1; i < NREQ; i += 2) {
        verify(&r[i], (unsigned)i);
        ck_assert_int_eq(pmm_free(&p, r[i].phys, r[i].n), PMM_OK);
    }
    expect_blocks(&p, st0.free_blocks);
    ck_valid(&p);
    shadow_free(&sh);
    arena_unmap();
}
END_TEST

/* A 5-frame request costs 5 frames; the allocation can be given back in
 * pieces, and the pieces merge back. An alignment bigger than any free
 * block fails cleanly even though enough frames are free. */
START_TEST(odd_counts_and_partial_free)
{
    struct pmm_region rg[] = {{1 * MiB, 64 * KiB + FRAME, PMM_USABLE, 0}}; /* 16 free + 1 metadata */
    struct pmm p;
    build(&p, rg, 1, 2 * MiB);
    uint64_t a, b[3], c;
    ck_assert_int_eq(pmm_alloc(&p, 5, 1, &a), PMM_OK);
    ck_assert_uint_eq(a, 1 * MiB);
    /* The 3 frames after it came back as the tail: single frames find them. */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(pmm_alloc(&p, 1, 1, &b[i]), PMM_OK);
        ck_assert(b[i] >= a + 5 * FRAME && b[i] < a + 8 * FRAME);
    }
    ck_assert(b[0] != b[1] && b[1] != b[2] && b[0] != b[2]);
    ck_assert_int_eq(pmm_alloc(&p, 8, 1, &c), PMM_OK);
    ck_assert_uint_eq(c, 1 * MiB + 8 * FRAME);
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &c), PMM_ENOMEM); /* all 16 used */
    ck_valid(&p);
    /* Give the 5 back as the last frame, then the first four. */
    ck_assert_int_eq(pmm_free(&p, a + 4 * FRAME, 1), PMM_OK);
    ck_valid(&p);
    ck_assert_int_eq(pmm_free(&p, a, 4), PMM_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pmm_free(&p, b[i], 1), PMM_OK);
    ck_valid(&p);
    ck_assert_int_eq(pmm_alloc(&p, 8, 8, &a), PMM_OK); /* the first 8 merged again */
    ck_assert_uint_eq(a, 1 * MiB);
    ck_assert_int_eq(pmm_free(&p, a, 8), PMM_OK);
    ck_assert_int_eq(pmm_free(&p, 1 * MiB + 8 * FRAME, 8), PMM_OK);
    ck_assert_int_eq(pmm_alloc(&p, 1, 32, &a), PMM_ENOMEM); /* 16 free, no 32-aligned block */
    ck_assert_int_eq(pmm_alloc(&p, 16, 16, &a), PMM_OK);
    ck_valid(&p);
    arena_unmap();
}
END_TEST

/* Reclaimable frames are never handed out before pmm_reclaim, all of
 * them are after, and they merge with the usable memory around them. */
START_TEST(reclaim)
{
    struct pmm_region rg[] = {
        {2 * MiB, 1 * MiB, PMM_USABLE, 0},
        {3 * MiB, 1 * MiB, PMM_RECLAIMABLE, 0},
        {4 * MiB, 2 * MiB + 8 * KiB, PMM_USABLE, 0},    /* metadata takes its top frame */
        {6 * MiB + 8 * KiB, 4 * KiB + 100, PMM_RECLAIMABLE, 0}, /* trims to one frame */
        {1 * MiB, 1 * MiB, PMM_RECLAIMABLE, 0},
        {1 * MiB + 8 * KiB, 4 * KiB, PMM_LOADER, 0},    /* inside: stays reserved */
    };
    enum { N = sizeof rg / sizeof rg[0] };
    struct pmm p;
    build(&p, rg, N, 8 * MiB);
    struct pmm_stats st0, st;
    pmm_stats(&p, &st0);
    ck_assert_uint_eq(st0.reclaimable_frames, 255 + 256 + 1);
    ck_assert_uint_eq(st0.free_frames, 256 + 514 - 1);
    uint64_t a, b;
    ck_assert_int_eq(pmm_alloc(&p, 512, 512, &a), PMM_OK); /* [4M, 6M) is whole */
    ck_assert_uint_eq(a, 4 * MiB);
    ck_assert_int_eq(pmm_alloc(&p, 512, 512, &b), PMM_ENOMEM); /* [2M, 4M) is not yet */
    ck_assert_int_eq(pmm_free(&p, a, 512), PMM_OK);

    /* Before reclaim: exhaust, no reclaimable frame among them. */
    struct shadow sh;
    shadow_init(&sh, 8 * MiB);
    shadow_exhaust(&sh, &p, rg, N, 0);
    ck_assert_uint_eq(sh.count, st0.free_frames);
    shadow_give_all(&sh, &p);
    shadow_free(&sh);

    log_reset();
    ck_assert_uint_eq(pmm_reclaim(&p), st0.reclaimable_frames);
    ck_assert(log_has("pmm: reclaimed 512 frames of boot memory"));
    ck_valid(&p);
    pmm_stats(&p, &st);
    ck_assert_uint_eq(st.reclaimable_frames, 0);
    ck_assert_uint_eq(st.free_frames, st0.free_frames + st0.reclaimable_frames);
    ck_assert_uint_eq(pmm_reclaim(&p), 0);
    /* Usable [2M, 3M) and reclaimed [3M, 4M) merged into a 2 MiB block. */
    ck_assert_int_eq(pmm_alloc(&p, 512, 512, &a), PMM_OK);
    ck_assert_int_eq(pmm_alloc(&p, 512, 512, &b), PMM_OK);
    ck_assert((a == 2 * MiB && b == 4 * MiB) || (a == 4 * MiB && b == 2 * MiB));
    shadow_init(&sh, 8 * MiB);
    shadow_take(&sh, &p, rg, N, a, 512, 1);
    shadow_take(&sh, &p, rg, N, b, 512, 1);
    shadow_exhaust(&sh, &p, rg, N, 1);
    ck_assert_uint_eq(sh.count, st.free_frames);
    shadow_free(&sh);
    ck_valid(&p);
    arena_unmap();
}
END_TEST

START_TEST(dump)
{
    struct pmm p;
    build(&p, boot_map, BOOT_N, 64 * MiB);
    uint64_t a;
    ck_assert_int_eq(pmm_alloc(&p, 3, 1, &a), PMM_OK);
    log_reset();
    pmm_dump(&p);
    struct pmm_stats st;
    pmm_stats(&p, &st);
    char want[160];
    snprintf(want, sizeof want, "pmm: %llu frames managed (", (unsigned long long)st.managed_frames);
    ck_assert_msg(log_has(want), "missing '%s'", want);
    snprintf(want, sizeof want, "pmm: frames: free %llu, used 3, reclaimable %llu, metadata %llu; reserved %llu bytes",
             (unsigned long long)st.free_frames, (unsigned long long)st.reclaimable_frames,
             (unsigned long long)st.metadata_frames, (unsigned long long)(1 * MiB + 12 * KiB + 64 * KiB));
    ck_assert_msg(log_has(want), "missing '%s'", want);
    ck_assert(log_has("pmm:   section 0x100000-0x4000000: 16128 frames, metadata at 0x3ffc000"));
    ck_assert(log_has("pmm:   map kernel: 1060864 bytes (1 MiB)"));
    ck_assert(log_has("pmm:   map loader: 65536 bytes"));
    ck_assert(log_has("pmm: free blocks by order:"));
    ck_assert(log_has("% of managed memory"));
    arena_unmap();
}
END_TEST

/* The overhead figure: metadata frames plus struct pmm, over managed
 * memory, for a QEMU-sized map, a PC map with a large hole and memory
 * above 4 GiB, and a sparse map where 4 of every 5 frames are holes. */
static double overhead_pct(const struct pmm *p, const char *what)
{
    struct pmm_stats st;
    pmm_stats(p, &st);
    double pct = 100.0 * (double)st.overhead_bytes / (double)(st.managed_frames * FRAME);
    printf("pmm overhead (%s): %llu bytes for %llu managed bytes = %.4f%% (%u section%s)\n", what,
           (unsigned long long)st.overhead_bytes, (unsigned long long)(st.managed_frames * FRAME), pct,
           st.sections, st.sections == 1 ? "" : "s");
    return pct;
}

START_TEST(bookkeeping_overhead)
{
    struct pmm p;
    struct pmm_region qemu[] = {
        {0, 0xa0000, PMM_USABLE, 0},
        {1 * MiB, 255 * MiB, PMM_USABLE, 0},
        {2 * MiB, 2 * MiB, PMM_KERNEL, 0},
        {16 * MiB, 8 * MiB, PMM_RECLAIMABLE, 0},
    };
    build(&p, qemu, 4, 256 * MiB);
    ck_assert(overhead_pct(&p, "256 MiB QEMU map") <= 0.5);
    arena_unmap();

    struct pmm_region pc[] = {
        {0x1000, 0x9e000, PMM_USABLE, 0},
        {1 * MiB, 3 * GiB - 1 * MiB, PMM_USABLE, 0},
        {3 * GiB, 1 * GiB, PMM_RESERVED, 0},
        {4 * GiB, 4 * GiB, PMM_USABLE, 0},
    };
    build(&p, pc, 4, 8 * GiB);
    ck_assert(overhead_pct(&p, "7 GiB PC map, hole below 4 GiB") <= 0.5);
    arena_unmap();

    enum { ISLANDS = 800 };
    static struct pmm_region sparse[ISLANDS];
    for (int i = 0; i < ISLANDS; i++)
        sparse[i] = (struct pmm_region){1 * MiB + (uint64_t)i * 5 * FRAME, FRAME, PMM_USABLE, 0};
    struct pmm_stats st;
    build_stats(&p, sparse, ISLANDS, 1 * MiB + ISLANDS * 5 * FRAME, &st);
    ck_assert_uint_eq(st.sections, 1);
    ck_assert(overhead_pct(&p, "sparse map, 1 frame in 5") <= 0.5);
    arena_unmap();
}
END_TEST

CHECK_SUITE(pmm_alloc_suite, "pmm alloc", 120,
            CHECK_TEST(exhaust_and_coalesce),
            CHECK_TEST(aligned_runs),
            CHECK_TEST(odd_counts_and_partial_free),
            CHECK_TEST(reclaim),
            CHECK_TEST(dump),
            CHECK_TEST(bookkeeping_overhead))
