/*
 * test_mspan.c: one span's bitmaps and live bytes on their own (a span
 * record, bitmaps and live bytes in plain memory; the span's address range
 * is never touched): allocation hands out every slot of every class once,
 * in address order, and never a padding slot; nextFreeFast gives slot
 * indexes and -1 when its cache word is used up; a sweep merges the
 * free_bits (what mcentral_return sets) into allocBits, recounts
 * allocCount and the freed slots come back lowest first; slot lookup
 * accepts exactly the slot starts; the out count and the validator agree
 * with the live bytes (1 only on slots out of the span) and notice
 * corrupted bitmaps; a freed bit on a slot that is not out (the second
 * copy of an object freed twice at once) stops with "double free".
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <stdlib.h>
#include <string.h>

#include "../lib/child_util.h"
#include "internal.h"

#define FAKE_BASE ((uintptr_t)1 << 40) /* addresses only computed, never used */

/* A span record as the mheap lays it out: the live bytes right behind
 * the struct (mspan_livebytes); the bitmaps may be anywhere. */
static struct {
	struct mspan s;
	uint8_t live[_MaxObjsPerSpan];
} rec;
#define span (rec.s)
static uint64_t bits[2 * SPAN_MAX_WORDS];

/* A fresh span of class cls, cached by CPU 0 (allocation only ever
 * happens from a cached span, whose allocCount is not exact between
 * sweeps). */
static void span_setup(unsigned cls)
{
	memset(&rec, 0, sizeof rec);
	memset(bits, 0, sizeof bits);
	span.base = FAKE_BASE;
	span.npages = class_to_allocnpages[cls];
	span.allocBits = bits;
	span.free_bits = bits + SPAN_MAX_WORDS;
	mspan_init_small(&span, spanclass_make(cls, 0));
	span.cached_by = cpu_slot(0);
}

/* One allocation the way mcache_refill_alloc does it: fast path, then
 * nextFreeIndex; the slot's live byte becomes 1 as kmalloc stores it.
 * Returns the slot index, or nelems when the span is full. */
static unsigned take(void)
{
	long idx = mspan_nextFreeFast(&span);
	if (idx < 0)
		idx = mspan_nextFreeIndex(&span);
	if ((unsigned)idx < span.nelems)
		*mspan_live(&span, (unsigned)idx) = 1;
	return (unsigned)idx;
}

/* An object coming back to the span as mcentral_return brings it: its
 * live byte went 0 at kfree, its freeBit is set with an atomic OR. */
static void give_back(unsigned idx)
{
	*mspan_live(&span, idx) = 0;
	__atomic_fetch_or(&span.free_bits[idx / 64], (uint64_t)1 << (idx % 64), __ATOMIC_SEQ_CST);
}

/* n slots more handed out, as take. */
static void take_n(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		take();
}

/* Right after a sweep allocCount is exact, so the span must also pass
 * the validator's stricter check for uncached spans. */
static int valid_as_uncached(void)
{
	uint32_t by = span.cached_by;
	span.cached_by = CPU_NONE;
	int ok = mspan_valid(&span);
	span.cached_by = by;
	return ok;
}

/* Go's size-class table (runtime/sizeclasses.go), copied by hand, not
 * computed: bytes per object, pages per span, objects per span. */
static const struct {
	unsigned size, npages, nelems;
} go_classes[] = {
	{ 8, 1, 1024 }, { 16, 1, 512 },  { 48, 1, 170 },   { 112, 1, 73 },
	{ 1024, 1, 8 }, { 1152, 1, 7 },  { 3072, 3, 8 },   { 4864, 3, 5 },
	{ 9472, 7, 6 }, { 10240, 5, 4 }, { 27264, 10, 3 }, { 32768, 4, 1 },
};

/* A span's fields, checked against values computed here by plain
 * division (and Go's table for a few classes), never by the formulas of
 * mspan.c: the slot test accepts exactly the multiples of the size below
 * the slots' end, the index is offset / size, and a slot's live byte is
 * its own. */
