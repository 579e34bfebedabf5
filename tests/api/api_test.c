/*
 * api_test.c: what a caller of mm/kmalloc.h relies on, one Check test per
 * promise of the header: sizes and alignment, kmalloc(0), zeroing,
 * kcalloc overflow, krealloc in place and by copy, kfree(NULL), ksize,
 * kmemalign, trim and flush, the stats counters and identities, the dump,
 * sizes that must fail without changing anything, and out of memory
 * through the host port's commit limit.
 *
 * Every test runs in its own process (Check forks), so each one starts
 * from a fresh heap; still, counters are compared as differences from a
 * snapshot taken at the start, so a test does not depend on what the
 * allocator does at init. Misuse that must abort is in api_misuse.c.
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_util.h"
#include "sys.h" /* sys_config.arena_size: the largest heap there can be */

#define HEAP_PAGE 8192u

#define ASSERT_CONSISTENT()                                            \
	do {                                                           \
		struct kmalloc_stats snap_;                            \
		ASSERT_STATS_CONSISTENT(&snap_);                       \
	} while (0)

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

static int is_pow2(size_t n)
{
	return n && !(n & (n - 1));
}

/* The alignment kmalloc.h promises for a request of `size` bytes. */
static size_t promised_align(size_t size)
{
	if (is_pow2(size) && size <= 8192)
		return size;
	return size >= 16 ? 16 : 1;
}

/* ksize of a fresh small object: the smallest class that holds `size` and
 * keeps the promised alignment (a 24-byte class cannot 16-align its
 * objects, so requests of 16 bytes or more skip classes that are not
 * multiples of 16). */
static size_t expected_ksize(size_t size)
{
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++) {
		size_t cs = class_size(c);
		if (cs >= size && (size < 16 || cs % 16 == 0))
			return cs;
	}
	return round_up(size, HEAP_PAGE);
}

static void stats_equal(const struct kmalloc_stats *a,
			const struct kmalloc_stats *b, const char *what)
{
	ck_assert_msg(memcmp(a, b, sizeof *a) == 0,
		      "%s changed the stats (heap_inuse %llu -> %llu, committed %llu -> %llu)",
		      what, (unsigned long long)a->heap_inuse,
		      (unsigned long long)b->heap_inuse,
		      (unsigned long long)a->committed,
		      (unsigned long long)b->committed);
}

/* ---- set-up ------------------------------------------------------- */

/* The host calls kmalloc_init on first use; calling it first (as a kernel
 * does) or again is harmless. */
START_TEST(init_explicit_and_repeated)
{
	void *p;

	ck_assert_int_eq(kmalloc_init(), 0);
	p = kmalloc(100, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(kmalloc_init(), 0);
	ck_assert_uint_ge(ksize(p), 100);
	kfree(p);
	ASSERT_CONSISTENT();
}
END_TEST

/* Out of memory before the heap ever grew: the first allocations fail
 * cleanly and the heap serves once memory is there. */
START_TEST(oom_before_first_use)
{
	struct kmalloc_stats st;
	void *p;

	host_set_commit_limit(4096);
	ck_assert_ptr_null(kmalloc(64, 0));
	ck_assert_ptr_null(kmalloc(100000, 0));
	ck_assert_ptr_null(kzalloc(64, 0));
	host_set_commit_limit(0);
	p = kmalloc(64, 0);
	ck_assert_ptr_nonnull(p);
	kfree(p);
	p = kmalloc(100000, 0);
	ck_assert_ptr_nonnull(p);
	kfree(p);
	ASSERT_HEAP_EMPTY(&st);
}
END_TEST

/* ---- sizes, ksize, alignment ------------------------------------- */

/* The class table is what the stats report: strictly growing sizes up to
 * KMALLOC_MAX_SMALL, class 0 unused. */
START_TEST(class_table)
{
	struct kmalloc_stats st;

	kmalloc_stats(&st);
	ck_assert_uint_eq(st.cls[0].size, 0);
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++) {
		ck_assert_uint_gt(st.cls[c].size, st.cls[c - 1].size);
		ck_assert_uint_eq(st.cls[c].size % 8, 0);
	}
	ck_assert_uint_eq(st.cls[KMALLOC_NUM_CLASSES - 1].size, KMALLOC_MAX_SMALL);
}
END_TEST

/* Every small size 1..4096, all live at once: each object gets exactly
 * the smallest class that holds it, the promised alignment, and its whole
 * ksize() is usable without touching a neighbour. */
START_TEST(small_sizes_all_live)
{
	enum { N = 4096 };
	static void *p[N + 1];

	for (size_t s = 1; s <= N; s++) {
		p[s] = kmalloc(s, 0);
		ck_assert_msg(p[s] != NULL, "kmalloc(%zu) failed", s);
		ck_assert_msg((uintptr_t)p[s] % promised_align(s) == 0,
			      "kmalloc(%zu) = %p not %zu-aligned", s, p[s],
			      promised_align(s));
		ck_assert_uint_eq(ksize(p[s]), expected_ksize(s));
		fill_pattern(p[s], ksize(p[s]), (uint32_t)s);
	}
	for (size_t s = 1; s <= N; s++)
		ck_assert_msg(check_pattern(p[s], ksize(p[s]), (uint32_t)s) == (size_t)-1,
			      "object of %zu bytes at %p overwritten", s, p[s]);
	ASSERT_CONSISTENT();
	for (size_t s = 1; s <= N; s++)
		kfree(p[s]);
	ASSERT_CONSISTENT();
}
END_TEST

/* Class boundaries up to 64 KiB and large sizes beyond: ksize is the class
 * size, or the request rounded up to whole heap pages for large objects. */
