/*
 * test_mcentral.c: the per-class span lists and the way objects come back
 * to their spans, driven directly (cacheSpan, uncacheSpan, refill, return)
 * on the real heap. A fresh mcentral grows from the mheap; uncached spans
 * are filed as partial (at least max(1, nelems/8) free slots) or full; a
 * partial span is reused before the heap grows, the most recently filed
 * first; when the heap cannot grow a full span with a free slot is still
 * handed out. mcentral_return groups a batch by span, sets the free_bits of
 * its objects, sweeps and files an uncached span at once (an empty one
 * goes back to the mheap) and leaves a cached span for its owner to sweep;
 * an object twice in what comes back stops with "double free", an entry
 * that is not a free slot with "corrupt cache entry".
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/child_util.h"
#include "host.h"
#include "internal.h"
#include "remote_free.h"

#define CLS 10 /* 128-byte objects, 64 per one-page span, partial from 8 free */
#define SPC (CLS << 1) /* its span class (scanned half) */

static unsigned cpu;

static struct mcentral *central(void)
{
	return &mheap_.central[SPC].c;
}

/* List lengths and the spans of the class, then the whole heap. */
static void expect_lists(struct mcentral *c, unsigned partial, unsigned full, unsigned nspans)
{
	lock_central(c);
	uint64_t p = c->partial.len, f = c->full.len, n = c->nspans;
	unlock_central(c);
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

/* mcentral_uncacheSpan of the class's span s, then its lists as
 * expect_lists wants them. */
static void uncache(struct mspan *s, unsigned partial, unsigned full, unsigned nspans)
{
	mcentral_uncacheSpan(central(), s);
	expect_lists(central(), partial, full, nspans);
}

/* mcentral_cacheSpan for this CPU: a span this CPU now caches, or NULL. */
static struct mspan *cache(struct mcentral *c)
{
	struct mspan *s = mcentral_cacheSpan(c, cpu);
	if (s != NULL)
		ck_assert_uint_eq(s->cached_by, cpu_slot(cpu));
	return s;
}

/* One object from a span this CPU caches, the way mcache_refill_alloc
 * takes it: the slot's live byte becomes 1. */
static void *take(struct mspan *s)
{
	long idx = mspan_nextFreeFast(s);
	if (idx < 0)
		idx = mspan_nextFreeIndex(s);
	ck_assert_int_lt(idx, s->nelems);
	STORE(*mspan_live(s, (unsigned)(idx)), 1);
	return mspan_slot_addr(s, (unsigned)idx);
}

/* n objects more from s, as take. */
static void take_n(struct mspan *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		take(s);
}

/* The cache entry kfree makes of a live object: its live byte goes 0. */
static struct magentry entry(void *p)
{
	struct mspan *s = spanOf((uintptr_t)p);
	long idx = mspan_slot_of(s, (uintptr_t)p);
	ck_assert_int_ge(idx, 0);
	ck_assert_uint_eq(*mspan_live(s, (unsigned)(idx)), 1);
	STORE(*mspan_live(s, (unsigned)(idx)), 0);
	return (struct magentry){ p, mspan_live(s, (unsigned)(idx)) };
}

/* A span of c's class with `out` objects handed out, uncached and filed
 * on `list`; its objects in obj[0..out). */
static struct mspan *filed_span(struct mcentral *c, unsigned out, void **obj,
			       enum mcentral_list list)
{
	struct mspan *s = cache(c);
	ck_assert_ptr_nonnull(s);
	for (unsigned i = 0; i < out; i++)
		obj[i] = take(s);
	mcentral_uncacheSpan(c, s);
	ck_assert_uint_eq(s->cached_by, CPU_NONE);
	ck_assert_uint_eq(s->allocCount, out);
	ck_assert_uint_eq(s->onlist, list);
	return s;
}

static unsigned slot(struct mspan *s, void *p)
{
	return (unsigned)mspan_slot_of(s, (uintptr_t)p);
}

static bool in_alloc_bits(struct mspan *s, unsigned idx)
{
	return (s->allocBits[idx / 64] >> (idx % 64)) & 1;
}

START_TEST(grow_partial_full)
{
	expect_lists(central(), 0, 0, 0);
	struct mspan *s = cache(central());
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->nelems, 64);
	ck_assert_uint_eq(s->onlist, LIST_NONE);
	expect_lists(central(), 0, 0, 1);
	take_n(s, 10);
	mcentral_uncacheSpan(central(), s);
	ck_assert_uint_eq(s->cached_by, CPU_NONE);
	ck_assert_uint_eq(s->allocCount, 10);
	ck_assert_uint_eq(s->onlist, LIST_PARTIAL);
	expect_lists(central(), 1, 0, 1);
	/* a partial span is handed out again before the heap grows */
	struct mspan *t = cache(central());
	ck_assert_ptr_eq(t, s);
	expect_lists(central(), 0, 0, 1);
	take_n(s, 64 - 10); /* the rest */
	mcentral_uncacheSpan(central(), s);
	ck_assert_uint_eq(s->onlist, LIST_FULL);
	expect_lists(central(), 0, 1, 1);
	/* no partial span: the next cacheSpan grows a second span */
	t = cache(central());
	ck_assert_ptr_ne(t, s);
	expect_lists(central(), 0, 1, 2);
	size_t inuse = mheap_.pages_inuse;
	/* empty: kept as the class's spare, at the tail of partial */
	mcentral_uncacheSpan(central(), t);
	ck_assert_uint_eq(span_state(t), SPAN_INUSE);
	ck_assert_ptr_eq(central()->partial.tail, t);
	ck_assert_uint_eq(central()->nempty, 1);
	expect_lists(central(), 1, 1, 2);
	/* a second empty span goes straight back to the heap */
	struct mspan *u = cache(central()); /* the spare */
	ck_assert_ptr_eq(u, t);
	struct mspan *v = cache(central()); /* fresh */
	mcentral_uncacheSpan(central(), u);
	mcentral_uncacheSpan(central(), v);
	ck_assert_uint_eq(span_state(v), SPAN_DEAD);
	ck_assert_uint_eq(central()->nempty, 1);
	expect_lists(central(), 1, 1, 2);
	/* trim, flush and out of memory give the spare back too */
	mcentral_free_spares();
	ck_assert_uint_eq(span_state(t), SPAN_DEAD);
	ck_assert_uint_eq(mheap_.pages_inuse, inuse - 1);
	expect_lists(central(), 0, 1, 1);
}
END_TEST