START_TEST(init_fields)
{
	for (unsigned g = 0; g < sizeof go_classes / sizeof go_classes[0]; g++) {
		unsigned cls = size_to_class(go_classes[g].size);
		ck_assert_uint_eq(class_to_size[cls], go_classes[g].size);
		span_setup(cls);
		ck_assert_uint_eq(span.npages, go_classes[g].npages);
		ck_assert_uint_eq(span.nelems, go_classes[g].nelems);
	}
	for (unsigned cls = 1; cls < _NumSizeClasses; cls++) {
		span_setup(cls);
		size_t size = class_to_size[cls], n = span.npages * 8192 / size;
		ck_assert_uint_eq(span_state(&span), SPAN_INUSE);
		ck_assert_uint_eq(span.spanclass, spanclass_make(cls, 0));
		ck_assert_uint_eq(span.elemsize, size);
		ck_assert_uint_eq(span.nelems, n);
		ck_assert_uint_eq(span.nbytes, n * size);
		ck_assert_uint_eq(span.limit, span.base + n * size);
		for (uintptr_t off = 0; off < span.npages * 8192 + size; off += 8) {
			bool start = off % size == 0 && off < n * size;
			ck_assert_msg(slot_exact(span.div_exact, off) == start || off >= n * size,
			              "class %u: offset %lu", cls, (unsigned long)off);
			ck_assert_msg((mspan_slot_of(&span, span.base + off) >= 0) == start,
			              "class %u: offset %lu", cls, (unsigned long)off);
			if (off < n * size)
				ck_assert_uint_eq(obj_index(span.divMul, off), off / size);
		}
		for (size_t i = 1; i < n; i++) /* one live byte per slot, in order */
			ck_assert((uintptr_t)mspan_live(&span, (unsigned)i) >
			          (uintptr_t)mspan_live(&span, (unsigned)i - 1));
		ck_assert_uint_eq(span.allocCount, 0);
		ck_assert_uint_eq(span.freeindex, 0);
		ck_assert(mspan_valid(&span));
		ck_assert_uint_eq(mspan_out_count(&span), 0);
	}
}
END_TEST

START_TEST(every_class_every_slot_once)
{
	for (unsigned cls = 1; cls < _NumSizeClasses; cls++) {
		span_setup(cls);
		unsigned n = span.nelems;
		for (unsigned i = 0; i < n; i++) {
			unsigned idx = take();
			ck_assert_msg(idx == i, "class %u: slot %u handed out as %u", cls, i, idx);
		}
		ck_assert_int_eq(mspan_nextFreeFast(&span), -1);
		ck_assert_uint_eq(mspan_nextFreeIndex(&span), n);
		ck_assert_uint_eq(span.freeindex, n);
		ck_assert_uint_eq(mspan_out_count(&span), n);
		/* allocCount is not kept by allocation: only a sweep recounts
		 * it (mspan_nextFreeFast's comment) */
		ck_assert_uint_eq(span.allocCount, 0);
		ck_assert(mspan_valid(&span));
		/* sweep with nothing freed: full, allocCount exact */
		ck_assert_uint_eq(mspan_sweep(&span), 0);
		ck_assert_uint_eq(span.allocCount, n);
		ck_assert_uint_eq(span.needzero, 0);
		ck_assert_uint_eq(take(), n);
		span.cached_by = CPU_NONE; /* uncached: allocCount checked */
		ck_assert(mspan_valid(&span));
	}
}
END_TEST

/* The fast path leaves a used-up cache word at 0 with freeindex on the
 * word boundary and answers -1; nextFreeIndex loads the next word. */
START_TEST(fast_path_minus_one_at_word_end)
{
	span_setup(6); /* 64 B, 128 slots, two bitmap words */
	for (long i = 0; i < 64; i++)
		ck_assert_int_eq(mspan_nextFreeFast(&span), i);
	ck_assert_int_eq(mspan_nextFreeFast(&span), -1);
	ck_assert_uint_eq(span.freeindex, 64);
	ck_assert_uint_eq(span.allocCache, 0);
	ck_assert_uint_eq(mspan_nextFreeIndex(&span), 64);
	ck_assert_int_eq(mspan_nextFreeFast(&span), 65);
	/* the sentinel of empty mcache slots never hands anything out */
	ck_assert_int_eq(mspan_nextFreeFast(&mspan_none), -1);
	ck_assert_uint_eq(mspan_none.nelems, 0);
	ck_assert_uint_eq(mspan_none.cached_by, CPU_NONE);
}
END_TEST

