/*
 * test_mcache.c: the per-CPU magazines, the shared transfer caches and the
 * live bytes, through kmalloc/kfree and the slow-path entry points.
 * Magazine and transfer sizes follow the byte bounds of internal.h; kmalloc
 * stores 1 in an object's live byte and kfree 0; frees go to the freeing
 * CPU's magazine, a stack (the last freed is the next allocated); a full
 * magazine sends its oldest batch to the transfer cache, and when that is
 * full, to the spans; an empty magazine whose span is used up takes the
 * newest batch from the transfer cache; kmalloc_flush_cpu, kmalloc_trim
 * and the other CPUs' safe points empty it all back into the spans. A
 * second kfree of an object is "double free" wherever the first one left
 * it: in this CPU's magazine, in the transfer cache, back in its span; an
 * object freed twice by racing CPUs is caught when both copies come back.
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/child_util.h"
#include "internal.h"

#define CLS 10 /* 128-byte objects, 64 per span: the size class (stats) */
#define SPC (CLS << 1) /* its span class (scanned half): per-class arrays */
/* Its cache sizes (MAG_BYTES / 128, half of that, TC_BYTES / 128 capped
 * at TC_MAX), which the tests below count with; check_sizes makes a
 * change of the bounds fail here first, by name. */
#define M 128 /* magazine capacity */
#define B 64  /* batch */
#define T 1024 /* transfer cache capacity */

static void check_sizes(void)
{
	ck_assert_uint_eq(mheap_.cs.mag_cap[SPC], M);
	ck_assert_uint_eq(mheap_.cs.batch[SPC], B);
	ck_assert_uint_eq(mheap_.cs.tc_cap[SPC], T);
}

static struct mcache *mine(void)
{
	return mm_mcaches[cpu_slot(sys_cpu_id())];
}

static struct magazine *mag(void)
{
	return &mine()->mag[SPC];
}

static struct transfer *tcache(void)
{
	return &mheap_.transfer[SPC].t;
}

static uint8_t *live_of(const void *p)
{
	struct mspan *s = spanOf((uintptr_t)p);
	long idx = mspan_slot_of(s, (uintptr_t)p);
	ck_assert_int_ge(idx, 0);
	return mspan_live(s, (unsigned)(idx));
}

/* Is p among the n entries e, with its own live byte? */
static bool holds(const struct magentry *e, size_t n, const void *p)
{
	for (size_t i = 0; i < n; i++)
		if (e[i].p == p) {
			ck_assert_ptr_eq(e[i].live, live_of(p));
			return true;
		}
	return false;
}

static uint64_t objs_cached(void)
{
	struct mm_census cs;
	mm_census(&cs);
	return cs.objs_cached;
}

/* Run fn in a forked child and expect it to stop with exactly
 * "kmalloc: <fault>: <p>". */
static void expect_fault(void (*fn)(void *), void *arg, const char *fault, const void *p)
{
	struct child_result r;
	run_in_child(fn, arg, &r);
	const char *m = misuse_mismatch(&r, fault, p);
	ck_assert_msg(m == NULL, "%s", m);
}

static void do_kfree(void *p)
{
	kfree(p);
}

