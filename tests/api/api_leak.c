/*
 * api_leak.c: the leak detector (kmalloc_leak_scan, kmalloc.h) on the
 * host, through the public API: what is reported is exactly what nothing
 * reachable points to. Each test runs in its own forked process (Check),
 * so each starts from an empty heap; objects are made and dropped in
 * helper functions kept out of line, so the test's own frame never holds
 * a pointer that would keep them alive (the scan reads the calling
 * thread's stack above its caller, the program's data and bss, and the
 * ranges given to kmalloc_add_root).
 *
 * Scans with other threads alive (stopped by the port, their stacks,
 * registers and TLS roots): api_leak_threads.c.
 */
#define _GNU_SOURCE
#include <check.h>
#include "../check_runner.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmalloc.h"

/* What a scan reported, through its callback. */
#define MAXREP 64
static struct {
	size_t n;
	const void *obj[MAXREP];
	size_t size[MAXREP];
	uintptr_t site[MAXREP];
} rep;

static void collect(const void *obj, size_t size, uintptr_t site, void *arg)
{
	(void)arg;
	if (rep.n < MAXREP) {
		rep.obj[rep.n] = obj;
		rep.size[rep.n] = size;
		rep.site[rep.n] = site;
	}
	rep.n++;
}

/* Zero the stack the scan's frames are about to occupy: the helpers that
 * made and dropped objects left their addresses in dead frames there,
 * and a conservative scan would count them (as it would in any program:
 * that is the price of scanning without type information). */
__attribute__((noinline)) static void clobber_stack(void)
{
	/* Stores through a volatile lvalue, one by one: a memset of the
	 * array cast to plain char is a dead store the compiler drops, and
	 * then the scan sees whatever the last calls left. */
	volatile uint64_t pad[2048];
	for (size_t i = 0; i < sizeof pad / sizeof pad[0]; i++)
		pad[i] = 0;
}

static struct kmalloc_leaks scan(void)
{
	struct kmalloc_leaks l;
	clobber_stack();
	memset(&rep, 0, sizeof rep);
	uint64_t n = kmalloc_leak_scan(&l, collect, NULL);
	ck_assert_uint_eq(n, l.leaks);
	ck_assert_uint_eq(rep.n, l.leaks);
	return l;
}

static int reported(const void *p)
{
	for (size_t i = 0; i < rep.n && i < MAXREP; i++)
		if (rep.obj[i] == p)
			return 1;
	return 0;
}

/* Roots the tests use: globals are data/bss, which the port scans. */
static void *volatile keep[8];
static uintptr_t hidden[4]; /* pointers kept as numbers XOR a key */
#define KEY ((uintptr_t)0x5a5a5a5a5a5a5a5aull)

/* keep[slot] holds one new object; another is made and dropped (only
 * its address XOR KEY survives, in hidden[slot]). */
__attribute__((noinline)) static void make_kept_and_dropped(int slot, size_t size, unsigned flags)
{
	keep[slot] = kmalloc(size, flags);
	hidden[slot] = (uintptr_t)kmalloc(size, flags) ^ KEY;
}

#define DROPPED(slot) ((void *)(hidden[slot] ^ KEY))

START_TEST(unreachable_single_objects)
{
	make_kept_and_dropped(0, 48, 0);
	make_kept_and_dropped(1, 100000, 0); /* a large object */
	struct kmalloc_leaks l = scan();
	ck_assert_uint_eq(l.leaks, 2);
	ck_assert(reported(DROPPED(0)));
	ck_assert(reported(DROPPED(1)));
	ck_assert(!reported(keep[0]));
	ck_assert(!reported(keep[1]));
	ck_assert_uint_eq(l.leak_bytes, ksize(DROPPED(0)) + ksize(DROPPED(1)));
	ck_assert_uint_eq(l.marked, 2);
	keep[0] = keep[1] = NULL;
}
END_TEST

__attribute__((noinline)) static void make_cycle(void)
{
	void **a = kmalloc(64, 0), **b = kmalloc(64, 0), **c = kmalloc(64, 0);
	a[0] = b;
	b[0] = c;
	c[0] = a; /* a -> b -> c -> a, nothing else */
	hidden[1] = (uintptr_t)a ^ KEY;
	hidden[2] = (uintptr_t)b ^ KEY;
	hidden[3] = (uintptr_t)c ^ KEY;
}

