/*
 * test_scavenger.c: returning free pages to the port, and the accounting
 * around it. After every step: heap_inuse + heap_free + heap_released ==
 * heap_sys, committed == inuse + free + meta == what the port itself
 * counts, and mheap_valid. Frees below the retain goal keep pages
 * committed; frees above it release the excess, highest pages first;
 * kmalloc_trim releases every free page; released pages are committed
 * again (and read as zero) when reused.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "internal.h"

#define MiB ((size_t)1 << 20)

static struct kmalloc_stats stats(void)
{
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.heap_inuse + st.heap_free + st.heap_released, st.heap_sys);
	ck_assert_uint_eq(st.committed, st.heap_inuse + st.heap_free + st.meta_sys);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	ck_assert(mheap_valid());
	return st;
}

START_TEST(fresh_growth_is_released_until_used)
{
	void *p = kmalloc(MiB, 0);
	ck_assert_ptr_nonnull(p);
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.heap_inuse, MiB);
	ck_assert_uint_eq(st.heap_free, 0); /* the rest of the chunk: never committed */
	ck_assert_uint_eq(st.heap_released, st.heap_sys - MiB);
	ck_assert_uint_eq(st.heap_sys % (4 * MiB), 0);
	kfree(p);
	st = stats();
	ck_assert_uint_eq(st.heap_free, MiB); /* below the 4 MiB retain goal */
}
END_TEST

START_TEST(frees_below_goal_are_retained)
{
	void *p[3];
	for (int i = 0; i < 3; i++)
		p[i] = kmalloc(MiB, 0);
	struct kmalloc_stats before = stats();
	for (int i = 0; i < 3; i++)
		kfree(p[i]);
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.heap_free, 3 * MiB);
	ck_assert_uint_eq(st.heap_released, before.heap_released);
	ck_assert_uint_eq(mheap_retain_goal(), 4 * MiB);
}
END_TEST

START_TEST(frees_above_goal_release_highest_first)
{
	enum { N = 12 };
	void *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(MiB, 0);
		memset(p[i], 1, MiB);
	}
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.heap_inuse, N * MiB);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	st = stats();
	/* 12 MiB free, goal 4 MiB: at most the goal stays committed */
	ck_assert_uint_le(st.heap_free, 4 * MiB);
	ck_assert_uint_ge(st.heap_released, 8 * MiB);
	/* what stayed committed is the lowest pages (first fit reuses them) */
	size_t first = ((uintptr_t)p[0] - mheap_.arena_start) >> PAGE_SHIFT;
	size_t last = ((uintptr_t)p[N - 1] - mheap_.arena_start) >> PAGE_SHIFT;
	ck_assert(!pa_is_scav(&mheap_.pages, first));
	ck_assert(pa_is_scav(&mheap_.pages, last));
}
END_TEST

START_TEST(trim_releases_everything_free)
{
	void *keep = kmalloc(100, 0);
	void *big = kmalloc(3 * MiB, 0);
	memset(big, 7, 3 * MiB);
	kfree(big);
	struct kmalloc_stats st = stats();
	ck_assert_uint_gt(st.heap_free, 0);
	kmalloc_trim();
	st = stats();
	ck_assert_uint_eq(st.heap_free, 0);
	ck_assert_uint_eq(st.heap_inuse, 8192); /* keep's span */
	ck_assert_uint_eq(host_committed_bytes(), st.meta_sys + 8192);
	/* released pages come back committed and zeroed */
	unsigned char *again = kzalloc(3 * MiB, 0);
	ck_assert_ptr_nonnull(again);
	for (size_t i = 0; i < 3 * MiB; i += 4096)
		ck_assert_uint_eq(again[i], 0);
	st = stats();
	ck_assert_uint_eq(st.heap_inuse, 8192 + 3 * MiB);
	kfree(again);
	kfree(keep);
	kmalloc_flush_cpu();
	kmalloc_trim();
	st = stats();
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(st.heap_free, 0);
	ck_assert_uint_eq(st.committed, st.meta_sys);
}
END_TEST

START_TEST(small_spans_scavenged_after_flush)
{
	enum { N = 40000 };
	static void *p[N];
	for (int i = 0; i < N; i++)
		p[i] = kmalloc(256, 0);
	struct kmalloc_stats st = stats();
	ck_assert_uint_ge(st.heap_inuse, (uint64_t)N * 256);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_flush_cpu();
	st = stats();
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_le(st.heap_free, 4 * MiB);
	kmalloc_trim();
	st = stats();
	ck_assert_uint_eq(st.heap_free, 0);
}
END_TEST

START_TEST(commit_failure_leaves_accounting_exact)
{
	void *warm = kmalloc(64, 0);
	kmalloc_trim();
	host_set_commit_limit(host_committed_bytes() + 2 * MiB);
	void *a = kmalloc(MiB, 0);
	ck_assert_ptr_nonnull(a);
	struct kmalloc_stats before = stats();
	ck_assert_ptr_null(kmalloc(2 * MiB, 0)); /* refused by the port */
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.heap_inuse, before.heap_inuse);
	ck_assert_uint_eq(st.committed, before.committed);
	ck_assert_uint_eq(st.large_live, 1);
	host_set_commit_limit(0);
	void *b = kmalloc(2 * MiB, 0);
	ck_assert_ptr_nonnull(b);
	kfree(a);
	kfree(b);
	kfree(warm);
	stats();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("scavenger");
	TCase *tc = tcase_create("scavenger");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fresh_growth_is_released_until_used);
	tcase_add_test(tc, frees_below_goal_are_retained);
	tcase_add_test(tc, frees_above_goal_release_highest_first);
	tcase_add_test(tc, trim_releases_everything_free);
	tcase_add_test(tc, small_spans_scavenged_after_flush);
	tcase_add_test(tc, commit_failure_leaves_accounting_exact);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