static size_t clampz(size_t v, size_t lo, size_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

START_TEST(cache_sizes_follow_byte_bounds)
{
	void *p = kmalloc(1, 0); /* sets up the heap and this CPU's mcache */
	struct mcache *c = mine();
	ck_assert_ptr_nonnull(c);
	for (unsigned i = 2; i < KMALLOC_SPANCLASSES; i++) {
		size_t sz = class_to_size[spanclass_size(i)];
		size_t m = clampz(MAG_BYTES / sz, sz > MAG_BIG ? MAG_MIN_BIG : MAG_MIN, MAG_MAX);
		ck_assert_uint_eq(mheap_.cs.mag_cap[i], m);
		ck_assert_uint_eq(mheap_.cs.batch[i], m / 2);
		ck_assert_uint_eq(mheap_.cs.tc_cap[i], clampz(TC_BYTES / sz, m, TC_MAX));
		ck_assert_uint_eq(mheap_.transfer[i].t.cap, mheap_.cs.tc_cap[i]);
		/* a magazine's entries exist once its class was used here */
		unsigned used = spanclass_make(size_to_class(1), 0);
		if (i == used)
			ck_assert_uint_eq(c->mag[i].limit - c->mag[i].base, m);
		else if (i != used)
			ck_assert_ptr_null(c->mag[i].base);
	}
	check_sizes();
	ck_assert_uint_eq(sizeof(struct magazine), 64);
	kfree(p);
}
END_TEST

START_TEST(live_byte_follows_kmalloc_and_kfree)
{
	void *keep = kmalloc(128, 0);
	void *p = kmalloc(128, 0);
	uint8_t *lb = live_of(p);
	ck_assert_uint_eq(*lb, 1);
	ck_assert_uint_eq(mag_count(mag()), 0);
	kfree(p);
	ck_assert_uint_eq(*lb, 0);
	ck_assert_uint_eq(mag_count(mag()), 1);
	ck_assert_ptr_eq(mag()->base[0].p, p);
	ck_assert_ptr_eq(mag()->base[0].live, lb);
	ck_assert(mheap_valid()); /* out == live + cached */
	/* the magazine serves the next allocation: the live byte again */
	ck_assert_ptr_eq(kmalloc(128, 0), p);
	ck_assert_uint_eq(*lb, 1);
	ck_assert_uint_eq(mag_count(mag()), 0);
	/* and the span's own fast path sets it too */
	void *q = kmalloc(128, 0);
	ck_assert_uint_eq(*live_of(q), 1);
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.cls[CLS].allocs, 4);
	ck_assert_uint_eq(st.cls[CLS].frees, 1);
	ck_assert_uint_eq(mag()->allocs, 4);
	ck_assert_uint_eq(mag()->frees, 1);
	kfree(q);
	kfree(p);
	kfree(keep);
	ck_assert(mheap_valid());
}
END_TEST

START_TEST(magazine_is_a_stack)
{
	void *o[5];
	for (int i = 0; i < 5; i++)
		o[i] = kmalloc(128, 0);
	for (int i = 0; i < 5; i++)
		kfree(o[i]);
	ck_assert_uint_eq(mag_count(mag()), 5);
	for (int i = 0; i < 5; i++)
		ck_assert_ptr_eq(mag()->base[i].p, o[i]);
	for (int i = 4; i >= 0; i--)
		ck_assert_ptr_eq(kmalloc(128, 0), o[i]);
	ck_assert_uint_eq(mag_count(mag()), 0);
	for (int i = 0; i < 5; i++)
		kfree(o[i]);
}
END_TEST

#define NOBJ (M + T + 2 * B) /* the most a test below takes */
static void *o[NOBJ];

/* n objects of the class, in o[]: on a fresh heap o[64k .. 64k+64)
 * share a span. */
static void alloc_n(int n)
{
	ck_assert_int_le(n, NOBJ);
	for (int i = 0; i < n; i++) {
		o[i] = kmalloc(128, 0);
		ck_assert_ptr_nonnull(o[i]);
	}
	check_sizes();
}

/* The free that finds the magazine full moves its oldest batch to the
 * transfer cache, then pushes: the newest objects stay on this CPU. */
START_TEST(full_magazine_spills_oldest_batch)
{
	alloc_n(M + 1);
	uint64_t returned = mheap_.central[SPC].c.returned;
	for (int i = 0; i < M; i++)
		kfree(o[i]);
	ck_assert_uint_eq(mag_count(mag()), M);
	ck_assert_ptr_eq(mag()->top, mag()->limit);
	ck_assert_uint_eq(tcache()->n, 0);
	kfree(o[M]);
	ck_assert_uint_eq(tcache()->n, B);
	for (int i = 0; i < B; i++) {
		ck_assert_ptr_eq(tcache()->e[i].p, o[i]);
		ck_assert_ptr_eq(tcache()->e[i].live, live_of(o[i]));
	}
	ck_assert_uint_eq(mag_count(mag()), M - B + 1);
	for (int i = 0; i <= M - B; i++)
		ck_assert_ptr_eq(mag()->base[i].p, o[B + i]);
	/* nothing went back to a span */
	ck_assert_uint_eq(mheap_.central[SPC].c.returned, returned);
	ck_assert_uint_eq(objs_cached(), (uint64_t)M + 1);
	for (int i = 0; i <= M; i++)
		ck_assert_uint_eq(*live_of(o[i]), 0);
	ck_assert(mheap_valid());
}
END_TEST

