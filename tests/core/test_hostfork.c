/*
 * test_hostfork.c: fork() and the host port's CPUs (arch/host/fork.c).
 * A fork child gets back the CPU ids of the parent's other threads; the
 * child's next threads take those ids and use each id's mcache as its
 * owner left it (magazine objects, cached span, large bins). Before that,
 * the child drops what a lock-free step caught half-way by fork could
 * have left wrong in such an mcache (magazines at fork, cached spans and
 * large bins when a thread takes the id), each case made here by hand in
 * the parent, then checked in a forked child:
 *   - a magazine entry whose object a cut-short spill already put in the
 *     transfer cache (it would be handed out twice);
 *   - one a cut-short drain already gave back to its span;
 *   - one whose live byte is already 1 (a pop cut short);
 *   - one object in two orphaned magazines;
 *   - a cached span whose sweep was cut short (allocCount wrong);
 *   - large bins whose count is off.
 * Each child exits 0, or 1 with a line on stderr naming the check; the
 * parent asserts on that. Objects handed out in the child are checked to
 * be distinct while live, which a duplicated entry would break.
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/child_util.h"
#include "../lib/fill.h"
#include "host_port.h"
#include "internal.h"

#define CLS 10    /* 128-byte objects */
#define SPC (CLS << 1) /* their span class (scanned half): what caches are indexed by */
#define SZ 128
#define NALLOC 20 /* a parked thread allocates these, */
#define NFREE 10  /* frees the last ones (its magazine holds them), */
#define LARGE_PAGES 9   /* and frees one large object (over 64 KiB: large) */
#define LARGE       (LARGE_PAGES * PAGE_SIZE)

/* A thread that allocates, frees into its caches, and waits. */
struct parked {
	pthread_t t;
	unsigned slot;          /* its CPU's slot (id + 1) */
	struct mcache *c;
	void *kept[NALLOC - NFREE];
	struct magentry freed[NFREE]; /* its magazine of CLS, oldest first */
	int fds[2];
	int ready[2];
};

static void *parked_main(void *arg)
{
	struct parked *pk = arg;
	void *v[NALLOC];
	for (int i = 0; i < NALLOC; i++)
		v[i] = kmalloc(SZ, 0);
	for (int i = NALLOC - NFREE; i < NALLOC; i++)
		kfree(v[i]);
	kfree(kmalloc(LARGE, 0));
	memcpy(pk->kept, v, sizeof(pk->kept));
	pk->slot = cpu_slot(sys_cpu_id());
	pk->c = mm_mcaches[pk->slot];
	memcpy(pk->freed, pk->c->mag[SPC].base, sizeof(pk->freed));
	char b = 1;
	ck_assert_int_eq(write(pk->ready[1], &b, 1), 1);
	ck_assert_int_eq(read(pk->fds[0], &b, 1), 1); /* until released */
	return NULL;
}

static void park(struct parked *pk)
{
	char b;
	ck_assert_int_eq(pipe(pk->fds), 0);
	ck_assert_int_eq(pipe(pk->ready), 0);
	ck_assert_int_eq(pthread_create(&pk->t, NULL, parked_main, pk), 0);
	ck_assert_int_eq(read(pk->ready[0], &b, 1), 1);
	ck_assert_uint_eq(mag_count(&pk->c->mag[SPC]), NFREE);
	ck_assert_uint_eq(pk->c->nlarge, 1);
}

static void unpark(struct parked *pk)
{
	char b = 1;
	ck_assert_int_eq(write(pk->fds[1], &b, 1), 1);
	pthread_join(pk->t, NULL);
}

#define FAIL_IF(cond, what)                                             \
	do {                                                            \
		if (cond) {                                             \
			fprintf(stderr, "child: %s\n", what);           \
			_exit(1);                                       \
		}                                                       \
	} while (0)

/* In the child: run fn in a new thread (it takes the lowest free id). */
static void in_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	FAIL_IF(pthread_create(&t, NULL, fn, arg) != 0, "pthread_create");
	pthread_join(t, NULL);
}

static bool mag_holds(const struct magazine *m, const void *p)
{
	for (const struct magentry *e = m->base; e < m->top; e++)
		if (e->p == p)
			return true;
	return false;
}

/* Allocate n objects of CLS: all distinct while live (a duplicated cache
 * entry would give one twice), then free them. */
