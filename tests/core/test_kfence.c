/*
 * test_kfence.c: guarded sampling (mm/mkfence.c) on the host port
 * (arch/host/guard.c). Samples are forced (kfence_sample_next) so every
 * case is deterministic: the first sample of a process sits against the
 * guard page on its right, the second against the one on its left. Each
 * report case runs in a forked child and checks its exact first line on
 * stderr and the SIGABRT; misuse of a sample gives kfree's usual lines.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../lib/child_util.h"
#include "host.h"
#include "internal.h"
#include "../lib/check_runner.h"

static void *sample(size_t size, unsigned flags)
{
	ck_assert_int_eq(kmalloc_init(), 0);
	ck_assert_int_eq(kfence_sample_next(), 0);
	void *p = kmalloc(size, flags);
	ck_assert_ptr_nonnull(p);
	ck_assert_msg(kfence_owns((uintptr_t)p), "%p not sampled", p);
	return p;
}

/* Where the k-th sample of a fresh process (k from 0) of size bytes
 * lands: slot k, right aligned for even k, left for odd. */
static char *nth_sample(unsigned k, size_t size)
{
	ck_assert_int_eq(kmalloc_init(), 0);
	uintptr_t page = kfence_pool.objs + (2 * (uintptr_t)k + 1) * 4096;
	return (char *)(k % 2 == 0 ? page + 4096 - ((size + 15) & ~(size_t)15) : page);
}

/* The child died by SIGABRT and its stderr starts with want. */
static void expect_report(const struct child_result *r, const char *want)
{
	ck_assert_msg(r->signaled && r->sig == SIGABRT, "child: signaled %d sig %d status %d: %s",
	              r->signaled, r->sig, r->status, r->err);
	ck_assert_msg(strncmp(r->err, want, strlen(want)) == 0, "want \"%s...\", got:\n%s", want,
	              r->err);
}

START_TEST(sample_is_an_object)
{
	struct kmalloc_stats st;
	unsigned char *p = sample(64, 0);
	ck_assert_uint_eq(((uintptr_t)p + 64) % 4096, 0); /* against the right guard */
	ck_assert_uint_eq(ksize(p), 64);
	for (int i = 0; i < 64; i++)
		ck_assert_uint_eq(p[i], 0); /* a fresh page */
	memset(p, 0xab, 64);
	unsigned char *q = sample(100, KM_ZERO);
	ck_assert_uint_eq((uintptr_t)q % 4096, 0); /* the next: against the left one */
	ck_assert_uint_eq(q[99], 0);
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.kfence_allocs, 2);
	ck_assert_uint_ge(st.kfence_bytes, 2 * 4096);
	kfree(p);
	kfree(q);
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.kfence_frees, 2);
}
END_TEST

START_TEST(realloc_keeps_bytes)
{
	struct kmalloc_stats st;
	char *p = sample(40, 0);
	memcpy(p, "guarded sampling keeps its bytes", 33);
	ck_assert_ptr_eq(krealloc(p, 40, 0), p);
	char *q = krealloc(p, 3000, 0);
	ck_assert_ptr_nonnull(q);
	ck_assert_str_eq(q, "guarded sampling keeps its bytes");
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.kfence_frees, 1);
	char *r = krealloc(q, 10, 0);
	ck_assert_int_eq(memcmp(r, "guarded sa", 10), 0);
	kfree(r);
}
END_TEST

/* ---- reports (forked children) ---- */

static void overflow_right(void *arg)
{
	(void)arg;
	volatile char *p = sample(64, 0);
	p[64] = 1;
}

START_TEST(report_overflow_right)
{
	struct child_result r;
	run_in_child(overflow_right, NULL, &r);
	char want[160];
	char *p = nth_sample(0, 64);
	snprintf(
	        want, sizeof want,
	        "kfence: out-of-bounds write at %p (1 byte right of 64-byte object %p allocated at ",
	        (void *)(p + 64), (void *)p);
	expect_report(&r, want);
	ck_assert_msg(strstr(r.err, "kfence: allocated by cpu ") != NULL, "%s", r.err);
	ck_assert_msg(strstr(r.err, "kfence:   #1 ") != NULL, "no alloc backtrace:\n%s", r.err);
}
END_TEST

static void underflow_left(void *arg)
{
	(void)arg;
	(void)sample(64, 0); /* right aligned; the next is left aligned */
	volatile char *p = sample(64, 0);
	(void)p[-1];
}

