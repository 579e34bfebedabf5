/*
 * api_model.c: randomized model test of the whole API against a shadow
 * table. Not a benchmark: it spends most of its time writing and checking
 * fill patterns.
 *
 * A seeded PRNG drives a mix of kmalloc, kzalloc, kcalloc, kmemalign,
 * krealloc (NULL, growing, shrinking, in place), ksize and kfree over a
 * table of slots; each live slot records the pointer, the requested size,
 * the usable size and the seed of the pattern written into it. Before any
 * object is freed or resized its pattern is checked (all of the first
 * 4 KiB, then a word every 512 bytes), so an object
 * that overlaps another, moves, or loses content is caught at the first
 * operation that touches it. Every few thousand operations the calling
 * CPU's mcache is flushed or the heap trimmed, and the per-class live
 * counts in kmalloc_stats are compared with the shadow table's. At the end
 * everything is freed, flushed and trimmed, and the heap must be empty:
 * no live object, no span in use, every page released, only metadata
 * committed.
 *
 *   api_model [OPS]        default 2,000,000 operations (or $KMALLOC_MODEL_OPS)
 *   KMALLOC_MODEL_SEED=n   replay a run; the seed is printed first
 *   KMALLOC_MESH=1         the host port meshes (each trim meshes; every
 *                          object is verified after every trim)
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api_util.h"

enum { SLOTS = 8192 };

/* Check's own asserts record their location on every call (a write to
 * its results file), which would cost more than the allocator on this
 * path; MCHECK reaches Check only when the condition fails. */
#define MCHECK(cond, ...)                          \
	do {                                       \
		if (__builtin_expect(!(cond), 0))  \
			ck_abort_msg(__VA_ARGS__); \
	} while (0)

struct slot {
	unsigned char *p; /* NULL when empty */
	size_t size;      /* bytes requested (the pattern covers these) */
	size_t usable;    /* ksize() at allocation */
	uint64_t seed;    /* pattern seed */
	size_t align;     /* kmemalign alignment, 0 for the others */
	int loose;        /* small or large at the core's choice: kmemalign,
	                     or krealloc grown past a heap page (8 KiB) */
};

static struct slot slots[SLOTS];
static uint64_t model_ops = 2000000;
static uint64_t model_seed;
static uint64_t next_pattern = 1;

/* Mostly small, some up to 32 KiB, a few large: the size mix of a kernel
 * heap, scaled so that filling stays cheap. */
static size_t random_size(uint64_t *r)
{
	uint64_t k = rng_below(r, 1000);
	if (k < 900)
		return 1 + rng_below(r, 512);
	if (k < 990)
		return 513 + rng_below(r, KMALLOC_MAX_SMALL - 512);
	return KMALLOC_MAX_SMALL + 1 + rng_below(r, 256 << 10);
}

static void verify(const struct slot *s, int i, uint64_t op, const char *why)
{
	size_t bad = check_pattern_sparse(s->p, s->size, s->seed);
	MCHECK(bad == SIZE_MAX,
		      "op %" PRIu64 " (seed %" PRIu64 "): slot %d %p (%zu bytes) corrupt at offset %zu before %s",
		      op, model_seed, i, (void *)s->p, s->size, bad, why);
}

static void place(struct slot *s, unsigned char *p, size_t size, size_t align,
		  uint64_t op)
{
	MCHECK(p != NULL, "op %" PRIu64 ": allocation of %zu bytes failed",
		      op, size);
	s->p = p;
	s->size = size;
	s->usable = ksize(p);
	s->align = align;
	s->loose = align != 0;
	s->seed = next_pattern++;
	MCHECK(s->usable >= size, "op %" PRIu64 ": ksize %zu < %zu", op,
		      s->usable, size);
	if (size >= 16)
		MCHECK((uintptr_t)p % 16 == 0,
			      "op %" PRIu64 ": %zu bytes at %p, not 16-byte aligned", op, size, (void *)p);
	if (align)
		MCHECK((uintptr_t)p % align == 0,
			      "op %" PRIu64 ": kmemalign(%zu) gave %p", op, align,
			      (void *)p);
	fill_pattern_sparse(p, size, s->seed);
}

