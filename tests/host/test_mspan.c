/*
 * test_mspan.c: one span's bitmaps on their own (a span record and
 * bitmaps in plain memory; the span's address range is never touched):
 * allocation hands out every slot of every class once, in address order,
 * and never a padding slot; sweep merges local and remote frees into
 * allocBits and the freed slots come back lowest first; slot lookup
 * accepts exactly the slot starts; liveness tells live, freed and never
 * allocated slots apart; the validator notices corrupted bitmaps.
 */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FAKE_BASE ((uintptr_t)1 << 40) /* addresses only computed, never used */

static struct mspan span;
static uint64_t bits[3 * SPAN_MAX_WORDS];
static struct mcache mc;

static void span_setup(unsigned cls)
{
	memset(&span, 0, sizeof span);
	memset(bits, 0, sizeof bits);
	memset(&mc, 0, sizeof mc);
	span.base = FAKE_BASE;
	span.npages = class_to_allocnpages[cls];
	span.allocBits = bits;
	span.localFree = bits + SPAN_MAX_WORDS;
	span.remoteFree = bits + 2 * SPAN_MAX_WORDS;
	mspan_init_small(&span, cls);
	span.cachedBy = cpu_slot(0); /* cached by CPU 0, whose mcache is mc */
	mm_mcaches[cpu_slot(0)] = &mc;
}

/* One allocation the way mcache does it: fast path, then nextFreeIndex.
 * Returns the slot index, or nelems when the span is full. */
static unsigned take(void)
{
	void *v = mspan_nextFreeFast(&span);
	if (v != NULL)
		return (unsigned)(((uintptr_t)v - span.base) / span.elemsize);
	return mspan_nextFreeIndex(&span);
}

static void free_local(unsigned idx)
{
	span.localFree[idx / 64] |= (uint64_t)1 << (idx % 64);
}

static void free_remote(unsigned idx)
{
	__atomic_fetch_or(&span.remoteFree[idx / 64], (uint64_t)1 << (idx % 64), __ATOMIC_SEQ_CST);
}

START_TEST(every_class_every_slot_once)
{
	for (unsigned cls = 1; cls < _NumSizeClasses; cls++) {
		span_setup(cls);
		unsigned n = span.nelems;
		ck_assert_uint_eq(n, span.npages * 8192 / class_to_size[cls]);
		for (unsigned i = 0; i < n; i++) {
			void *v = mspan_nextFreeFast(&span);
			unsigned idx = v ? (unsigned)(((uintptr_t)v - span.base) / span.elemsize)
			                 : mspan_nextFreeIndex(&span);
			if (v)
				ck_assert_uint_eq((uintptr_t)v, span.base + (uintptr_t)i * span.elemsize);
			ck_assert_msg(idx == i, "class %u: slot %u handed out as %u", cls, i, idx);
		}
		ck_assert_ptr_null(mspan_nextFreeFast(&span));
		ck_assert_uint_eq(mspan_nextFreeIndex(&span), n);
		ck_assert_uint_eq(span.freeindex, n);
		ck_assert(mspan_valid(&span));
		/* sweep with nothing freed: full, allocCount exact */
		ck_assert_uint_eq(mspan_sweep(&span), 0);
		ck_assert_uint_eq(span.allocCount, n);
		ck_assert_uint_eq(take(), n);
	}
}
END_TEST

START_TEST(sweep_merges_local_and_remote_frees)
{
	span_setup(6); /* 64 B, 128 slots, two bitmap words */
	for (unsigned i = 0; i < 128; i++)
		ck_assert_uint_eq(take(), i);
	ck_assert_uint_eq(take(), 128);
	free_local(3);
	free_local(64);
	free_local(127);
	free_remote(0);
	free_remote(65);
	ck_assert(mspan_valid(&span));
	ck_assert_uint_eq(mspan_sweep(&span), 5);
	ck_assert_uint_eq(span.allocCount, 123);
	ck_assert_uint_eq(span.localFree[0] | span.localFree[1], 0);
	ck_assert_uint_eq(span.remoteFree[0] | span.remoteFree[1], 0);
	ck_assert_uint_eq(span.needzero, 1);
	ck_assert_uint_eq(mc.frees[6], 3); /* local frees counted by the sweep */
	ck_assert(mspan_valid(&span));
	unsigned want[] = {0, 3, 64, 65, 127};
	for (unsigned i = 0; i < 5; i++)
		ck_assert_uint_eq(take(), want[i]);
	ck_assert_uint_eq(take(), 128);
}
END_TEST

