/*
 * test_mheap.c: the heap end to end through the internals: spans come
 * from and go back to the mheap, its counters match a walk of the page
 * bitmaps (mheap_valid), large objects coalesce back, kmemalign alignment
 * comes from the page allocator, out-of-memory from the port leaves the
 * heap consistent and serving again, and cross-thread (remote) frees
 * return spans once the owner flushes, also while they race with the
 * owner's allocations and sweeps; kmalloc_trim gives back the metadata
 * of freed spans and its blocks serve again (or fail cleanly) afterwards.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "internal.h"

static struct mm_census census(void)
{
	struct mm_census c;
	mm_census(&c);
	return c;
}

START_TEST(small_alloc_free_returns_every_span)
{
	enum { N = 20000 };
	static void *p[N];
	for (int i = 0; i < N; i++) {
		size_t sz = (size_t)(i * 37) % 4000;
		p[i] = kmalloc(sz, 0);
		ck_assert_ptr_nonnull(p[i]);
		memset(p[i], 0xa5, sz);
		ck_assert_uint_ge(ksize(p[i]), sz);
	}
	ck_assert(mheap_valid());
	struct mm_census c = census();
	ck_assert_uint_gt(c.spans_small, 0);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	ck_assert(mheap_valid());
	kmalloc_flush_cpu();
	c = census();
	ck_assert_uint_eq(c.spans_small, 0);
	ck_assert_uint_eq(c.spans_partial + c.spans_full + c.spans_unswept + c.spans_cached, 0);
	ck_assert_uint_eq(c.pages_inuse, 0);
	ck_assert(mheap_valid());
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.heap_inuse, 0);
	for (int i = 1; i < KMALLOC_NUM_CLASSES; i++) {
		ck_assert_uint_eq(st.cls[i].live, 0);
		ck_assert_uint_eq(st.cls[i].spans, 0);
	}
}
END_TEST

START_TEST(same_cpu_loop_reuses_one_span)
{
	/* A malloc/free loop on one CPU sweeps its own span and never needs
	 * a second one. */
	for (int i = 0; i < 100000; i++) {
		void *p = kmalloc(64, 0);
		ck_assert_ptr_nonnull(p);
		kfree(p);
	}
	struct mm_census c = census();
	ck_assert_uint_eq(c.spans_small, 1);
	ck_assert_uint_eq(c.spans_cached, 1);
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.cls[6].allocs, 100000);
	ck_assert_uint_eq(st.cls[6].frees, 100000);
}
END_TEST

START_TEST(large_objects_coalesce)
{
	void *a = kmalloc(100000, 0), *b = kmalloc(200000, 0), *c = kmalloc(300000, 0);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(ksize(a), 13 * 8192);
	/* first fit by address: consecutive */
	ck_assert_ptr_eq((char *)a + 13 * 8192, b);
	ck_assert_ptr_eq((char *)b + 25 * 8192, c);
	kfree(a);
	kfree(b);
	ck_assert(mheap_valid());
	/* the freed runs coalesced: 38 pages fit where a and b were */
	void *d = kmalloc(38 * 8192, 0);
	ck_assert_ptr_eq(d, a);
	kfree(d);
	kfree(c);
	struct mm_census cs = census();
	ck_assert_uint_eq(cs.spans_large, 0);
	ck_assert_uint_eq(cs.pages_inuse, 0);
	ck_assert(mheap_valid());
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.large_allocs, 4);
	ck_assert_uint_eq(st.large_frees, 4);
	ck_assert_uint_eq(st.large_live, 0);
}
END_TEST

START_TEST(kmemalign_large_alignments)
{
	for (size_t align = 16; align <= ((size_t)4 << 20); align <<= 1) {
		void *p = kmemalign(align, 100, 0);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq((uintptr_t)p % align, 0);
		void *q = kmemalign(align, align + 1, 0);
		ck_assert_ptr_nonnull(q);
		ck_assert_uint_eq((uintptr_t)q % align, 0);
		ck_assert_uint_ge(ksize(q), align + 1);
		kfree(p);
		kfree(q);
	}
	kmalloc_flush_cpu();
	ck_assert_uint_eq(census().pages_inuse, 0);
	ck_assert(mheap_valid());
}
END_TEST