START_TEST(unreachable_cycle)
{
	make_cycle();
	scan();
	ck_assert_uint_eq(rep.n, 3);
	for (int i = 1; i <= 3; i++)
		ck_assert(reported((void *)(hidden[i] ^ KEY)));
	/* one pointer to any of them keeps the whole cycle */
	keep[1] = (void *)(hidden[2] ^ KEY);
	scan();
	ck_assert_uint_eq(rep.n, 0);
	keep[1] = NULL;
}
END_TEST

enum { CHAIN = 1000000 };
static void *chain_head; /* a registered root, cleared to drop the chain */

__attribute__((noinline)) static void make_chain(void)
{
	void **prev = NULL;
	for (int i = 0; i < CHAIN; i++) {
		void **n = kmalloc(64, 0);
		ck_assert_ptr_nonnull(n);
		n[0] = prev;
		prev = n;
	}
	chain_head = prev;
}

START_TEST(million_node_chain)
{
	ck_assert_int_eq(kmalloc_add_root(&chain_head, sizeof chain_head), 0);
	make_chain();
	struct kmalloc_leaks l = scan();
	ck_assert_uint_eq(l.leaks, 0);
	ck_assert_uint_ge(l.marked, CHAIN);
	chain_head = NULL;
	l = scan();
	ck_assert_uint_eq(l.leaks, CHAIN);
	ck_assert_uint_eq(l.leak_bytes, (uint64_t)CHAIN * 64);
	kmalloc_del_root(&chain_head);
}
END_TEST

/* A wide structure: one object pointing to 300,000 others fills far more
 * grey blocks than the stack keeps; the overflow pass still marks all. */
START_TEST(wide_structure_overflows_grey_stack)
{
	enum { N = 300000 };
	void **table = kmalloc(N * sizeof(void *), 0);
	for (int i = 0; i < N; i++)
		table[i] = kmalloc(32, 0);
	keep[2] = table;
	struct kmalloc_leaks l = scan();
	ck_assert_uint_eq(l.leaks, 0);
	ck_assert_uint_eq(l.marked, N + 1);
	keep[2] = NULL;
}
END_TEST

START_TEST(interior_pointers_keep_objects)
{
	make_kept_and_dropped(0, 256, 0);
	keep[3] = (char *)DROPPED(0) + 200; /* inside the dropped one */
	scan();
	ck_assert_uint_eq(rep.n, 0);
	keep[3] = (char *)DROPPED(0) + 256; /* one past its end: another slot */
	scan();
	ck_assert_uint_eq(rep.n, 1);
	ck_assert(reported(DROPPED(0)));
	keep[0] = keep[3] = NULL;
}
END_TEST

/* A KM_NOSCAN object is marked but never read: a pointer stored only in
 * it keeps nothing alive. The same pointer in a scanned object does. */
START_TEST(noscan_objects_are_not_read)
{
	void **buf = kmalloc(64, KM_NOSCAN), **obj = kmalloc(64, 0);
	keep[4] = buf;
	keep[5] = obj;
	make_kept_and_dropped(0, 80, 0); /* keep[0] and a dropped one */
	buf[0] = keep[0];
	keep[0] = NULL;
	scan();
	ck_assert_uint_eq(rep.n, 2); /* the dropped one and buf's target */
	ck_assert(reported(buf[0]));
	ck_assert(!reported(buf));
	obj[0] = buf[0];
	scan();
	ck_assert_uint_eq(rep.n, 1);
	ck_assert(reported(DROPPED(0)));
	keep[4] = keep[5] = NULL;
}
END_TEST

/* Typed cache objects are objects like any: a dropped one is a leak, a
 * scanned one keeps what it points to alive, a KMC_NOSCAN one does not. */