START_TEST(class_boundaries_and_large)
{
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++) {
		size_t cs = class_size(c);
		size_t sizes[3] = { cs - 1, cs, cs + 1 };
		for (int i = 0; i < 3; i++) {
			size_t s = sizes[i];
			void *q = kmalloc(s, 0);
			ck_assert_ptr_nonnull(q);
			ck_assert_msg((uintptr_t)q % promised_align(s) == 0,
				      "kmalloc(%zu) = %p not %zu-aligned", s, q,
				      promised_align(s));
			ck_assert_uint_eq(ksize(q), expected_ksize(s));
			memset(q, 0x5a, ksize(q));
			kfree(q);
		}
	}
	for (size_t s = KMALLOC_MAX_SMALL + 1; s < (size_t)4 << 20; s = s * 3 / 2 + 1) {
		void *q = kmalloc(s, 0);
		ck_assert_ptr_nonnull(q);
		ck_assert_uint_eq(ksize(q), round_up(s, HEAP_PAGE));
		ck_assert_uint_eq((uintptr_t)q % HEAP_PAGE, 0);
		fill_pattern(q, s, 7);
		ck_assert_uint_eq(check_pattern(q, s, 7), (size_t)-1);
		kfree(q);
	}
	ASSERT_CONSISTENT();
}
END_TEST

/* Every object of 16 bytes or more is 16-byte aligned, not only the first
 * of its span (a 24-byte stride would put every other one at 8 mod 16). */
START_TEST(sizes_from_16_are_16_aligned)
{
	enum { PER = 64 };
	void *p[PER];

	for (size_t s = 16; s <= 1024; s++) {
		for (int i = 0; i < PER; i++) {
			p[i] = kmalloc(s, 0);
			ck_assert_ptr_nonnull(p[i]);
			if ((uintptr_t)p[i] % 16)
				ck_abort_msg("kmalloc(%zu) = %p (object %d) is not 16-byte aligned",
					     s, p[i], i);
		}
		for (int i = 0; i < PER; i++)
			kfree(p[i]);
	}
}
END_TEST

/* Not only the first object of a span: many objects of each power of two
 * up to 8 KiB are naturally aligned. */
START_TEST(pow2_natural_alignment)
{
	enum { PER = 40 };
	void *p[PER];

	for (size_t s = 1; s <= 8192; s <<= 1) {
		for (int i = 0; i < PER; i++) {
			p[i] = kmalloc(s, 0);
			ck_assert_ptr_nonnull(p[i]);
			ck_assert_msg((uintptr_t)p[i] % s == 0,
				      "object %d of %zu bytes at %p", i, s, p[i]);
		}
		for (int i = 0; i < PER; i++)
			kfree(p[i]);
	}
}
END_TEST

START_TEST(kmalloc_zero)
{
	struct kmalloc_stats a, b;
	void *p;

	/* kmalloc(0) is a real object (kmalloc.h): distinct, sized, freeable */
	p = kmalloc(0, 0);
	void *q = kmalloc(0, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(q);
	ck_assert_ptr_ne(p, q);
	ck_assert_uint_ge(ksize(p), 1);
	kfree(p);
	kfree(q);
	kmalloc_stats(&a);
	for (int i = 0; i < 10000; i++) {
		p = kmalloc(0, 0);
		ck_assert_ptr_nonnull(p);
		kfree(p);
	}
	kmalloc_stats(&b);
	ck_assert_uint_eq(stats_live_objects(&a), stats_live_objects(&b));
	ck_assert_uint_eq(a.heap_inuse, b.heap_inuse);
	/* kzalloc/kcalloc of nothing follow the same rule. */
	kfree(kzalloc(0, 0));
	kfree(kcalloc(0, 16, 0));
	kfree(kcalloc(16, 0, 0));
	ASSERT_CONSISTENT();
}
END_TEST

START_TEST(kfree_null_and_ksize_null)
{
	struct kmalloc_stats a, b;

	kmalloc_stats(&a);
	kfree(NULL);
	ck_assert_uint_eq(ksize(NULL), 0);
	kmalloc_stats(&b);
	stats_equal(&a, &b, "kfree(NULL)");
}
END_TEST

/* ---- zeroing ------------------------------------------------------ */

/* Dirty objects of `size`, free them, then ask for zeroed ones of the same
 * size through `how` (0 kzalloc, 1 kmalloc(KM_ZERO), 2 kcalloc): the
 * reused memory must come back zeroed. */
static void zero_after_dirty(size_t size, int how)
{
	enum { N = 64 };
	void *p[N];

	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(size, 0);
		ck_assert_ptr_nonnull(p[i]);
		memset(p[i], 0xa5, ksize(p[i]));
	}
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	for (int i = 0; i < N; i++) {
		p[i] = how == 0 ? kzalloc(size, 0)
		     : how == 1 ? kmalloc(size, KM_ZERO)
				: kcalloc(1, size, 0);
		ck_assert_ptr_nonnull(p[i]);
		ck_assert_msg(check_bytes(p[i], size, 0) == SIZE_MAX,
		              "zeroed request %d of %zu bytes (%p) is dirty", how, size, p[i]);
		memset(p[i], 0xa5, size);
	}
	for (int i = 0; i < N; i++)
		kfree(p[i]);
}

START_TEST(zeroed_reuse)
{
	static const size_t sizes[] = { 1, 8, 16, 48, 100, 512, 1024, 3000,
					8192, 20000, 32768, 40000, 300000 };

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		for (int how = 0; how < 3; how++)
			zero_after_dirty(sizes[i], how);
	ASSERT_CONSISTENT();
}
END_TEST

