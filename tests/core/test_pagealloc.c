/*
 * test_pagealloc.c: the page allocator on its own (plain memory, no port):
 * table-driven cases in the style of Go's mpagealloc_test.go -- the
 * bitmap before (allocated ranges), a list of allocations with the page
 * each must get (address-ordered first fit, runs crossing chunks, nothing
 * when nothing fits), the bitmap after -- plus coalescing on free,
 * scavenged-bit bookkeeping, and a randomised comparison against a naive
 * linear scan. Every step checks the summary tree (pa_valid).
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <stdlib.h>
#include <string.h>

#include "../lib/xorshift.h"
#include "internal.h"

#define CAP 64 /* chunks: 3 summary levels (64, 8, 1) */

struct range {
	size_t pg, n;
};

static struct pagealloc pa;

static void pa_setup(size_t cap, size_t grown)
{
	memset(&pa, 0, sizeof pa);
	pa_init(&pa, cap);
	pa.chunks = calloc(cap, sizeof(struct pchunk));
	for (unsigned k = 0; k < pa.nlevels; k++)
		pa.sum[k] = calloc(pa.level_len[k] + PA_FANOUT, sizeof(struct psum));
	pa_grow(&pa, grown);
}

static void pa_teardown(void)
{
	free(pa.chunks);
	for (unsigned k = 0; k < pa.nlevels; k++)
		free(pa.sum[k]);
}

/* The bitmap, as allocated ranges, must equal `want` (n ranges). */
static void expect_ranges(const struct range *want, size_t n)
{
	size_t total = pa.nchunks * CHUNK_PAGES, i = 0, pg = 0;
	while (pg < total) {
		if (!pa_is_alloc(&pa, pg)) {
			pg++;
			continue;
		}
		size_t s = pg;
		while (pg < total && pa_is_alloc(&pa, pg))
			pg++;
		ck_assert_msg(i < n, "unexpected allocated range [%zu, %zu)", s, pg);
		ck_assert_msg(want[i].pg == s && want[i].pg + want[i].n == pg,
		              "range %zu: got [%zu, %zu), want [%zu, %zu)", i, s, pg,
		              want[i].pg, want[i].pg + want[i].n);
		i++;
	}
	ck_assert_msg(i == n, "got %zu ranges, want %zu", i, n);
}

static long alloc(size_t n)
{
	long pg = pa_find(&pa, n);
	if (pg >= 0)
		pa_set_alloc(&pa, (size_t)pg, n, true);
	ck_assert(pa_valid(&pa));
	return pg;
}

struct alloc_case {
	const char *name;
	size_t grown;
	struct range before[6];
	size_t nbefore;
	struct {
		size_t npages;
		long want; /* -1: nothing fits */
	} allocs[6];
	size_t nallocs;
	struct range after[8];
	size_t nafter;
};

static const struct alloc_case cases[] = {
	{"empty heap, first fit from page 0", 4, {{0}}, 0,
	 {{1, 0}, {1, 1}, {3, 2}}, 3,
	 {{0, 5}}, 1},
	{"holes are filled lowest first", 4, {{0, 10}, {11, 9}, {21, 491}}, 3,
	 {{1, 10}, {2, 512}, {1, 20}}, 3,
	 {{0, 514}}, 1},
	{"first fit, not best fit", 4, {{0, 10}, {15, 85}, {103, 409}}, 3,
	 {{3, 10}, {3, 100}, {2, 13}}, 3,
	 {{0, 512}}, 1},
	{"run crossing a chunk boundary", 4, {{0, 500}, {522, 502}}, 2,
	 {{20, 500}, {2, 520}, {23, 1024}}, 3,
	 {{0, 1047}}, 1},
	{"multi-chunk run after a partial chunk", 8, {{0, 601}}, 1,
	 {{1024, 601}, {1, 1625}}, 2,
	 {{0, 1626}}, 1},
	{"whole heap, then nothing fits", 2, {{0}}, 0,
	 {{1024, 0}, {1, -1}}, 2,
	 {{0, 1024}}, 1},
	{"request larger than any free run", 4, {{100, 1}, {700, 1}, {1300, 1}, {1900, 1}}, 4,
	 {{700, -1}, {599, 101}, {100, 0}}, 3,
	 {{0, 701}, {1300, 1}, {1900, 1}}, 3},
	{"run crossing a level-1 summary node (8 chunks)", 64, {{0, 3900}, {4400, 28368}}, 2,
	 {{400, 3900}, {100, 4300}, {1, -1}}, 3,
	 {{0, 32768}}, 1},
};

