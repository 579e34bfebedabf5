/*
 * api_misuse.c: bad pointers given to kfree/ksize/krealloc must stop the
 * program with one line naming the fault and the pointer, before anything
 * is modified:
 *
 *     kmalloc: double free: 0x7f...
 *     kmalloc: invalid free: 0x7f...
 *
 * Each case sets the heap up in the test process, then makes the one bad
 * call in a forked child whose stderr comes back through a pipe; the test
 * asserts the child died by SIGABRT and printed exactly that line with
 * the right pointer. The heap state the child starts from is a copy of
 * the parent's, so the setup (what is live, what was freed, which spans
 * went back to the mheap) is the same in both, and the parent carries on
 * unharmed.
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"

enum op { OP_KFREE, OP_KSIZE, OP_KREALLOC, OP_KFREE_IN_THREAD };

struct bad_call {
	enum op op;
	const void *ptr;
};

static void *thread_kfree(void *p)
{
	kfree(p);
	return NULL;
}

static void do_bad_call(void *arg)
{
	const struct bad_call *b = arg;
	pthread_t th;

	switch (b->op) {
	case OP_KFREE:
		kfree(b->ptr);
		break;
	case OP_KSIZE:
		(void)ksize(b->ptr);
		break;
	case OP_KREALLOC:
		(void)krealloc((void *)b->ptr, 100, 0);
		break;
	case OP_KFREE_IN_THREAD:
		if (pthread_create(&th, NULL, thread_kfree, (void *)b->ptr) == 0)
			pthread_join(th, NULL);
		break;
	}
}

static void expect_fault(enum op op, const void *ptr, const char *fault)
{
	struct bad_call b = { op, ptr };
	struct child_result r;
	const char *m;

	run_in_child(do_bad_call, &b, &r);
	m = misuse_mismatch(&r, fault, ptr);
	ck_assert_msg(m == NULL, "%s", m);
}

/* Free an object of `size` bytes, let `then` move it on (NULL: it stays
 * where kfree put it) and expect a second kfree of it to be "double free".
 * A neighbour keeps its span in use, so the fault is about the one object
 * and not about an empty span. */
static void double_free_after(size_t size, void (*then)(void))
{
	void *keep = kmalloc(size, 0), *p = kmalloc(size, 0);

	kfree(p);
	if (then != NULL)
		then();
	expect_fault(OP_KFREE, p, "double free");
	kfree(keep);
}

START_TEST(double_free_small)
{
	double_free_after(64, NULL);
	/* Same after the span left this CPU's mcache for its mcentral. */
	double_free_after(64, kmalloc_flush_cpu);
}
END_TEST

START_TEST(double_free_every_class)
{
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++)
		double_free_after(class_size(c), NULL);
}
END_TEST

START_TEST(double_free_large)
{
	double_free_after(100000, NULL);
}
END_TEST

/* After kmalloc_trim has given back the block of span records that
 * described a freed large object, freeing it again still stops with a
 * named fault: the record that told "double free" apart is gone, so it
 * is "invalid free". 300 records fill more than two 16 KiB blocks of
 * span records, so the first one's block is released. */
START_TEST(double_free_large_after_trim)
{
	enum { N = 300 };
	static void *p[N];

	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(100000, 0);
		ck_assert_ptr_nonnull(p[i]);
	}
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_trim();
	expect_fault(OP_KFREE, p[0], "invalid free");
	void *q = kmalloc(100000, 0); /* the heap still serves */
	ck_assert_ptr_nonnull(q);
	kfree(q);
}
END_TEST

/* Allocated on one thread, freed on another, freed again on the first;
 * and the other way round. */
START_TEST(double_free_other_thread)
{
	void *keep = kmalloc(64, 0), *p = kmalloc(64, 0);
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, thread_kfree, p), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	expect_fault(OP_KFREE, p, "double free");

	p = kmalloc(64, 0);
	kfree(p);
	expect_fault(OP_KFREE_IN_THREAD, p, "double free");
	kfree(keep);
}
END_TEST

/* Wherever a freed object sits, a second free of it is "double free":
 * in another thread's magazine (that thread still running, so nothing
 * flushed it), in the transfer cache (pushed there by later frees), back
 * in its span after kmalloc_trim emptied every cache, and a large object
 * in this thread's cache of freed large spans. */