/* With the transfer cache full too, the spilled batch goes back to its
 * spans (mcentral_return): the transfer cache keeps what it has. */
START_TEST(full_transfer_cache_returns_to_spans)
{
	alloc_n(M + T + 1);
	uint64_t returned = mheap_.central[SPC].c.returned;
	for (int i = 0; i < M + T; i++)
		kfree(o[i]);
	ck_assert_uint_eq(tcache()->n, T);
	ck_assert_uint_eq(mag_count(mag()), M);
	ck_assert_uint_eq(mheap_.central[SPC].c.returned, returned);
	struct mspan *s = spanOf((uintptr_t)o[T]);
	unsigned out = mspan_out_count(s);
	kfree(o[M + T]); /* spill: o[T .. T+B) go to their spans */
	ck_assert_uint_eq(tcache()->n, T);
	ck_assert_uint_eq(mheap_.central[SPC].c.returned, returned + B);
	ck_assert_uint_eq(mag_count(mag()), M - B + 1);
	ck_assert_ptr_eq(mag()->base[0].p, o[T + B]);
	ck_assert(!holds(tcache()->e, tcache()->n, o[T]));
	ck_assert(!holds(mag()->base, mag_count(mag()), o[T]));
	/* o[T .. T+B) is all of one uncached span: it came back at once,
	 * was swept empty, and stays as the class's one spare empty span
	 * (at the tail of partial) until trim, flush or out-of-memory */
	ck_assert_uint_eq(out, 64);
	ck_assert_uint_eq(span_state(s), SPAN_INUSE);
	ck_assert_uint_eq(s->allocCount, 0);
	ck_assert_uint_eq(s->onlist, LIST_PARTIAL);
	ck_assert_ptr_eq(mheap_.central[SPC].c.partial.tail, s);
	ck_assert_uint_eq(mheap_.central[SPC].c.nempty, 1);
	ck_assert(mheap_valid());
	mcentral_free_spares();
	ck_assert_uint_eq(span_state(s), SPAN_DEAD);
	ck_assert_uint_eq(mheap_.central[SPC].c.nempty, 0);
	ck_assert_uint_eq(objs_cached(), (uint64_t)T + M - B + 1);
	ck_assert(mheap_valid());
}
END_TEST

/* kmalloc's order: the magazine, then the cached span's allocCache, and
 * only when that word is used up the newest batch of the transfer cache
 * (without touching any span). */
START_TEST(empty_magazine_takes_newest_transfer_batch)
{
	const int N = 4 * 64;
	alloc_n(N); /* four spans, the last one cached and used up */
	struct mspan *cached = mine()->alloc[SPC];
	ck_assert_ptr_eq(cached, spanOf((uintptr_t)o[N - 1]));
	ck_assert_uint_eq(cached->allocCache, 0);
	for (int i = 0; i < N; i++)
		kfree(o[i]);
	/* frees 129 and 193 spilled o[0..64) then o[64..128) */
	ck_assert_uint_eq(tcache()->n, 2 * B);
	ck_assert_uint_eq(mag_count(mag()), M);
	uint64_t returned = mheap_.central[SPC].c.returned;
	for (int i = N - 1; i >= 2 * B; i--)
		ck_assert_ptr_eq(kmalloc(128, 0), o[i]);
	ck_assert_uint_eq(mag_count(mag()), 0);
	/* the newest batch, o[64..128), comes over in one piece */
	ck_assert_ptr_eq(kmalloc(128, 0), o[2 * B - 1]);
	ck_assert_uint_eq(tcache()->n, B);
	ck_assert_uint_eq(mag_count(mag()), B - 1);
	for (int i = 2 * B - 2; i >= B; i--)
		ck_assert_ptr_eq(kmalloc(128, 0), o[i]);
	ck_assert_ptr_eq(kmalloc(128, 0), o[B - 1]);
	ck_assert_uint_eq(tcache()->n, 0);
	ck_assert_uint_eq(mheap_.central[SPC].c.returned, returned);
	ck_assert_ptr_eq(mine()->alloc[SPC], cached);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(*live_of(o[i]), i >= B - 1); /* o[0..63) cached */
	ck_assert_uint_eq(mag_count(mag()), B - 1);
	ck_assert(mheap_valid());
}
END_TEST