START_TEST(alloc_table)
{
	const struct alloc_case *c = &cases[_i];
	pa_setup(CAP, c->grown);
	for (size_t i = 0; i < c->nbefore; i++)
		pa_set_alloc(&pa, c->before[i].pg, c->before[i].n, true);
	ck_assert_msg(pa_valid(&pa), "%s: summaries after setup", c->name);
	for (size_t i = 0; i < c->nallocs; i++) {
		long got = alloc(c->allocs[i].npages);
		ck_assert_msg(got == c->allocs[i].want, "%s: alloc %zu of %zu pages: got %ld want %ld",
		              c->name, i, c->allocs[i].npages, got, c->allocs[i].want);
	}
	expect_ranges(c->after, c->nafter);
	pa_teardown();
}
END_TEST

START_TEST(free_coalesces)
{
	pa_setup(CAP, 4);
	long a = alloc(100), b = alloc(300), c = alloc(200), d = alloc(50);
	ck_assert_int_eq(a, 0);
	ck_assert_int_eq(b, 100);
	ck_assert_int_eq(c, 400);
	ck_assert_int_eq(d, 600);
	/* free a and c: holes of 100 and 200, 600 does not fit */
	pa_set_alloc(&pa, (size_t)a, 100, false);
	pa_set_alloc(&pa, (size_t)c, 200, false);
	ck_assert(pa_valid(&pa));
	ck_assert_int_eq(pa_find(&pa, 600), 650);
	/* freeing b joins the three runs into one of 600 at 0 */
	pa_set_alloc(&pa, (size_t)b, 300, false);
	ck_assert(pa_valid(&pa));
	ck_assert_int_eq(pa_find(&pa, 600), 0);
	ck_assert_uint_eq(pa.sum[pa.top][0].start, 600);
	/* freeing d leaves the heap empty: one run of everything */
	pa_set_alloc(&pa, (size_t)d, 50, false);
	ck_assert(pa_valid(&pa));
	ck_assert_uint_eq(pa.sum[pa.top][0].max, 4 * CHUNK_PAGES);
	ck_assert_int_eq(pa_find(&pa, 4 * CHUNK_PAGES), 0);
	pa_teardown();
}
END_TEST

START_TEST(growth_is_free_and_scavenged)
{
	pa_setup(CAP, 0);
	ck_assert_int_eq(pa_find(&pa, 1), -1);
	pa_grow(&pa, 2);
	ck_assert(pa_valid(&pa));
	ck_assert_uint_eq(pa_scav_count(&pa, 0, 2 * CHUNK_PAGES), 2 * CHUNK_PAGES);
	ck_assert_int_eq(pa_find(&pa, 2 * CHUNK_PAGES), 0);
	ck_assert_int_eq(pa_find(&pa, 2 * CHUNK_PAGES + 1), -1);
	pa_grow(&pa, 3);
	ck_assert_int_eq(pa_find(&pa, 2 * CHUNK_PAGES + 1), 0);
	ck_assert(pa_valid(&pa));
	pa_teardown();
}
END_TEST

