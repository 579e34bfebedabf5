/*
 * test_scavenger.c: returning free pages to the port, and the accounting
 * around it. After every step: heap_inuse + heap_free + heap_released ==
 * heap_sys, committed == inuse + free + meta == what the port itself
 * counts, and mheap_valid. The retain goal follows the recent peak of
 * pages in use (epochs measured in pages allocated), so frees below it
 * keep their pages committed and an alloc/free loop of big blocks neither
 * releases nor commits after its first round; a free that leaves the heap
 * above its goal releases nothing by itself, the allocation slow paths
 * after it release at most 64 pages each, highest first, until the goal
 * is met; kmalloc_trim releases every free page; released pages are
 * committed again (and read as zero) when reused.
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "internal.h"
#include "heap_stats.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define STEP_PAGES 64 /* mscavenge.c: SCAV_STEP */


static int pending(void)
{
	return __atomic_load_n(&mheap_.scav_pending, __ATOMIC_RELAXED);
}

START_TEST(fresh_growth_is_released_until_used)
{
	void *p = kmalloc(MiB, 0);
	ck_assert_ptr_nonnull(p);
	struct kmalloc_stats st = checked_stats();
	ck_assert_uint_eq(st.heap_inuse, MiB);
	ck_assert_uint_eq(st.heap_free, 0); /* the rest of the chunk: never committed */
	ck_assert_uint_eq(st.heap_released, st.heap_sys - MiB);
	ck_assert_uint_eq(st.heap_sys % (4 * MiB), 0);
	kfree(p);
	st = checked_stats();
	ck_assert_uint_eq(st.heap_free, MiB); /* below the 4 MiB minimum goal */
}
END_TEST

START_TEST(frees_below_goal_are_retained)
{
	void *p[3];
	for (int i = 0; i < 3; i++)
		p[i] = kmalloc(MiB, 0);
	struct kmalloc_stats before = checked_stats();
	for (int i = 0; i < 3; i++)
		kfree(p[i]);
	struct kmalloc_stats st = checked_stats();
	ck_assert_uint_eq(st.heap_free, 3 * MiB);
	ck_assert_uint_eq(st.heap_released, before.heap_released);
	/* 1.1 * 3 MiB peak is less than the 4 MiB minimum */
	ck_assert_uint_eq(mheap_retain_goal(), 4 * MiB);
	ck_assert_int_eq(pending(), 0);
}
END_TEST

/* What the heap held a moment ago it may need again: after a 12 MiB peak
 * the goal is 1.1 times that, and all 12 MiB stay committed. */
START_TEST(goal_follows_recent_peak)
{
	enum { N = 12 };
	void *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(MiB, 0);
		memset(p[i], 1, MiB);
	}
	struct kmalloc_stats before = checked_stats();
	ck_assert_uint_eq(mheap_.scav_peaks[0], N * MiB / PAGE_SIZE);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	struct kmalloc_stats st = checked_stats();
	ck_assert_uint_eq(st.heap_free, N * MiB);
	ck_assert_uint_eq(st.heap_released, before.heap_released);
	ck_assert_uint_eq(mheap_retain_goal(), N * MiB + N * MiB / 10);
	ck_assert_int_eq(pending(), 0);
	/* allocation slow paths find nothing to do */
	void *q = kmalloc(3000, 0);
	st = checked_stats();
	ck_assert_uint_eq(st.heap_released, before.heap_released);
	kfree(q);
}
END_TEST

/* A loop that allocates and frees blocks of several MiB keeps their pages
 * committed: after the first round, no page is released or committed
 * again (each would cost a trip to the port and a page fault). */
START_TEST(big_block_loop_keeps_pages_committed)
{
	const size_t sizes[3] = { 3 * MiB, 5 * MiB, 8 * MiB };
	struct kmalloc_stats base = { 0 };
	for (int round = 0; round < 40; round++) {
		void *p[3];
		for (int k = 0; k < 3; k++) {
			p[k] = kmalloc(sizes[(round + k) % 3], 0);
			ck_assert_ptr_nonnull(p[k]);
			memset(p[k], round, 4096);
			if (round >= 1) {
				struct kmalloc_stats st = checked_stats();
				ck_assert_uint_eq(st.committed, base.committed);
				ck_assert_uint_eq(st.heap_released, base.heap_released);
				ck_assert_int_eq(pending(), 0);
			}
		}
		for (int k = 0; k < 3; k++) {
			kfree(p[k]);
			if (round >= 1) {
				struct kmalloc_stats st = checked_stats();
				ck_assert_uint_eq(st.committed, base.committed);
				ck_assert_uint_eq(st.heap_released, base.heap_released);
				ck_assert_int_eq(pending(), 0);
			}
		}
		if (round == 0) {
			base = checked_stats();
			ck_assert_uint_eq(base.heap_free, 16 * MiB);
		}
	}
	/* the loop ran through many epochs of the pacer */
	ck_assert_uint_gt(mheap_.scav_peaks[SCAV_EPOCHS - 1], 0);
}
END_TEST