/* The same through mcache_alloc_slow directly: a batch into the empty
 * magazine, the object it hands out live and possibly dirty. */
START_TEST(alloc_slow_refills_magazine_from_transfer)
{
	alloc_n(M + 2 * B + 1);
	for (int i = 0; i < M + 2 * B + 1; i++)
		kfree(o[i]);
	ck_assert_uint_eq(tcache()->n, 3 * B);
	while (mag_count(mag()) != 0)
		ck_assert_ptr_nonnull(kmalloc(128, 0));
	bool needzero = false;
	void *v = mcache_alloc_slow(mine(), SPC, &needzero);
	ck_assert_ptr_eq(v, o[3 * B - 1]);
	ck_assert(needzero); /* it was used before */
	ck_assert_uint_eq(*live_of(v), 1);
	ck_assert_uint_eq(mag_count(mag()), B - 1);
	ck_assert_uint_eq(tcache()->n, 2 * B);
	for (int i = 0; i < B - 1; i++)
		ck_assert_ptr_eq(mag()->base[i].p, o[2 * B + i]);
}
END_TEST

/* kmalloc_flush_cpu empties this CPU's magazines and the transfer caches
 * into the spans and gives its spans back: nothing stays cached. */
START_TEST(flush_empties_magazines_and_transfer)
{
	alloc_n(700);
	for (int i = 0; i < 700; i++)
		kfree(o[i]);
	ck_assert_uint_gt(tcache()->n, 0);
	ck_assert_uint_gt(mag_count(mag()), 0);
	kmalloc_flush_cpu();
	ck_assert_uint_eq(tcache()->n, 0);
	ck_assert_uint_eq(mag_count(mag()), 0);
	ck_assert_ptr_eq(mine()->alloc[SPC], &mspan_none);
	struct mm_census cs;
	mm_census(&cs);
	ck_assert_uint_eq(cs.objs_cached, 0);
	ck_assert_uint_eq(cs.spans_small, 0);
	ck_assert_uint_eq(cs.pages_inuse, 0);
	ck_assert(mheap_valid());
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.cls[CLS].allocs, 700);
	ck_assert_uint_eq(st.cls[CLS].frees, 700);
	ck_assert_uint_eq(st.cls[CLS].spans, 0);
}
END_TEST

/* A free goes to the freeing CPU's magazine whichever CPU allocated the
 * object, and serves that CPU's next allocation of the class. */
static void *handed, *reused, *in_mag;
static unsigned mag_n;

static void *free_then_alloc(void *arg)
{
	(void)arg;
	kfree(handed);
	struct magazine *m = &mine()->mag[SPC];
	mag_n = mag_count(m);
	in_mag = m->base[0].p;
	reused = kmalloc(128, 0);
	kfree(reused);
	return NULL; /* exit: kmalloc_flush_cpu */
}

START_TEST(free_goes_to_freeing_cpu)
{
	void *keep = kmalloc(128, 0);
	handed = kmalloc(128, 0);
	pthread_t t;
	pthread_create(&t, NULL, free_then_alloc, NULL);
	pthread_join(t, NULL);
	ck_assert_uint_eq(mag_n, 1);
	ck_assert_ptr_eq(in_mag, handed);
	ck_assert_ptr_eq(reused, handed);
	ck_assert_uint_eq(mag_count(mag()), 0);
	ck_assert_uint_eq(objs_cached(), 0); /* the thread's exit flushed */
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.cls[CLS].allocs, 3);
	ck_assert_uint_eq(st.cls[CLS].frees, 2);
	ck_assert_uint_eq(st.cls[CLS].live, 1);
	ck_assert(mheap_valid());
	kfree(keep);
}
END_TEST