START_TEST(scavenged_runs)
{
	size_t rp, rn;
	pa_setup(CAP, 2);
	/* commit (clear scav) pages [10, 20) and [600, 700) */
	pa_set_scav(&pa, 10, 10, false);
	pa_set_scav(&pa, 600, 100, false);
	ck_assert_uint_eq(pa_scav_count(&pa, 0, 1024), 1024 - 110);
	ck_assert(pa_scav_next_run(&pa, 5, 100, &rp, &rn));
	ck_assert_uint_eq(rp, 5);
	ck_assert_uint_eq(rn, 5);
	ck_assert(pa_scav_next_run(&pa, 10, 100, &rp, &rn));
	ck_assert_uint_eq(rp, 20);
	ck_assert_uint_eq(rn, 90);
	ck_assert(!pa_scav_next_run(&pa, 600, 100, &rp, &rn));
	/* highest free committed run first: [600, 700), then [10, 20) */
	ck_assert(pa_highest_unscav_free(&pa, 0, &rp, &rn));
	ck_assert_uint_eq(rp, 600);
	ck_assert_uint_eq(rn, 100);
	pa_set_scav(&pa, 600, 100, true);
	ck_assert(pa_highest_unscav_free(&pa, 0, &rp, &rn));
	ck_assert_uint_eq(rp, 10);
	ck_assert_uint_eq(rn, 10);
	/* allocated pages are not candidates */
	pa_set_alloc(&pa, 10, 10, true);
	ck_assert(!pa_highest_unscav_free(&pa, 0, &rp, &rn));
	ck_assert(pa_valid(&pa));
	pa_teardown();
}
END_TEST

/* Naive first fit over the bitmap. */
static long naive_find(size_t n)
{
	size_t total = pa.nchunks * CHUNK_PAGES, run = 0;
	for (size_t pg = 0; pg < total; pg++) {
		run = pa_is_alloc(&pa, pg) ? 0 : run + 1;
		if (run == n)
			return (long)(pg + 1 - n);
	}
	return -1;
}

/* Summaries are kept only up to the lowest level covering the grown
 * chunks (pa.top), and pa_find starts there: as the heap grows chunk by
 * chunk, top climbs at 2 and 9 chunks, and the levels it climbs to are
 * exact at once, for finds within one chunk and across the newest. */
START_TEST(top_level_climbs_as_it_grows)
{
	pa_setup(CAP, 1);
	ck_assert_uint_eq(pa.top, 0);
	pa_set_alloc(&pa, 0, 10, true);
	pa_set_alloc(&pa, CHUNK_PAGES - 5, 5, true);
	ck_assert(pa_valid(&pa));
	ck_assert_int_eq(pa_find(&pa, CHUNK_PAGES - 15), 10);
	ck_assert_int_eq(pa_find(&pa, CHUNK_PAGES - 14), -1);
	for (size_t n = 2; n <= CAP; n++) {
		pa_grow(&pa, n);
		ck_assert_uint_eq(pa.top, n == 1 ? 0 : n <= 8 ? 1 : 2);
		ck_assert(pa_valid(&pa));
		/* only the grown chunks after chunk 0 hold this run */
		size_t want = (n - 1) * CHUNK_PAGES;
		ck_assert_int_eq(pa_find(&pa, want), (long)CHUNK_PAGES);
		ck_assert_int_eq(pa_find(&pa, want + 1), -1);
		ck_assert_int_eq(pa_find(&pa, 20), 10);
		if (n < 3)
			continue;
		/* pages across the newest chunk's start */
		pa_set_alloc(&pa, (n - 1) * CHUNK_PAGES - 3, 6, true);
		ck_assert(pa_valid(&pa));
		ck_assert_int_eq(pa_find(&pa, CHUNK_PAGES), naive_find(CHUNK_PAGES));
		pa_set_alloc(&pa, (n - 1) * CHUNK_PAGES - 3, 6, false);
	}
	ck_assert(pa_valid(&pa));
	pa_teardown();
}
END_TEST

START_TEST(random_against_naive)
{
	unsigned seed = 12345;
	pa_setup(CAP, 24);
	struct range live[400];
	size_t nlive = 0;
	for (int step = 0; step < 3000; step++) {
		seed = seed * 1103515245u + 12345u;
		unsigned r = seed >> 8;
		if (nlive > 0 && (r % 3 == 0 || nlive == 400)) {
			size_t i = r % nlive;
			pa_set_alloc(&pa, live[i].pg, live[i].n, false);
			live[i] = live[--nlive];
		} else {
			size_t n = (r % 7 == 0) ? 1 + r % 2000 : 1 + r % 40;
			long want = naive_find(n);
			long got = pa_find(&pa, n);
			ck_assert_msg(got == want, "step %d: %zu pages at %ld, naive %ld", step, n, got, want);
			if (got >= 0) {
				pa_set_alloc(&pa, (size_t)got, n, true);
				live[nlive].pg = (size_t)got;
				live[nlive++].n = n;
			}
		}
		if (step % 50 == 0)
			ck_assert(pa_valid(&pa));
	}
	ck_assert(pa_valid(&pa));
	pa_teardown();
}
END_TEST

