/*
 * test_backtrace.c: mm_backtrace (mm/mstack.c) over the host's unwinder
 * hook (arch/host/backtrace.c): a report's backtrace starts at the
 * allocation site and goes on through its callers, whatever frames of
 * the allocator and the port lie in between; a site the walk does not
 * find still gives a one-frame backtrace.
 */
#include <check.h>
#include <stdint.h>

#include "internal.h"
#include "../lib/check_runner.h"

/* The chain a report should show: outer() calls middle(), which calls
 * site_taker(), which plays a kmalloc entry point: its return address
 * (into middle) is the site. */
static uintptr_t ret_into_outer; /* middle's return address */

static __attribute__((noinline)) unsigned site_taker(uintptr_t *pcs, unsigned max)
{
	uintptr_t site = (uintptr_t)__builtin_return_address(0);
	unsigned n = mm_backtrace(pcs, max, site);
	__asm__ volatile("" ::: "memory"); /* no tail call: keep this frame */
	ck_assert_uint_eq(pcs[0], site);
	return n;
}

static __attribute__((noinline)) unsigned middle(uintptr_t *pcs, unsigned max)
{
	ret_into_outer = (uintptr_t)__builtin_return_address(0);
	unsigned n = site_taker(pcs, max);
	__asm__ volatile("" ::: "memory");
	return n;
}

static __attribute__((noinline)) unsigned outer(uintptr_t *pcs, unsigned max)
{
	unsigned n = middle(pcs, max);
	__asm__ volatile("" ::: "memory");
	return n;
}

START_TEST(starts_at_site_then_callers)
{
	uintptr_t pcs[MM_BACKTRACE_MAX];
	unsigned n = outer(pcs, 8);
	ck_assert_uint_ge(n, 3); /* site in middle, middle's caller, outer's */
	ck_assert_uint_eq(pcs[1], ret_into_outer);
	ck_assert_uint_le(n, 8);
}
END_TEST

START_TEST(max_is_honoured)
{
	uintptr_t pcs[MM_BACKTRACE_MAX + 4];
	pcs[2] = 0xdead;
	ck_assert_uint_eq(outer(pcs, 2), 2);
	ck_assert_uint_eq(pcs[2], 0xdead);
	ck_assert_uint_eq(mm_backtrace(pcs, 0, 1), 0);
	/* more than MM_BACKTRACE_MAX is cut to it */
	ck_assert_uint_le(outer(pcs, MM_BACKTRACE_MAX + 4), MM_BACKTRACE_MAX);
}
END_TEST

START_TEST(unknown_site_gives_one_frame)
{
	uintptr_t pcs[4];
	ck_assert_uint_eq(mm_backtrace(pcs, 4, 0x1234), 1);
	ck_assert_uint_eq(pcs[0], 0x1234);
}
END_TEST

/* clang-format off */
CHECK_MAIN("backtrace", 30,
	   CHECK_TEST(starts_at_site_then_callers),
	   CHECK_TEST(max_is_honoured),
	   CHECK_TEST(unknown_site_gives_one_frame))
/* clang-format on */
