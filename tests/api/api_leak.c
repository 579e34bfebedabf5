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
 * With sites tracked (KMALLOC_LEAK_CHECK=1): backtraces (the frames name
 * the allocating function and its caller, in the callback's view and in
 * the printed report), suppressions by a caller's name, and what a
 * program tells the scan (kmalloc_leak_not_leak, _ignore, _end_ref: a
 * stack referred to by its end pointer). Linked with -rdynamic, so that
 * dladdr names the test's functions.
 *
 * Scans with other threads alive (stopped by the port, their stacks,
 * registers and TLS roots): api_leak_threads.c.
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kmalloc.h"

/* What a scan reported, through its callback. */
#define MAXREP 64
static struct {
	size_t n;
	const void *obj[MAXREP];
	size_t size[MAXREP];
	uintptr_t site[MAXREP];
	uintptr_t bt[MAXREP][8];
	unsigned nbt[MAXREP];
} rep;

static void collect(const void *obj, size_t size, uintptr_t site, void *arg)
{
	(void)arg;
	if (rep.n < MAXREP) {
		rep.obj[rep.n] = obj;
		rep.size[rep.n] = size;
		rep.site[rep.n] = site;
		rep.nbt[rep.n] = kmalloc_leak_backtrace(obj, rep.bt[rep.n], 8);
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


/* The allocating function and its caller, for backtraces and
 * suppressions. Both keep their frames (no tail calls). */
__attribute__((noinline)) void api_leak_inner(void)
{
	hidden[0] = (uintptr_t)kmalloc(40, 0) ^ KEY;
	hidden[1] = (uintptr_t)kmalloc(50000, 0) ^ KEY;
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void api_leak_outer(void)
{
	api_leak_inner();
	__asm__ volatile("" ::: "memory");
}

static int names(uintptr_t pc, const char *fn)
{
	Dl_info di;
	return dladdr((void *)pc, &di) != 0 && di.dli_sname != NULL &&
	       strcmp(di.dli_sname, fn) == 0;
}

START_TEST(backtraces_name_the_callers)
{
	setenv("KMALLOC_LEAK_CHECK", "1", 1);
	api_leak_outer();
	scan();
	ck_assert_uint_eq(rep.n, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_uint_ge(rep.nbt[i], 3); /* inner, outer, this test, ... */
		ck_assert_uint_eq(rep.bt[i][0], rep.site[i]);
		ck_assert(names(rep.bt[i][0], "api_leak_inner"));
		ck_assert(names(rep.bt[i][1], "api_leak_outer"));
	}
	/* no backtrace for what is not the start of a live object */
	uintptr_t pcs[8];
	ck_assert_uint_eq(kmalloc_leak_backtrace((char *)DROPPED(0) + 8, pcs, 8), 0);
	ck_assert_uint_eq(kmalloc_leak_backtrace(NULL, pcs, 8), 0);
}
END_TEST

/* KMALLOC_LEAK_FRAMES=1: the caller alone, without a walk. */
START_TEST(one_frame_when_asked)
{
	setenv("KMALLOC_LEAK_CHECK", "1", 1);
	setenv("KMALLOC_LEAK_FRAMES", "1", 1);
	api_leak_outer();
	scan();
	ck_assert_uint_eq(rep.n, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_uint_eq(rep.nbt[i], 1);
		ck_assert(names(rep.bt[i][0], "api_leak_inner"));
	}
}
END_TEST

/* The printed report (fn NULL): the one-line form, then the frames named
 * (no other thread is stopped, so the host names them during the scan). */
START_TEST(printed_report_shows_the_backtrace)
{
	setenv("KMALLOC_LEAK_CHECK", "1", 1);
	api_leak_outer();
	int fd = memfd_create("api_leak_report", 0), out = dup(1);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 1);
	clobber_stack();
	uint64_t n = kmalloc_leak_scan(NULL, NULL, NULL);
	dup2(out, 1);
	close(out);
	ck_assert_uint_eq(n, 2);
	static char text[8192];
	ssize_t len = pread(fd, text, sizeof text - 1, 0);
	close(fd);
	ck_assert_int_gt(len, 0);
	text[len] = '\0';
	const char *one = strstr(text, " size 48 [allocated at api_leak_inner+0x");
	ck_assert_ptr_nonnull(one);
	const char *bt = strstr(one, "\nkmemleak:   backtrace:\nkmemleak:     [<0x");
	ck_assert_ptr_nonnull(bt);
	const char *f0 = strstr(bt, ">] api_leak_inner+0x"),
	           *f1 = strstr(bt, ">] api_leak_outer+0x");
	ck_assert_ptr_nonnull(f0);
	ck_assert_ptr_nonnull(f1);
	ck_assert(f0 < f1);
	ck_assert_ptr_nonnull(strstr(text, "kmemleak: 2 leaks, "));
}
END_TEST

/* A suppression naming the caller (a deeper frame), not the allocating
 * function: both leaks are counted as suppressed, none reported. */
START_TEST(suppression_by_a_deeper_frame)
{
	setenv("KMALLOC_LEAK_CHECK", "1", 1);
	ck_assert_int_eq(kmalloc_leak_suppress("no_such_function"), 0);
	ck_assert_int_eq(kmalloc_leak_suppress("^api_leak_o*er$"), 0);
	api_leak_outer();
	struct kmalloc_leaks l = scan();
	ck_assert_uint_eq(l.leaks, 0);
	ck_assert_uint_eq(l.suppressed, 2);
	ck_assert_uint_eq(l.suppressed_bytes, ksize(DROPPED(0)) + ksize(DROPPED(1)));
	/* the table holds 64 patterns */
	int added = 2;
	while (kmalloc_leak_suppress("x") == 0)
		added++;
	ck_assert_int_eq(added, 64);
	ck_assert_int_eq(kmalloc_leak_suppress(""), -1);
}
END_TEST

/* not_leak: never reported, and what it points to stays alive; ignore:
 * never reported, and not read, so what only it points to is a leak. */
__attribute__((noinline)) static void make_flagged(void)
{
	void **a = kmalloc(64, 0), **b = kmalloc(64, 0);
	a[0] = kmalloc(32, 0);
	b[0] = kmalloc(32, 0);
	hidden[0] = (uintptr_t)a ^ KEY;
	hidden[1] = (uintptr_t)b ^ KEY;
	hidden[2] = (uintptr_t)a[0] ^ KEY;
	hidden[3] = (uintptr_t)b[0] ^ KEY;
	ck_assert_int_eq(kmalloc_leak_not_leak(a), 0);
	ck_assert_int_eq(kmalloc_leak_ignore(b), 0);
	ck_assert_int_eq(kmalloc_leak_not_leak((char *)a + 8), -1); /* not a start */
	ck_assert_int_eq(kmalloc_leak_ignore(NULL), -1);
}

START_TEST(not_leak_and_ignore)
{
	setenv("KMALLOC_LEAK_CHECK", "1", 1);
	make_flagged();
	struct kmalloc_leaks l = scan();
	ck_assert_uint_eq(l.leaks, 1);
	ck_assert(reported(DROPPED(3))); /* only the ignored object reached it */
	ck_assert(!reported(DROPPED(0)) && !reported(DROPPED(1)) && !reported(DROPPED(2)));
	/* a flag dies with its object: freed and allocated again, the slot
	 * is reported like any other */
	kfree(DROPPED(2));
	kfree(DROPPED(0));
	kmalloc_flush_cpu();
	void *again = kmalloc(64, 0);
	hidden[0] = (uintptr_t)again ^ KEY;
	again = NULL;
	l = scan();
	ck_assert_uint_eq(l.leaks, 2);
	ck_assert(reported(DROPPED(0)));
}
END_TEST

/* An ignored object among 300,000 others that overflow the grey stack:
 * the overflow pass rescans its span, and still does not read it. */
__attribute__((noinline)) static void make_wide_with_ignored(void)
{
	enum { N = 300000 };
	void **table = kmalloc(N * sizeof(void *), 0);
	for (int i = 0; i < N - 1; i++)
		table[i] = kmalloc(32, 0);
	void **b = kmalloc(32, 0);
	b[0] = kmalloc(48, 0);
	table[N - 1] = b;
	hidden[0] = (uintptr_t)b[0] ^ KEY;
	ck_assert_int_eq(kmalloc_leak_ignore(b), 0);
	keep[2] = table;
}

START_TEST(ignored_objects_stay_unread_in_the_overflow_pass)
{
	setenv("KMALLOC_LEAK_CHECK", "1", 1);
	make_wide_with_ignored();
	struct kmalloc_leaks l = scan();
	ck_assert_uint_gt(l.rescans, 0);
	ck_assert_uint_eq(l.leaks, 1);
	ck_assert(reported(DROPPED(0)));
	keep[2] = NULL;
}
END_TEST

START_TEST(flags_need_tracked_sites)
{
	void *p = kmalloc(64, 0);
	ck_assert_int_eq(kmalloc_leak_not_leak(p), -1);
	ck_assert_int_eq(kmalloc_leak_ignore(p), -1);
	ck_assert_int_eq(kmalloc_leak_end_ref(p), -1);
	kfree(p);
}
END_TEST

/* A "stack" referred to only by its end pointer (base + size, a stack's
 * top) with a leak planted right after it: by default the end pointer
 * keeps the leak and the stack is reported; once the stack is
 * kmalloc_leak_end_ref'd, the stack is kept and the leak reported. */
static void *pairs[64][2]; /* the tries that were not adjacent: roots */

__attribute__((noinline)) static void make_stack_and_leak(size_t size, int end_ref)
{
	for (int i = 0; i < 64; i++) {
		char *st = kmalloc(size, 0), *lk = kmalloc(size, 0);
		ck_assert(st != NULL && lk != NULL);
		if (lk == st + ksize(st)) {
			keep[6] = st + ksize(st); /* the stack's top */
			hidden[0] = (uintptr_t)st ^ KEY;
			hidden[1] = (uintptr_t)lk ^ KEY;
			if (end_ref)
				ck_assert_int_eq(kmalloc_leak_end_ref(st), 0);
			return;
		}
		pairs[i][0] = st;
		pairs[i][1] = lk;
	}
	ck_abort_msg("no two adjacent objects of %zu bytes", size);
}

static void end_pointer_case(size_t size)
{
	setenv("KMALLOC_LEAK_CHECK", "1", 1);
	make_stack_and_leak(size, 0);
	scan();
	ck_assert_uint_eq(rep.n, 1);
	ck_assert(reported(DROPPED(0)));  /* the stack, although in use */
	ck_assert(!reported(DROPPED(1))); /* the leak, hidden */
	make_stack_and_leak(size, 1);
	scan();
	/* the first stack, its leak (nothing keeps either now), this leak */
	ck_assert_uint_eq(rep.n, 3);
	ck_assert(!reported(DROPPED(0)));
	ck_assert(reported(DROPPED(1)));
	keep[6] = NULL;
}

START_TEST(end_pointer_of_a_small_stack) { end_pointer_case(16384); }
END_TEST

START_TEST(end_pointer_of_a_large_stack) { end_pointer_case(65536); }
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
	   CHECK_TEST(sites_name_the_allocating_function),
	   CHECK_TEST(backtraces_name_the_callers),
	   CHECK_TEST(one_frame_when_asked),
	   CHECK_TEST(printed_report_shows_the_backtrace),
	   CHECK_TEST(suppression_by_a_deeper_frame),
	   CHECK_TEST(not_leak_and_ignore),
	   CHECK_TEST(ignored_objects_stay_unread_in_the_overflow_pass),
	   CHECK_TEST(flags_need_tracked_sites),
	   CHECK_TEST(end_pointer_of_a_small_stack),
	   CHECK_TEST(end_pointer_of_a_large_stack))
/* clang-format on */