/* kmalloc_trim asks every CPU to drain at its next safe point and waits
 * for those that call kmalloc_safepoint: a live thread's magazine is
 * empty once trim returns. The thread reaches a safe point only every
 * 20 ms, as a kernel CPU between timer ticks, so a trim that did not wait
 * for it (for the highest-numbered CPU, say: this thread's) returns with
 * its objects still cached, instead of racing its next safe point. */
static int stop, polling;

static void *safepoint_loop(void *arg)
{
	(void)arg;
	void *v[10];
	for (int i = 0; i < 10; i++)
		v[i] = kmalloc(128, 0);
	for (int i = 0; i < 10; i++)
		kfree(v[i]);
	kmalloc_safepoint(); /* from now on this CPU is waited for */
	__atomic_store_n(&polling, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		struct timespec tick = { 0, 20000000 };
		nanosleep(&tick, NULL);
		kmalloc_safepoint();
	}
	return NULL;
}

START_TEST(trim_drains_other_cpus_at_safe_points)
{
	void *keep = kmalloc(128, 0);
	pthread_t t;
	pthread_create(&t, NULL, safepoint_loop, NULL);
	while (!__atomic_load_n(&polling, __ATOMIC_ACQUIRE))
		sched_yield();
	ck_assert_uint_eq(objs_cached(), 10);
	kmalloc_trim();
	ck_assert_uint_eq(objs_cached(), 0);
	struct mm_census cs;
	mm_census(&cs);
	ck_assert_uint_eq(cs.spans_small, 1); /* keep's */
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	kfree(keep);
}
END_TEST

/* ---- double frees: the second kfree, in a forked child ---- */

START_TEST(double_free_in_magazine)
{
	void *keep = kmalloc(128, 0), *p = kmalloc(128, 0);
	kfree(p);
	ck_assert(holds(mag()->base, mag_count(mag()), p));
	expect_fault(do_kfree, p, "double free", p);
	/* the child's attempt changed nothing here */
	ck_assert_uint_eq(mag_count(mag()), 1);
	ck_assert_ptr_eq(kmalloc(128, 0), p);
	kfree(keep);
}
END_TEST

START_TEST(double_free_in_transfer_cache)
{
	void *keep = kmalloc(128, 0);
	alloc_n(129);
	for (int i = 0; i < 129; i++)
		kfree(o[i]);
	ck_assert(holds(tcache()->e, tcache()->n, o[0]));
	ck_assert(!holds(mag()->base, mag_count(mag()), o[0]));
	expect_fault(do_kfree, o[0], "double free", o[0]);
	kfree(keep);
}
END_TEST

START_TEST(double_free_after_flush)
{
	void *keep = kmalloc(128, 0), *p = kmalloc(128, 0);
	kfree(p);
	kmalloc_flush_cpu(); /* p back in its span, which keep keeps in use */
	ck_assert_uint_eq(objs_cached(), 0);
	struct mspan *s = spanOf((uintptr_t)p);
	ck_assert_uint_eq(span_state(s), SPAN_INUSE);
	ck_assert_uint_eq(s->allocCount, 1);
	expect_fault(do_kfree, p, "double free", p);
	kfree(keep);
}
END_TEST

/* Once the span itself went back to the heap its slots no longer exist:
 * a pointer into it is an invalid free (malloc.c's overview). */
START_TEST(free_into_returned_span_is_invalid)
{
	void *p = kmalloc(128, 0);
	kfree(p);
	kmalloc_flush_cpu();
	ck_assert_uint_eq(span_state(spanOf((uintptr_t)p)), SPAN_DEAD);
	expect_fault(do_kfree, p, "invalid free", p);
}
END_TEST

static void do_flush(void *arg)
{
	(void)arg;
	kmalloc_flush_cpu();
}

/* Two CPUs freeing one object at once can both read its live byte as 1
 * and both cache it. Simulated here on one CPU by putting the byte back
 * to 1 between the frees; when the copies come back to the span together
 * the span says "double free". */