/* Partial means at least max(1, nelems/8) free slots: 8 of 64 here, and
 * 1 of 2 for a class with fewer than 8 slots per span. */
START_TEST(partial_from_an_eighth_free)
{
	void *obj[64];
	/* full ones first: a partial span would be reused by the next */
	struct mspan *s = filed_span(central(), 57, obj, LIST_FULL); /* 7 free */
	struct mspan *t = filed_span(central(), 56, obj, LIST_PARTIAL); /* 8 free */
	ck_assert_ptr_ne(t, s);
	expect_lists(central(), 1, 1, 2);

	struct mcentral *big = &mheap_.central[spanclass_make(44, 0)].c; /* 4096 B, 2 per span */
	void *b[2];
	struct mspan *v = filed_span(big, 2, b, LIST_FULL);
	ck_assert_uint_eq(v->nelems, 2);
	struct mspan *u = filed_span(big, 1, b, LIST_PARTIAL);
	ck_assert_ptr_ne(u, v);
	expect_lists(big, 1, 1, 2);
}
END_TEST

/* Lists are stacks: refills take the span that most recently became
 * partial, so allocation concentrates on few spans. */
START_TEST(refill_takes_latest_partial)
{
	/* both cached at once, so the second is a fresh span too */
	struct mspan *a = cache(central());
	struct mspan *b = cache(central());
	ck_assert_ptr_ne(a, b);
	take_n(a, 10);
	take_n(b, 20);
	mcentral_uncacheSpan(central(), a);
	uncache(b, 2, 0, 2);
	struct mspan *t = cache(central());
	ck_assert_ptr_eq(t, b);
	expect_lists(central(), 1, 0, 2);
	uncache(t, 2, 0, 2);
}
END_TEST

