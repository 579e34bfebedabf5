/*
 * test_mheap.c: the heap end to end through the internals: spans come
 * from and go back to the mheap, its counters match a walk of the page
 * bitmaps and every span's slots out are its live objects plus its cached
 * ones (mheap_valid); large objects coalesce back once no cache holds
 * them; freed large spans wait in a per-CPU cache that serves the next
 * allocation of about their size without the page allocator, is bounded
 * in spans and bytes, reports a second free as "double free" and empties
 * on kmalloc_flush_cpu; a large span grows in place when the pages after
 * it are free (mheap_extend_span, krealloc); kmemalign alignment comes
 * from the page allocator; out-of-memory from the port first empties the
 * caches, then leaves the heap consistent and serving again; frees on
 * other threads return spans once the caches drain, also while they race
 * with the owner's allocations and sweeps; kmalloc_trim gives back the
 * metadata of freed spans and its blocks serve again (or fail cleanly).
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/child_util.h"
#include "host.h"
#include "internal.h"
#include "remote_free.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

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
	/* the freed objects sit in caches, each counted once against its span */
	ck_assert_uint_gt(census().objs_cached, 0);
	ck_assert(mheap_valid());
	kmalloc_flush_cpu();
	c = census();
	ck_assert_uint_eq(c.objs_cached, 0);
	ck_assert_uint_eq(c.spans_small, 0);
	ck_assert_uint_eq(c.spans_partial + c.spans_full + c.spans_cached, 0);
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
	/* A malloc/free loop on one CPU pops what it just pushed on its
	 * magazine: one object, one span, nothing goes back to the span. */
	void *first = kmalloc(64, 0);
	ck_assert_ptr_nonnull(first);
	kfree(first);
	for (int i = 1; i < 100000; i++) {
		void *p = kmalloc(64, 0);
		ck_assert_ptr_eq(p, first);
		kfree(p);
	}
	struct mm_census c = census();
	ck_assert_uint_eq(c.spans_small, 1);
	ck_assert_uint_eq(c.spans_cached, 1);
	ck_assert_uint_eq(c.objs_cached, 1);
	ck_assert_uint_eq(mheap_.central[spanclass_make(6, 0)].c.returned, 0);
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
	/* both wait in this CPU's large cache: their pages are not free yet,
	 * so 38 pages do not fit where they were */
	void *e = kmalloc(38 * 8192, 0);
	ck_assert_ptr_eq(e, (char *)c + 37 * 8192);
	kfree(e);
	kmalloc_flush_cpu();
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
	ck_assert_uint_eq(st.large_allocs, 5);
	ck_assert_uint_eq(st.large_frees, 5);
	ck_assert_uint_eq(st.large_live, 0);
	ck_assert_uint_eq(st.large_bytes, 0);
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

