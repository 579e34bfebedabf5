/*
 * test_genericport.c: the core built against a port with nothing inline:
 * tests/core/genericport/sys_arch.h (no inline fast path, no
 * SYS_MCACHE_GET/SET), every sys.h function out of line. The port here is a
 * minimal one written from sys.h alone (threads as CPUs
 * with ids that are never reused, a test-and-set lock, mmap/mprotect for
 * memory, one shared sys_config with a small 256 MiB arena), and the test
 * checks that the core runs on it: allocation and free of every class and
 * of large objects, the per-CPU magazines and large cache found through
 * the default mcache_fast (mm_mcaches indexed by sys_cpu_id), frees across
 * threads coming back when the freeing thread flushes, trim, and a fault
 * reported through sys_fault in the required format. Built three ways
 * (tests/core.mk): 4 KiB commit units, 2 MiB units (_2m), and 4 KiB
 * units whose commits hand out dirty memory with commit_zeroed 0
 * (_dirty).
 *
 * tests/core.mk compiles MM_SRCS with -Itests/core/genericport and this
 * file, instead of linking libkmalloc.a (which carries the host port).
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <setjmp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "remote_free.h"

/* ---- the port ---- */

/* The commit unit: 4 KiB, or (test_genericport_2m) 2 MiB, as a kernel
 * that maps only 2 MiB pages has it. */
#ifndef GENERIC_PAGE_SIZE
#define GENERIC_PAGE_SIZE 4096
#endif

/* test_genericport_dirty: commit_zeroed 0, and sys_commit hands out
 * memory full of 0xa5, as a port whose frame allocator returns frames
 * holding what they last held: the core must zero its metadata and
 * kzalloc's objects itself. */
#ifdef GENERIC_DIRTY
#define GENERIC_ZEROED 0
#else
#define GENERIC_ZEROED 1
#endif

static void generic_release_zero(void *p, size_t n);

struct sys_config sys_config = {
	.page_size = GENERIC_PAGE_SIZE,
	.commit_zeroed = GENERIC_ZEROED,
	.max_cpus = 64,
	.arena_size = (size_t)256 << 20,
	.release_zero = generic_release_zero,
};

static unsigned next_cpu;
static __thread unsigned my_cpu_plus1;
static size_t committed; /* atomic */

int sys_reserve(size_t size, void **base)
{
	size_t ps = GENERIC_PAGE_SIZE;
	char *p = mmap(NULL, size + ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
	               0);
	if (p == MAP_FAILED)
		return -1;
	*base = (void *)(((uintptr_t)p + ps - 1) & ~(uintptr_t)(ps - 1));
	return 0;
}

/* sys.h: every range is whole commit units. */
static void check_unit(const char *what, const void *p, size_t n)
{
	if ((uintptr_t)p % GENERIC_PAGE_SIZE != 0 || n % GENERIC_PAGE_SIZE != 0 || n == 0)
		sys_fault(what, p);
}

int sys_commit(void *p, size_t n)
{
	check_unit("sys_commit of a range that is not whole units", p, n);
	if (mprotect(p, n, PROT_READ | PROT_WRITE) != 0)
		return -1;
	if (!GENERIC_ZEROED)
		memset(p, 0xa5, n);
	__atomic_add_fetch(&committed, n, __ATOMIC_RELAXED);
	return 0;
}

void sys_release(void *p, size_t n)
{
	check_unit("sys_release of a range that is not whole units", p, n);
	madvise(p, n, MADV_DONTNEED);
	mprotect(p, n, PROT_NONE);
	__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
}

/* Given back but readable as zeros, and read-only: a write the core
 * makes there before committing again faults. */
static void generic_release_zero(void *p, size_t n)
{
	check_unit("release_zero of a range that is not whole units", p, n);
	madvise(p, n, MADV_DONTNEED);
	mprotect(p, n, PROT_READ);
	__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
}

unsigned sys_cpu_id(void)
{
	if (my_cpu_plus1 == 0) {
		unsigned id = __atomic_fetch_add(&next_cpu, 1, __ATOMIC_RELAXED);
		if (id >= sys_config.max_cpus)
			sys_fault("out of CPU ids", NULL);
		my_cpu_plus1 = id + 1;
	}
	return my_cpu_plus1 - 1;
}

unsigned long sys_irq_save(void)
{
	return 0;
}

void sys_irq_restore(unsigned long flags)
{
	(void)flags;
}

void sys_lock(struct sys_lock *l)
{
	while (__atomic_exchange_n(&l->word, 1, __ATOMIC_ACQUIRE))
		sched_yield();
}

void sys_unlock(struct sys_lock *l)
{
	__atomic_store_n(&l->word, 0, __ATOMIC_RELEASE);
}

/* A test that expects a fault arms fault_jmp; the line the port would
 * print is kept in fault_line for it to check. */