/* A chunk's summary (first free run, longest, last) against a page by
 * page count, on chunks drawn in runs of random lengths (short runs: a
 * fragmented chunk; long ones: runs inside and across words) and on
 * words of random bits of every density. */
static struct psum naive_sum(const struct pchunk *c)
{
	struct psum s = { 0, 0, 0 };
	unsigned run = 0;
	bool prefix = true;
	for (unsigned pg = 0; pg < CHUNK_PAGES; pg++) {
		if (c->alloc[pg / 64] >> (pg % 64) & 1) {
			prefix = false;
			run = 0;
			continue;
		}
		run++;
		if (prefix)
			s.start = run;
		if (run > s.max)
			s.max = run;
	}
	s.end = run;
	return s;
}

START_TEST(chunk_summary_against_naive)
{
	uint64_t r = 0x9e3779b97f4a7c15u;
	struct pchunk c;
	for (int round = 0; round < 20000; round++) {
		memset(&c, 0, sizeof c);
		unsigned mode = round % 3, maxrun = 1u << (round % 10);
		if (mode < 2) { /* alternating runs of 1 .. maxrun pages */
			bool used = mode == 0;
			for (unsigned pg = 0; pg < CHUNK_PAGES;) {
				unsigned n = 1 + (unsigned)(xorshift64(&r) % maxrun);
				for (unsigned k = 0; k < n && pg < CHUNK_PAGES; k++, pg++)
					if (used)
						c.alloc[pg / 64] |= (uint64_t)1 << (pg % 64);
				used = !used;
			}
		} else { /* random bits, density set by ANDing or ORing draws */
			for (unsigned w = 0; w < CHUNK_WORDS; w++) {
				uint64_t x = xorshift64(&r);
				for (unsigned k = 0; k < (unsigned)(round / 3) % 4; k++)
					x = round & 1 ? x & xorshift64(&r) : x | xorshift64(&r);
				c.alloc[w] = x;
			}
		}
		struct psum got = pa_chunk_sum(&c), want = naive_sum(&c);
		ck_assert_msg(got.start == want.start && got.max == want.max && got.end == want.end,
		              "round %d: summary (%u, %u, %u), page by page (%u, %u, %u)", round,
		              (unsigned)got.start, (unsigned)got.max, (unsigned)got.end,
		              (unsigned)want.start, (unsigned)want.max, (unsigned)want.end);
	}
}
END_TEST

START_TEST(level_sizes)
{
	unsigned n;
	ck_assert_uint_eq(pa_level_len(1, 0, &n), 1);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(pa_level_len(16384, 0, &n), 16384);
	ck_assert_uint_eq(n, 6); /* 16384, 2048, 256, 32, 4, 1 */
	ck_assert_uint_eq(pa_level_len(16384, 4, NULL), 4);
	ck_assert_uint_eq(pa_level_len(16384, 5, NULL), 1);
	ck_assert_uint_eq(pa_level_len(9, 1, &n), 2);
	ck_assert_uint_eq(n, 3);
}
END_TEST

/* clang-format off */
CHECK_MAIN("pagealloc", 60,
	   CHECK_TEST_LOOP(alloc_table, sizeof cases / sizeof cases[0]),
	   CHECK_TEST(free_coalesces),
	   CHECK_TEST(growth_is_free_and_scavenged),
	   CHECK_TEST(top_level_climbs_as_it_grows),
	   CHECK_TEST(scavenged_runs),
	   CHECK_TEST(random_against_naive),
	   CHECK_TEST(chunk_summary_against_naive),
	   CHECK_TEST(level_sizes))
/* clang-format on */