START_TEST(sweep_merges_free_bits)
{
	span_setup(6);
	for (unsigned i = 0; i < 128; i++)
		ck_assert_uint_eq(take(), i);
	ck_assert_uint_eq(take(), 128);
	unsigned back[] = {0, 3, 64, 65, 127};
	for (unsigned i = 0; i < 5; i++)
		give_back(back[i]);
	ck_assert(mspan_valid(&span));
	/* slots whose freeBit waits for the sweep already count as back */
	ck_assert_uint_eq(mspan_out_count(&span), 123);
	ck_assert_uint_eq(mspan_sweep(&span), 5);
	ck_assert_uint_eq(span.allocCount, 123);
	ck_assert_uint_eq(span.free_bits[0] | span.free_bits[1], 0);
	ck_assert_uint_eq(span.allocBits[0], ~(uint64_t)((1u << 0) | (1u << 3)));
	ck_assert_uint_eq(span.allocBits[1], ~((uint64_t)3 | (uint64_t)1 << 63));
	ck_assert_uint_eq(span.needzero, 1); /* reused slots hold old data */
	ck_assert(valid_as_uncached());
	for (unsigned i = 0; i < 5; i++)
		ck_assert_uint_eq(take(), back[i]);
	ck_assert_uint_eq(take(), 128);
	ck_assert_uint_eq(mspan_out_count(&span), 128);
}
END_TEST

START_TEST(frees_before_freeindex_and_after)
{
	span_setup(6);
	take_n(70);
	/* freeindex is 70: returns below it; slots above were never out */
	give_back(10);
	give_back(69);
	ck_assert_uint_eq(mspan_sweep(&span), 2);
	ck_assert_uint_eq(span.allocCount, 68);
	ck_assert_uint_eq(span.freeindex, 0);
	ck_assert(valid_as_uncached());
	ck_assert_uint_eq(take(), 10);
	ck_assert_uint_eq(take(), 69);
	for (unsigned i = 70; i < 128; i++)
		ck_assert_uint_eq(take(), i);
	ck_assert_uint_eq(take(), 128);
}
END_TEST

/* A slot taken since the last sweep and returned before the next one
 * nets out: allocCount counts it neither as taken nor as freed. */
START_TEST(taken_and_returned_between_sweeps)
{
	span_setup(6);
	take_n(20);
	ck_assert_uint_eq(mspan_sweep(&span), 0);
	ck_assert_uint_eq(span.allocCount, 20);
	for (unsigned i = 20; i < 30; i++)
		ck_assert_uint_eq(take(), i);
	give_back(25);
	give_back(5);
	ck_assert_uint_eq(mspan_sweep(&span), 2);
	ck_assert_uint_eq(span.allocCount, 28);
	ck_assert(valid_as_uncached());
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
		give_back(i);
	ck_assert_uint_eq(mspan_sweep(&span), 341);
	ck_assert_uint_eq(span.allocCount, 0);
	ck_assert_uint_eq(span.allocBits[5], ~(((uint64_t)1 << 21) - 1));
	ck_assert(valid_as_uncached());
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
		ck_assert_ptr_eq(mspan_slot_addr(&span, i), (void *)p);
		ck_assert_int_eq(mspan_slot_of(&span, p + 1), -1);
		ck_assert_int_eq(mspan_slot_of(&span, p + 16), -1);
		ck_assert_int_eq(mspan_slot_of(&span, p + 47), -1);
	}
	ck_assert_int_eq(mspan_slot_of(&span, span.base + 170 * 48), -1); /* tail */
	ck_assert_int_eq(mspan_slot_of(&span, span.base - 48), -1);
	ck_assert_int_eq(mspan_slot_of(&span, span.base + 8192), -1);
	/* far away (a stale record read by kfree): beyond 32 bits of offset */
	ck_assert_int_eq(mspan_slot_of(&span, span.base + ((uintptr_t)48 << 32)), -1);
}
END_TEST