static void alloc_distinct(size_t n)
{
	void **v = calloc(n, sizeof(void *));
	FAIL_IF(v == NULL, "calloc");
	for (size_t i = 0; i < n; i++) {
		v[i] = kmalloc(SZ, 0);
		FAIL_IF(v[i] == NULL, "kmalloc");
		memset(v[i], (int)i, SZ);
	}
	for (size_t i = 0; i < n; i++)
		FAIL_IF(check_bytes(v[i], SZ, (unsigned char)i) != SIZE_MAX,
		        "an object handed out twice");
	for (size_t i = 0; i < n; i++)
		kfree(v[i]);
	free(v);
}

/* ---- ids and caches come back ---- */

static struct parked pk1, pk2;

static void *adopt_thread(void *arg)
{
	(void)arg;
	void *first = kmalloc(SZ, 0); /* takes an id */
	FAIL_IF(cpu_slot(sys_cpu_id()) != pk1.slot, "the new thread has the orphan's id");
	FAIL_IF(mm_mcaches[pk1.slot] != pk1.c, "and its mcache");
	/* the magazine is a stack: the orphan's last free comes first */
	FAIL_IF(first != pk1.freed[NFREE - 1].p, "its magazine's objects are reused");
	for (int i = NFREE - 2; i >= 0; i--)
		FAIL_IF(kmalloc(SZ, 0) != pk1.freed[i].p, "in stack order");
	FAIL_IF(pk1.c->nlarge != 1, "its large bin is kept");
	void *l = kmalloc(LARGE, 0);
	FAIL_IF(pk1.c->nlarge != 0, "and reused");
	kfree(l);
	alloc_distinct(300);
	return NULL;
}

static void child_adopts(void *arg)
{
	(void)arg;
	FAIL_IF(host_cpu_taken(pk1.slot - 1), "the orphan's id is free in the child");
	FAIL_IF(!host_cpu_taken(sys_cpu_id()), "the forking thread keeps its id");
	in_thread(adopt_thread, NULL);
}

static void run_child(void (*fn)(void *))
{
	struct child_result r;
	run_in_child(fn, NULL, &r);
	ck_assert_msg(!r.signaled && r.status == 0, "child: signal %d status %d: %s",
	              r.signaled ? r.sig : 0, r.status, r.err);
}

START_TEST(child_gets_ids_and_caches_back)
{
	void *keep = kmalloc(SZ, 0); /* this thread has an id too */
	park(&pk1);
	run_child(child_adopts);
	unpark(&pk1);
	kfree(keep);
}
END_TEST

/* ---- half-done states ---- */

static void *churn_thread(void *arg)
{
	(void)arg;
	alloc_distinct(500);
	return NULL;
}

/* The entry e must be gone from pk1's magazine, the others kept, and
 * the class must hand out distinct objects. */
static const void *gone;

static void child_dropped(void *arg)
{
	(void)arg;
	const struct magazine *m = &pk1.c->mag[SPC];
	FAIL_IF(mag_holds(m, gone), "the suspect entry was dropped");
	FAIL_IF(mag_count(m) != NFREE - 1, "the other entries were kept");
	in_thread(churn_thread, NULL);
}

START_TEST(entry_also_in_transfer_cache_dropped)
{
	void *keep = kmalloc(SZ, 0);
	park(&pk1);
	/* a spill that put its batch and was stopped before it shortened
	 * the magazine */
	struct magentry e = pk1.freed[NFREE - 1];
	ck_assert_uint_eq(mm_transfer_put(SPC, &e, 1), 1);
	gone = e.p;
	run_child(child_dropped);
	struct magentry back;
	ck_assert_uint_eq(mm_transfer_take(SPC, &back, 1), 1); /* undo */
	unpark(&pk1);
	kfree(keep);
}
END_TEST

START_TEST(entry_returned_to_span_dropped)
{
	void *keep = kmalloc(SZ, 0);
	park(&pk1);
	/* a drain that returned the magazine to the spans and was stopped
	 * before it emptied it: the object is free in its span */
	struct magentry e = pk1.freed[3];
	mcentral_return(&mheap_.central[SPC].c, &e, 1);
	gone = pk1.freed[3].p;
	run_child(child_dropped);
	/* the parent's copy still holds the object twice: empty the
	 * magazine (leaking its objects) so the thread's exit does not
	 * return it a second time */
	pk1.c->mag[SPC].top = pk1.c->mag[SPC].base;
	unpark(&pk1);
	kfree(keep);
}
END_TEST