/* A span this CPU caches with nothing out, and *waiting: a span with 30
 * objects out on the partial list (its objects are not kept). */
static struct mspan *cached_with_partial_waiting(struct mspan **waiting)
{
	void *obj[64];
	struct mspan *s = cache(central());
	*waiting = filed_span(central(), 30, obj, LIST_PARTIAL);
	expect_lists(central(), 1, 0, 2);
	return s;
}

/* mcentral_refill(c, old, cpu) files the used-up span and hands out
 * another in one lock hold. An old span with nothing out becomes the
 * class's spare (behind every partial span), and a waiting partial span
 * is handed out without growing. */
START_TEST(refill_keeps_empty_old_as_spare)
{
	struct mspan *p;
	struct mspan *e = cached_with_partial_waiting(&p);
	size_t inuse = mheap_.pages_inuse;
	struct mspan *w = mcentral_refill(central(), e, cpu);
	ck_assert_ptr_eq(w, p);
	ck_assert_uint_eq(span_state(e), SPAN_INUSE);
	ck_assert_uint_eq(e->onlist, LIST_PARTIAL);
	ck_assert_uint_eq(p->cached_by, cpu_slot(cpu));
	expect_lists(central(), 1, 0, 2);
	mcentral_free_spares();
	ck_assert_uint_eq(span_state(e), SPAN_DEAD);
	ck_assert_uint_eq(mheap_.pages_inuse, inuse - 1);
	uncache(p, 1, 0, 1);
}
END_TEST

/* A used-up old span is filed full; with no partial span waiting the
 * refill hands out a fresh span from the heap. */
START_TEST(refill_files_used_up_full)
{
	struct mspan *p = cache(central());
	take_n(p, 64);
	struct mspan *t = mcentral_refill(central(), p, cpu);
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_ne(t, p);
	ck_assert_uint_eq(p->cached_by, CPU_NONE);
	ck_assert_uint_eq(p->onlist, LIST_FULL);
	ck_assert_uint_eq(p->allocCount, 64);
	ck_assert_uint_eq(t->cached_by, cpu_slot(cpu));
	ck_assert_uint_eq(t->allocCount, 0);
	expect_lists(central(), 0, 1, 2);
}
END_TEST

/* With a partial span waiting, a refill takes it instead of growing. */
START_TEST(refill_takes_waiting_partial)
{
	struct mspan *q;
	struct mspan *t = cached_with_partial_waiting(&q);
	take_n(t, 64);
	size_t inuse = mheap_.pages_inuse;
	struct mspan *u = mcentral_refill(central(), t, cpu);
	ck_assert_ptr_eq(u, q);
	ck_assert_uint_eq(t->onlist, LIST_FULL);
	ck_assert_uint_eq(mheap_.pages_inuse, inuse);
	expect_lists(central(), 0, 1, 2);
	uncache(u, 1, 1, 2);
}
END_TEST

/* When the heap cannot grow, a span of the full list that still has a
 * free slot is handed out; with none, NULL; growth resumes with memory. */