/* Pages that went back to the port and are reused still come back zeroed. */
START_TEST(zeroed_after_trim)
{
	enum { N = 16, SZ = 256 << 10 };
	void *p[N];

	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(SZ, 0);
		ck_assert_ptr_nonnull(p[i]);
		memset(p[i], 0xa5, SZ);
	}
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_trim();
	for (int i = 0; i < N; i++) {
		p[i] = kzalloc(SZ, 0);
		ck_assert_ptr_nonnull(p[i]);
		ck_assert(check_bytes(p[i], SZ, 0) == SIZE_MAX);
	}
	for (int i = 0; i < N; i++)
		kfree(p[i]);
}
END_TEST

/* ---- kcalloc ------------------------------------------------------ */

START_TEST(kcalloc_overflow_is_null)
{
	static const size_t bad[][2] = {
		{ SIZE_MAX / 2 + 1, 2 },
		{ 2, SIZE_MAX / 2 + 1 },
		{ SIZE_MAX, SIZE_MAX },
		{ (size_t)1 << 32, (size_t)1 << 32 },
		{ SIZE_MAX / 16 + 1, 16 },
	};
	struct kmalloc_stats a, b;
	void *p;

	kfree(kmalloc(64, 0)); /* the heap is up before the snapshot */
	kmalloc_stats(&a);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(kcalloc(bad[i][0], bad[i][1], 0) == NULL,
			      "kcalloc(%zu, %zu) did not fail", bad[i][0],
			      bad[i][1]);
	kmalloc_stats(&b);
	stats_equal(&a, &b, "kcalloc overflow");
	p = kcalloc(1000, 24, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_ge(ksize(p), 24000);
	ck_assert(check_bytes(p, 24000, 0) == SIZE_MAX);
	kfree(p);
}
END_TEST

/* ---- krealloc ----------------------------------------------------- */

START_TEST(krealloc_null_is_kmalloc)
{
	struct kmalloc_stats a, b;
	int c = class_of_size(100);
	void *p;

	kfree(kmalloc(100, 0));
	kmalloc_stats(&a);
	p = krealloc(NULL, 100, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_ge(ksize(p), 100);
	kmalloc_stats(&b);
	ck_assert_uint_eq(b.cls[c].allocs, a.cls[c].allocs + 1);
	ck_assert_uint_eq(b.cls[c].live, a.cls[c].live + 1);
	kfree(p);
	p = krealloc(NULL, 0, 0);
	kfree(p);
}
END_TEST

/* A new size that still fits the object's class (or large span) keeps the
 * object where it is; size 0 keeps p. */
START_TEST(krealloc_in_place)
{
	static const size_t sizes[] = { 1, 20, 100, 1000, 5000, 32768, 40000,
					200000 };
	struct kmalloc_stats a, b;

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t s = sizes[i];
		void *p = kmalloc(s, 0), *q;
		size_t usable = ksize(p);

		fill_pattern(p, s, 3);
		kmalloc_stats(&a);
		q = krealloc(p, usable, 0);
		ck_assert_msg(q == p, "krealloc(%p, %zu) moved a %zu-byte object",
			      p, usable, s);
		q = krealloc(p, 0, 0);
		ck_assert_ptr_eq(q, p);
		kmalloc_stats(&b);
		stats_equal(&a, &b, "in-place krealloc");
		ck_assert_uint_eq(check_pattern(p, s, 3), (size_t)-1);
		kfree(p);
	}
}
END_TEST

/* krealloc's result has the alignment kmalloc's contract gives its new
 * size, in place or not: a typed cache's 8-aligned object resized to a
 * multiple of 16 moves to a 16-aligned one, and a 576-byte slot shrunk to
 * 512 bytes moves to a 512-aligned one; the contents come along. */
START_TEST(krealloc_keeps_the_contract_alignment)
{
	enum { N = 8 }; /* all live at once: slots other than a span's first */
	void *o[N];
	struct kmem_cache *c = kmem_cache_create("r520", 520, 8, 0, NULL);
	ck_assert_ptr_nonnull(c);
	unsigned misaligned = 0;
	for (int i = 0; i < N; i++) {
		o[i] = kmem_cache_alloc(c, 0);
		misaligned += (uintptr_t)o[i] % 16 != 0;
		fill_pattern(o[i], 512, 5);
	}
	ck_assert_uint_gt(misaligned, 0); /* the case at hand is there */
	for (int i = 0; i < N; i++) {
		void *q = krealloc(o[i], 512, 0);
		ck_assert_ptr_nonnull(q);
		ck_assert_uint_eq((uintptr_t)q % 512, 0);
		ck_assert_uint_eq(check_pattern(q, 512, 5), (size_t)-1);
		o[i] = q;
	}
	for (int i = 0; i < N; i++)
		kfree(o[i]);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
	for (int i = 0; i < N; i++) {
		o[i] = kmalloc(576, 0);
		ck_assert_uint_eq(ksize(o[i]), 576);
		fill_pattern(o[i], 512, 6);
	}
	for (int i = 0; i < N; i++) {
		void *q = krealloc(o[i], 512, 0);
		ck_assert_uint_eq((uintptr_t)q % 512, 0);
		ck_assert_uint_eq(check_pattern(q, 512, 6), (size_t)-1);
		void *r = krealloc(q, 496, 0); /* fits, and 16-aligned: stays */
		ck_assert_ptr_eq(r, q);
		o[i] = r;
	}
	for (int i = 0; i < N; i++)
		kfree(o[i]);
}
END_TEST

/* Growing across classes and into large spans, then shrinking back,
 * keeps the first min(old, new) bytes; a move frees the old object. */
START_TEST(krealloc_moves_keep_content)
{
	size_t s = 1;
	uint32_t seed = 1;
	void *p = kmalloc(s, 0);
	struct kmalloc_stats st;

	fill_pattern(p, s, seed);
	for (size_t n = 2; n < (size_t)1 << 20; n = n * 5 / 3 + 1) {
		void *q = krealloc(p, n, 0);
		ck_assert_ptr_nonnull(q);
		ck_assert_uint_ge(ksize(q), n);
		ck_assert_msg(check_pattern(q, s, seed) == (size_t)-1,
			      "krealloc %zu -> %zu lost content", s, n);
		p = q;
		s = n;
		fill_pattern(p, s, ++seed);
	}
	for (size_t n = s / 3; n >= 1; n = n / 3) {
		void *q = krealloc(p, n, 0);
		ck_assert_ptr_nonnull(q);
		ck_assert_uint_ge(ksize(q), n);
		ck_assert_msg(check_pattern(q, n, seed) == (size_t)-1,
			      "krealloc shrink to %zu lost content", n);
		p = q;
		s = n;
		fill_pattern(p, s, ++seed);
	}
	kfree(p);
	kmalloc_stats(&st);
	ck_assert_uint_eq(stats_live_objects(&st), 0);
	ASSERT_CONSISTENT();
}
END_TEST

/* An object that fills its class exactly keeps every byte when it moves
 * to the next class or to a large span. */
START_TEST(krealloc_full_class_moves)
{
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++) {
		size_t cs = class_size(c);
		unsigned char *p = kmalloc(cs, 0), *q;
		size_t full = ksize(p);

		fill_pattern(p, full, (uint32_t)c);
		q = krealloc(p, full + 1, 0);
		ck_assert_ptr_nonnull(q);
		ck_assert_msg(check_pattern(q, full, (uint32_t)c) == (size_t)-1,
			      "krealloc %zu -> %zu lost byte %zu", full, full + 1,
			      check_pattern(q, full, (uint32_t)c));
		kfree(q);
	}
	ASSERT_CONSISTENT();
}
END_TEST