__attribute__((noinline)) static void make_cache_objects(struct kmem_cache *scanned,
                                                         struct kmem_cache *noscan)
{
	void **a = kmem_cache_alloc(scanned, 0), **b = kmem_cache_alloc(noscan, 0);
	keep[0] = a;
	keep[1] = b;
	a[0] = kmalloc(48, 0); /* kept alive through a */
	b[0] = kmalloc(48, 0); /* not through b: b is never read */
	hidden[0] = (uintptr_t)a[0] ^ KEY;
	hidden[1] = (uintptr_t)b[0] ^ KEY;
	hidden[2] = (uintptr_t)kmem_cache_alloc(scanned, 0) ^ KEY; /* dropped */
}

START_TEST(cache_objects_scanned_or_not)
{
	struct kmem_cache *scanned = kmem_cache_create("scanned", 40, 0, 0, NULL);
	struct kmem_cache *noscan = kmem_cache_create("noscan", 40, 0, KMC_NOSCAN, NULL);
	ck_assert_ptr_nonnull(scanned);
	ck_assert_ptr_nonnull(noscan);
	make_cache_objects(scanned, noscan);
	scan();
	ck_assert_uint_eq(rep.n, 2);
	ck_assert(reported(DROPPED(1)));   /* only a noscan object pointed to it */
	ck_assert(reported(DROPPED(2)));   /* the dropped cache object */
	for (size_t i = 0; i < rep.n; i++) /* sized as the cache's objects, exactly */
		ck_assert_uint_eq(rep.size[i], rep.obj[i] == DROPPED(2) ? 40 : 48);
	ck_assert(!reported(DROPPED(0)));
	ck_assert(!reported(keep[0]) && !reported(keep[1]));
	kfree(DROPPED(0));
	kfree(DROPPED(1));
	kmem_cache_free(scanned, DROPPED(2));
	kmem_cache_free(scanned, (void *)keep[0]);
	kmem_cache_free(noscan, (void *)keep[1]);
	keep[0] = keep[1] = NULL;
	ck_assert_int_eq(kmem_cache_destroy(scanned), 0);
	ck_assert_int_eq(kmem_cache_destroy(noscan), 0);
}
END_TEST

__attribute__((noinline)) static void make_and_free(int n)
{
	for (int i = 0; i < n; i++)
		kfree(kmalloc(16 + (size_t)i % 2000, 0));
	kfree(kmalloc(200000, 0)); /* into this CPU's large cache */
}

/* Freed objects, whether in this CPU's magazines, the transfer caches,
 * the large cache or back in their spans, are never reported. */
START_TEST(freed_and_cached_objects_never_reported)
{
	make_and_free(5000);
	struct kmalloc_leaks l = scan();
	ck_assert_uint_eq(l.leaks, 0);
	ck_assert_uint_eq(l.marked, 0);
	kmalloc_flush_cpu();
	l = scan();
	ck_assert_uint_eq(l.leaks, 0);
}
END_TEST

/* With allocation sites tracked (KMALLOC_LEAK_CHECK=1 before the heap
 * starts), a leak names the function that allocated it. */
__attribute__((noinline)) void api_leak_allocating_function(void)
{
	hidden[0] = (uintptr_t)kmalloc(24, 0) ^ KEY;
	hidden[1] = (uintptr_t)kzalloc(70000, 0) ^ KEY;
}

START_TEST(sites_name_the_allocating_function)
{
	setenv("KMALLOC_LEAK_CHECK", "1", 1);
	api_leak_allocating_function();
	scan();
	ck_assert_uint_eq(rep.n, 2);
	/* a return address inside the function: its code is short */
	uintptr_t fn = (uintptr_t)api_leak_allocating_function;
	for (int i = 0; i < 2; i++) {
		ck_assert_uint_gt(rep.site[i], fn);
		ck_assert_uint_lt(rep.site[i], fn + 256);
	}
}
END_TEST

/* clang-format off */
CHECK_MAIN("kmalloc leak detector", 120,
	   CHECK_TEST(unreachable_single_objects),
	   CHECK_TEST(unreachable_cycle),
	   CHECK_TEST(million_node_chain),
	   CHECK_TEST(wide_structure_overflows_grey_stack),
	   CHECK_TEST(interior_pointers_keep_objects),
	   CHECK_TEST(noscan_objects_are_not_read),
	   CHECK_TEST(cache_objects_scanned_or_not),
	   CHECK_TEST(freed_and_cached_objects_never_reported),
	   CHECK_TEST(sites_name_the_allocating_function))
/* clang-format on */