START_TEST(full_span_with_free_slot_when_heap_cannot_grow)
{
	void *obj[64];
	struct mspan *s = filed_span(central(), 60, obj, LIST_FULL); /* 4 free */
	host_set_commit_limit(host_committed_bytes()); /* nothing more commits */
	struct mspan *t = cache(central());
	ck_assert_ptr_eq(t, s);
	for (int i = 60; i < 64; i++)
		obj[i] = take(t);
	uncache(t, 0, 1, 1);
	ck_assert_ptr_null(cache(central()));
	expect_lists(central(), 0, 1, 1);
	host_set_commit_limit(0);
	t = cache(central());
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_ne(t, s);
	uncache(t, 1, 1, 2); /* empty: the spare */
}
END_TEST

/* A batch from a cache holds objects of several spans in any order:
 * each span gets exactly its objects back, and uncached spans are swept
 * and refiled in the same call. */
START_TEST(return_groups_by_span)
{
	void *a[64], *b[64];
	struct mspan *sa = filed_span(central(), 64, a, LIST_FULL);
	struct mspan *sb = filed_span(central(), 64, b, LIST_FULL);
	expect_lists(central(), 0, 2, 2);
	uint64_t returned = central()->returned;
	/* interleaved, descending and ascending: 9 of a, 8 of b */
	unsigned ia[] = {63, 0, 31, 7, 32, 1, 62, 40, 5};
	unsigned ib[] = {2, 60, 3, 33, 9, 10, 47, 11};
	struct magentry batch[17];
	size_t n = 0;
	for (unsigned k = 0; k < 9; k++) {
		batch[n++] = entry(a[ia[k]]);
		if (k < 8)
			batch[n++] = entry(b[ib[k]]);
	}
	mcentral_return(central(), batch, n);
	ck_assert_uint_eq(central()->returned, returned + 17);
	ck_assert_uint_eq(sa->allocCount, 55);
	ck_assert_uint_eq(sb->allocCount, 56);
	/* swept at once: nothing waits in free_bits, the slots are free */
	ck_assert_uint_eq(sa->free_bits[0] | sb->free_bits[0], 0);
	for (unsigned k = 0; k < 9; k++)
		ck_assert(!in_alloc_bits(sa, ia[k]));
	for (unsigned k = 0; k < 8; k++)
		ck_assert(!in_alloc_bits(sb, ib[k]));
	ck_assert_uint_eq(mspan_out_count(sa), 55);
	ck_assert_uint_eq(mspan_out_count(sb), 56);
	/* 9 and 8 free: both at least an eighth, both partial now */
	ck_assert_uint_eq(sa->onlist, LIST_PARTIAL);
	ck_assert_uint_eq(sb->onlist, LIST_PARTIAL);
	ck_assert_uint_eq(sa->needzero, 1);
	expect_lists(central(), 2, 0, 2);
	/* the slots serve again, lowest first */
	struct mspan *t = cache(central());
	ck_assert_ptr_eq(t, sb); /* refiled last */
	ck_assert_uint_eq(slot(t, take(t)), 2);
	ck_assert_uint_eq(slot(t, take(t)), 3);
	ck_assert_uint_eq(slot(t, take(t)), 9);
	uncache(t, 1, 1, 2);
}
END_TEST

/* Frees in the reverse of allocation order (a stack unwound, a list
 * built at its head) come back descending: each span's run of entries
 * is one visit whichever way it runs, and the run of the next span,
 * below it, is not taken for part of it. Two whole spans, every object
 * back, both empty. */
START_TEST(return_in_descending_order)
{
	void *a[64], *b[64];
	struct mspan *sa = filed_span(central(), 64, a, LIST_FULL);
	struct mspan *sb = filed_span(central(), 64, b, LIST_FULL);
	void **hi = (uintptr_t)a[0] > (uintptr_t)b[0] ? a : b, **lo = hi == a ? b : a;
	struct magentry batch[128];
	size_t n = 0;
	for (int k = 63; k >= 0; k--)
		batch[n++] = entry(hi[k]);
	for (int k = 63; k >= 0; k--)
		batch[n++] = entry(lo[k]);
	uint64_t returned = central()->returned;
	mcentral_return(central(), batch, n);
	ck_assert_uint_eq(central()->returned, returned + 128);
	/* each span swept whole: one stays as the spare, the other went
	 * back to the heap */
	ck_assert_uint_eq((span_state(sa) == SPAN_DEAD) + (span_state(sb) == SPAN_DEAD), 1);
	struct mspan *spare = span_state(sa) == SPAN_DEAD ? sb : sa;
	ck_assert_uint_eq(spare->allocCount, 0);
	ck_assert_uint_eq(mspan_out_count(spare), 0);
	expect_lists(central(), 1, 0, 1);
}
END_TEST