static jmp_buf fault_jmp;
static int fault_armed;
static char fault_line[256];

_Noreturn void sys_fault(const char *msg, const void *p)
{
	snprintf(fault_line, sizeof(fault_line), "kmalloc: %s: %p", msg, p);
	if (fault_armed) {
		fault_armed = 0;
		longjmp(fault_jmp, 1);
	}
	fprintf(stderr, "%s\n", fault_line);
	fflush(stderr);
	abort();
}

void sys_log(const char *s)
{
	puts(s);
}

/* ---- the tests ---- */

START_TEST(every_class_and_large)
{
	ck_assert_int_eq(kmalloc_init(), 0);
	ck_assert_uint_eq(mheap_.arena_end - mheap_.arena_start, (size_t)256 << 20);
	void *p[KMALLOC_NUM_CLASSES][20];
	for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++)
		for (int i = 0; i < 20; i++) {
			p[c][i] = kmalloc(class_to_size[c], 0);
			ck_assert_ptr_nonnull(p[c][i]);
			memset(p[c][i], (int)c, class_to_size[c]);
			ck_assert_uint_ge(ksize(p[c][i]), class_to_size[c]);
		}
	void *big = kzalloc(3 << 20, 0);
	ck_assert_ptr_nonnull(big);
	ck_assert(mheap_valid());
	for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++)
		for (int i = 0; i < 20; i++)
			kfree(p[c][i]);
	kfree(big);
	kmalloc_flush_cpu();
	kmalloc_trim();
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(st.heap_free, 0);
	ck_assert_uint_eq(st.committed, __atomic_load_n(&committed, __ATOMIC_RELAXED));
	/* 24 bytes take the 32-byte class (16-byte alignment from 16 up) */
	for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++) {
		uint64_t want = c == 3 ? 0 : c == 4 ? 40 : 20;
		ck_assert_uint_eq(size_to_class(class_to_size[c]), c == 3 ? 4 : c);
		ck_assert_uint_eq(st.cls[c].allocs, want);
		ck_assert_uint_eq(st.cls[c].frees, want);
	}
	ck_assert(mheap_valid());
}
END_TEST

/* Zeroed objects are zero whatever the port's commits hold (the dirty
 * build's 0xa5): every class through kzalloc and kcalloc, fresh spans
 * and reused ones, a large object, and again after trim gave pages back
 * and they were committed anew. */
/* One assertion per object, not per byte: in its forked mode check
 * records every assertion in a file, and a byte each made this test take
 * 20 s (60 s, its timeout, on a loaded machine). */
static void assert_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i = 0;
	while (i < n && b[i] == 0)
		i++;
	ck_assert_msg(i == n, "byte %zu of %zu is 0x%x", i, n, i < n ? b[i] : 0);
}

START_TEST(zeroed_objects_are_zero)
{
	for (int round = 0; round < 2; round++) {
		void *p[KMALLOC_NUM_CLASSES][8];
		for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++)
			for (int i = 0; i < 8; i++) {
				size_t n = class_to_size[c];
				p[c][i] = i % 2 ? kcalloc(1, n, 0) : kzalloc(n, 0);
				ck_assert_ptr_nonnull(p[c][i]);
				assert_zero(p[c][i], n);
				memset(p[c][i], 0xee, n); /* dirty for the next round */
			}
		void *big = kzalloc((size_t)1 << 20, 0);
		ck_assert_ptr_nonnull(big);
		assert_zero(big, (size_t)1 << 20);
		memset(big, 0xee, (size_t)1 << 20);
		for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++)
			for (int i = 0; i < 8; i++)
				kfree(p[c][i]);
		kfree(big);
		if (round == 0) {
			kmalloc_flush_cpu();
			kmalloc_trim(); /* the second round commits anew */
		}
		ck_assert(mheap_valid());
	}
}
END_TEST

START_TEST(arena_limit_gives_null)
{
	ck_assert_ptr_null(kmalloc((size_t)300 << 20, 0));
	void *a = kmalloc((size_t)200 << 20, 0);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_null(kmalloc((size_t)100 << 20, 0)); /* arena exhausted */
	kfree(a);
	void *b = kmalloc((size_t)100 << 20, 0);
	ck_assert_ptr_nonnull(b);
	kfree(b);
	ck_assert(mheap_valid());
}
END_TEST

/* Without SYS_MCACHE_GET/SET the fast paths find this CPU's mcache in
 * mm_mcaches: a free lands in its magazine and the next allocation of the
 * class pops it; a freed large object waits in its large cache. */