/* Shadow counts per class vs kmalloc_stats. An object from kmalloc,
 * kzalloc or kcalloc is small exactly when its usable size is at most
 * KMALLOC_MAX_SMALL (and then of the class of that size); where the core
 * puts a kmemalign object (a bigger class, or a large span whose ksize is
 * small) or one krealloc grew past a heap page (large from there on) is
 * its own choice, so those only count in the totals and as slack in the
 * per-class check. */
static void cross_check(uint64_t op)
{
	static uint64_t want[KMALLOC_NUM_CLASSES];
	struct kmalloc_stats st;
	uint64_t large = 0, large_bytes = 0, loose = 0, total = 0;
	const char *m;

	memset(want, 0, sizeof want);
	for (int i = 0; i < SLOTS; i++) {
		if (!slots[i].p)
			continue;
		total++;
		if (slots[i].loose) {
			loose++;
		} else if (slots[i].usable > KMALLOC_MAX_SMALL) {
			large++;
			large_bytes += slots[i].usable;
		} else {
			want[class_of_size(slots[i].usable)]++;
		}
	}
	kmalloc_stats(&st);
	m = stats_inconsistency(&st);
	MCHECK(m == NULL, "op %" PRIu64 ": %s", op, m);
	MCHECK(stats_live_objects(&st) == total,
		      "op %" PRIu64 ": stats count %llu live objects, model %llu", op,
		      (unsigned long long)stats_live_objects(&st),
		      (unsigned long long)total);
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++)
		MCHECK(st.cls[c].live >= want[c] && st.cls[c].live <= want[c] + loose,
		       "op %" PRIu64
		       ": class %d (%llu B) live %llu, model says %llu (+ up to %llu placed at the core's choice)",
		       op, c, (unsigned long long)st.cls[c].size,
		       (unsigned long long)st.cls[c].live, (unsigned long long)want[c],
		       (unsigned long long)loose);
	ck_assert_uint_ge(st.large_live, large);
	ck_assert_uint_le(st.large_live, large + loose);
	ck_assert_uint_ge(st.large_bytes, large_bytes);
}