/* Fewer returns than an eighth leave an uncached full span full, but
 * swept: its allocCount drops at once. */
START_TEST(return_below_an_eighth_stays_full)
{
	void *a[64];
	struct mspan *s = filed_span(central(), 64, a, LIST_FULL);
	struct magentry batch[7];
	for (int i = 0; i < 7; i++)
		batch[i] = entry(a[i * 9]);
	mcentral_return(central(), batch, 7);
	ck_assert_uint_eq(s->allocCount, 57);
	ck_assert_uint_eq(s->onlist, LIST_FULL);
	ck_assert_uint_eq(s->free_bits[0], 0);
	expect_lists(central(), 0, 1, 1);
	batch[0] = entry(a[1]);
	mcentral_return(central(), batch, 1);
	ck_assert_uint_eq(s->allocCount, 56);
	ck_assert_uint_eq(s->onlist, LIST_PARTIAL);
	expect_lists(central(), 1, 0, 1);
}
END_TEST

/* An uncached span swept empty by a return is the class's spare until
 * trim, flush or out of memory; then it goes back to the heap. */
START_TEST(empty_uncached_span_goes_back_to_the_heap)
{
	void *a[64];
	struct mspan *s = filed_span(central(), 5, a, LIST_PARTIAL);
	struct mm_census before;
	mm_census(&before);
	struct magentry batch[5];
	for (int i = 0; i < 5; i++)
		batch[i] = entry(a[4 - i]);
	mcentral_return(central(), batch, 5);
	ck_assert_uint_eq(span_state(s), SPAN_INUSE);
	ck_assert_uint_eq(s->allocCount, 0);
	expect_lists(central(), 1, 0, 1);
	mcentral_free_spares();
	ck_assert_uint_eq(span_state(s), SPAN_DEAD);
	expect_lists(central(), 0, 0, 0);
	struct mm_census after;
	mm_census(&after);
	ck_assert_uint_eq(after.spans_small, before.spans_small - 1);
	ck_assert_uint_eq(after.pages_inuse, before.pages_inuse - 1);
	ck_assert_uint_eq(after.pages_free, before.pages_free + 1);
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.cls[CLS].spans, 0);
}
END_TEST

/* A span some CPU caches may be allocated from at this moment without a
 * lock: a return only sets its free_bits, and the owner merges them at its
 * next sweep; even all of its objects back do not free it. */