START_TEST(live_entry_dropped)
{
	void *keep = kmalloc(SZ, 0);
	park(&pk1);
	/* a pop whose live-byte store landed before its top update */
	STORE(*pk1.freed[5].live, 1);
	gone = pk1.freed[5].p;
	run_child(child_dropped);
	STORE(*pk1.freed[5].live, 0);
	unpark(&pk1);
	kfree(keep);
}
END_TEST

static void child_both_dropped(void *arg)
{
	(void)arg;
	FAIL_IF(mag_holds(&pk1.c->mag[SPC], gone), "dropped from the first orphan");
	FAIL_IF(mag_holds(&pk2.c->mag[SPC], gone), "and from the second");
	FAIL_IF(mag_count(&pk2.c->mag[SPC]) != NFREE, "the second's own entries kept");
	in_thread(churn_thread, NULL);
	in_thread(churn_thread, NULL);
}

START_TEST(entry_in_two_orphans_dropped)
{
	void *keep = kmalloc(SZ, 0);
	park(&pk1);
	park(&pk2);
	/* the same object in two magazines: one of them is stale */
	struct magazine *m2 = &pk2.c->mag[SPC];
	*m2->top = pk1.freed[2];
	m2->top++;
	gone = pk1.freed[2].p;
	run_child(child_both_dropped);
	m2->top--;
	unpark(&pk2);
	unpark(&pk1);
	kfree(keep);
}
END_TEST

/* The checks of cached spans and large bins run when a thread takes the
 * id: this one takes it with its first allocation, a magazine pop that
 * touches neither. */
static void span_dropped(void)
{
	FAIL_IF(pk1.c->alloc[SPC] != &mspan_none, "the half-swept span left the mcache");
	FAIL_IF(mag_count(&pk1.c->mag[SPC]) != NFREE, "the magazine is kept");
}

static void bins_recounted(void);

/* arg: 0 looks at the span, 1 at the large bins */
static void *adopt_and_look(void *arg)
{
	kfree(kmalloc(SZ, 0));
	FAIL_IF(cpu_slot(sys_cpu_id()) != pk1.slot, "the orphan's id is taken");
	if (arg == NULL)
		span_dropped();
	else
		bins_recounted();
	alloc_distinct(500);
	return NULL;
}

static void child_span_dropped(void *arg)
{
	(void)arg;
	FAIL_IF(pk1.c->alloc[SPC] == &mspan_none, "nothing is dropped before a thread adopts");
	in_thread(adopt_and_look, NULL);
}

START_TEST(half_swept_span_dropped)
{
	void *keep = kmalloc(SZ, 0);
	park(&pk1);
	struct mspan *s = pk1.c->alloc[SPC];
	ck_assert_ptr_ne(s, &mspan_none);
	s->allocCount++; /* a sweep stopped before it stored the count */
	run_child(child_span_dropped);
	s->allocCount--;
	unpark(&pk1);
	kfree(keep);
}
END_TEST

static void bins_recounted(void)
{
	FAIL_IF(pk1.c->nlarge != 1, "the large bins are recounted");
	FAIL_IF(pk1.c->large_cached_bytes != LARGE_PAGES * PAGE_SIZE, "with their bytes");
	FAIL_IF(pk1.c->lbin[LARGE_PAGES] == NULL, "and their span kept");
}

static void child_bins_recounted(void *arg)
{
	(void)arg;
	static int bins = 1;
	in_thread(adopt_and_look, &bins);
}

START_TEST(large_bins_recounted)
{
	void *keep = kmalloc(SZ, 0);
	park(&pk1);
	pk1.c->nlarge = 0; /* a cache_put stopped before its count */
	run_child(child_bins_recounted);
	pk1.c->nlarge = 1;
	unpark(&pk1);
	kfree(keep);
}
END_TEST

/* clang-format off */
CHECK_MAIN("hostfork", 60,
	   CHECK_TEST(child_gets_ids_and_caches_back),
	   CHECK_TEST(entry_also_in_transfer_cache_dropped),
	   CHECK_TEST(entry_returned_to_span_dropped),
	   CHECK_TEST(live_entry_dropped),
	   CHECK_TEST(entry_in_two_orphans_dropped),
	   CHECK_TEST(half_swept_span_dropped),
	   CHECK_TEST(large_bins_recounted))
/* clang-format on */