START_TEST(report_underflow_left)
{
	struct child_result r;
	run_in_child(underflow_left, NULL, &r);
	char *p = nth_sample(1, 64);
	char want[160];
	snprintf(want, sizeof want,
	         "kfence: out-of-bounds read at %p (1 byte left of 64-byte object %p allocated at ",
	         (void *)(p - 1), (void *)p);
	expect_report(&r, want);
}
END_TEST

static void uaf_read(void *arg)
{
	(void)arg;
	volatile char *p = sample(64, 0);
	kfree((void *)p);
	(void)p[10];
}

static void uaf_write(void *arg)
{
	(void)arg;
	volatile char *p = sample(64, 0);
	kfree((void *)p);
	p[0] = 1;
}

START_TEST(report_use_after_free)
{
	struct child_result r;
	char want[160];
	char *p = nth_sample(0, 64);
	run_in_child(uaf_read, NULL, &r);
	snprintf(want, sizeof want, "kfence: use-after-free read at %p (object %p freed at ",
	         (void *)(p + 10), (void *)p);
	expect_report(&r, want);
	ck_assert_msg(strstr(r.err, "kfence: freed by cpu ") != NULL, "%s", r.err);
	ck_assert_msg(strstr(r.err, "kfence:   #1 ") != NULL, "no backtrace:\n%s", r.err);
	run_in_child(uaf_write, NULL, &r);
	snprintf(want, sizeof want, "kfence: use-after-free write at %p (object %p freed at ",
	         (void *)p, (void *)p);
	expect_report(&r, want);
}
END_TEST

/* ---- canaries: writes no guard catches, found at the free ---- */

/* arg: 0, a 60-byte right-aligned sample, one byte written into the 4
 * before its guard; 1, a left-aligned 64-byte one, a byte written past
 * its end (the rest of its page). */
static void write_slack(void *arg)
{
	int left = arg != NULL;
	if (left)
		(void)sample(64, 0); /* the next sample is left aligned */
	char *p = sample(left ? 64 : 60, 0);
	p[left ? 64 : 60] = 1; /* no fault: inside the object's page */
	kfree(p);
}

START_TEST(canary_broken_at_free)
{
	struct child_result r;
	char *p = nth_sample(0, 60);
	run_in_child(write_slack, NULL, &r);
	const char *m = misuse_mismatch(&r, "memory corruption next to a sampled object", p + 60);
	ck_assert_msg(m == NULL, "%s", m);
	p = nth_sample(1, 64);
	run_in_child(write_slack, (void *)1, &r);
	m = misuse_mismatch(&r, "memory corruption next to a sampled object", p + 64);
	ck_assert_msg(m == NULL, "%s", m);
	/* and an untouched sample frees without a word */
	char *q = sample(60, 0);
	memset(q, 0x55, 60);
	kfree(q);
}
END_TEST

struct bad {
	int op; /* 0 kfree, 1 ksize, 2 krealloc, 3 kmem_cache_free */
	size_t off;
	int free_first;
};

static void bad_call(void *arg)
{
	const struct bad *b = arg;
	char *p = sample(64, 0);
	if (b->free_first)
		kfree(p);
	switch (b->op) {
	case 0:
		kfree(p + b->off);
		break;
	case 1:
		(void)ksize(p + b->off);
		break;
	case 2:
		(void)krealloc(p + b->off, 200, 0);
		break;
	case 3: {
		struct kmem_cache *c = kmem_cache_create("kf", 64, 0, 0, NULL);
		kmem_cache_free(c, p + b->off);
		break;
	}
	}
}

static void expect_misuse(int op, size_t off, int free_first, const char *fault)
{
	struct bad b = { op, off, free_first };
	struct child_result r;
	run_in_child(bad_call, &b, &r);
	char *p = nth_sample(0, 64); /* the child's sample */
	const char *m = misuse_mismatch(&r, fault, p + off);
	ck_assert_msg(m == NULL, "%s", m);
}

START_TEST(misuse_double_free) { expect_misuse(0, 0, 1, "double free"); }
END_TEST