/* Drive the heap to "above its goal by a free": A (10 MiB) and B (4 MiB)
 * live, B freed, then enough allocation with only A live that the 14 MiB
 * peak ages out of every recent epoch; freeing A then leaves 14 MiB free against
 * a goal of 1.1 times about 10 MiB. */
static void *A;

static void age_peak_with_a_live(void)
{
	A = kmalloc(10 * MiB, 0);
	void *b = kmalloc(4 * MiB, 0);
	ck_assert_ptr_nonnull(A);
	ck_assert_ptr_nonnull(b);
	uint64_t peak = mheap_.scav_peaks[0];
	kfree(b);
	struct kmalloc_stats before = checked_stats();
	int i = 0;
	/* 264 KiB: too big for the large cache, so every allocation takes
	 * pages and counts toward the epoch */
	while (mheap_recent_peak() >= peak) {
		ck_assert_int_lt(i++, 10000);
		void *x = kmalloc(264 * KiB, 0);
		ck_assert_ptr_nonnull(x);
		kfree(x);
	}
	struct kmalloc_stats st = checked_stats();
	ck_assert_uint_eq(st.heap_released, before.heap_released);
	ck_assert_uint_eq(st.committed, before.committed);
}

START_TEST(free_above_goal_is_released_in_paced_steps)
{
	age_peak_with_a_live();
	struct kmalloc_stats st = checked_stats();
	ck_assert_int_eq(pending(), 0);
	kfree(A);
	/* the free itself releases nothing: it only notes the excess */
	struct kmalloc_stats after = checked_stats();
	ck_assert_uint_eq(after.heap_released, st.heap_released);
	ck_assert_uint_eq(after.committed, st.committed);
	ck_assert_int_eq(pending(), 1);
	uint64_t goal = mheap_retain_goal();
	ck_assert_uint_gt(after.heap_free, goal + STEP_PAGES * PAGE_SIZE);

	/* A's chunks were just touched: nothing is released from them until
	 * they stay untouched for SCAV_COLD epochs (meanwhile the pacer may
	 * release from colder chunks, such as B's last one). Every slow path
	 * (a 264 KiB object, which also counts toward epochs and reuses only
	 * A's lowest pages; a small class's slow path; kmalloc_flush_cpu)
	 * releases one step at most, until the goal is met. */
	uint32_t e0 = mheap_.pages.epoch;
	size_t a_hi = (((uintptr_t)A - mheap_.arena_start) >> PAGE_SHIFT) + (10 * MiB >> PAGE_SHIFT) - 1;
	void *small = NULL;
	st = after;
	int steps = 0;
	while (mheap_.pages.epoch - e0 < SCAV_COLD || pending()) {
		ck_assert_int_lt(steps, 10000);
		if (mheap_.pages.epoch - e0 < SCAV_COLD)
			ck_assert(!pa_is_scav(&mheap_.pages, a_hi));
		struct kmalloc_stats prev = st;
		if (steps % 7 == 3) {
			kmalloc_flush_cpu();
		} else if (small == NULL) {
			small = kmalloc(4096, 0);
		} else {
			void *x = kmalloc(264 * KiB, 0);
			ck_assert_ptr_nonnull(x);
			kfree(x);
		}
		st = checked_stats();
		ck_assert_uint_le(st.heap_released - prev.heap_released, STEP_PAGES * PAGE_SIZE);
		steps++;
	}
	ck_assert_uint_gt(st.heap_released, after.heap_released + STEP_PAGES * PAGE_SIZE);
	/* down to the goal, not below it (a page of rounding) */
	goal = mheap_retain_goal();
	ck_assert_uint_le(mheap_.pages_free * PAGE_SIZE, goal);
	ck_assert_uint_gt(mheap_.pages_free * PAGE_SIZE + PAGE_SIZE, goal);
	/* highest pages first: the top of what A and B had is released, the
	 * bottom (first fit reuses it) stays committed */
	size_t lo = ((uintptr_t)A - mheap_.arena_start) >> PAGE_SHIFT;
	size_t hi = lo + (14 * MiB >> PAGE_SHIFT) - 1;
	ck_assert(pa_is_scav(&mheap_.pages, hi));
	ck_assert(!pa_is_alloc(&mheap_.pages, lo + 100));
	ck_assert(!pa_is_scav(&mheap_.pages, lo + 100));
	/* the goal is met: later slow paths release nothing */
	struct kmalloc_stats done = checked_stats();
	for (int i = 0; i < 5; i++)
		kfree(kmalloc(100 * KiB, 0));
	kfree(small);
	kmalloc_flush_cpu();
	st = checked_stats();
	ck_assert_uint_eq(st.heap_released, done.heap_released);
	ck_assert_int_eq(pending(), 0);
}
END_TEST