/* A kmemalign object may sit on a large span with a small ksize; grown
 * past its page it stays large and grows by pages, like every object
 * krealloc grows past a heap page. */
START_TEST(krealloc_aligned_large_grows_by_pages)
{
	struct kmalloc_stats a, b;
	unsigned char *p = kmemalign(65536, 100, 0), *q;

	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq((uintptr_t)p % 65536, 0);
	fill_pattern(p, 100, 3);
	kmalloc_stats(&a);
	q = krealloc(p, ksize(p) + 1000, 0);
	ck_assert_ptr_nonnull(q);
	ck_assert_msg(check_pattern(q, 100, 3) == (size_t)-1, "contents lost");
	kmalloc_stats(&b);
	ck_assert_uint_eq(ksize(q) % HEAP_PAGE, 0);
	ck_assert_uint_eq(b.large_live, a.large_live); /* still one large object */
	ck_assert_uint_gt(b.large_bytes, a.large_bytes);
	kfree(q);
	ASSERT_CONSISTENT();
}
END_TEST

/* A small object that krealloc grows past a heap page (8 KiB) becomes a
 * large one, which then grows in place: no more copies through the size
 * classes up to 32 KiB. kmalloc of the same size still gives a small
 * object. */
START_TEST(krealloc_past_a_page_becomes_large)
{
	struct kmalloc_stats a, b;
	unsigned char *p = kmalloc(6000, 0), *q, *r;

	ck_assert_ptr_nonnull(p);
	fill_pattern(p, 6000, 5);
	kmalloc_stats(&a);
	q = krealloc(p, 9000, 0);
	ck_assert_ptr_nonnull(q);
	ck_assert_msg(check_pattern(q, 6000, 5) == (size_t)-1, "contents lost");
	kmalloc_stats(&b);
	ck_assert_uint_eq(b.large_live, a.large_live + 1);
	ck_assert_uint_eq(ksize(q), 2 * HEAP_PAGE);
	fill_pattern(q, 9000, 6);
	r = krealloc(q, 30000, 0); /* the pages after it are free here */
	ck_assert_ptr_eq(r, q);
	ck_assert_uint_ge(ksize(r), 30000);
	ck_assert_msg(check_pattern(r, 9000, 6) == (size_t)-1, "contents lost");
	kfree(r);
	r = kmalloc(9000, 0);
	ck_assert_uint_lt(ksize(r), 2 * HEAP_PAGE); /* a size class */
	kfree(r);
	ASSERT_CONSISTENT();
}
END_TEST

/* Buffers that block each other's growth in place still grow without
 * moving at most steps: a large object krealloc moves gets pages beyond
 * what it asked for (ksize does not count them), which its next steps
 * grow into. Every step keeps the contents, and those pages go back
 * with the object. */
START_TEST(krealloc_blocked_growth_moves_seldom)
{
	enum { N = 4 };
	struct kmalloc_stats a, b;
	unsigned char *p[N];
	size_t n = 70000, moves = 0, steps = 0; /* large from the start */

	kmalloc_stats(&a);
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(n, 0);
		ck_assert_ptr_nonnull(p[i]);
		fill_pattern(p[i], n, i);
	}
	while (n < ((size_t)2 << 20)) {
		size_t m = n + n / 8;
		for (int i = 0; i < N; i++) {
			unsigned char *q = krealloc(p[i], m, 0);
			ck_assert_ptr_nonnull(q);
			ck_assert_msg(check_pattern(q, n, i) == (size_t)-1, "contents lost at %zu",
			              m);
			ck_assert_uint_ge(ksize(q), m);
			ck_assert_uint_lt(ksize(q), m + HEAP_PAGE);
			moves += q != p[i];
			steps++;
			fill_pattern(q, m, i);
			p[i] = q;
		}
		n = m;
	}
	ck_assert_msg(moves * 3 < steps, "%zu of %zu steps moved", moves, steps);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_stats(&b);
	ck_assert_uint_eq(b.large_bytes, a.large_bytes);
	ck_assert_uint_eq(b.heap_inuse, a.heap_inuse);
	ASSERT_CONSISTENT();
}
END_TEST