START_TEST(racing_double_free_caught_on_return)
{
	void *keep = kmalloc(128, 0), *p = kmalloc(128, 0);
	kfree(p);
	STORE(*live_of(p), 1); /* what the other CPU's kfree read */
	kfree(p);
	ck_assert_uint_eq(mag_count(mag()), 2);
	ck_assert_ptr_eq(mag()->base[0].p, p);
	ck_assert_ptr_eq(mag()->base[1].p, p);
	expect_fault(do_flush, NULL, "double free", p);
	kfree(keep);
}
END_TEST

static void do_ksize(void *p)
{
	(void)ksize(p);
}

START_TEST(ksize_of_cached_object_is_invalid)
{
	void *keep = kmalloc(128, 0), *p = kmalloc(128, 0);
	kfree(p);
	expect_fault(do_ksize, p, "invalid pointer", p);
	kfree(keep);
}
END_TEST

/* kfree's fast path checks a pointer with the class constants in this
 * CPU's magazine (malloc.c) and never looks at the span: they must be
 * the span's, for every class. For each slot of a span of the class, the
 * magazine's slot test must accept it and nothing between slots, and the
 * live byte it computes (the page descriptor's record, plus the offset
 * shifted by the magazine's liveshift) must be the span's own. */
START_TEST(magazine_constants_are_the_spans)
{
	unsigned long f = sys_irq_save();
	unsigned cpu = sys_cpu_id();
	sys_irq_restore(f);
	for (unsigned cls = 1; cls < _NumSizeClasses; cls++) {
		/* the class kmalloc serves this size from (a 24 B request
		 * gets 32 B: 16-byte alignment) */
		void *p = kmalloc(class_to_size[cls], 0);
		kfree(p); /* the magazine is made and holds p */
		struct mspan *s = spanOf((uintptr_t)p);
		size_t size = s->elemsize;
		const struct magazine *m = &mm_mcaches[cpu_slot(cpu)]->mag[s->spanclass];
		ck_assert_uint_eq(m->slot_bytes, s->nelems * size);
		for (uintptr_t off = 0; off < s->npages * 8192; off += 8) {
			bool start = off % size == 0 && off < m->slot_bytes;
			ck_assert_msg((slot_exact(m->div_exact, off) && off < m->slot_bytes) ==
			                      start,
			              "class %u: offset %lu", cls, (unsigned long)off);
			if (!start)
				continue;
			uintptr_t a = s->base + off;
			uint64_t d = mheap_.pagedesc[(a - mheap_.arena_start) >> PAGE_SHIFT];
			uintptr_t pgoff = (d & PD_PAGEOFF_MASK) | (a & (PAGE_SIZE - 1));
			ck_assert_uint_eq(pgoff, off);
			uint8_t *lb = (uint8_t *)(mheap_.livebase + PD_RECOFF(d)) +
			              (pgoff >> m->liveshift);
			ck_assert_ptr_eq(lb, mspan_live(s, (unsigned)(off / size)));
		}
	}
	ck_assert(mheap_valid());
}
END_TEST

#if defined(MM_DEBUG) && MM_DEBUG >= 2
/* ---- a free racing the death and reuse of its span (debug build) ----
 * A stale pointer p (freed once, at offset 48 of a span S of 48 B
 * objects, which p0 keeps in use) is freed again while another thread
 * frees p0, so that S dies, and allocates 32 B objects, which take S's
 * record and usually its pages (first fit), all live. The test hook runs
 * that other thread inside the window between kfree's first read of
 * p's page and its reads of the live byte; whatever the other thread
 * got, p is no slot start of anything any more, so the only right answer
 * is "invalid free". A kfree that trusted its first read would push p
 * as a 48 B object (and clear the live byte of a 32 B object in use),
 * or call it a double free: the seqlock recheck of the descriptor (fast
 * path) and of the span's state word with its incarnation (live_byte)
 * are what this catches. */
static void *stale_p0, *stale_p; /* set in the parent, before the fork */
static struct mspan *stale_rec;  /* S's record */
static void *reuse[512];

/* 32 B spans take their records from the same fixalloc as 48 B ones (3
 * and 4 bitmap words), whose free list holds only S's: the first 32 B
 * span is S's record's next incarnation, as the test intends (said on
 * stderr, failing the test, if not). */