static struct handshake hold = HANDSHAKE_INIT; /* 0 start, 1 freed, 2 may exit */

static void *free_and_hold(void *p)
{
	kfree(p);
	handshake_set(&hold, 1);
	handshake_wait(&hold, 2);
	return NULL;
}

START_TEST(double_free_in_live_thread_cache)
{
	void *keep = kmalloc(64, 0), *p = kmalloc(64, 0);
	pthread_t th;

	handshake_set(&hold, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, free_and_hold, p), 0);
	handshake_wait(&hold, 1);
	expect_fault(OP_KFREE, p, "double free"); /* p is in th's magazine */
	handshake_set(&hold, 2);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	kfree(keep);
}
END_TEST

START_TEST(double_free_in_transfer_cache)
{
	/* 64-byte objects: a magazine holds 128 and spills its oldest 64
	 * (mm/internal.h), so 200 frees after p push p out of it. */
	enum { N = 200 };
	static void *more[N];
	void *keep = kmalloc(64, 0), *p = kmalloc(64, 0);

	for (int i = 0; i < N; i++)
		more[i] = kmalloc(64, 0);
	kfree(p);
	for (int i = 0; i < N; i++)
		kfree(more[i]);
	expect_fault(OP_KFREE, p, "double free");
	kfree(keep);
}
END_TEST

START_TEST(double_free_after_trim)
{
	double_free_after(64, kmalloc_trim);
}
END_TEST

START_TEST(double_free_in_large_cache)
{
	void *keep = kmalloc(100000, 0), *p = kmalloc(100000, 0);

	kfree(p); /* kept in this thread's large cache */
	expect_fault(OP_KFREE, p, "double free");
	void *q = kmalloc(100000, 0); /* the cached span serves again */
	ck_assert_ptr_eq(q, p);
	kfree(q);
	kfree(keep);
}
END_TEST

START_TEST(interior_and_misaligned_small)
{
	unsigned char *p = kmalloc(64, 0), *q = kmalloc(1000, 0);
	/* a class above 32 KiB: one object a span, past its first page too */
	unsigned char *r = kmalloc(48 << 10, 0);

	expect_fault(OP_KFREE, p + 16, "invalid free");
	expect_fault(OP_KFREE, p + 1, "invalid free");
	expect_fault(OP_KFREE, p + 63, "invalid free");
	expect_fault(OP_KFREE, q + 512, "invalid free");
	expect_fault(OP_KFREE, q + 8, "invalid free");
	expect_fault(OP_KFREE, r + 16, "invalid free");
	expect_fault(OP_KFREE, r + 8192, "invalid free");
	expect_fault(OP_KFREE, r + (48 << 10) - 8, "invalid free");
	expect_fault(OP_KSIZE, r + 8192, "invalid pointer");
	ck_assert_uint_eq(ksize(r), 48 << 10);
	kfree(p);
	kfree(q);
	kfree(r);
}
END_TEST

/* A span's unused tail: 48-byte objects fill 170 slots of 8192 bytes,
 * and base + 8160 is where a 171st would start. It is no object: freeing
 * it, or anything else past the last slot, is an invalid free. */
START_TEST(span_tail_is_not_an_object)
{
	unsigned char *p = kmalloc(48, 0);
	uintptr_t base = (uintptr_t)p & ~(uintptr_t)8191;
	ck_assert_uint_eq(ksize(p), 48);
	expect_fault(OP_KFREE, (void *)(base + 170 * 48), "invalid free");
	expect_fault(OP_KFREE, (void *)(base + 8192 - 16), "invalid free");
	expect_fault(OP_KSIZE, (void *)(base + 170 * 48), "invalid pointer");
	kfree(p);
}
END_TEST

START_TEST(interior_large)
{
	unsigned char *p = kmalloc(100000, 0);

	expect_fault(OP_KFREE, p + 8192, "invalid free");
	expect_fault(OP_KFREE, p + 64, "invalid free");
	expect_fault(OP_KFREE, p + 1, "invalid free");
	kfree(p);
}
END_TEST

static int a_global = 1;

