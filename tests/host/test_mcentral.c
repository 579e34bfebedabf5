/*
 * test_mcentral.c: the per-class span lists, driven directly (cacheSpan,
 * uncacheSpan, reclaim) on the real heap, with kfree making local and
 * remote frees: a fresh mcentral grows from the mheap; uncached spans are
 * filed as partial or full; a partial span is reused before the heap
 * grows; remote frees of an eighth of a full span move it to unswept
 * (fewer leave it unannounced) and a refill or
 * reclaim sweeps it back to partial, swept once however many frees it
 * took;
 * a span whose objects are all free goes back to the mheap, unless a
 * remote free is in flight on it or a CPU still caches it.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

#define CLS 10 /* 128-byte objects, 64 per one-page span */

static unsigned cpu;

static struct mcentral *central(void)
{
	return &mheap_.central[CLS].c;
}

/* List lengths, checked against a walk by mheap_valid. */
static void expect_lists(unsigned partial, unsigned full, unsigned nspans)
{
	struct mcentral *c = central();
	sys_lock(&c->lock);
	uint64_t p = c->partial.len + c->unswept.len, f = c->full.len, n = c->nspans;
	sys_unlock(&c->lock);
	ck_assert_uint_eq(p, partial);
	ck_assert_uint_eq(f, full);
	ck_assert_uint_eq(n, nspans);
	ck_assert(mheap_valid());
}

static void setup(void)
{
	ck_assert_int_eq(kmalloc_init(), 0);
	cpu = sys_cpu_id();
	ck_assert_ptr_nonnull(mcache_get(cpu));
}

static void *take(struct mspan *s)
{
	void *v = mspan_nextFreeFast(s);
	if (v == NULL) {
		unsigned idx = mspan_nextFreeIndex(s);
		ck_assert_uint_lt(idx, s->nelems);
		v = (void *)(s->base + (uintptr_t)idx * s->elemsize);
	}
	return v;
}

START_TEST(grow_partial_full)
{
	setup();
	expect_lists(0, 0, 0);
	struct mspan *s = mcentral_cacheSpan(central(), cpu);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->cachedBy, cpu_slot(cpu));
	ck_assert_uint_eq(s->nelems, 64);
	expect_lists(0, 0, 1);
	for (int i = 0; i < 10; i++)
		take(s);
	mcentral_uncacheSpan(central(), s);
	ck_assert_uint_eq(s->cachedBy, CPU_NONE);
	ck_assert_uint_eq(s->allocCount, 10);
	expect_lists(1, 0, 1);
	/* a partial span is handed out again before the heap grows */
	struct mspan *t = mcentral_cacheSpan(central(), cpu);
	ck_assert_ptr_eq(t, s);
	expect_lists(0, 0, 1);
	for (int i = 10; i < 64; i++)
		take(s);
	mcentral_uncacheSpan(central(), s);
	expect_lists(0, 1, 1);
	/* no partial span: the next cacheSpan grows a second span */
	t = mcentral_cacheSpan(central(), cpu);
	ck_assert_ptr_ne(t, s);
	expect_lists(0, 1, 2);
	mcentral_uncacheSpan(central(), t); /* empty: straight back to the heap */
	expect_lists(0, 1, 1);
}
END_TEST