START_TEST(krealloc_failure_keeps_p)
{
	struct kmalloc_stats a, b;
	void *p = kmalloc(300, 0);

	fill_pattern(p, 300, 9);
	kmalloc_stats(&a);
	ck_assert_ptr_null(krealloc(p, SIZE_MAX, 0));
	ck_assert_ptr_null(krealloc(p, SIZE_MAX - HEAP_PAGE, 0));
	kmalloc_stats(&b);
	stats_equal(&a, &b, "failed krealloc");
	ck_assert_uint_eq(check_pattern(p, 300, 9), (size_t)-1);
	kfree(p);
}
END_TEST

/* ---- kmemalign ---------------------------------------------------- */

START_TEST(kmemalign_pow2)
{
	static const size_t sizes[] = { 1, 8, 24, 100, 4096, 5000, 40000,
					200000 };
	void *p[3];

	for (size_t align = 1; align <= (size_t)1 << 20; align <<= 1)
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			for (int k = 0; k < 3; k++) {
				p[k] = kmemalign(align, sizes[i], 0);
				ck_assert_msg(p[k] != NULL,
					      "kmemalign(%zu, %zu) failed", align,
					      sizes[i]);
				ck_assert_msg((uintptr_t)p[k] % align == 0,
					      "kmemalign(%zu, %zu) = %p", align,
					      sizes[i], p[k]);
				ck_assert_uint_ge(ksize(p[k]), sizes[i]);
				fill_pattern(p[k], sizes[i], (uint32_t)(k + i));
			}
			for (int k = 0; k < 3; k++) {
				ck_assert_uint_eq(check_pattern(p[k], sizes[i],
								(uint32_t)(k + i)),
						  (size_t)-1);
				kfree(p[k]);
			}
		}
	ASSERT_CONSISTENT();
}
END_TEST

START_TEST(kmemalign_zeroed)
{
	void *p = kmemalign(4096, 10000, KM_ZERO);

	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq((uintptr_t)p % 4096, 0);
	ck_assert(check_bytes(p, 10000, 0) == SIZE_MAX);
	kfree(p);
}
END_TEST

START_TEST(kmemalign_bad_alignment_is_null)
{
	static const size_t bad[] = { 0, 3, 6, 24, 48, 12345, 65535,
				      SIZE_MAX };
	struct kmalloc_stats a, b;

	kfree(kmalloc(64, 0));
	kmalloc_stats(&a);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(kmemalign(bad[i], 64, 0) == NULL,
			      "kmemalign(%zu, 64) did not fail", bad[i]);
	ck_assert_ptr_null(kmemalign(16, SIZE_MAX, 0));
	ck_assert_ptr_null(kmemalign((size_t)1 << 63, 16, 0));
	kmalloc_stats(&b);
	stats_equal(&a, &b, "kmemalign with a bad alignment");
}
END_TEST

/* ---- sizes that must fail ----------------------------------------- */

START_TEST(huge_sizes_are_null)
{
	static const size_t bad[] = {
		SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - HEAP_PAGE,
		SIZE_MAX / 2 + 1, (size_t)1 << 62, (size_t)1 << 48,
		((size_t)1 << 47) + 1,
	};
	const size_t arena = sys_config.arena_size;
	const size_t above[] = { arena + 1, arena + HEAP_PAGE, arena * 2 };
	struct kmalloc_stats a, b;
	void *p;

	kfree(kmalloc(64, 0));
	kmalloc_stats(&a);
	for (size_t i = 0; i < sizeof above / sizeof above[0]; i++) {
		ck_assert_msg(kmalloc(above[i], 0) == NULL,
			      "kmalloc(%zu) above the %zu-byte arena", above[i], arena);
		ck_assert_ptr_null(kmemalign(HEAP_PAGE, above[i], 0));
		ck_assert_ptr_null(kcalloc(above[i] / 64 + 1, 64, 0));
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(kmalloc(bad[i], 0) == NULL, "kmalloc(%zu)", bad[i]);
		ck_assert_msg(kzalloc(bad[i], 0) == NULL, "kzalloc(%zu)", bad[i]);
		ck_assert_msg(krealloc(NULL, bad[i], 0) == NULL,
			      "krealloc(NULL, %zu)", bad[i]);
	}
	kmalloc_stats(&b);
	stats_equal(&a, &b, "a failed huge request");
	/* krealloc of a live object, small and large, to each bad size: NULL,
	 * and the object stays as it was (the page count of a size within a
	 * page of SIZE_MAX wraps to 0; the fuzzer found that one) */
	for (size_t k = 0; k < 2; k++) {
		size_t live = k == 0 ? 100 : 100000;
		unsigned char *q = kmalloc(live, 0);
		ck_assert_ptr_nonnull(q);
		fill_pattern(q, live, 5);
		kmalloc_stats(&a);
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
			ck_assert_msg(krealloc(q, bad[i], 0) == NULL, "krealloc(%zu B object, %zu)",
			              live, bad[i]);
		for (size_t i = 0; i < sizeof above / sizeof above[0]; i++)
			ck_assert_msg(krealloc(q, above[i], 0) == NULL, "krealloc(%zu B object, %zu)",
			              live, above[i]);
		kmalloc_stats(&b);
		stats_equal(&a, &b, "a failed huge krealloc");
		ck_assert_msg(check_pattern(q, live, 5) == (size_t)-1, "object changed");
		kfree(q);
	}
	p = kmalloc(64, 0);
	ck_assert_ptr_nonnull(p);
	kfree(p);
	p = kmalloc(1 << 20, 0);
	ck_assert_ptr_nonnull(p);
	kfree(p);
}
END_TEST

/* ---- stats -------------------------------------------------------- */