START_TEST(remote_frees_return_spans)
{
	for (int i = 0; i < PER_THREAD; i++)
		shared[i] = kmalloc((size_t)(i % 512) + 1, 0);
	remote_kfree(shared, PER_THREAD, 0);
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
 * three other threads take them and free them into their own magazines,
 * whose spills go through the transfer cache (where the owner picks some
 * up again) and back to the spans, the owner's cached one included, while
 * the owner keeps allocating: its sweeps race with their free_bits ORs. A
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
			kfree(old); /* into the owner's own magazine */
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

/* ---- the large cache (mlarge.c) ---- */

static struct mcache *mine(void)
{
	return mm_mcaches[cpu_slot(sys_cpu_id())];
}

static struct kmalloc_stats stats(void)
{
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	ck_assert_uint_eq(st.heap_inuse + st.heap_free + st.heap_released, st.heap_sys);
	return st;
}

/* A freed 100 KiB object waits in this CPU's large cache, its pages still
 * committed and still its span's; the next allocation of that size takes
 * the span back without the page allocator and without new pages. */
START_TEST(large_cache_serves_next_allocation)
{
	unsigned char *p = kmalloc(100 * KiB, 0);
	ck_assert_ptr_nonnull(p);
	struct mspan *s = spanOf((uintptr_t)p);
	ck_assert_uint_eq(s->npages, 13);
	memset(p, 0xa5, 100 * KiB);
	struct kmalloc_stats before = stats();
	uint64_t inuse_pages = mheap_.pages_inuse, sys = mheap_.pages_sys;
	kfree(p);
	ck_assert_uint_eq(span_state(s), SPAN_CACHED);
	ck_assert_uint_eq(mine()->nlarge, 1);
	ck_assert_ptr_eq(mine()->lbin[13], s);
	ck_assert_uint_eq(mine()->large_cached_bytes, 13 * 8192);
	/* counted as free (committed, no object) but still the span's pages */
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.heap_inuse, before.heap_inuse - 13 * 8192);
	ck_assert_uint_eq(st.heap_free, before.heap_free + 13 * 8192);
	ck_assert_uint_eq(st.committed, before.committed);
	ck_assert_uint_eq(st.large_live, 0);
	ck_assert_uint_eq(mheap_.pages_inuse, inuse_pages);
	ck_assert(mheap_valid());

	unsigned char *q = kmalloc(100 * KiB, 0);
	ck_assert_ptr_eq(q, p);
	ck_assert_ptr_eq(spanOf((uintptr_t)q), s);
	ck_assert_uint_eq(span_state(s), SPAN_INUSE);
	ck_assert_uint_eq(mine()->nlarge, 0);
	ck_assert_uint_eq(mheap_.pages_inuse, inuse_pages);
	ck_assert_uint_eq(mheap_.pages_sys, sys);
	st = stats();
	ck_assert_uint_eq(st.committed, before.committed);
	ck_assert_uint_eq(st.heap_inuse, before.heap_inuse);
	ck_assert_uint_eq(st.large_allocs, 2);
	ck_assert_uint_eq(st.large_frees, 1);
	ck_assert_uint_eq(st.large_bytes, 13 * 8192);
	/* reused memory holds old data; kzalloc clears all of it */
	ck_assert_uint_eq(q[100], 0xa5);
	kfree(q);
	unsigned char *z = kzalloc(100 * KiB, 0);
	ck_assert_ptr_eq(z, p);
	for (size_t i = 0; i < 13 * 8192; i += 512)
		ck_assert_uint_eq(z[i], 0);
	kfree(z);
	ck_assert(mheap_valid());
}
END_TEST

/* A cached span of n pages serves requests of n*4/5 .. n pages (the span
 * may be up to a quarter larger than asked), nothing smaller or bigger. */
START_TEST(large_cache_takes_only_about_the_size)
{
	void *p = kmalloc(13 * 8192, 0);
	kfree(p);
	void *small = kmalloc(10 * 8192, 0); /* 10 + 10/4 < 13 */
	ck_assert_ptr_ne(small, p);
	void *big = kmalloc(14 * 8192, 0);
	ck_assert_ptr_ne(big, p);
	ck_assert_uint_eq(mine()->nlarge, 1);
	void *fit = kmalloc(11 * 8192, 0); /* 11 + 11/4 >= 13 */
	ck_assert_ptr_eq(fit, p);
	ck_assert_uint_eq(ksize(fit), 13 * 8192); /* the whole span */
	ck_assert_uint_eq(mine()->nlarge, 0);
	/* aligned requests never come from the cache */
	kfree(fit);
	void *al = kmemalign(64 * KiB, 13 * 8192, 0);
	ck_assert_ptr_ne(al, p);
	ck_assert_uint_eq(mine()->nlarge, 1);
	kfree(al);
	kfree(small);
	kfree(big);
	ck_assert(mheap_valid());
}
END_TEST

/* At most LARGE_CACHE_N spans and LARGE_CACHE_BYTES: a free beyond that
 * goes back to the heap and the cache keeps what it has; a span above
 * LARGE_CACHE_MAXPAGES is never cached. */