START_TEST(model)
{
	uint64_t r = model_seed;
	uint64_t op;

	for (op = 0; op < model_ops; op++) {
		int i = (int)rng_below(&r, SLOTS);
		struct slot *s = &slots[i];
		uint64_t k = rng_below(&r, 100);

		if (!s->p) {
			size_t n = random_size(&r);
			if (k < 40) {
				place(s, kmalloc(n, 0), n, 0, op);
			} else if (k < 55) {
				unsigned char *p = kzalloc(n, 0);
				MCHECK(p != NULL, "op %" PRIu64 ": allocation failed", op);
				MCHECK(check_bytes(p, n, 0) == SIZE_MAX,
				       "op %" PRIu64 ": kzalloc(%zu) dirty", op, n);
				place(s, p, n, 0, op);
			} else if (k < 65) {
				size_t each = 1 + rng_below(&r, 16);
				size_t cnt = 1 + n / each;
				unsigned char *p = kcalloc(cnt, each, 0);
				MCHECK(p != NULL, "op %" PRIu64 ": allocation failed", op);
				MCHECK(check_bytes(p, cnt * each, 0) == SIZE_MAX,
				       "op %" PRIu64 ": kcalloc dirty", op);
				place(s, p, cnt * each, 0, op);
			} else if (k < 80) {
				size_t align = (size_t)1 << rng_below(&r, 17);
				place(s, kmemalign(align, n, 0), n, align, op);
			} else {
				place(s, krealloc(NULL, n, 0), n, 0, op);
			}
		} else if (k < 55) {
			verify(s, i, op, "kfree");
			kfree(s->p);
			s->p = NULL;
		} else if (k < 85) {
			/* krealloc: grow, shrink, or stay in the class. */
			size_t n = k < 70 ? random_size(&r)
					  : 1 + rng_below(&r, s->usable);
			int same_class = !s->loose && n <= s->usable &&
			                 s->usable <= KMALLOC_MAX_SMALL &&
			                 class_of_size(n) == class_of_size(s->usable);
			unsigned char *old = s->p;
			unsigned char *q;
			size_t keep = n < s->size ? n : s->size;

			verify(s, i, op, "krealloc");
			q = krealloc(old, n, 0);
			MCHECK(q != NULL, "op %" PRIu64 ": krealloc(%zu) failed", op, n);
			if (same_class)
				MCHECK(q == old,
					      "op %" PRIu64 ": krealloc %zu -> %zu within one class moved",
					      op, s->size, n);
			MCHECK(check_pattern_sparse(q, keep, s->seed) == SIZE_MAX,
			       "op %" PRIu64 ": krealloc %zu -> %zu lost content", op, s->size, n);
			/* In place, a kmemalign object stays where the core put it. */
			int was_loose = s->loose;
			place(s, q, n, q == old ? s->align : 0, op);
			s->loose |= (q == old && was_loose) || (n > 8192 && n <= KMALLOC_MAX_SMALL);
		} else {
			size_t now = ksize(s->p);
			MCHECK(now == s->usable,
				      "op %" PRIu64 ": ksize changed %zu -> %zu", op,
				      s->usable, now);
			verify(s, i, op, "ksize");
		}

		if ((op & 0x3fff) == 0x3fff)
			kmalloc_flush_cpu();
		if (op % 100000 == 99999) {
			/* trim meshes first where the port meshes
			 * (KMALLOC_MESH=1): every object must have kept its
			 * bytes through that */
			kmalloc_trim();
			for (int j = 0; j < SLOTS; j++)
				if (slots[j].p)
					verify(&slots[j], j, op, "after trim");
		}
		if ((op & 0xffff) == 0)
			cross_check(op);
	}
	cross_check(op);

	for (int i = 0; i < SLOTS; i++)
		if (slots[i].p) {
			verify(&slots[i], i, op, "final kfree");
			kfree(slots[i].p);
			slots[i].p = NULL;
		}
	kmalloc_flush_cpu();
	kmalloc_trim();
	{
		struct kmalloc_stats st;
		ASSERT_STATS_CONSISTENT(&st);
		for (int c = 0; c < KMALLOC_NUM_CLASSES; c++) {
			ck_assert_uint_eq(st.cls[c].allocs, st.cls[c].frees);
			ck_assert_uint_eq(st.cls[c].live, 0);
			ck_assert_uint_eq(st.cls[c].spans, 0);
		}
		ck_assert_uint_eq(st.large_live, 0);
		ck_assert_uint_eq(st.large_bytes, 0);
		ck_assert_uint_eq(st.heap_inuse, 0);
		ck_assert_uint_eq(st.heap_free, 0);
		ck_assert_uint_eq(st.heap_released, st.heap_sys);
		ck_assert_uint_eq(st.committed, st.meta_sys);
		printf("api_model: %" PRIu64 " ops, seed %" PRIu64
		       ": heap grew to %llu KiB, %llu KiB metadata left committed\n",
		       model_ops, model_seed,
		       (unsigned long long)st.heap_sys >> 10,
		       (unsigned long long)st.meta_sys >> 10);
	}
}
END_TEST

int main(int argc, char **argv)
{
	model_ops = env_u64("KMALLOC_MODEL_OPS", model_ops);
	if (argc > 1)
		model_ops = strtoull(argv[1], NULL, 0);
	model_seed = env_u64("KMALLOC_MODEL_SEED",
			     (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid());
	if (!model_seed)
		model_seed = 1; /* xorshift must not start at 0 */
	printf("api_model: %" PRIu64 " operations, KMALLOC_MODEL_SEED=%" PRIu64 "\n",
	       model_ops, model_seed);
	fflush(stdout);

	const struct check_test tests[] = {
		CHECK_TEST(model),
	};
	return check_run("kmalloc model", 600, tests, sizeof(tests) / sizeof(tests[0]));
}