START_TEST(stats_count_small)
{
	enum { N = 100 };
	void *p[N];
	struct kmalloc_stats a, b, c;
	int cl = class_of_size(48);

	kmalloc_stats(&a);
	for (int i = 0; i < N; i++)
		p[i] = kmalloc(48, 0);
	kmalloc_stats(&b);
	ck_assert_uint_eq(b.cls[cl].allocs - a.cls[cl].allocs, N);
	ck_assert_uint_eq(b.cls[cl].live - a.cls[cl].live, N);
	ck_assert_uint_eq(b.cls[cl].frees, a.cls[cl].frees);
	ck_assert_uint_ge(b.cls[cl].spans, 1);
	ck_assert_uint_ge(b.heap_inuse, (uint64_t)N * class_size(cl));
	ck_assert_uint_ge(b.heap_sys, b.heap_inuse);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_stats(&c);
	ck_assert_uint_eq(c.cls[cl].frees - a.cls[cl].frees, N);
	ck_assert_uint_eq(c.cls[cl].live, a.cls[cl].live);
	/* No other class moved. */
	for (int k = 0; k < KMALLOC_NUM_CLASSES; k++)
		if (k != cl)
			ck_assert_uint_eq(c.cls[k].allocs, a.cls[k].allocs);
	ASSERT_CONSISTENT();
}
END_TEST

/* KM_NOSCAN objects (no pointers inside, for the leak detector) are
 * Go's noscan half of each size class: the same sizes and alignment,
 * spans of their own, counted in the class's totals and on their own. */
START_TEST(noscan_half_of_every_class)
{
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++) {
		size_t sz = class_size(c);
		struct kmalloc_stats a, b;
		kmalloc_stats(&a);
		unsigned char *p = kmalloc(sz, KM_NOSCAN), *q = kmalloc(sz, 0);
		ck_assert_ptr_nonnull(p);
		ck_assert_ptr_nonnull(q);
		if (ksize(p) != sz) /* 24 B: its requests take the 32-byte class */
			continue;
		ck_assert_uint_eq(ksize(q), sz);
		kmalloc_stats(&b);
		ck_assert_uint_eq(b.cls[c].live, a.cls[c].live + 2);
		ck_assert_uint_eq(b.cls[c].noscan_live, a.cls[c].noscan_live + 1);
		/* a noscan object never shares a span with a scanned one */
		ck_assert_uint_ge(b.cls[c].noscan_spans, 1);
		ck_assert_uint_gt(b.cls[c].spans, b.cls[c].noscan_spans);
		memset(p, 0xee, sz);
		unsigned char *z = kzalloc(sz, KM_NOSCAN);
		for (size_t i = 0; i < sz; i += 8)
			ck_assert_uint_eq(z[i], 0);
		kfree(p);
		kfree(q);
		kfree(z);
		kmalloc_stats(&b);
		ck_assert_uint_eq(b.cls[c].noscan_live, a.cls[c].noscan_live);
	}
	/* large objects too, and a class reached through kmemalign */
	void *big = kmalloc(100000, KM_NOSCAN), *al = kmemalign(256, 300, KM_NOSCAN);
	ck_assert_ptr_nonnull(big);
	ck_assert_uint_eq((uintptr_t)al % 256, 0);
	kfree(big);
	kfree(al);
	ASSERT_CONSISTENT();
}
END_TEST

START_TEST(stats_count_large)
{
	struct kmalloc_stats a, b, c;
	void *p[3];
	uint64_t bytes = 0;

	kmalloc_stats(&a);
	for (int i = 0; i < 3; i++) {
		p[i] = kmalloc(100000 * (size_t)(i + 1), 0);
		ck_assert_ptr_nonnull(p[i]);
		bytes += ksize(p[i]);
	}
	kmalloc_stats(&b);
	ck_assert_uint_eq(b.large_allocs - a.large_allocs, 3);
	ck_assert_uint_eq(b.large_live - a.large_live, 3);
	ck_assert_uint_eq(b.large_bytes - a.large_bytes, bytes);
	/* A large object is a span of its own: heap_inuse grows by exactly
	 * its pages. */
	ck_assert_uint_eq(b.heap_inuse - a.heap_inuse, bytes);
	for (int i = 0; i < 3; i++)
		kfree(p[i]);
	kmalloc_stats(&c);
	ck_assert_uint_eq(c.large_frees - a.large_frees, 3);
	ck_assert_uint_eq(c.large_live, a.large_live);
	ck_assert_uint_eq(c.large_bytes, a.large_bytes);
	ck_assert_uint_eq(c.heap_inuse, a.heap_inuse);
	ASSERT_CONSISTENT();
}
END_TEST

/* Go's span accounting, class by class, each in a fresh heap (a forked
 * child): the first object of a class takes one span; the span then holds
 * span / size objects without taking more memory, and what it cannot use
 * (its tail) is at most 1/8 of it, the bound Go's size-class generator
 * guarantees; the next object takes a second span. */