START_TEST(caches_through_default_fast_path)
{
	void *p = kmalloc(64, 0);
	ck_assert_ptr_nonnull(p);
	struct mcache *c = mm_mcaches[cpu_slot(sys_cpu_id())];
	ck_assert_ptr_nonnull(c);
	kfree(p);
	ck_assert_uint_eq(mag_count(&c->mag[spanclass_make(6, 0)]), 1);
	ck_assert_ptr_eq(kmalloc(64, 0), p);
	ck_assert_uint_eq(mag_count(&c->mag[spanclass_make(6, 0)]), 0);
	void *l = kmalloc(100 << 10, 0);
	kfree(l);
	ck_assert_uint_eq(c->nlarge, 1);
	ck_assert_ptr_eq(kmalloc(100 << 10, 0), l);
	ck_assert_uint_eq(c->nlarge, 0);
	kfree(l);
	kfree(p);
	ck_assert(mheap_valid());
	kmalloc_flush_cpu();
	struct mm_census cs;
	mm_census(&cs);
	ck_assert_uint_eq(cs.objs_cached, 0);
	ck_assert_uint_eq(cs.pages_inuse, 0);
}
END_TEST

static void *objs[4000];

START_TEST(remote_frees)
{
	for (int i = 0; i < 4000; i++)
		objs[i] = kmalloc((size_t)(i % 700) + 1, 0);
	remote_kfree(objs, 4000, 1); /* this port has no thread-exit hook */
	/* the freeing thread's flush brought every object back to its span;
	 * only this thread's cached spans keep them in use */
	struct mm_census c;
	mm_census(&c);
	ck_assert_uint_eq(c.objs_cached, 0);
	ck_assert_uint_eq(c.spans_small, c.spans_cached);
	kmalloc_flush_cpu();
	mm_census(&c);
	ck_assert_uint_eq(c.spans_small, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* kfree validates before it touches anything, so leaving sys_fault by
 * longjmp leaves the heap as it was. */
START_TEST(fault_goes_through_sys_fault)
{
	char *p = kmalloc(100, 0);
	char want[64];
	snprintf(want, sizeof(want), "kmalloc: invalid free: %p", (void *)(p + 16));
	fault_armed = 1;
	if (setjmp(fault_jmp) == 0) {
		kfree(p + 16);
		ck_abort_msg("kfree of an interior pointer returned");
	}
	ck_assert_str_eq(fault_line, want);
	kfree(p);
}
END_TEST

/* Spans that share a commit unit: the unit is committed once, for the
 * first, and released only when all of them are free (with 4 KiB units
 * each span's pages come and go alone). 100 large objects of 9 heap pages
 * (72 KiB), every other one freed and trimmed (the flush empties the
 * large bins), then the rest: the port's count stays the core's, and with
 * 2 MiB units every commit and release the port saw was whole units.
 * With nothing live the page maps go back too (read-only zeros here) and
 * come back for the next span. */
START_TEST(spans_share_commit_units)
{
	enum { N = 100 };
	static void *p[N];
	ck_assert_int_eq(kmalloc_init(), 0);
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(9 * 8192 - 100, 0);
		ck_assert_ptr_nonnull(p[i]);
		memset(p[i], i, 9 * 8192 - 100);
	}
	for (int i = 0; i < N; i += 2)
		kfree(p[i]);
	kmalloc_flush_cpu();
	kmalloc_trim();
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, __atomic_load_n(&committed, __ATOMIC_RELAXED));
	ck_assert_uint_eq(st.committed % GENERIC_PAGE_SIZE, 0);
	ck_assert(mheap_valid());
	for (int i = 1; i < N; i += 2) {
		unsigned char *b = p[i];
		ck_assert_uint_eq(b[0], i);
		ck_assert_uint_eq(b[9 * 8192 - 101], i);
		kfree(p[i]);
	}
	kmalloc_flush_cpu();
	kmalloc_trim();
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(st.heap_free, 0); /* every unit went back whole */
	ck_assert_uint_eq(st.committed, __atomic_load_n(&committed, __ATOMIC_RELAXED));
	ck_assert(mheap_valid());
	/* nothing is live: the page maps went back too (read-only zeros
	 * here, mm/mmeta.c), and come back with the next span */
	lock_heap();
	ck_assert(!mheap_maps_ready(0));
	unlock_heap();
	void *q = kmalloc(100000, 0);
	ck_assert_ptr_nonnull(q);
	memset(q, 1, 100000);
	ck_assert_uint_eq(ksize(q), 106496);
	ck_assert(mheap_valid());
	kfree(q);
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, __atomic_load_n(&committed, __ATOMIC_RELAXED));
}
END_TEST

/* clang-format off */
CHECK_MAIN("genericport", 60,
	   CHECK_TEST(spans_share_commit_units),
	   CHECK_TEST(every_class_and_large),
	   CHECK_TEST(arena_limit_gives_null),
	   CHECK_TEST(caches_through_default_fast_path),
	   CHECK_TEST(remote_frees),
	   CHECK_TEST(fault_goes_through_sys_fault),
	   CHECK_TEST(zeroed_objects_are_zero))
/* clang-format on */