START_TEST(large_cache_is_bounded)
{
	enum { N = LARGE_CACHE_N + 1 };
	void *p[N];
	struct mspan *s[N];
	/* 9 pages (the fewest of a large object): LARGE_CACHE_N of them
	 * stay under the byte bound (mcaches.h) */
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(9 * 8192, 0);
		s[i] = spanOf((uintptr_t)p[i]);
	}
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	ck_assert_uint_eq(mine()->nlarge, LARGE_CACHE_N);
	for (int i = 0; i < N - 1; i++)
		ck_assert_uint_eq(span_state(s[i]), SPAN_CACHED);
	ck_assert_uint_eq(span_state(s[N - 1]), SPAN_DEAD); /* no room */
	/* the bin is LIFO: the last one cached is the first taken */
	ck_assert_ptr_eq(mine()->lbin[9], s[N - 2]);
	kmalloc_flush_cpu();
	ck_assert_uint_eq(mine()->nlarge, 0);

	/* bytes: 8 spans of 32 pages are 2 MiB; the ninth goes to the heap */
	enum { K = LARGE_CACHE_BYTES / (LARGE_CACHE_MAXPAGES * 8192) + 1 };
	ck_assert_int_eq(K, 9);
	void *q[K];
	struct mspan *t[K];
	for (int i = 0; i < K; i++) {
		q[i] = kmalloc(LARGE_CACHE_MAXPAGES * 8192, 0);
		t[i] = spanOf((uintptr_t)q[i]);
	}
	for (int i = 0; i < K; i++)
		kfree(q[i]);
	ck_assert_uint_eq(mine()->nlarge, K - 1);
	ck_assert_uint_eq(mine()->large_cached_bytes, LARGE_CACHE_BYTES);
	ck_assert_uint_eq(span_state(t[0]), SPAN_CACHED);
	ck_assert_uint_eq(span_state(t[K - 1]), SPAN_DEAD);
	kmalloc_flush_cpu();

	void *r = kmalloc((LARGE_CACHE_MAXPAGES + 1) * 8192, 0);
	struct mspan *u = spanOf((uintptr_t)r);
	kfree(r);
	ck_assert_uint_eq(span_state(u), SPAN_DEAD);
	ck_assert_uint_eq(mine()->nlarge, 0);
	ck_assert_uint_eq(census().pages_inuse, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* A free that does not fit goes back to the heap itself; the cache stays
 * exactly as it was, and a request takes the smallest cached span that
 * fits (n .. n + n/4 pages). */
START_TEST(refused_large_free_keeps_cache)
{
	void *x = kmalloc(9 * 8192, 0), *y[8];
	for (int i = 0; i < 8; i++)
		y[i] = kmalloc(30 * 8192, 0);
	void *z = kmalloc(32 * 8192, 0);
	struct mspan *xs = spanOf((uintptr_t)x), *zs = spanOf((uintptr_t)z);
	kfree(x);
	for (int i = 0; i < 8; i++)
		kfree(y[i]);
	ck_assert_uint_eq(mine()->nlarge, 9);
	ck_assert_uint_eq(mine()->large_cached_bytes, (9 + 8 * 30) * 8192);
	/* 249 + 32 pages > 256: z goes to the heap, nothing else moves */
	kfree(z);
	ck_assert_uint_eq(span_state(zs), SPAN_DEAD);
	ck_assert_uint_eq(mine()->nlarge, 9);
	ck_assert_uint_eq(mine()->large_cached_bytes, (9 + 8 * 30) * 8192);
	ck_assert_ptr_eq(mine()->lbin[9], xs);
	ck_assert_ptr_eq(mine()->lbin[30], spanOf((uintptr_t)y[7]));
	/* 23 pages: 30 is more than 23 + 23/4, so not from the cache */
	void *w = kmalloc(23 * 8192, 0);
	ck_assert_uint_eq(mine()->nlarge, 9);
	/* 25 pages: up to 31 fit, the 30-page span (the newest of its bin) */
	void *v = kmalloc(24 * 8192 + 1, 0);
	ck_assert_ptr_eq(v, y[7]);
	ck_assert_uint_eq(mine()->nlarge, 8);
	kfree(w);
	kfree(v);
	ck_assert(mheap_valid());
}
END_TEST

static void do_kfree(void *p)
{
	kfree(p);
}

static void expect_fault(void (*fn)(void *), void *arg, const char *fault, const void *p)
{
	struct child_result r;
	run_in_child(fn, arg, &r);
	const char *m = misuse_mismatch(&r, fault, p);
	ck_assert_msg(m == NULL, "%s", m);
}

START_TEST(double_free_of_cached_large_object)
{
	void *p = kmalloc(100 * KiB, 0);
	kfree(p);
	ck_assert_uint_eq(span_state(spanOf((uintptr_t)p)), SPAN_CACHED);
	expect_fault(do_kfree, p, "double free", p);
	expect_fault(do_kfree, (char *)p + 8192, "invalid free", (char *)p + 8192);
	/* the same once the span went back to the heap */
	kmalloc_flush_cpu();
	ck_assert_uint_eq(span_state(spanOf((uintptr_t)p)), SPAN_DEAD);
	expect_fault(do_kfree, p, "double free", p);
	ck_assert(mheap_valid());
}
END_TEST

#if defined(MM_DEBUG) && MM_DEBUG >= 2
/* Two threads free one large object at once: exactly one of them wins
 * the span (the compare-and-swap INUSE -> FREEING), the other stops
 * with "double free", and the span is cached or freed once. The hook
 * (debug build only) runs the second kfree, on another thread, while the
 * first has checked the state and not yet claimed the span: a plain
 * store instead of the compare-and-swap would let both go on. */
static void *free_on_thread(void *p)
{
	kfree(p);
	return NULL;
}

static void free_in_the_window(enum mm_hook_at at, const void *p)
{
	pthread_t t;
	if (at != MM_HOOK_KFREE_LARGE)
		return;
	mm_store_release(&mm_test_hook, NULL); /* the other kfree runs no hook */
	if (pthread_create(&t, NULL, free_on_thread, (void *)p) == 0)
		pthread_join(t, NULL);
}

static void racing_large_frees(void *p)
{
	mm_store_release(&mm_test_hook, free_in_the_window);
	kfree(p);
}

START_TEST(large_free_racing_another)
{
	void *p = kmalloc(100 * KiB, 0);
	expect_fault(racing_large_frees, p, "double free", p);
	kfree(p); /* here, without the race: freed once */
	ck_assert(mheap_valid());
}
END_TEST
#define DEBUG_BUILD_TESTS , CHECK_TEST(large_free_racing_another)
#else
#define DEBUG_BUILD_TESTS
#endif

/* kfree's fast path checks a pointer against its page's descriptor
 * alone: every page of a small span names the span's class, the page's
 * place in it and its record from publication until the span goes back
 * to the heap, and a descriptor that says otherwise fails the validator. */
START_TEST(page_descriptors_follow_span_lifetime)
{
	void *p = kmalloc(28 * KiB, 0); /* a class whose spans are several pages */
	struct mspan *s = spanOf((uintptr_t)p);
	ck_assert_uint_gt(s->npages, 1);
	size_t pg = (s->base - mheap_.arena_start) >> PAGE_SHIFT;
	for (size_t i = 0; i < s->npages; i++) {
		uint64_t d = mheap_.pagedesc[pg + i];
		ck_assert_uint_eq(PD_CLASS(d), s->spanclass);
		ck_assert_uint_eq(d & PD_PAGEOFF_MASK, i * PAGE_SIZE);
		ck_assert_uint_eq(mheap_.livebase + PD_RECOFF(d), (uintptr_t)mspan_livebytes(s));
	}
	ck_assert(mheap_valid());
	uint64_t d = mheap_.pagedesc[pg];
	uint64_t wrong[] = { d ^ 1, d ^ PAGE_SIZE, d ^ ((uint64_t)1 << 8), d + ((uint64_t)1 << 21),
		             0 };
	for (size_t k = 0; k < sizeof wrong / sizeof wrong[0]; k++) {
		mheap_.pagedesc[pg] = wrong[k];
		ck_assert(!mheap_valid());
	}
	mheap_.pagedesc[pg] = d;
	ck_assert(mheap_valid());

	kfree(p);
	kmalloc_flush_cpu(); /* the span goes back to the heap */
	ck_assert_uint_eq(span_state(s), SPAN_DEAD);
	for (size_t i = 0; i < s->npages; i++)
		ck_assert_uint_eq(mheap_.pagedesc[pg + i], 0);
	ck_assert(mheap_valid());
	expect_fault(do_kfree, p, "invalid free", p);
}
END_TEST

START_TEST(flush_returns_cached_large_spans)
{
	void *p[4];
	for (int i = 0; i < 4; i++)
		p[i] = kmalloc((size_t)(i + 9) * 8192, 0);
	struct kmalloc_stats before = stats();
	for (int i = 0; i < 4; i++)
		kfree(p[i]);
	ck_assert_uint_eq(mine()->nlarge, 4);
	ck_assert_uint_eq(census().spans_large, 4);
	kmalloc_flush_cpu();
	ck_assert_uint_eq(mine()->nlarge, 0);
	ck_assert_uint_eq(mine()->large_cached_bytes, 0);
	struct mm_census c = census();
	ck_assert_uint_eq(c.spans_large, 0);
	ck_assert_uint_eq(c.pages_inuse, 0);
	ck_assert_uint_eq(mheap_.large_pages, 0);
	/* back to the page allocator, still committed */
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(st.committed, before.committed);
	ck_assert_uint_eq(st.heap_free, before.heap_free + (9 + 10 + 11 + 12) * 8192);
	ck_assert(mheap_valid());
}
END_TEST

/* mheap_free_span(s, released): pages the port already took back (what
 * krealloc's move hook leaves behind) come back scavenged, the others
 * committed, and the accounting matches the port either way. */
START_TEST(free_span_released_or_committed)
{
	ck_assert_int_eq(kmalloc_init(), 0);
	struct mspan *s = mheap_alloc_span(4, 0, 1), *t = mheap_alloc_span(3, 0, 1);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(s->npages, 4);
	ck_assert_uint_eq(span_state(s), SPAN_DEAD); /* the caller publishes */
	struct kmalloc_stats before = stats();
	sys_release((void *)s->base, 4 * 8192); /* as the move hook leaves src */
	mheap_free_span(s, true);
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.heap_released, before.heap_released + 4 * 8192);
	ck_assert_uint_eq(st.heap_free, before.heap_free);
	mheap_free_span(t, false);
	st = stats();
	ck_assert_uint_eq(st.heap_free, before.heap_free + 3 * 8192);
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(mheap_.large_pages, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* ---- growth in place (mheap_extend_span, krealloc) ---- */

/* A large object of `bytes`, also where kmalloc would take a class
 * (up to 64 KiB): krealloc makes such objects from 8 KiB up (malloc.c),
 * and the growth tests below are about their spans. */
static void *large(size_t bytes) { return mlarge_alloc(bytes, 0, 0, 0); }

/* One try: grow s to exactly npages where those pages are free. */
static bool extend_to(struct mspan *s, size_t npages)
{
	struct span_extend t = { npages, 0 };
	size_t got = mheap_extend_span(s, &t, 1);
	ck_assert(got == 0 || got == npages);
	return got != 0;
}

START_TEST(extend_span_in_place)
{
	char *a = large(5 * 8192), *b = large(5 * 8192);
	ck_assert_ptr_eq(b, a + 5 * 8192);
	memset(a, 0x3c, 5 * 8192);
	struct mspan *s = spanOf((uintptr_t)a);
	size_t pg = ((uintptr_t)a - mheap_.arena_start) >> PAGE_SHIFT;
	/* b's pages follow: no growth, nothing changes */
	ck_assert(!extend_to(s, 8));
	ck_assert_uint_eq(s->npages, 5);
	/* b freed into the large cache still holds its pages */
	kfree(b);
	ck_assert(!extend_to(s, 8));
	ck_assert_uint_eq(s->npages, 5);
	/* nor can a span shrink or stay, or grow past the grown arena */
	ck_assert(!extend_to(s, 5));
	ck_assert(!extend_to(s, 4));
	ck_assert(!extend_to(s, mheap_.pages.nchunks * CHUNK_PAGES - pg + 1));
	ck_assert(mheap_valid());

	kmalloc_flush_cpu(); /* b's pages free, still committed */
	struct kmalloc_stats before = stats();
	uint64_t inuse = mheap_.pages_inuse;
	ck_assert(extend_to(s, 8));
	ck_assert_uint_eq(s->npages, 8);
	/* the span grew; the object in it is krealloc's to size (mlarge.c) */
	ck_assert_uint_eq(s->elemsize, 5 * 8192);
	ck_assert_uint_eq(s->limit, s->base + 5 * 8192);
	for (size_t i = 0; i < 8; i++)
		ck_assert_ptr_eq(mheap_.spans[pg + i], s);
	ck_assert_uint_eq(mheap_.pages_inuse, inuse + 3);
	ck_assert_uint_eq(ksize(a), 5 * 8192);
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.committed, before.committed); /* reused pages */
	ck_assert(mheap_valid());

	/* into never-used pages: exactly those get committed */
	size_t scav = pa_scav_count(&mheap_.pages, pg + 8, 12);
	ck_assert_uint_eq(scav, 10); /* b's other two pages stayed committed */
	ck_assert(extend_to(s, 20));
	st = stats();
	ck_assert_uint_eq(st.committed, before.committed + scav * 8192);
	ck_assert_uint_eq(s->npages, 20);
	memset(a + 5 * 8192, 0x4d, 15 * 8192); /* the new pages are ours */
	for (size_t i = 0; i < 5 * 8192; i += 1024)
		ck_assert_uint_eq((unsigned char)a[i], 0x3c);
	kfree(a);
	kmalloc_flush_cpu();
	ck_assert_uint_eq(census().pages_inuse, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* The tries go in order, in one lock hold: a try whose `clear` reaches
 * a neighbour is passed over for the next, the first that fits is taken
 * whole, and none fitting changes nothing (krealloc's room policy,
 * mlarge.c, relies on each). */
START_TEST(extend_span_takes_the_first_try_that_fits)
{
	char *a = large(5 * 8192), *b = large(8 * 8192), *d = large(5 * 8192);
	ck_assert_ptr_eq(b, a + 5 * 8192);
	ck_assert_ptr_eq(d, b + 8 * 8192);
	struct mspan *s = spanOf((uintptr_t)a);
	size_t pg = ((uintptr_t)a - mheap_.arena_start) >> PAGE_SHIFT;
	kfree(b);
	kmalloc_flush_cpu(); /* 8 free pages after s, then d */
	struct span_extend none[] = { { 16, 0 }, { 9, 16 }, { 5, 0 } };
	ck_assert_uint_eq(mheap_extend_span(s, none, 3), 0);
	ck_assert_uint_eq(s->npages, 5);
	ck_assert(pa_range_free(&mheap_.pages, pg + 5, 8));
	struct span_extend tries[] = { { 9, 32 }, { 15, 0 }, { 7, 0 }, { 12, 0 } };
	ck_assert_uint_eq(mheap_extend_span(s, tries, 4), 7);
	ck_assert_uint_eq(s->npages, 7);
	ck_assert_ptr_eq(mheap_.spans[pg + 6], s);
	ck_assert(pa_range_free(&mheap_.pages, pg + 7, 6));
	ck_assert(!pa_range_free(&mheap_.pages, pg + 6, 1));
	ck_assert(mheap_valid());
	kfree(a);
	kfree(d);
	kmalloc_flush_cpu();
	ck_assert_uint_eq(census().pages_inuse, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* Growing into released pages commits them; when the port refuses,
 * nothing changes: the span, the pages after it, the accounting; and
 * krealloc then fails with the object untouched. */
START_TEST(extend_span_commit_failure_changes_nothing)
{
	char *a = large(5 * 8192);
	memset(a, 0x77, 5 * 8192);
	struct mspan *s = spanOf((uintptr_t)a);
	size_t pg = ((uintptr_t)a - mheap_.arena_start) >> PAGE_SHIFT;
	ck_assert_uint_eq(pa_scav_count(&mheap_.pages, pg + 5, 10), 10);
	struct kmalloc_stats before = stats();
	host_set_commit_limit(host_committed_bytes() + 4 * 8192);
	ck_assert(!extend_to(s, 15));
	ck_assert_uint_eq(s->npages, 5);
	ck_assert_uint_eq(s->elemsize, 5 * 8192);
	ck_assert(pa_range_free(&mheap_.pages, pg + 5, 10));
	ck_assert_uint_eq(pa_scav_count(&mheap_.pages, pg + 5, 10), 10);
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.heap_inuse, before.heap_inuse);
	ck_assert_uint_eq(st.heap_released, before.heap_released);
	ck_assert(mheap_valid());
	ck_assert_ptr_null(krealloc(a, 15 * 8192, 0));
	ck_assert_uint_eq(ksize(a), 5 * 8192);
	ck_assert_uint_eq((unsigned char)a[5 * 8192 - 1], 0x77);
	st = stats();
	ck_assert_uint_eq(st.large_live, 1);
	ck_assert_uint_eq(st.large_bytes, 5 * 8192);
	ck_assert(mheap_valid());
	/* a refused commit passes on to the next try: room for 12 more
	 * pages takes neither twice (25 pages) nor a quarter more (13), but
	 * the 10 asked for */
	host_set_commit_limit(host_committed_bytes() + 12 * 8192);
	ck_assert_ptr_eq(krealloc(a, 15 * 8192, 0), a);
	ck_assert_uint_eq(ksize(a), 15 * 8192);
	ck_assert_uint_eq(s->npages, 15);
	host_set_commit_limit(0);
	ck_assert_ptr_eq(krealloc(a, 16 * 8192, 0), a);
	ck_assert_uint_eq(s->npages, 2 * 16); /* nothing near: twice as room */
	ck_assert(mheap_valid());
	kfree(a);
	ck_assert(mheap_valid());
}
END_TEST

/* Where commits take memory at once (the kernel: sys_config.commit_lazy
 * 0), growth in place takes a quarter more as room. */
START_TEST(krealloc_grows_large_object_in_place)
{
	sys_config.commit_lazy = 0; /* this test's process only (forked) */
	char *a = large(40 * KiB);
	memset(a, 0x11, 40 * KiB);
	/* the pages after a are free: same pointer, bigger object, in a
	 * span with a quarter more pages as room (25 + 6), which ksize
	 * does not count and the stats do */
	char *g = krealloc(a, 200 * KiB, 0);
	ck_assert_ptr_eq(g, a);
	ck_assert_uint_eq(ksize(g), 25 * 8192);
	struct kmalloc_stats st = stats();
	ck_assert_uint_eq(st.large_live, 1);
	ck_assert_uint_eq(st.large_bytes, 31 * 8192);
	/* growing within the room takes nothing */
	ck_assert_ptr_eq(krealloc(g, 240 * KiB, 0), g);
	ck_assert_uint_eq(ksize(g), 30 * 8192);
	ck_assert_uint_eq(stats().large_bytes, 31 * 8192);
	/* the headroom only where it is free: 5 free pages, then a wall */
	char *spacer = large(40 * KiB);
	char *wall = large(40 * KiB);
	ck_assert_ptr_eq(spacer, a + 31 * 8192);
	ck_assert_ptr_eq(wall, a + 36 * 8192);
	kfree(spacer);
	kmalloc_flush_cpu(); /* its pages back to the page allocator */
	ck_assert_ptr_eq(krealloc(g, 35 * 8192, 0), g);
	ck_assert_uint_eq(ksize(g), 35 * 8192);
	/* with the wall in the way it moves, contents and all */
	char *m = krealloc(g, 300 * KiB, 0);
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_ne(m, g);
	for (size_t i = 0; i < 40 * KiB; i += 256)
		ck_assert_uint_eq((unsigned char)m[i], 0x11);
	st = stats();
	ck_assert_uint_eq(st.large_live, 2);
	/* 300 KiB: 38 pages, in a span of 38 + 38 * 5 / 8 */
	ck_assert_uint_eq(ksize(m), 38 * 8192);
	ck_assert_uint_eq(st.large_bytes, (5 + 38 + 23) * 8192);
	kfree(m);
	kfree(wall);
	kmalloc_flush_cpu();
	ck_assert_uint_eq(census().pages_inuse, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* Where committed pages cost nothing until written (the host), an
 * object growing in place with nothing within four times its size after
 * it gets twice its size as room; with a neighbour that near, a quarter
 * more, so that it leaves the rest of the hole to others. */
START_TEST(krealloc_lazy_room_is_twice_only_far_from_neighbours)
{
	ck_assert_int_eq(sys_config.commit_lazy, 1);
	char *a = large(40 * KiB);
	ck_assert_ptr_eq(krealloc(a, 80 * KiB, 0), a);
	struct mspan *s = spanOf((uintptr_t)a);
	ck_assert_uint_eq(s->npages, 20);
	ck_assert_uint_eq(ksize(a), 10 * 8192);
	char *spacer = kmalloc(10 * 8192, 0), *wall = large(5 * 8192);
	ck_assert_ptr_eq(spacer, a + 20 * 8192);
	ck_assert_ptr_eq(wall, a + 30 * 8192);
	kfree(spacer);
	kmalloc_flush_cpu(); /* 10 free pages after s, then the wall */
	ck_assert_ptr_eq(krealloc(a, 21 * 8192, 0), a);
	ck_assert_uint_eq(s->npages, 21 + 21 / 4);
	ck_assert(mheap_valid());
	kfree(a);
	kfree(wall);
	kmalloc_flush_cpu();
	ck_assert_uint_eq(census().pages_inuse, 0);
}
END_TEST

/* Out of memory: before it gives up, an allocation empties the caches;
 * pages they held can serve it. */
START_TEST(out_of_memory_drains_large_cache)
{
	enum { N = 16 };
	void *p[N];
	for (int i = 0; i < N; i++)
		p[i] = kmalloc(13 * 8192, 0); /* 208 consecutive pages */
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	ck_assert_uint_eq(mine()->nlarge, N);
	size_t committed = host_committed_bytes();
	host_set_commit_limit(committed); /* no new pages */
	/* 128 pages: not from the large cache (wrong size), not from fresh
	 * pages (no commit): from the cached spans' pages once drained */
	void *big = kmalloc(MiB, 0);
	ck_assert_ptr_eq(big, p[0]);
	ck_assert_uint_eq(mine()->nlarge, 0);
	ck_assert_uint_eq(host_committed_bytes(), committed);
	ck_assert(mheap_valid());
	host_set_commit_limit(0);
	kfree(big);
}
END_TEST

START_TEST(out_of_memory_drains_magazines)
{
	void *o[64];
	for (int i = 0; i < 64; i++)
		o[i] = kmalloc(128, 0); /* one page, one span */
	for (int i = 0; i < 64; i++)
		kfree(o[i]); /* all in this CPU's magazine: the span stays */
	ck_assert_uint_eq(census().spans_small, 1);
	size_t committed = host_committed_bytes();
	host_set_commit_limit(committed);
	/* a new class needs a new span: no page but the one the magazine's
	 * objects keep, until the drain gives it back */
	void *q = kmalloc(256, 0);
	ck_assert_ptr_eq(q, o[0]);
	ck_assert_uint_eq(host_committed_bytes(), committed);
	struct mm_census c = census();
	ck_assert_uint_eq(c.objs_cached, 0);
	ck_assert_uint_eq(c.spans_small, 1);
	ck_assert_uint_eq(spanOf((uintptr_t)q)->spanclass, spanclass_make(18, 0));
	ck_assert(mheap_valid());
	/* nothing left to drain: NULL, and the heap serves again later */
	void *r = kmalloc(MiB, 0);
	ck_assert_ptr_null(r);
	ck_assert(mheap_valid());
	host_set_commit_limit(0);
	r = kmalloc(MiB, 0);
	ck_assert_ptr_nonnull(r);
	kfree(r);
	kfree(q);
}
END_TEST

/* Metadata committed outside the fixalloc area (span map, page
 * descriptors, page bitmaps, mcaches and transfer-cache entries): it
 * grows with the arena and the CPUs; trim gives back only the map words
 * of chunks without spans (test_mmeta.c), counted out here. */
static uint64_t meta_outside_fix(void)
{
	uint64_t n = mheap_.m_spans.committed + mheap_.m_pagedesc.committed +
	             mheap_.m_chunks.committed + mheap_.m_chunkpg.committed +
	             mheap_.m_fixblk.committed + mheap_.m_caches.committed;
	for (unsigned k = 0; k < PA_MAX_LEVELS; k++)
		n += mheap_.m_sum[k].committed;
	lock_heap();
	long maps = mheap_maps_check();
	unlock_heap();
	ck_assert_int_ge(maps, 0);
	return n - (uint64_t)maps;
}

/* Records the trim must keep: the live ones, and the current bump block
 * of each of the 6 fixallocs (span records, 5 bitmap sizes). */
#define TRIM_SLACK (6 * FIX_BLOCK)

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

/* clang-format off */
CHECK_MAIN("mheap", 60,
	   CHECK_TEST(small_alloc_free_returns_every_span),
	   CHECK_TEST(same_cpu_loop_reuses_one_span),
	   CHECK_TEST(large_objects_coalesce),
	   CHECK_TEST(kmemalign_large_alignments),
	   CHECK_TEST(out_of_memory_then_recovers),
	   CHECK_TEST(too_large_is_null),
	   CHECK_TEST(remote_frees_return_spans),
	   CHECK_TEST(remote_frees_race_owner_sweeps),
	   CHECK_TEST(large_cache_serves_next_allocation),
	   CHECK_TEST(large_cache_takes_only_about_the_size),
	   CHECK_TEST(large_cache_is_bounded),
	   CHECK_TEST(refused_large_free_keeps_cache),
	   CHECK_TEST(double_free_of_cached_large_object),
	   CHECK_TEST(page_descriptors_follow_span_lifetime),
	   CHECK_TEST(flush_returns_cached_large_spans),
	   CHECK_TEST(free_span_released_or_committed),
	   CHECK_TEST(extend_span_in_place),
	   CHECK_TEST(extend_span_takes_the_first_try_that_fits),
	   CHECK_TEST(extend_span_commit_failure_changes_nothing),
	   CHECK_TEST(krealloc_grows_large_object_in_place),
	   CHECK_TEST(krealloc_lazy_room_is_twice_only_far_from_neighbours),
	   CHECK_TEST(out_of_memory_drains_large_cache),
	   CHECK_TEST(out_of_memory_drains_magazines),
	   CHECK_TEST(trim_releases_metadata_of_freed_spans),
	   CHECK_TEST(trim_recommit_failure_is_null) DEBUG_BUILD_TESTS)
/* clang-format on */