static void span_child(void *arg)
{
	int c = (int)(intptr_t)arg;
	static void *p[1100];
	struct kmalloc_stats a, b;
	size_t obj, span, nelems, n = 0;

	kmalloc_stats(&a);
	p[n++] = kmalloc(class_size(c), 0);
	obj = ksize(p[0]);
	kmalloc_stats(&b);
	span = (size_t)(b.heap_inuse - a.heap_inuse);
	/* A class whose objects cannot be 16-byte aligned (24 bytes) may be
	 * left unused by requests of 16 bytes or more; then it must really
	 * be unused. */
	if (obj != class_size(c) && class_size(c) >= 16 && class_size(c) % 16 &&
	    b.cls[c].allocs == 0)
		_exit(0);
	if (obj != class_size(c) || span == 0 || span % HEAP_PAGE) {
		fprintf(stderr, "class %d: object %zu bytes, first span %zu bytes", c,
			obj, span);
		_exit(1);
	}
	nelems = span / obj;
	if ((span - nelems * obj) * 8 > span) {
		fprintf(stderr, "class %d: span of %zu bytes wastes a tail of %zu", c,
			span, span - nelems * obj);
		_exit(1);
	}
	while (n < nelems)
		p[n++] = kmalloc(obj, 0);
	kmalloc_stats(&b);
	if (b.heap_inuse - a.heap_inuse != span || b.cls[c].spans != 1) {
		fprintf(stderr, "class %d: %zu objects of %zu bytes take %llu bytes in %llu spans, not one span of %zu",
			c, nelems, obj, (unsigned long long)(b.heap_inuse - a.heap_inuse),
			(unsigned long long)b.cls[c].spans, span);
		_exit(1);
	}
	p[n++] = kmalloc(obj, 0);
	kmalloc_stats(&b);
	if (b.heap_inuse - a.heap_inuse != 2 * span || b.cls[c].spans != 2) {
		fprintf(stderr, "class %d: object %zu did not start a second span", c,
			nelems + 1);
		_exit(1);
	}
	while (n > 0)
		kfree(p[--n]);
	kmalloc_flush_cpu();
	kmalloc_stats(&b);
	if (b.heap_inuse != a.heap_inuse || b.cls[c].spans != 0) {
		fprintf(stderr, "class %d: after freeing everything heap_inuse is %llu, %llu spans",
			c, (unsigned long long)b.heap_inuse,
			(unsigned long long)b.cls[c].spans);
		_exit(1);
	}
	_exit(0);
}

START_TEST(span_accounting_per_class)
{
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++) {
		struct child_result r;
		run_in_child(span_child, (void *)(intptr_t)c, &r);
		ck_assert_msg(!r.signaled && r.status == 0, "class %d (%zu B): %s%s", c,
			      class_size(c), r.signaled ? "killed by a signal; " : "",
			      r.err);
	}
}
END_TEST

/* Free everything, flush this CPU's mcache, trim: every span is back in
 * the mheap, every free page back with the port, and what stays committed
 * is metadata. */
START_TEST(flush_and_trim_return_everything)
{
	enum { N = 3000 };
	static void *p[N];
	struct kmalloc_stats a, b;
	uint64_t seed = 42;

	for (int i = 0; i < N; i++) {
		size_t s = 1 + rng_below(&seed, i % 10 ? 2048 : 200000);
		p[i] = kmalloc(s, 0);
		ck_assert_ptr_nonnull(p[i]);
		memset(p[i], 1, s);
	}
	kmalloc_stats(&a);
	ck_assert_uint_ge(stats_live_objects(&a), N);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_flush_cpu();
	kmalloc_trim();
	ASSERT_HEAP_EMPTY(&b);
	for (int k = 0; k < KMALLOC_NUM_CLASSES; k++)
		ck_assert_msg(b.cls[k].spans == 0, "class %d keeps %llu spans", k,
			      (unsigned long long)b.cls[k].spans);
	ck_assert_uint_eq(b.heap_inuse, 0);
	ck_assert_uint_eq(b.heap_free, 0);
	ck_assert_uint_eq(b.heap_released, b.heap_sys);
	ck_assert_uint_eq(b.committed, b.meta_sys);
	ck_assert_uint_le(b.committed, a.committed);
	/* And it serves again. */
	p[0] = kmalloc(64, 0);
	ck_assert_ptr_nonnull(p[0]);
	kfree(p[0]);
}
END_TEST

/* The dump prints through the port's log (stdout on the host), agrees
 * with kmalloc_stats, and changes nothing. */
static void dump_child(void *arg)
{
	struct kmalloc_stats a, b;
	(void)arg;
	kmalloc_stats(&a);
	/* Not one more byte may be committed: the dump must work when
	 * memory is exhausted, which is when one wants it. */
	host_set_commit_limit((size_t)a.committed);
	kmalloc_dump();
	kmalloc_stats(&b);
	fflush(stdout);
	_exit(memcmp(&a, &b, sizeof a) == 0 ? 0 : 3);
}