START_TEST(cached_span_is_left_to_its_owner)
{
	struct mcentral *c = &mheap_.central[spanclass_make(6, 0)].c; /* 64 B: two bitmap words */
	struct mspan *s = cache(c);
	void *o[100];
	for (int i = 0; i < 100; i++)
		o[i] = take(s);
	uint64_t ab0 = s->allocBits[0], ab1 = s->allocBits[1];
	unsigned fi = s->freeindex;
	struct magentry batch[3] = { entry(o[99]), entry(o[3]), entry(o[70]) };
	mcentral_return(c, batch, 3);
	ck_assert_uint_eq(s->free_bits[0], (uint64_t)1 << 3);
	ck_assert_uint_eq(s->free_bits[1], ((uint64_t)1 << 6) | ((uint64_t)1 << 35));
	ck_assert_uint_eq(s->allocBits[0], ab0);
	ck_assert_uint_eq(s->allocBits[1], ab1);
	ck_assert_uint_eq(s->freeindex, fi);
	ck_assert_uint_eq(s->cached_by, cpu_slot(cpu));
	ck_assert_uint_eq(s->onlist, LIST_NONE);
	ck_assert_uint_eq(mspan_out_count(s), 97);
	expect_lists(c, 0, 0, 1);
	/* the owner's sweep merges them; they serve again lowest first */
	ck_assert_uint_eq(mspan_sweep(s), 3);
	ck_assert_uint_eq(s->allocCount, 97);
	ck_assert_uint_eq(slot(s, take(s)), 3);
	ck_assert_uint_eq(slot(s, take(s)), 70);
	ck_assert_uint_eq(slot(s, take(s)), 99);
	/* every object back: still the owner's, still in use */
	struct magentry all[100];
	for (unsigned i = 0; i < 100; i++)
		all[i] = entry(mspan_slot_addr(s, i));
	mcentral_return(c, all, 100);
	ck_assert_uint_eq(span_state(s), SPAN_INUSE);
	ck_assert_uint_eq(mspan_out_count(s), 0);
	expect_lists(c, 0, 0, 1);
	/* uncached by its owner: swept empty, the class's spare, then back
	 * to the heap with the spares */
	mcentral_uncacheSpan(c, s);
	ck_assert_uint_eq(span_state(s), SPAN_INUSE);
	expect_lists(c, 1, 0, 1);
	mcentral_free_spares();
	ck_assert_uint_eq(span_state(s), SPAN_DEAD);
	expect_lists(c, 0, 0, 0);
}
END_TEST

/* The same through kfree: another thread frees an object of a span this
 * thread caches; at its exit its magazine comes back, as free_bits. */
START_TEST(remote_free_reaches_cached_span_at_flush)
{
	void *other = kmalloc(128, 0);
	void *keep = kmalloc(128, 0);
	struct mspan *s = spanOf((uintptr_t)other);
	ck_assert_uint_eq(s->cached_by, cpu_slot(cpu));
	remote_kfree(&other, 1, 0); /* its exit: kmalloc_flush_cpu returns the magazine */
	unsigned idx = slot(s, other);
	ck_assert_uint_eq(s->free_bits[0], (uint64_t)1 << idx);
	ck_assert_uint_eq(*mspan_live(s, (unsigned)(idx)), 0);
	ck_assert_uint_eq(s->cached_by, cpu_slot(cpu));
	expect_lists(central(), 0, 0, 1);
	kfree(keep);
	kmalloc_flush_cpu(); /* the owner's uncache merges the remote free */
	ck_assert_uint_eq(span_state(s), SPAN_DEAD);
	expect_lists(central(), 0, 0, 0);
}
END_TEST

/* ---- objects that cannot come back: forked children ---- */

struct ret_call {
	struct mcentral *c;
	struct magentry *e;
	size_t n;
};

static void do_return(void *arg)
{
	struct ret_call *r = arg;
	mcentral_return(r->c, r->e, r->n);
}

static void expect_return_fault(struct mcentral *c, struct magentry *e, size_t n,
                                const char *fault, const void *p)
{
	struct ret_call r = { c, e, n };
	struct child_result res;
	run_in_child(do_return, &r, &res);
	const char *m = misuse_mismatch(&res, fault, p);
	ck_assert_msg(m == NULL, "%s", m);
}

/* The objects of a batch the test made up but did not return are held
 * by no cache the validator knows: hand them back to their user. */
static void relive(struct magentry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		STORE(*e[i].live, 1);
}

/* Two frees of one object that raced on two CPUs both put it in a cache;
 * when both copies come back in one batch, the span says double free
 * before the slot can be handed out twice. */
