/*
 * pmm_misuse.c: deliberate misuse of the frame allocator. Every bad free
 * and bad argument must be rejected with one log line naming the fault
 * and the address, and must leave the allocator exactly as it was (same
 * counters, same free blocks, pmm_validate clean). A free frame written
 * after it was freed must be caught before the allocator follows its
 * links or hands it out.
 */
#include "pmm_harness.h"

#include <stdio.h>
#include <string.h>

/* [1M, 16M) and [20M, 24M) usable around a hole, the kernel at 2M, boot
 * data at 8M: one section with every kind of frame in it. */
static const struct pmm_region map[] = {
    {1 * MiB, 15 * MiB, PMM_USABLE, 0},
    {20 * MiB, 4 * MiB, PMM_USABLE, 0},
    {2 * MiB, 1 * MiB, PMM_KERNEL, 0},
    {8 * MiB, 1 * MiB, PMM_RECLAIMABLE, 0},
};

static struct pmm p;

static void setup(void) { build(&p, map, sizeof map / sizeof map[0], 32 * MiB); }
static void teardown(void) { arena_unmap(); }

static void same_state(const struct pmm_stats *a, const struct pmm_stats *b)
{
    ck_assert_uint_eq(a->free_frames, b->free_frames);
    ck_assert_uint_eq(a->used_frames, b->used_frames);
    ck_assert_uint_eq(a->reclaimable_frames, b->reclaimable_frames);
    for (int k = 0; k <= PMM_MAX_ORDER; k++)
        ck_assert_uint_eq(a->free_blocks[k], b->free_blocks[k]);
}

/* pmm_free(phys, n) must fail with a line holding `fault` and `at`. */
static void rejected(uint64_t phys, size_t n, const char *fault, uint64_t at)
{
    struct pmm_stats before, after;
    char addr[32];
    pmm_stats(&p, &before);
    log_reset();
    ck_assert_int_eq(pmm_free(&p, phys, n), PMM_EBADFREE);
    ck_assert_int_eq(log_count(), 1);
    ck_assert_msg(strstr(log_last(), "pmm_free: ") && strstr(log_last(), fault), "got '%s', want '%s'",
                  log_last(), fault);
    snprintf(addr, sizeof addr, "0x%llx", (unsigned long long)at);
    ck_assert_msg(strstr(log_last(), addr), "'%s' does not name %s", log_last(), addr);
    pmm_stats(&p, &after);
    same_state(&before, &after);
    ck_valid(&p);
}

START_TEST(double_free)
{
    uint64_t a, b;
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_OK);
    ck_assert_int_eq(pmm_alloc(&p, 4, 1, &b), PMM_OK);
    ck_assert_int_eq(pmm_free(&p, a, 1), PMM_OK);
    rejected(a, 1, "double free", a);
    ck_assert_int_eq(pmm_free(&p, b, 4), PMM_OK);
    rejected(b, 4, "double free", b);
    rejected(b + 2 * FRAME, 1, "double free", b + 2 * FRAME);
}
END_TEST

START_TEST(not_allocatable)
{
    rejected(2 * MiB, 1, "reserved frame", 2 * MiB);
    rejected(2 * MiB + 8 * FRAME, 4, "reserved frame", 2 * MiB + 8 * FRAME);
    rejected(17 * MiB, 1, "frame in a hole of the memory map", 17 * MiB);
    rejected(8 * MiB, 1, "reclaimable frame not yet reclaimed", 8 * MiB);
    uint64_t meta = meta_phys(&p, 0);
    rejected(meta, 1, "frame holds pmm metadata", meta);
    rejected(0, 1, "frame not managed by this allocator", 0);
    rejected(512 * MiB, 1, "frame not managed by this allocator", 512 * MiB);
    rejected(23 * MiB, 1 << 20, "range runs past managed memory", 23 * MiB);
    rejected(UINT64_MAX & ~(FRAME - 1), 1, "frame not managed by this allocator", UINT64_MAX & ~(FRAME - 1));
}
END_TEST

START_TEST(wrong_range)
{
    uint64_t a, b;
    ck_assert_int_eq(pmm_alloc(&p, 4, 4, &a), PMM_OK);
    ck_assert_int_eq(pmm_alloc(&p, 6, 1, &b), PMM_OK);
    rejected(a + 100, 1, "address not frame aligned", a + 100);
    rejected(a, 0, "zero frames", a);
    rejected(a + FRAME, 1, "not the start of an allocation", a + FRAME);
    rejected(a + FRAME, 1, "block at", a); /* and it names the block */
    rejected(a, 2, "range ends inside an allocated block", a);
    rejected(b, 5, "range ends inside an allocated block", b + 4 * FRAME); /* 6 = 4 + 2 */
    /* Past the end of the allocation: whatever follows is not ours. */
    struct pmm_stats before, after;
    pmm_stats(&p, &before);
    ck_assert_int_eq(pmm_free(&p, a, 64), PMM_EBADFREE);
    pmm_stats(&p, &after);
    same_state(&before, &after);
    ck_valid(&p);
    ck_assert_int_eq(pmm_free(&p, a, 4), PMM_OK);
    ck_assert_int_eq(pmm_free(&p, b, 6), PMM_OK);
    ck_valid(&p);
}
END_TEST