/* Live bytes are 1 exactly on slots a user holds; a slot out of the span
 * with byte 0 is in some cache, and one not out must read 0. */
START_TEST(validator_checks_live_bytes)
{
	span_setup(6);
	take_n(10);
	ck_assert(mspan_valid(&span));
	*mspan_live(&span, 4) = 0; /* out, byte 0: held by a cache */
	ck_assert(mspan_valid(&span));
	ck_assert_uint_eq(mspan_out_count(&span), 10);
	*mspan_live(&span, 50) = 1; /* never handed out, yet live */
	ck_assert(!mspan_valid(&span));
	*mspan_live(&span, 50) = 0;
	*mspan_live(&span, 3) = 2; /* not a live byte value */
	ck_assert(!mspan_valid(&span));
	*mspan_live(&span, 3) = 1;
	ck_assert(mspan_valid(&span));
	/* a live byte left at 1 after its slot came back to the span */
	give_back(7);
	*mspan_live(&span, 7) = 1;
	ck_assert(!mspan_valid(&span));
}
END_TEST

START_TEST(validator_notices_corruption)
{
	span_setup(6);
	take_n(10);
	ck_assert(mspan_valid(&span));
	span.free_bits[0] |= (uint64_t)1 << 50; /* returned, never handed out */
	ck_assert(!mspan_valid(&span));
	span.free_bits[0] = 0;
	ck_assert(mspan_valid(&span));
	/* uncached spans have an exact allocCount: 10 out, 0 counted */
	span.cached_by = CPU_NONE;
	ck_assert(!mspan_valid(&span));
	ck_assert_uint_eq(mspan_sweep(&span), 0);
	ck_assert_uint_eq(span.allocCount, 10);
	ck_assert(mspan_valid(&span));
	span_setup(3);
	span.allocBits[5] = 0; /* padding lost */
	ck_assert(!mspan_valid(&span));
	span_setup(3);
	span.free_bits[5] = (uint64_t)1 << 40; /* a freed padding slot */
	ck_assert(!mspan_valid(&span));
}
END_TEST

static void sweep_corrupt(void *arg)
{
	(void)arg;
	mspan_sweep(&span);
}

START_TEST(sweep_refuses_corrupt_bitmaps)
{
	span_setup(6);
	take();
	/* never handed out: merging it would hand slot 40 out twice; only a
	 * second copy of a freed object comes back like that */
	__atomic_fetch_or(&span.free_bits[0], (uint64_t)1 << 40, __ATOMIC_SEQ_CST);
	struct child_result r;
	run_in_child(sweep_corrupt, NULL, &r);
	const char *m = misuse_mismatch(&r, "double free", mspan_slot_addr(&span, 40));
	ck_assert_msg(m == NULL, "%s", m);
	/* the parent's span is untouched by the child's death */
	ck_assert_uint_eq(span.free_bits[0], (uint64_t)1 << 40);
}
END_TEST

/* clang-format off */
CHECK_MAIN("mspan", 60,
	   CHECK_TEST(init_fields),
	   CHECK_TEST(every_class_every_slot_once),
	   CHECK_TEST(fast_path_minus_one_at_word_end),
	   CHECK_TEST(sweep_merges_free_bits),
	   CHECK_TEST(frees_before_freeindex_and_after),
	   CHECK_TEST(taken_and_returned_between_sweeps),
	   CHECK_TEST(padding_never_handed_out),
	   CHECK_TEST(slot_of_accepts_only_slot_starts),
	   CHECK_TEST(validator_checks_live_bytes),
	   CHECK_TEST(validator_notices_corruption),
	   CHECK_TEST(sweep_refuses_corrupt_bitmaps))
/* clang-format on */