START_TEST(duplicate_in_batch_is_double_free)
{
	void *a[64];
	struct mspan *s = filed_span(central(), 64, a, LIST_FULL);
	struct magentry batch[4] = { entry(a[5]), entry(a[9]), entry(a[20]) };
	batch[3] = batch[1]; /* a[9] twice */
	expect_return_fault(central(), batch, 4, "double free", a[9]);
	/* nothing of it reached the parent's heap */
	ck_assert_uint_eq(s->allocCount, 64);
	ck_assert_uint_eq(s->free_bits[0], 0);
	relive(batch, 3);
	ck_assert(mheap_valid());
}
END_TEST

/* The second copy comes back in a later batch while the first still waits
 * in the free_bits of a cached span. */
START_TEST(duplicate_pending_in_free_bits_is_double_free)
{
	struct mspan *s = cache(central());
	void *o[10];
	for (int i = 0; i < 10; i++)
		o[i] = take(s);
	struct magentry first[2] = { entry(o[2]), entry(o[7]) };
	struct magentry again[2] = { first[1], entry(o[8]) };
	mcentral_return(central(), first, 2);
	ck_assert_uint_eq(s->free_bits[0], (uint64_t)(1u << 2 | 1u << 7));
	expect_return_fault(central(), again, 2, "double free", o[7]);
	relive(&again[1], 1);
	ck_assert(mheap_valid());
}
END_TEST

/* An entry whose object is live (live byte 1) is not what a cache can
 * hold: the metadata is corrupt. */
/* Two racing frees leave their copies in two CPUs' magazines, so they
 * nearly always come back in different batches. The first copy is swept
 * into the span before the second arrives; the second must still be
 * reported as what it is, "double free" of the object (kmalloc.h: misuse
 * is one line naming the fault and the pointer), not as corrupt metadata
 * of the span. (On c35067e the sweep reported "corrupt span bitmaps:
 * <span base>".)
 *
 * An uncached span: mcentral_return clears its allocBits at once, under
 * the lock, and the second copy finds its slot not out. */
START_TEST(racing_double_free_across_batches_uncached)
{
	void *a[64];
	filed_span(central(), 64, a, LIST_FULL);
	struct magentry first = entry(a[5]);
	struct magentry second = first; /* the other CPU's copy */
	mcentral_return(central(), &first, 1);
	expect_return_fault(central(), &second, 1, "double free", a[5]);
	ck_assert(mheap_valid());
}
END_TEST

/* A span its owner caches: the owner swept the first copy in; the second
 * comes back, and the owner's next sweep meets it. */
static struct mspan *owned;
static struct magentry second_copy;

static void return_then_sweep(void *arg)
{
	(void)arg;
	mcentral_return(central(), &second_copy, 1);
	mspan_sweep(owned);
}

START_TEST(racing_double_free_across_batches_cached)
{
	owned = cache(central());
	void *o[10];
	for (int i = 0; i < 10; i++)
		o[i] = take(owned);
	struct magentry first = entry(o[3]);
	second_copy = first;
	mcentral_return(central(), &first, 1);
	ck_assert_uint_eq(mspan_sweep(owned), 1);
	struct child_result res;
	run_in_child(return_then_sweep, NULL, &res);
	const char *m = misuse_mismatch(&res, "double free", o[3]);
	ck_assert_msg(m == NULL, "%s", m);
}
END_TEST

START_TEST(live_entry_is_corrupt)
{
	void *a[64];
	filed_span(central(), 64, a, LIST_FULL);
	struct mspan *s = spanOf((uintptr_t)a[3]);
	struct magentry e = entry(a[3]);
	STORE(*mspan_live(s, (unsigned)(3)), 1);
	expect_return_fault(central(), &e, 1, "corrupt cache entry", a[3]);
	/* nor is an entry of another class, or whose live pointer is wrong */
	e.live = mspan_live(s, (unsigned)(4));
	STORE(*mspan_live(s, (unsigned)(3)), 0);
	expect_return_fault(central(), &e, 1, "corrupt cache entry", a[3]);
	struct magentry x = { a[3], mspan_live(s, (unsigned)(3)) };
	expect_return_fault(&mheap_.central[spanclass_make(CLS + 1, 0)].c, &x, 1, "corrupt cache entry", a[3]);
}
END_TEST