START_TEST(bad_alloc_arguments)
{
    uint64_t a = 12345;
    struct pmm_stats before, after;
    pmm_stats(&p, &before);
    log_reset();
    ck_assert_int_eq(pmm_alloc(&p, 0, 1, &a), PMM_EINVAL);
    ck_assert(log_has("pmm_alloc: bad frame count: 0x0"));
    ck_assert_int_eq(pmm_alloc(&p, ((size_t)1 << PMM_MAX_ORDER) + 1, 1, &a), PMM_EINVAL);
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, NULL), PMM_EINVAL);
    ck_assert_int_eq(pmm_alloc(&p, 1, 3, &a), PMM_EINVAL);
    ck_assert(log_has("pmm_alloc: alignment not a power of two up to the largest block: 0x3"));
    ck_assert_int_eq(pmm_alloc(&p, 1, (size_t)1 << (PMM_MAX_ORDER + 1), &a), PMM_EINVAL);
    ck_assert_uint_eq(a, 12345); /* untouched on failure */
    /* Larger than any free block: plain out of memory, not logged. */
    log_reset();
    ck_assert_int_eq(pmm_alloc(&p, (size_t)1 << PMM_MAX_ORDER, 1, &a), PMM_ENOMEM);
    ck_assert_int_eq(log_count(), 0);
    pmm_stats(&p, &after);
    same_state(&before, &after);
    ck_valid(&p);
}
END_TEST

/* Exhaust, free one frame whose buddy is in use, then scribble over it. */
static uint64_t scribbled_frame(uint64_t *buddy)
{
    uint64_t a, x = 0;
    while (pmm_alloc(&p, 1, 1, &a) == PMM_OK)
        if (!x && a >= 4 * MiB)
            x = a;
    ck_assert_uint_ne(x, 0);
    ck_assert_int_eq(pmm_free(&p, x, 1), PMM_OK);
    ck_valid(&p);
    memset(phys_ptr(x), 0xa5, 64);
    *buddy = x ^ FRAME;
    return x;
}

START_TEST(write_after_free_on_alloc)
{
    uint64_t buddy, a = 0;
    uint64_t x = scribbled_frame(&buddy);
    log_reset();
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &a), PMM_ECORRUPT);
    ck_assert_uint_eq(a, 0);
    ck_assert(log_has("free block overwritten after free"));
    char addr[32];
    snprintf(addr, sizeof addr, "0x%llx", (unsigned long long)x);
    ck_assert(log_has(addr));
    ck_assert_int_gt(pmm_validate(&p), 0);
}
END_TEST

START_TEST(write_after_free_on_merge)
{
    uint64_t buddy;
    (void)scribbled_frame(&buddy);
    log_reset();
    ck_assert_int_eq(pmm_free(&p, buddy, 1), PMM_ECORRUPT);
    ck_assert(log_has("free block overwritten after free"));
}
END_TEST

/* A link redirected at an allocated frame is not followed. */
START_TEST(forged_link)
{
    static uint64_t got[8192];
    size_t n_got = 0;
    uint64_t x;
    while (pmm_alloc(&p, 1, 1, &x) == PMM_OK) {
        ck_assert_uint_lt(n_got, 8192);
        got[n_got++] = x;
    }
    /* Two lone free frames on the order-0 list (everything else is in
     * use, and they are not each other's buddy, so nothing merges). */
    uint64_t victim = got[0], a = got[10], b = 0;
    for (size_t i = 11; i < n_got && !b; i++)
        if ((got[i] ^ a) >= 2 * FRAME)
            b = got[i];
    ck_assert_uint_ne(b, 0);
    ck_assert_int_eq(pmm_free(&p, a, 1), PMM_OK);
    ck_assert_int_eq(pmm_free(&p, b, 1), PMM_OK);
    struct pmm_node *n = phys_ptr(b); /* list head: b -> a */
    n->next = phys_ptr(victim);
    memset(phys_ptr(victim), 0x5a, FRAME);
    ck_assert_int_eq(pmm_alloc(&p, 1, 1, &x), PMM_ECORRUPT);
    const unsigned char *v = phys_ptr(victim);
    for (size_t i = 0; i < FRAME; i++)
        ck_assert_uint_eq(v[i], 0x5a);
}
END_TEST

Suite *pmm_misuse_suite(void)
{
    Suite *s = suite_create("pmm misuse");
    TCase *tc = tcase_create("misuse");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, double_free);
    tcase_add_test(tc, not_allocatable);
    tcase_add_test(tc, wrong_range);
    tcase_add_test(tc, bad_alloc_arguments);
    tcase_add_test(tc, write_after_free_on_alloc);
    tcase_add_test(tc, write_after_free_on_merge);
    tcase_add_test(tc, forged_link);
    suite_add_tcase(s, tc);
    return s;
}