START_TEST(dump_prints_and_changes_nothing)
{
	struct child_result r;
	struct kmalloc_stats st;
	void *p = kmalloc(48, 0), *q = kmalloc(100000, 0);
	char want[64];
	int row48 = 0;

	run_in_child(dump_child, NULL, &r);
	ck_assert_msg(!r.signaled && r.status == 0,
		      "dump child: signaled %d sig %d status %d (3: stats changed)",
		      r.signaled, r.sig, r.status);
	ck_assert_msg(strlen(r.out) > 0, "kmalloc_dump printed nothing");
	/* Every line is the allocator's; the 48-byte class shows its one
	 * live object; the totals are the stats' own. */
	for (char *line = r.out; *line;) {
		char *nl = strchr(line, '\n');
		unsigned long long c, size, allocs, frees, live, spans;
		ck_assert_msg(strncmp(line, "kmalloc: ", 9) == 0,
			      "dump line without the kmalloc: prefix: %s", line);
		if (sscanf(line, "kmalloc: %llu %llu %llu %llu %llu %llu", &c,
			   &size, &allocs, &frees, &live, &spans) == 6 &&
		    size == 48) {
			row48 = 1;
			ck_assert_uint_eq(live, 1);
			ck_assert_uint_ge(spans, 1);
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	ck_assert_msg(row48, "no row for the 48-byte class in:\n%s", r.out);
	kmalloc_stats(&st);
	snprintf(want, sizeof want, "%llu", (unsigned long long)st.committed);
	ck_assert_msg(strstr(r.out, "committed") && strstr(r.out, want),
		      "dump does not show committed = %s:\n%s", want, r.out);
	kfree(p);
	kfree(q);
}
END_TEST

/* ---- out of memory ------------------------------------------------ */

/* Allocate `size`-byte objects until the port refuses to commit: NULL, no
 * crash, consistent stats; after freeing everything the same allocations
 * succeed again. */
static void oom_cycle(size_t size, size_t headroom)
{
	enum { MAX = 1 << 20 };
	void **p = malloc(MAX * sizeof *p);
	struct kmalloc_stats st;
	size_t n = 0, again = 0, limit;

	ck_assert_ptr_nonnull(p);
	kfree(kmalloc(size, 0));
	kmalloc_stats(&st);
	limit = (size_t)st.committed + headroom;
	host_set_commit_limit(limit);
	while (n < MAX && (p[n] = kmalloc(size, 0)) != NULL) {
		memset(p[n], 0x77, size);
		n++;
	}
	ck_assert_msg(n < MAX, "commit limit never hit with %zu-byte objects", size);
	ck_assert_msg(n > 0, "nothing fits under a %zu-byte headroom", headroom);
	/* Every way in fails the same way, and nothing changes. */
	ck_assert_ptr_null(kzalloc(size, 0));
	ck_assert_ptr_null(kcalloc(1, size, 0));
	ck_assert_ptr_null(kmemalign(64, size, 0));
	{
		void *q = krealloc(p[0], size * 4 + HEAP_PAGE * 64, 0);
		ck_assert_ptr_null(q);
		ck_assert_uint_eq(((unsigned char *)p[0])[size - 1], 0x77);
	}
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_ge(stats_live_objects(&st), n);
	ck_assert_uint_le(st.committed, limit);
	for (size_t i = 0; i < n; i++)
		kfree(p[i]);
	kmalloc_flush_cpu();
	kmalloc_trim();
	/* Still under the same limit, the same objects fit again. */
	while (again < n && (p[again] = kmalloc(size, 0)) != NULL)
		again++;
	ck_assert_msg(again == n, "after freeing, only %zu of %zu objects fit again",
		      again, n);
	for (size_t i = 0; i < again; i++)
		kfree(p[i]);
	host_set_commit_limit(0);
	p[0] = kmalloc(size * 8, 0);
	ck_assert_ptr_nonnull(p[0]);
	kfree(p[0]);
	ASSERT_STATS_CONSISTENT(&st);
	free(p);
}

START_TEST(oom_small)
{
	oom_cycle(64, 4u << 20);
}
END_TEST

START_TEST(oom_large)
{
	oom_cycle(100000, 16u << 20);
}
END_TEST

/* Out of memory with mixed sizes: small objects exhaust what large ones
 * freed and the other way round. */
START_TEST(oom_mixed_recovers)
{
	enum { MAX = 1 << 18 };
	void **p = malloc(MAX * sizeof *p);
	struct kmalloc_stats st;
	size_t n = 0;
	uint64_t seed = 5;

	kfree(kmalloc(16, 0));
	kmalloc_stats(&st);
	host_set_commit_limit((size_t)st.committed + (8u << 20));
	while (n < MAX) {
		size_t s = 1 + rng_below(&seed, n % 8 ? 4000 : 150000);
		if ((p[n] = kmalloc(s, 0)) == NULL)
			break;
		n++;
	}
	ck_assert(n < MAX && n > 0);
	for (size_t i = 0; i < n; i += 2)
		kfree(p[i]);
	/* Freed memory serves new requests under the same limit. */
	for (size_t i = 0; i < n; i += 2) {
		p[i] = kmalloc(64, 0);
		ck_assert_ptr_nonnull(p[i]);
	}
	for (size_t i = 0; i < n; i++)
		kfree(p[i]);
	host_set_commit_limit(0);
	ASSERT_HEAP_EMPTY(&st);
	free(p);
}
END_TEST

static Suite *api_suite(void)
{
	Suite *s = suite_create("kmalloc API");
	struct {
		const char *name;
		const TTest *tests[10];
	} groups[] = {
		{ "set-up", { init_explicit_and_repeated, oom_before_first_use } },
		{ "sizes",
		  { class_table, small_sizes_all_live, class_boundaries_and_large,
		    sizes_from_16_are_16_aligned, pow2_natural_alignment, kmalloc_zero,
		    kfree_null_and_ksize_null } },
		{ "zeroing", { zeroed_reuse, zeroed_after_trim, kcalloc_overflow_is_null } },
		{ "krealloc",
		  { krealloc_null_is_kmalloc, krealloc_in_place,
		    krealloc_keeps_the_contract_alignment, krealloc_moves_keep_content,
		    krealloc_full_class_moves, krealloc_aligned_large_grows_by_pages,
		    krealloc_past_a_page_becomes_large, krealloc_blocked_growth_moves_seldom,
		    krealloc_failure_keeps_p } },
		{ "kmemalign",
		  { kmemalign_pow2, kmemalign_zeroed, kmemalign_bad_alignment_is_null } },
		{ "bad sizes", { huge_sizes_are_null } },
		{ "stats",
		  { stats_count_small, noscan_half_of_every_class, stats_count_large,
		    span_accounting_per_class, flush_and_trim_return_everything,
		    dump_prints_and_changes_nothing } },
		{ "oom", { oom_small, oom_large, oom_mixed_recovers } },
	};

	for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
		TCase *tc = tcase_create(groups[g].name);
		tcase_set_timeout(tc, 120);
		for (size_t t = 0;
		     t < sizeof groups[g].tests / sizeof groups[g].tests[0] && groups[g].tests[t];
		     t++)
			tcase_add_test(tc, groups[g].tests[t]);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	Suite *s = api_suite();
	return check_run_suites(&s, 1);
}