START_TEST(trim_releases_everything_free)
{
	void *keep = kmalloc(100, 0);
	void *big = kmalloc(3 * MiB, 0);
	memset(big, 7, 3 * MiB);
	kfree(big);
	/* from big's pages, freed into the large cache: free, committed */
	void *cached = kmalloc(100 * KiB, 0);
	ck_assert_ptr_eq(cached, big);
	kfree(cached);
	ck_assert_uint_eq(span_state(spanOf((uintptr_t)cached)), SPAN_CACHED);
	struct kmalloc_stats st = checked_stats();
	ck_assert_uint_eq(st.heap_free, 3 * MiB);
	kmalloc_trim();
	st = checked_stats();
	ck_assert_uint_eq(st.heap_free, 0);
	ck_assert_uint_eq(st.heap_inuse, 8192); /* keep's span */
	ck_assert_uint_eq(host_committed_bytes(), st.meta_sys + 8192);
	ck_assert_uint_eq(span_state(spanOf((uintptr_t)cached)), SPAN_DEAD);
	ck_assert_int_eq(pending(), 0);
	/* released pages come back committed and zeroed */
	unsigned char *again = kzalloc(3 * MiB, 0);
	ck_assert_ptr_nonnull(again);
	for (size_t i = 0; i < 3 * MiB; i += 4096)
		ck_assert_uint_eq(again[i], 0);
	st = checked_stats();
	ck_assert_uint_eq(st.heap_inuse, 8192 + 3 * MiB);
	kfree(again);
	kfree(keep);
	kmalloc_trim();
	st = checked_stats();
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(st.heap_free, 0);
	ck_assert_uint_eq(st.committed, st.meta_sys);
}
END_TEST

/* Small spans return to the heap when the caches drain; their pages stay
 * committed (a recent peak) until a trim. */
START_TEST(small_spans_retained_until_trim)
{
	enum { N = 40000 };
	static void *p[N];
	for (int i = 0; i < N; i++)
		p[i] = kmalloc(256, 0);
	struct kmalloc_stats st = checked_stats();
	ck_assert_uint_ge(st.heap_inuse, (uint64_t)N * 256);
	uint64_t inuse = st.heap_inuse, released = st.heap_released;
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_flush_cpu();
	st = checked_stats();
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(st.heap_free, inuse);
	ck_assert_uint_eq(st.heap_released, released);
	kmalloc_trim();
	st = checked_stats();
	ck_assert_uint_eq(st.heap_free, 0);
	ck_assert_uint_eq(st.heap_released, released + inuse);
}
END_TEST

START_TEST(commit_failure_leaves_accounting_exact)
{
	void *warm = kmalloc(64, 0);
	kmalloc_trim();
	host_set_commit_limit(host_committed_bytes() + 2 * MiB);
	void *a = kmalloc(MiB, 0);
	ck_assert_ptr_nonnull(a);
	struct kmalloc_stats before = checked_stats();
	ck_assert_ptr_null(kmalloc(2 * MiB, 0)); /* refused by the port */
	struct kmalloc_stats st = checked_stats();
	ck_assert_uint_eq(st.heap_inuse, before.heap_inuse);
	ck_assert_uint_eq(st.committed, before.committed);
	ck_assert_uint_eq(st.large_live, 1);
	host_set_commit_limit(0);
	void *b = kmalloc(2 * MiB, 0);
	ck_assert_ptr_nonnull(b);
	kfree(a);
	kfree(b);
	kfree(warm);
	checked_stats();
}
END_TEST

/* clang-format off */
CHECK_MAIN("scavenger", 60,
	   CHECK_TEST(fresh_growth_is_released_until_used),
	   CHECK_TEST(frees_below_goal_are_retained),
	   CHECK_TEST(goal_follows_recent_peak),
	   CHECK_TEST(big_block_loop_keeps_pages_committed),
	   CHECK_TEST(free_above_goal_is_released_in_paced_steps),
	   CHECK_TEST(trim_releases_everything_free),
	   CHECK_TEST(small_spans_retained_until_trim),
	   CHECK_TEST(commit_failure_leaves_accounting_exact))
/* clang-format on */