START_TEST(remote_frees_refile_and_return)
{
	setup();
	struct mspan *s = mcentral_cacheSpan(central(), cpu);
	void *obj[64];
	for (int i = 0; i < 64; i++)
		obj[i] = take(s);
	mcentral_uncacheSpan(central(), s);
	expect_lists(0, 1, 1);
	/* uncached, so this CPU's frees are remote frees; the span is
	 * announced once an eighth of it (8 slots) is free, not before */
	for (int i = 0; i < 7; i++)
		kfree(obj[i]);
	ck_assert_ptr_null(__atomic_load_n(&central()->sweepq, __ATOMIC_ACQUIRE));
	ck_assert_uint_eq(s->queued, Q_CLEAN);
	kfree(obj[7]);
	ck_assert_ptr_eq(__atomic_load_n(&central()->sweepq, __ATOMIC_ACQUIRE), s);
	expect_lists(0, 1, 1); /* nothing moves until the mcentral looks */
	mcentral_reclaim(central());
	expect_lists(1, 0, 1);
	ck_assert_uint_eq(s->onlist, LIST_PARTIAL); /* reclaim swept it */
	ck_assert_uint_eq(s->allocCount, 56);
	for (int i = 8; i < 64; i++)
		kfree(obj[i]);
	mcentral_reclaim_all();
	expect_lists(0, 0, 0);
	struct mm_census cs;
	mm_census(&cs);
	ck_assert_uint_eq(cs.spans_small, 0);
	ck_assert_uint_eq(cs.pages_inuse, 0);
}
END_TEST

START_TEST(local_frees_then_uncache_returns_span)
{
	setup();
	void *p[5];
	for (int i = 0; i < 5; i++)
		p[i] = kmalloc(128, 0);
	struct mspan *s = spanOf((uintptr_t)p[0]);
	ck_assert_uint_eq(s->cachedBy, cpu_slot(cpu));
	for (int i = 0; i < 5; i++)
		kfree(p[i]); /* local: only localFree bits change */
	ck_assert_uint_ne(s->localFree[0], 0);
	expect_lists(0, 0, 1);
	kmalloc_flush_cpu();
	expect_lists(0, 0, 0);
	ck_assert_uint_eq(s->state, SPAN_DEAD);
}
END_TEST

START_TEST(many_remote_frees_one_sweep)
{
	setup();
	struct mspan *s = mcentral_cacheSpan(central(), cpu);
	void *obj[64];
	for (int i = 0; i < 64; i++)
		obj[i] = take(s);
	mcentral_uncacheSpan(central(), s);
	uint32_t seq = s->sweepseq;
	for (int i = 1; i < 9; i++)
		kfree(obj[i]); /* the eighth pushes the span */
	ck_assert_uint_eq(s->queued, Q_STACKED);
	/* a refill of another CPU drains: the span moves to unswept and is
	 * handed out, swept once */
	struct mspan *t = mcentral_refill(central(), NULL, false, cpu);
	ck_assert_ptr_eq(t, s);
	ck_assert_uint_eq(s->sweepseq, seq + 2);
	ck_assert_uint_eq(s->allocCount, 56);
	mcentral_uncacheSpan(central(), s);
	expect_lists(1, 0, 1);
	/* now 30 remote frees: one push, one drain, one sweep */
	seq = s->sweepseq;
	for (int i = 9; i < 39; i++)
		kfree(obj[i]);
	lock_central(central());
	ck_assert_ptr_eq(central()->sweepq, s);
	unlock_central(central());
	mcentral_reclaim(central());
	ck_assert_uint_eq(s->sweepseq, seq + 2);
	ck_assert_uint_eq(s->allocCount, 26);
	expect_lists(1, 0, 1);
}
END_TEST