START_TEST(misuse_invalid_free)
{
	expect_misuse(0, 8, 0, "invalid free");     /* interior */
	expect_misuse(0, 64, 0, "invalid free");    /* the guard page */
	expect_misuse(0, 8, 1, "invalid free");     /* interior of a freed one */
	expect_misuse(1, 1, 0, "invalid pointer");  /* ksize */
	expect_misuse(1, 0, 1, "invalid pointer");  /* ksize after free */
	expect_misuse(2, 16, 0, "invalid pointer"); /* krealloc */
	expect_misuse(3, 0, 0, "wrong cache");      /* kmem_cache_free */
}
END_TEST

/* ---- the pool running full ---- */

START_TEST(pool_full_pauses)
{
	static void *live[300];
	struct kmalloc_stats st;
	ck_assert_int_eq(kmalloc_init(), 0);
	unsigned sampled = 0;
	for (int i = 0; i < 300; i++) {
		ck_assert_int_eq(kfence_sample_next(), 0);
		live[i] = kmalloc(32, 0);
		ck_assert_ptr_nonnull(live[i]);
		memset(live[i], i, 32);
		sampled += kfence_owns((uintptr_t)live[i]);
	}
	ck_assert_uint_eq(sampled, 255);
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.kfence_allocs, 255);
	ck_assert_uint_eq(st.kfence_skipped, 45);
	for (int i = 0; i < 300; i++) {
		ck_assert_uint_eq(((unsigned char *)live[i])[31], (unsigned char)i);
		kfree(live[i]);
	}
	/* freed slots serve again, the oldest first */
	void *p = sample(32, 0);
	ck_assert_ptr_eq((char *)kfence_pool.objs + 4096, p); /* slot 0, the 256th: left */
	kfree(p);
}
END_TEST

/* ---- the leak scan sees samples ---- */

static void *keep_hidden; /* XORed: no pointer */

START_TEST(leak_scan_reports_samples)
{
	struct kmalloc_leaks l;
	void **holder = sample(64, 0);
	void *only_from_sample = kmalloc(48, 0);
	holder[0] = only_from_sample;
	keep_hidden = (void *)((uintptr_t)holder ^ 0x5555);
	holder = NULL;
	only_from_sample = NULL;
	/* nothing reaches the sample: it leaks, and so does what only it
	 * reaches */
	host_set_leak_scan_stack(0);
	ck_assert_uint_eq(kmalloc_leak_scan(&l, NULL, NULL), 2);
	ck_assert_uint_eq(l.leak_bytes, 64 + 48);
	void **h = (void **)((uintptr_t)keep_hidden ^ 0x5555);
	/* the sample reachable from a root: no leak, what it points to is
	 * reached through it */
	kmalloc_add_root(&h, sizeof h);
	ck_assert_uint_eq(kmalloc_leak_scan(&l, NULL, NULL), 0);
	ck_assert_uint_ge(l.marked, 2);
	kmalloc_del_root(&h);
	kfree(h[0]);
	kfree(h);
}
END_TEST

/* ---- a program's own SIGSEGV handler ---- */

static void own_handler(int sig)
{
	(void)sig;
	_exit(42);
}

static void foreign_fault(void *arg)
{
	int in_pool = *(int *)arg;
	signal(SIGSEGV, own_handler);
	volatile char *p = sample(64, 0); /* ours goes first again, chaining */
	if (in_pool)
		p[64] = 1;
	else
		*(volatile int *)16 = 1;
}

START_TEST(own_sigsegv_handler_gets_its_faults)
{
	struct child_result r;
	int in_pool = 0;
	run_in_child(foreign_fault, &in_pool, &r);
	ck_assert_msg(!r.signaled && r.status == 42, "signaled %d status %d: %s", r.signaled,
	              r.status, r.err);
	in_pool = 1;
	run_in_child(foreign_fault, &in_pool, &r);
	expect_report(&r, "kfence: out-of-bounds write at ");
}
END_TEST

/* clang-format off */
CHECK_MAIN("kfence", 60,
	   CHECK_TEST(sample_is_an_object),
	   CHECK_TEST(realloc_keeps_bytes),
	   CHECK_TEST(report_overflow_right),
	   CHECK_TEST(report_underflow_left),
	   CHECK_TEST(report_use_after_free),
	   CHECK_TEST(misuse_double_free),
	   CHECK_TEST(misuse_invalid_free),
	   CHECK_TEST(pool_full_pauses),
	   CHECK_TEST(leak_scan_reports_samples),
	   CHECK_TEST(own_sigsegv_handler_gets_its_faults),
	   CHECK_TEST(canary_broken_at_free))
/* clang-format on */