static void *kill_and_reuse(void *arg)
{
	(void)arg;
	kfree(stale_p0);
	kmalloc_flush_cpu(); /* S empty: back to the heap, its record free */
	for (int i = 0; i < 512; i++)
		reuse[i] = kmalloc(32, 0);
	if (spanOf((uintptr_t)reuse[0]) != stale_rec)
		fprintf(stderr, "test setup: S's record was not reused\n");
	return NULL;
}

static void reuse_in_the_window(enum mm_hook_at at, const void *p)
{
	pthread_t t;
	if ((at != MM_HOOK_KFREE_FAST && at != MM_HOOK_LIVE_BYTE) || p != stale_p)
		return;
	mm_store_release(&mm_test_hook, NULL);
	if (pthread_create(&t, NULL, kill_and_reuse, NULL) == 0)
		pthread_join(t, NULL);
}

static void *make_stale(void *arg)
{
	(void)arg;
	stale_p0 = kmalloc(48, 0);
	stale_p = kmalloc(48, 0);
	kfree(stale_p);
	return NULL; /* the thread's exit flushes its caches: S is uncached */
}

static void stale_setup(void)
{
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, make_stale, NULL), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	struct mspan *s = spanOf((uintptr_t)stale_p);
	stale_rec = s;
	ck_assert_ptr_eq(spanOf((uintptr_t)stale_p0), s);
	ck_assert_uint_eq((uintptr_t)stale_p - s->base, 48);
	ck_assert_uint_eq(span_state(s), SPAN_INUSE);
}

/* The slow path: this thread never allocated, so kfree goes to
 * kfree_slow and live_byte. */
static void stale_free_slow(void *arg)
{
	mm_store_release(&mm_test_hook, reuse_in_the_window);
	kfree(arg);
}

/* The fast path: this thread has a magazine for 48 B objects (made and
 * emptied here), and S's descriptor is valid when kfree reads it. */
static void stale_free_fast(void *arg)
{
	kfree(kmalloc(48, 0)); /* p again: the magazine is made */
	kmalloc_flush_cpu();   /* and p back in S, which nobody caches */
	stale_free_slow(arg);
}

static void race_span_reuse(void (*stale_free)(void *))
{
	stale_setup();
	expect_fault(stale_free, stale_p, "invalid free", stale_p);
}

START_TEST(free_racing_span_reuse_fast_path) { race_span_reuse(stale_free_fast); }
END_TEST

START_TEST(free_racing_span_reuse_slow_path) { race_span_reuse(stale_free_slow); }
END_TEST
#define DEBUG_BUILD_TESTS \
	, CHECK_TEST(free_racing_span_reuse_fast_path), CHECK_TEST(free_racing_span_reuse_slow_path)
#else
#define DEBUG_BUILD_TESTS
#endif

/* clang-format off */
CHECK_MAIN("mcache", 60,
	   CHECK_TEST(cache_sizes_follow_byte_bounds),
	   CHECK_TEST(live_byte_follows_kmalloc_and_kfree),
	   CHECK_TEST(magazine_is_a_stack),
	   CHECK_TEST(full_magazine_spills_oldest_batch),
	   CHECK_TEST(full_transfer_cache_returns_to_spans),
	   CHECK_TEST(empty_magazine_takes_newest_transfer_batch),
	   CHECK_TEST(alloc_slow_refills_magazine_from_transfer),
	   CHECK_TEST(flush_empties_magazines_and_transfer),
	   CHECK_TEST(free_goes_to_freeing_cpu),
	   CHECK_TEST(trim_drains_other_cpus_at_safe_points),
	   CHECK_TEST(double_free_in_magazine),
	   CHECK_TEST(double_free_in_transfer_cache),
	   CHECK_TEST(double_free_after_flush),
	   CHECK_TEST(free_into_returned_span_is_invalid),
	   CHECK_TEST(racing_double_free_caught_on_return),
	   CHECK_TEST(ksize_of_cached_object_is_invalid),
	   CHECK_TEST(magazine_constants_are_the_spans) DEBUG_BUILD_TESTS)
/* clang-format on */