START_TEST(remote_frees_that_empty_a_parked_span_return_it)
{
	setup();
	void *a[64], *b[10];
	struct mspan *s1 = mcentral_cacheSpan(central(), cpu);
	for (int i = 0; i < 64; i++)
		a[i] = take(s1);
	mcentral_uncacheSpan(central(), s1); /* full */
	struct mspan *s2 = mcentral_cacheSpan(central(), cpu);
	ck_assert_ptr_ne(s2, s1);
	for (int i = 0; i < 10; i++)
		b[i] = take(s2);
	mcentral_uncacheSpan(central(), s2); /* partial, 10 live */
	for (int i = 0; i < 8; i++)
		kfree(b[i]);
	for (int i = 0; i < 8; i++)
		kfree(a[i]);
	/* an eighth of each is free, so both were pushed; a refill drains
	 * both: s1 (was full) moves to unswept and is handed out; s2 stays
	 * on partial, parked, 2 live */
	struct mspan *t = mcentral_refill(central(), NULL, false, cpu);
	ck_assert_ptr_eq(t, s1);
	ck_assert_uint_eq(s2->queued, Q_PARKED);
	ck_assert_uint_eq(s2->onlist, LIST_PARTIAL);
	for (int i = 8; i < 10; i++)
		kfree(b[i]); /* the last of these empties s2: it is pushed again */
	ck_assert_uint_eq(s2->queued, Q_STACKED);
	/* the next refill of the class sweeps it at once and frees it */
	t = mcentral_refill(central(), t, false, cpu);
	ck_assert_ptr_eq(t, s1);
	ck_assert_uint_eq(s2->state, SPAN_DEAD);
	expect_lists(0, 0, 1);
	for (int i = 8; i < 64; i++)
		kfree(a[i]);
	kmalloc_flush_cpu(); /* this thread's mcache does not hold t: */
	mcentral_uncacheSpan(central(), t);
	expect_lists(0, 0, 0);
}
END_TEST

START_TEST(inflight_remote_free_keeps_span)
{
	setup();
	struct mspan *s = mcentral_cacheSpan(central(), cpu);
	void *o = take(s);
	mcentral_uncacheSpan(central(), s);
	expect_lists(1, 0, 1);
	__atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST); /* a freer mid-way */
	kfree(o);
	mcentral_reclaim(central());
	/* empty, but not given back while someone may still look at it */
	ck_assert_uint_eq(s->state, SPAN_INUSE);
	ck_assert_uint_eq(s->allocCount, 0);
	expect_lists(1, 0, 1);
	__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	ck_assert_ptr_eq(mcentral_cacheSpan(central(), cpu), s);
	mcentral_uncacheSpan(central(), s);
	expect_lists(0, 0, 0);
}
END_TEST

static void *other;

static void *remote_freer(void *arg)
{
	(void)arg;
	kfree(other);
	return NULL;
}

START_TEST(cached_span_is_left_to_its_owner)
{
	setup();
	other = kmalloc(128, 0);
	struct mspan *s = spanOf((uintptr_t)other);
	pthread_t t;
	pthread_create(&t, NULL, remote_freer, NULL);
	pthread_join(t, NULL);
	ck_assert_uint_ne(s->remoteFree[0], 0);
	mcentral_reclaim_all(); /* pops it, but it is cached: not swept */
	ck_assert_uint_ne(s->remoteFree[0], 0);
	ck_assert_uint_eq(s->cachedBy, cpu_slot(cpu));
	expect_lists(0, 0, 1);
	kmalloc_flush_cpu(); /* the owner's uncache merges the remote free */
	expect_lists(0, 0, 0);
}
END_TEST

START_TEST(central_array_is_cache_line_padded)
{
	ck_assert_uint_eq(sizeof(struct mcentral_padded) % 64, 0);
	ck_assert_uint_eq((uintptr_t)&mheap_.central[1] % 64, 0);
	ck_assert_uint_eq((uintptr_t)&mheap_.central[2] - (uintptr_t)&mheap_.central[1],
	                  sizeof(struct mcentral_padded));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mcentral");
	TCase *tc = tcase_create("mcentral");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, grow_partial_full);
	tcase_add_test(tc, remote_frees_refile_and_return);
	tcase_add_test(tc, local_frees_then_uncache_returns_span);
	tcase_add_test(tc, many_remote_frees_one_sweep);
	tcase_add_test(tc, remote_frees_that_empty_a_parked_span_return_it);
	tcase_add_test(tc, inflight_remote_free_keeps_span);
	tcase_add_test(tc, cached_span_is_left_to_its_owner);
	tcase_add_test(tc, central_array_is_cache_line_padded);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