START_TEST(frees_before_freeindex_and_after)
{
	span_setup(6);
	for (unsigned i = 0; i < 70; i++)
		take();
	/* freeindex is 70: frees below it; slots above were never allocated */
	free_local(10);
	free_remote(69);
	ck_assert_uint_eq(mspan_sweep(&span), 2);
	ck_assert_uint_eq(span.allocCount, 68);
	ck_assert_uint_eq(span.freeindex, 0);
	ck_assert_uint_eq(take(), 10);
	ck_assert_uint_eq(take(), 69);
	for (unsigned i = 70; i < 128; i++)
		ck_assert_uint_eq(take(), i);
	ck_assert_uint_eq(take(), 128);
}
END_TEST

START_TEST(padding_never_handed_out)
{
	span_setup(3); /* 24 B: 341 slots, 21 in the last word */
	ck_assert_uint_eq(span.nelems, 341);
	ck_assert_uint_eq(span.allocBits[5], ~(((uint64_t)1 << 21) - 1));
	for (unsigned i = 0; i < 341; i++)
		ck_assert_uint_eq(take(), i);
	ck_assert_uint_eq(take(), 341);
	for (unsigned i = 0; i < 341; i++)
		free_local(i);
	ck_assert_uint_eq(mspan_sweep(&span), 341);
	ck_assert_uint_eq(span.allocCount, 0);
	ck_assert_uint_eq(span.allocBits[5], ~(((uint64_t)1 << 21) - 1));
	for (unsigned i = 0; i < 341; i++)
		ck_assert_uint_eq(take(), i);
	ck_assert_uint_eq(take(), 341);
}
END_TEST

START_TEST(slot_of_accepts_only_slot_starts)
{
	span_setup(5); /* 48 B: 170 slots, 32 bytes of tail */
	for (unsigned i = 0; i < 170; i++) {
		uintptr_t p = span.base + (uintptr_t)i * 48;
		ck_assert_int_eq(mspan_slot_of(&span, p), i);
		ck_assert_int_eq(mspan_slot_of(&span, p + 1), -1);
		ck_assert_int_eq(mspan_slot_of(&span, p + 16), -1);
		ck_assert_int_eq(mspan_slot_of(&span, p + 47), -1);
	}
	ck_assert_int_eq(mspan_slot_of(&span, span.base + 170 * 48), -1); /* tail */
	ck_assert_int_eq(mspan_slot_of(&span, span.base - 48), -1);
	ck_assert_int_eq(mspan_slot_of(&span, span.base + 8192), -1);
}
END_TEST

START_TEST(liveness)
{
	bool freed;
	span_setup(6);
	for (unsigned i = 0; i < 10; i++)
		take();
	ck_assert(mspan_slot_live(&span, 2, &freed));
	ck_assert(!freed);
	free_local(2);
	ck_assert(!mspan_slot_live(&span, 2, &freed));
	ck_assert(freed);
	free_remote(5);
	ck_assert(!mspan_slot_live(&span, 5, &freed));
	ck_assert(freed);
	/* never allocated */
	ck_assert(!mspan_slot_live(&span, 20, &freed));
	mspan_sweep(&span);
	ck_assert(!mspan_slot_live(&span, 2, &freed));
	ck_assert(mspan_slot_live(&span, 3, &freed));
	ck_assert(mspan_slot_live(&span, 9, &freed));
	ck_assert(!mspan_slot_live(&span, 10, &freed));
}
END_TEST

START_TEST(validator_notices_corruption)
{
	span_setup(6);
	for (unsigned i = 0; i < 10; i++)
		take();
	ck_assert(mspan_valid(&span));
	free_local(50); /* a free of a slot that was never allocated */
	ck_assert(!mspan_valid(&span));
	span.localFree[0] = 0;
	ck_assert(mspan_valid(&span));
	span_setup(3);
	span.allocBits[5] = 0; /* padding lost */
	ck_assert(!mspan_valid(&span));
}
END_TEST

START_TEST(sweep_refuses_corrupt_bitmaps)
{
	span_setup(6);
	take();
	free_remote(40); /* never allocated: a sweep must not merge it */
	mspan_sweep(&span); /* sys_fault: "corrupt span bitmaps" */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mspan");
	TCase *tc = tcase_create("mspan");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, every_class_every_slot_once);
	tcase_add_test(tc, sweep_merges_local_and_remote_frees);
	tcase_add_test(tc, frees_before_freeindex_and_after);
	tcase_add_test(tc, padding_never_handed_out);
	tcase_add_test(tc, slot_of_accepts_only_slot_starts);
	tcase_add_test(tc, liveness);
	tcase_add_test(tc, validator_notices_corruption);
	tcase_add_test_raise_signal(tc, sweep_refuses_corrupt_bitmaps, SIGABRT);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