START_TEST(out_of_memory_then_recovers)
{
	void *first = kmalloc(64, 0); /* heap set up, a little committed */
	ck_assert_ptr_nonnull(first);
	size_t base = host_committed_bytes();
	host_set_commit_limit(base + ((size_t)8 << 20));
	void *p[64];
	int n = 0;
	while (n < 64 && (p[n] = kmalloc(1 << 20, 0)) != NULL)
		n++;
	ck_assert_int_gt(n, 0);
	ck_assert_int_lt(n, 64);
	ck_assert(mheap_valid());
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	ck_assert_uint_eq(st.large_live, (uint64_t)n);
	for (int i = 0; i < n; i++)
		kfree(p[i]);
	void *again = kmalloc(1 << 20, 0);
	ck_assert_ptr_nonnull(again);
	kfree(again);
	host_set_commit_limit(0);
	kfree(first);
	ck_assert(mheap_valid());
}
END_TEST

START_TEST(too_large_is_null)
{
	ck_assert_ptr_null(kmalloc(SIZE_MAX, 0));
	ck_assert_ptr_null(kmalloc(sys_config.arena_size + 1, 0));
	ck_assert_ptr_null(kmemalign((size_t)1 << 62, 64, 0));
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.large_allocs, 0);
	ck_assert_uint_eq(st.heap_inuse, 0);
}
END_TEST

#define PER_THREAD 5000
static void *shared[PER_THREAD];

static void *freer(void *arg)
{
	(void)arg;
	for (int i = 0; i < PER_THREAD; i++)
		kfree(shared[i]);
	return NULL;
}