START_TEST(central_array_is_cache_line_padded)
{
	ck_assert_uint_eq(sizeof(struct mcentral_padded) % 64, 0);
	ck_assert_uint_eq((uintptr_t)&mheap_.central[1] % 64, 0);
	ck_assert_uint_eq((uintptr_t)&mheap_.central[2] - (uintptr_t)&mheap_.central[1],
	                  sizeof(struct mcentral_padded));
	ck_assert_uint_eq(sizeof(struct transfer_padded) % 64, 0);
	ck_assert_uint_eq((uintptr_t)&mheap_.transfer[1] % 64, 0);
}
END_TEST

#ifdef MM_DEBUG
/* A function that needs a lock asserts it holds it, and one that may take
 * locks or commit asserts it holds none: without them a missing lock is
 * found only by a race detector. Each case runs in a child, which must
 * abort naming the file of the function and the assertion. */
static void alloc_record_unlocked(void *arg)
{
	(void)arg;
	fixalloc_alloc(&mheap_.greyalloc); /* needs mheap.lock */
}

static void refill_under_heap_lock(void *arg)
{
	(void)arg;
	lock_heap();
	mcentral_uncacheSpan(central(), NULL); /* takes mcentral.lock itself */
}

static void expect_assert(void (*fn)(void *), const char *where, const char *what)
{
	struct child_result r;
	run_in_child(fn, NULL, &r);
	ck_assert_msg(r.signaled && r.sig == SIGABRT, "child did not abort: %s", r.err);
	ck_assert_msg(strstr(r.err, "kmalloc: assertion failed at ") == r.err &&
	                      strstr(r.err, where) != NULL && strstr(r.err, what) != NULL,
	              "wrong fault: %s", r.err);
}

START_TEST(missing_or_extra_lock_is_caught)
{
	expect_assert(alloc_record_unlocked, "mm/mfixalloc.c:", "mm_lock_held");
	expect_assert(refill_under_heap_lock, "mm/mcentral.c:", "mm_no_lock_held");
}
END_TEST
#endif

#ifdef MM_DEBUG
#define DEBUG_TESTS CHECK_TEST(missing_or_extra_lock_is_caught),
#else
#define DEBUG_TESTS
#endif
/* clang-format off */
CHECK_MAIN_SETUP("mcentral", 60, setup,
	   CHECK_TEST(grow_partial_full),
	   CHECK_TEST(partial_from_an_eighth_free),
	   CHECK_TEST(refill_takes_latest_partial),
	   CHECK_TEST(refill_keeps_empty_old_as_spare),
	   CHECK_TEST(refill_files_used_up_full),
	   CHECK_TEST(refill_takes_waiting_partial),
	   CHECK_TEST(full_span_with_free_slot_when_heap_cannot_grow),
	   CHECK_TEST(return_groups_by_span),
	   CHECK_TEST(return_in_descending_order),
	   CHECK_TEST(return_below_an_eighth_stays_full),
	   CHECK_TEST(empty_uncached_span_goes_back_to_the_heap),
	   CHECK_TEST(cached_span_is_left_to_its_owner),
	   CHECK_TEST(remote_free_reaches_cached_span_at_flush),
	   CHECK_TEST(duplicate_in_batch_is_double_free),
	   CHECK_TEST(duplicate_pending_in_free_bits_is_double_free),
	   CHECK_TEST(racing_double_free_across_batches_uncached),
	   CHECK_TEST(racing_double_free_across_batches_cached),
	   CHECK_TEST(live_entry_is_corrupt),
	   CHECK_TEST(central_array_is_cache_line_padded),
	   DEBUG_TESTS)
/* clang-format on */