START_TEST(outside_the_heap)
{
	int on_stack = 2;
	void *libc = malloc(64);

	expect_fault(OP_KFREE, &on_stack, "invalid free");
	expect_fault(OP_KFREE, &a_global, "invalid free");
	expect_fault(OP_KFREE, libc, "invalid free");
	expect_fault(OP_KFREE, (void *)(uintptr_t)0x1000, "invalid free");
	expect_fault(OP_KFREE, (void *)(uintptr_t)-16, "invalid free");
	free(libc);
	(void)a_global;
}
END_TEST

/* A free slot of a span that is still in use, never handed out. Once a
 * span is swept, a slot that was freed and one that was never allocated
 * have the same bits, so the core may call this a double free; it must
 * stop either way, naming the pointer. */
START_TEST(never_allocated_slot)
{
	unsigned char *p = kmalloc(256, 0);
	struct bad_call b = { OP_KFREE, p + 256 * 3 };
	struct child_result r;
	const char *m1, *m2;

	run_in_child(do_bad_call, &b, &r);
	m1 = misuse_mismatch(&r, "double free", b.ptr);
	m2 = misuse_mismatch(&r, "invalid free", b.ptr);
	ck_assert_msg(m1 == NULL || m2 == NULL, "%s", m2);
	kfree(p);
}
END_TEST

/* Objects of a span that went back to the mheap: after every object of
 * the class is freed and the mcache flushed, their pages hold no span.
 * Freeing one of them again is a double free the heap can no longer tell
 * from a pointer it never gave out; it must still stop, as an invalid
 * free of a page with no span. */
START_TEST(span_returned_to_mheap)
{
	enum { N = 200 };
	void *p[N];

	for (int i = 0; i < N; i++)
		p[i] = kmalloc(2048, 0);
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	kmalloc_flush_cpu();
	kmalloc_trim();
	expect_fault(OP_KFREE, p[N / 2], "invalid free");
	expect_fault(OP_KFREE, p[0], "invalid free");
}
END_TEST

/* ksize and krealloc accept only the start of a live object too; the
 * core names that fault "invalid pointer" (mm/malloc.c). */
START_TEST(ksize_and_krealloc_of_bad_pointers)
{
	unsigned char *p = kmalloc(64, 0), *big = kmalloc(100000, 0);
	int on_stack = 0;

	expect_fault(OP_KSIZE, p + 16, "invalid pointer");
	expect_fault(OP_KSIZE, &on_stack, "invalid pointer");
	expect_fault(OP_KSIZE, big + 8192, "invalid pointer");
	expect_fault(OP_KREALLOC, p + 16, "invalid pointer");
	expect_fault(OP_KREALLOC, &on_stack, "invalid pointer");
	kfree(p);
	expect_fault(OP_KSIZE, p, "invalid pointer");
	expect_fault(OP_KREALLOC, p, "invalid pointer");
	kfree(big);
}
END_TEST

/* The parent's heap is untouched by all of this. */
START_TEST(parent_keeps_working)
{
	void *p = kmalloc(64, 0);
	struct kmalloc_stats st;

	kfree(p);
	expect_fault(OP_KFREE, p, "double free");
	p = kmalloc(64, 0);
	ck_assert_ptr_nonnull(p);
	kfree(p);
	ASSERT_HEAP_EMPTY(&st);
}
END_TEST

/* clang-format off */
CHECK_MAIN("kmalloc misuse", 60,
	   CHECK_TEST(double_free_small),
	   CHECK_TEST(double_free_every_class),
	   CHECK_TEST(double_free_large),
	   CHECK_TEST(double_free_large_after_trim),
	   CHECK_TEST(double_free_other_thread),
	   CHECK_TEST(double_free_in_live_thread_cache),
	   CHECK_TEST(double_free_in_transfer_cache),
	   CHECK_TEST(double_free_after_trim),
	   CHECK_TEST(double_free_in_large_cache),
	   CHECK_TEST(interior_and_misaligned_small),
	   CHECK_TEST(span_tail_is_not_an_object),
	   CHECK_TEST(interior_large),
	   CHECK_TEST(outside_the_heap),
	   CHECK_TEST(never_allocated_slot),
	   CHECK_TEST(span_returned_to_mheap),
	   CHECK_TEST(ksize_and_krealloc_of_bad_pointers),
	   CHECK_TEST(parent_keeps_working))
/* clang-format on */