START_TEST(remote_frees_return_spans)
{
	for (int i = 0; i < PER_THREAD; i++)
		shared[i] = kmalloc((size_t)(i % 512) + 1, 0);
	pthread_t t;
	pthread_create(&t, NULL, freer, NULL);
	pthread_join(t, NULL);
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	for (int i = 1; i < KMALLOC_NUM_CLASSES; i++)
		ck_assert_uint_eq(st.cls[i].live, 0);
	kmalloc_flush_cpu();
	struct mm_census c = census();
	ck_assert_uint_eq(c.spans_small, 0);
	ck_assert_uint_eq(c.pages_inuse, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* The owner allocates 64-byte objects and publishes them in `ring`;
 * three other threads take them and free them (remote frees) while the
 * owner keeps allocating, so its sweeps race with their fetch-ors. A
 * false "double free" would abort; a lost free would leave objects live. */
#define RING 256
#define ROUNDS 200000
static void *ring[RING];
static int owner_done;

static void *race_owner(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < ROUNDS; i++) {
		uint64_t *p = kmalloc(64, 0);
		ck_assert_ptr_nonnull(p);
		p[0] = (uintptr_t)p;
		void *old = __atomic_exchange_n(&ring[i % RING], p, __ATOMIC_ACQ_REL);
		if (old != NULL)
			kfree(old); /* a local free, unless its span was uncached */
	}
	__atomic_store_n(&owner_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *race_freer(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg;
	while (!__atomic_load_n(&owner_done, __ATOMIC_ACQUIRE)) {
		i = i * 1103515245u + 12345u;
		uint64_t *p = __atomic_exchange_n(&ring[(i >> 8) % RING], NULL, __ATOMIC_ACQ_REL);
		if (p != NULL) {
			ck_assert_uint_eq(p[0], (uintptr_t)p);
			kfree(p);
		}
	}
	return NULL;
}

START_TEST(remote_frees_race_owner_sweeps)
{
	pthread_t o, f[3];
	pthread_create(&o, NULL, race_owner, NULL);
	for (uintptr_t k = 0; k < 3; k++)
		pthread_create(&f[k], NULL, race_freer, (void *)(k + 1));
	pthread_join(o, NULL);
	for (int k = 0; k < 3; k++)
		pthread_join(f[k], NULL);
	for (int i = 0; i < RING; i++)
		kfree(ring[i]);
	kmalloc_flush_cpu();
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.cls[6].allocs, ROUNDS);
	ck_assert_uint_eq(st.cls[6].frees, ROUNDS);
	ck_assert_uint_eq(st.cls[6].spans, 0);
	struct mm_census c = census();
	ck_assert_uint_eq(c.spans_small, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* Metadata committed outside the fixalloc area (span map, page bitmaps):
 * it grows with the arena and trim does not give it back. */
static uint64_t meta_outside_fix(void)
{
	uint64_t n = mheap_.m_spans.committed + mheap_.m_chunks.committed +
	             mheap_.m_fixblk.committed;
	for (unsigned k = 0; k < PA_MAX_LEVELS; k++)
		n += mheap_.m_sum[k].committed;
	return n;
}

/* Records the trim must keep: the live ones, and the current bump block
 * of each of the 7 fixallocs. */
#define TRIM_SLACK (7 * FIX_BLOCK)

START_TEST(trim_releases_metadata_of_freed_spans)
{
	enum { N = 40000 };
	static void *p[N];
	void *first = kmalloc(64, 0);
	ck_assert_ptr_nonnull(first);
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	uint64_t fix_floor = st.meta_sys - meta_outside_fix();

	/* 1 KiB objects: 8 per span, so ~5000 spans, each an mspan record and
	 * a bitmap record; plus large objects, which take an mspan record
	 * each. */
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(i % 8 == 7 ? 40000 : 1024, 0);
		ck_assert_ptr_nonnull(p[i]);
	}
	kmalloc_stats(&st);
	uint64_t fix_full = st.meta_sys - meta_outside_fix();
	ck_assert_uint_gt(fix_full, fix_floor + ((uint64_t)512 << 10));
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_trim();
	ck_assert(mheap_valid());
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	uint64_t fix_trimmed = st.meta_sys - meta_outside_fix();
	ck_assert_uint_le(fix_trimmed, fix_floor + TRIM_SLACK);

	/* The released blocks serve again: the same load works, its records
	 * come from committed memory (the kfrees below read them), and the
	 * accounting stays exact. */
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(i % 8 == 7 ? 40000 : 1024, 0);
		ck_assert_ptr_nonnull(p[i]);
		memset(p[i], 0x5a, 64);
	}
	ck_assert(mheap_valid());
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	ck_assert_uint_ge(st.meta_sys - meta_outside_fix(), fix_full - TRIM_SLACK);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_trim();
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	ck_assert_uint_le(st.meta_sys - meta_outside_fix(), fix_floor + TRIM_SLACK);
	kfree(first);
	ck_assert(mheap_valid());
}
END_TEST

/* Re-committing a released metadata block can fail: the allocation that
 * needed a record then returns NULL, and the heap serves again once
 * memory is back. */
START_TEST(trim_recommit_failure_is_null)
{
	enum { N = 8000 };
	static void *p[N];
	void *first = kmalloc(64, 0);
	ck_assert_ptr_nonnull(first);
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(40000, 0); /* one mspan record each */
		ck_assert_ptr_nonnull(p[i]);
	}
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_trim();
	ck_assert_uint_ne(mheap_.fix_released, 0);
	/* no room for even one more block of records */
	host_set_commit_limit(host_committed_bytes() + FIX_BLOCK - 1);
	int n = 0;
	void *q;
	while ((q = kmalloc(40000, 0)) != NULL) {
		ck_assert_int_lt(n, N);
		p[n++] = q;
	}
	ck_assert(mheap_valid());
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	host_set_commit_limit(0);
	q = kmalloc(40000, 0);
	ck_assert_ptr_nonnull(q);
	kfree(q);
	for (int i = 0; i < n; i++)
		kfree(p[i]);
	kfree(first);
	ck_assert(mheap_valid());
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mheap");
	TCase *tc = tcase_create("mheap");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, small_alloc_free_returns_every_span);
	tcase_add_test(tc, same_cpu_loop_reuses_one_span);
	tcase_add_test(tc, large_objects_coalesce);
	tcase_add_test(tc, kmemalign_large_alignments);
	tcase_add_test(tc, out_of_memory_then_recovers);
	tcase_add_test(tc, too_large_is_null);
	tcase_add_test(tc, remote_frees_return_spans);
	tcase_add_test(tc, remote_frees_race_owner_sweeps);
	tcase_add_test(tc, trim_releases_metadata_of_freed_spans);
	tcase_add_test(tc, trim_recommit_failure_is_null);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
