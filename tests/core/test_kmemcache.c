/*
 * test_kmemcache.c: typed caches (kmem_cache_*, mm/mkmemcache.c) on the
 * real heap. A cache's objects have its exact size and alignment and come
 * from spans of its own class (objects per span as the cache's geometry
 * says); the constructor runs once per slot when a span is made, never
 * on reuse; memory freed to a cache is never handed out by kmalloc or
 * another cache; frees are validated (wrong cache, double and interior
 * frees stop with their one line, checked in forked children); destroy
 * reports live objects and keeps the cache, or gives everything back; a
 * create/destroy loop leaves the metadata where it was; kmalloc_dump
 * prints the slabinfo lines.
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/child_util.h"
#include "internal.h"

static void setup(void) { ck_assert_int_eq(kmalloc_init(), 0); }

/* n objects of c into p. */
static void alloc_n(struct kmem_cache *c, void **p, int n)
{
	for (int i = 0; i < n; i++) {
		p[i] = kmem_cache_alloc(c, 0);
		ck_assert_ptr_nonnull(p[i]);
	}
}

/* fn in a forked child that must exit 0; what it printed in *r. */
static void child_exits_0(void (*fn)(void *), struct child_result *r)
{
	run_in_child(fn, NULL, r);
	ck_assert_msg(!r->signaled && r->status == 0, "child: signal %d, status %d, stderr \"%s\"",
	              r->sig, r->status, r->err);
}

static struct kmem_cache_stats stats(struct kmem_cache *c)
{
	struct kmem_cache_stats st;
	kmem_cache_stats(c, &st);
	return st;
}

/* The span class an object lives in. */
static unsigned class_of(const void *p)
{
	struct mspan *s = spanOf((uintptr_t)p);
	ck_assert_ptr_nonnull(s);
	return s->spanclass;
}

START_TEST(create_alloc_free_destroy)
{
	struct kmem_cache *c = kmem_cache_create("inode", 200, 0, 0, NULL);
	ck_assert_ptr_nonnull(c);
	void *p[100];
	for (int i = 0; i < 100; i++) {
		p[i] = kmem_cache_alloc(c, 0);
		ck_assert_ptr_nonnull(p[i]);
		ck_assert_uint_eq(ksize(p[i]), 200);
		ck_assert_uint_ge(class_of(p[i]), KMALLOC_SPANCLASSES);
		memset(p[i], i, 200);
	}
	struct kmem_cache_stats st = stats(c);
	ck_assert_uint_eq(st.active_objs, 100);
	ck_assert_uint_eq(st.allocs, 100);
	ck_assert_uint_eq(st.slabs, 3); /* 40 per span */
	ck_assert_uint_eq(st.num_objs, 120);
	for (int i = 0; i < 100; i++)
		kmem_cache_free(c, p[i]);
	ck_assert_uint_eq(stats(c).active_objs, 0);
	ck_assert(mheap_valid());
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
	ck_assert(mheap_valid());
	struct mm_census cs;
	kmalloc_flush_cpu();
	mm_census(&cs);
	ck_assert_uint_eq(cs.spans_small, 0); /* every span went back */
}
END_TEST

/* Sizes between kmalloc's classes keep their exact size: objects per
 * span follow from it (a page unless the tail wastes more than 1/8). */
START_TEST(exact_sizes)
{
	static const struct {
		size_t size, perspan;
	} want[] = { { 24, 341 }, { 40, 204 }, { 200, 40 }, { 1000, 8 }, { 4000, 2 } };
	for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++) {
		struct kmem_cache *c = kmem_cache_create("sized", want[i].size, 0, 0, NULL);
		ck_assert_ptr_nonnull(c);
		struct kmem_cache_stats st = stats(c);
		ck_assert_uint_eq(st.objsize, want[i].size);
		ck_assert_uint_eq(st.objperslab, want[i].perspan);
		ck_assert_uint_eq(st.pagesperslab, 1);
		/* a span's worth fills one span, the next object a second */
		void **p = malloc((want[i].perspan + 1) * sizeof *p);
		for (size_t k = 0; k <= want[i].perspan; k++) {
			p[k] = kmem_cache_alloc(c, 0);
			ck_assert_uint_eq(ksize(p[k]), want[i].size);
			if (k > 0 && k < want[i].perspan)
				ck_assert_uint_eq((uintptr_t)p[k] - (uintptr_t)p[k - 1],
				                  want[i].size);
			ck_assert_uint_eq(stats(c).slabs, k < want[i].perspan ? 1 : 2);
		}
		for (size_t k = 0; k <= want[i].perspan; k++)
			kmem_cache_free(c, p[k]);
		free(p);
		ck_assert_int_eq(kmem_cache_destroy(c), 0);
	}
	ck_assert(mheap_valid());
}
END_TEST

static void expect_aligned(const char *name, size_t size, size_t align, unsigned flags,
                           size_t want_align, size_t want_size)
{
	struct kmem_cache *c = kmem_cache_create(name, size, align, flags, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(stats(c).objsize, want_size);
	ck_assert_uint_eq(stats(c).align, want_align);
	void *p[40];
	for (int i = 0; i < 40; i++) {
		p[i] = kmem_cache_alloc(c, 0);
		ck_assert_uint_eq((uintptr_t)p[i] % want_align, 0);
	}
	for (int i = 0; i < 40; i++)
		kmem_cache_free(c, p[i]);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
}

START_TEST(alignment)
{
	expect_aligned("natural", 24, 0, 0, 8, 24);
	expect_aligned("natural16", 48, 0, 0, 16, 48);
	expect_aligned("a64", 40, 64, 0, 64, 64);
	expect_aligned("hw", 24, 0, KMC_HWALIGN, 64, 64);
	expect_aligned("hw128", 24, 128, KMC_HWALIGN, 128, 128);
	expect_aligned("page", 100, 4096, 0, 4096, 4096);
	expect_aligned("tiny", 3, 0, 0, 8, 8);
	/* what create refuses */
	ck_assert_ptr_null(kmem_cache_create("zero", 0, 0, 0, NULL));
	ck_assert_ptr_null(kmem_cache_create("big", 32769, 0, 0, NULL));
	ck_assert_ptr_null(kmem_cache_create("odd", 64, 24, 0, NULL));
	ck_assert_ptr_null(kmem_cache_create("huge-align", 64, 16384, 0, NULL));
	ck_assert_ptr_null(kmem_cache_create("flags", 64, 0, 0x80, NULL));
	struct kmem_cache *c = kmem_cache_create("max", 32768, 0, 0, NULL);
	ck_assert_ptr_nonnull(c);
	void *p = kmem_cache_alloc(c, KM_ZERO);
	ck_assert_uint_eq(ksize(p), 32768);
	kmem_cache_free(c, p);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
}
END_TEST

static unsigned ctor_calls;
struct obj {
	uint64_t magic;
	void *self;
	char pad[48];
};
#define MAGIC 0x0b1ec7c0ffee0001ull

static void ctor(void *p)
{
	struct obj *o = p;
	o->magic = MAGIC;
	o->self = p;
	ctor_calls++;
}

START_TEST(ctor_once_per_object)
{
	struct kmem_cache *c = kmem_cache_create("obj", sizeof(struct obj), 0, 0, ctor);
	ck_assert_ptr_nonnull(c);
	enum { N = 500 };
	static struct obj *o[N];
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < N; i++) {
			o[i] = kmem_cache_alloc(c, 0);
			ck_assert_uint_eq(o[i]->magic, MAGIC); /* constructed */
			ck_assert_ptr_eq(o[i]->self, o[i]);
		}
		struct kmem_cache_stats st = stats(c);
		/* once per slot of every span made, not per allocation */
		ck_assert_uint_eq(ctor_calls, st.slabs * st.objperslab);
		for (int i = 0; i < N; i++)
			kmem_cache_free(c, o[i]); /* in their constructed state */
	}
	ck_assert_uint_le(ctor_calls, 2 * N);
	/* KM_ZERO clears the constructed state */
	struct obj *z = kmem_cache_alloc(c, KM_ZERO);
	ck_assert_uint_eq(z->magic, 0);
	ck_assert_ptr_null(z->self);
	kmem_cache_free(c, z);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
}
END_TEST

/* A new cache *c of `size`-byte objects and one of them, every byte 7. */
static char *dirty_object(struct kmem_cache **c, const char *name, size_t size)
{
	*c = kmem_cache_create(name, size, 0, 0, NULL);
	ck_assert_ptr_nonnull(*c);
	char *p = kmem_cache_alloc(*c, 0);
	memset(p, 7, size);
	return p;
}

/* Without a constructor objects behave as kmalloc's: KM_ZERO zeroes a
 * reused one. */
START_TEST(km_zero_without_ctor)
{
	struct kmem_cache *c;
	char *p = dirty_object(&c, "plain", 96);
	kmem_cache_free(c, p);
	char *q = kmem_cache_alloc(c, KM_ZERO);
	ck_assert_ptr_eq(p, q); /* the magazine hands it back */
	for (int i = 0; i < 96; i++)
		ck_assert_int_eq(q[i], 0);
	kmem_cache_free(c, q);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
}
END_TEST

/* A freed object of cache A is never returned by kmalloc or by cache B
 * of the same size, however much they allocate. */
START_TEST(isolation)
{
	struct kmem_cache *a = kmem_cache_create("a", 64, 0, 0, NULL);
	struct kmem_cache *b = kmem_cache_create("b", 64, 0, 0, NULL);
	enum { N = 3000 };
	static void *pa[N], *pk[N], *pb[N];
	for (int i = 0; i < N; i++)
		pa[i] = kmem_cache_alloc(a, 0);
	for (int i = 0; i < N; i++)
		kmem_cache_free(a, pa[i]);
	kmalloc_flush_cpu(); /* the freed objects go back to a's spans */
	unsigned ca = class_of(pa[0]);
	for (int i = 0; i < N; i++) {
		pk[i] = kmalloc(64, 0);
		pb[i] = kmem_cache_alloc(b, 0);
		ck_assert_uint_ne(class_of(pk[i]), ca);
		ck_assert_uint_ne(class_of(pb[i]), ca);
		ck_assert_uint_ne(class_of(pb[i]), class_of(pk[i]));
	}
	for (int i = 0; i < N; i++) {
		kfree(pk[i]);
		kmem_cache_free(b, pb[i]);
	}
	ck_assert_int_eq(kmem_cache_destroy(a), 0);
	ck_assert_int_eq(kmem_cache_destroy(b), 0);
	ck_assert(mheap_valid());
}
END_TEST

/* kfree and ksize take cache objects (Linux allows kfree of them). */
START_TEST(kfree_and_ksize_of_cache_objects)
{
	struct kmem_cache *c = kmem_cache_create("k", 40, 0, 0, NULL);
	void *p = kmem_cache_alloc(c, 0), *q = kmem_cache_alloc(c, 0);
	ck_assert_uint_eq(ksize(p), 40);
	kfree(p);
	kmem_cache_free(c, q);
	ck_assert_uint_eq(stats(c).active_objs, 0);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
}
END_TEST

/* krealloc of a cache object: in place while the new size still fits
 * (it stays the cache's, freed to it), else moved to kmalloc. */
START_TEST(krealloc_of_cache_objects)
{
	struct kmem_cache *c;
	char *p = dirty_object(&c, "r", 200);
	ck_assert_ptr_eq(krealloc(p, 150, 0), p);
	ck_assert_int_eq(kmem_cache_destroy(c), -1); /* still the cache's */
	kmem_cache_free(c, p);
	p = kmem_cache_alloc(c, 0);
	memset(p, 7, 200);
	char *q = krealloc(p, 5000, 0);
	ck_assert_ptr_ne(q, p);
	ck_assert_int_eq(q[199], 7);
	ck_assert_uint_eq(stats(c).active_objs, 0); /* p went back to the cache */
	kfree(q);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
}
END_TEST

/* ---- misuse, each in a forked child ---- */

static struct kmem_cache *inode, *dentry;
static void *victim;

static void misuse_setup(void)
{
	inode = kmem_cache_create("inode", 200, 0, 0, NULL);
	dentry = kmem_cache_create("dentry", 192, 0, 0, NULL);
	ck_assert_ptr_nonnull(inode);
	ck_assert_ptr_nonnull(dentry);
}

static void free_to_dentry(void *arg) { kmem_cache_free(dentry, arg); }

static void free_to_inode(void *arg) { kmem_cache_free(inode, arg); }

/* The child's stdout holds the log line naming both owners. */
static void expect_wrong_cache(void (*fn)(void *), void *p, const char *have, const char *want)
{
	struct child_result r;
	run_in_child(fn, p, &r);
	const char *m = misuse_mismatch(&r, "wrong cache", p);
	ck_assert_msg(m == NULL, "%s", m);
	char line[256];
	snprintf(line, sizeof line, "kmalloc: wrong cache: 0x%lx (object of '%s', freed to '%s')\n",
	         (unsigned long)(uintptr_t)p, have, want);
	ck_assert_msg(strstr(r.out, line) != NULL, "stdout \"%s\" lacks \"%s\"", r.out, line);
}

START_TEST(wrong_cache_free)
{
	misuse_setup();
	void *p = kmem_cache_alloc(inode, 0);
	void *k = kmalloc(64, 0), *big = kmalloc(100000, 0);
	expect_wrong_cache(free_to_dentry, p, "inode", "dentry");
	expect_wrong_cache(free_to_dentry, k, "kmalloc-64", "dentry");
	expect_wrong_cache(free_to_inode, big, "kmalloc-large", "inode");
	/* the parent's heap is untouched: the right free works */
	kmem_cache_free(inode, p);
	kfree(k);
	kfree(big);
	ck_assert(mheap_valid());
}
END_TEST

START_TEST(double_and_interior_free)
{
	misuse_setup();
	void *keep = kmem_cache_alloc(inode, 0);
	victim = kmem_cache_alloc(inode, 0);
	struct child_result r;
	run_in_child(free_to_inode, (char *)victim + 8, &r);
	const char *m = misuse_mismatch(&r, "invalid free", (char *)victim + 8);
	ck_assert_msg(m == NULL, "%s", m);
	kmem_cache_free(inode, victim);
	run_in_child(free_to_inode, victim, &r); /* in this CPU's magazine */
	m = misuse_mismatch(&r, "double free", victim);
	ck_assert_msg(m == NULL, "%s", m);
	kmalloc_flush_cpu(); /* back in its span */
	run_in_child(free_to_inode, victim, &r);
	m = misuse_mismatch(&r, "double free", victim);
	ck_assert_msg(m == NULL, "%s", m);
	/* a freed object of another cache: its own fault, not wrong cache */
	run_in_child(free_to_dentry, victim, &r);
	m = misuse_mismatch(&r, "double free", victim);
	ck_assert_msg(m == NULL, "%s", m);
	kmem_cache_free(inode, keep);
}
END_TEST

static void alloc_from_destroyed(void *arg) { (void)kmem_cache_alloc(arg, 0); }

START_TEST(destroyed_cache_is_refused)
{
	struct kmem_cache *c = kmem_cache_create("gone", 64, 0, 0, NULL);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
	struct child_result r;
	run_in_child(alloc_from_destroyed, c, &r);
	const char *m = misuse_mismatch(&r, "invalid cache", c);
	ck_assert_msg(m == NULL, "%s", m);
}
END_TEST

/* ---- destroy ---- */

static struct kmem_cache *dc;
static void *dlive[20];
static int destroy_rc;

static void destroy_in_child(void *arg)
{
	(void)arg;
	destroy_rc = kmem_cache_destroy(dc);
	exit(destroy_rc == -1 ? 0 : 3);
}

START_TEST(destroy_with_live_objects)
{
	dc = kmem_cache_create("inode", 200, 0, 0, NULL);
	void *dead[5];
	alloc_n(dc, dead, 5);
	alloc_n(dc, dlive, 3);
	for (int i = 0; i < 5; i++)
		kmem_cache_free(dc, dead[i]);
	struct child_result r;
	child_exits_0(destroy_in_child, &r);
	char line[256];
	snprintf(line, sizeof line,
	         "kmem_cache_destroy: 'inode': 3 objects remaining: 0x%lx 0x%lx 0x%lx\n",
	         (unsigned long)(uintptr_t)dlive[0], (unsigned long)(uintptr_t)dlive[1],
	         (unsigned long)(uintptr_t)dlive[2]);
	ck_assert_msg(strcmp(r.out, line) == 0, "stdout \"%s\", want \"%s\"", r.out, line);
	/* here too: -1, and the cache still serves */
	ck_assert_int_eq(kmem_cache_destroy(dc), -1);
	void *more = kmem_cache_alloc(dc, 0);
	ck_assert_ptr_nonnull(more);
	kmem_cache_free(dc, more);
	for (int i = 0; i < 3; i++)
		kmem_cache_free(dc, dlive[i]);
	ck_assert_int_eq(kmem_cache_destroy(dc), 0);
	ck_assert(mheap_valid());
}
END_TEST

START_TEST(destroy_lists_sixteen_then_counts)
{
	dc = kmem_cache_create("many", 64, 0, 0, NULL);
	alloc_n(dc, dlive, 20);
	struct child_result r;
	child_exits_0(destroy_in_child, &r);
	char line[1024];
	size_t n = (size_t)snprintf(line, sizeof line,
	                            "kmem_cache_destroy: 'many': 20 objects remaining:");
	for (int i = 0; i < 16; i++) /* one span: in address order */
		n += (size_t)snprintf(line + n, sizeof line - n, " 0x%lx",
		                      (unsigned long)(uintptr_t)dlive[i]);
	snprintf(line + n, sizeof line - n, " and 4 more\n");
	ck_assert_msg(strcmp(r.out, line) == 0, "stdout \"%s\", want \"%s\"", r.out, line);
	for (int i = 0; i < 20; i++)
		kmem_cache_free(dc, dlive[i]);
	ck_assert_int_eq(kmem_cache_destroy(dc), 0);
}
END_TEST

/* Creating and destroying caches in a loop reuses their classes, their
 * magazines and transfer entries: the metadata does not grow. */
START_TEST(create_destroy_loop_metadata_flat)
{
	struct kmalloc_stats st;
	uint64_t meta = 0, sys = 0;
	static const size_t sizes[] = { 24, 200, 1000, 4000, 56 };
	for (int i = 0; i < 10000; i++) {
		size_t size = sizes[i % 5];
		struct kmem_cache *c =
		        kmem_cache_create("loop", size, 0, (unsigned)i & KMC_NOSCAN, NULL);
		ck_assert_ptr_nonnull(c);
		void *p[3];
		for (int k = 0; k < 3; k++)
			p[k] = kmem_cache_alloc(c, 0);
		for (int k = 0; k < 3; k++)
			kmem_cache_free(c, p[k]);
		ck_assert_int_eq(kmem_cache_destroy(c), 0);
		if (i == 9) {
			kmalloc_stats(&st);
			meta = st.meta_sys;
			sys = st.heap_sys;
		}
	}
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.meta_sys, meta);
	ck_assert_uint_eq(st.heap_sys, sys);
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert(mheap_valid());
}
END_TEST

/* KMC_MAX / 2 (56) caches of each kind; the next is refused until one goes. */
START_TEST(limit_and_reuse)
{
	static struct kmem_cache *c[KMC_MAX / 2 + 1];
	for (unsigned i = 0; i < KMC_MAX / 2; i++) {
		c[i] = kmem_cache_create("fill", 32 + 8 * i, 0, KMC_NOSCAN, NULL);
		ck_assert_ptr_nonnull(c[i]);
	}
	ck_assert_ptr_null(kmem_cache_create("one too many", 64, 0, KMC_NOSCAN, NULL));
	struct kmem_cache *scanned = kmem_cache_create("scanned", 64, 0, 0, NULL);
	ck_assert_ptr_nonnull(scanned); /* the other half has room */
	ck_assert_int_eq(kmem_cache_destroy(c[7]), 0);
	c[KMC_MAX / 2] = kmem_cache_create("again", 64, 0, KMC_NOSCAN, NULL);
	ck_assert_ptr_eq(c[KMC_MAX / 2], c[7]);
	void *p = kmem_cache_alloc(c[7], 0);
	ck_assert_uint_eq(ksize(p), 64);
	kmem_cache_free(c[7], p);
}
END_TEST

START_TEST(shrink_gives_back_empty_spans)
{
	struct kmem_cache *c = kmem_cache_create("shrinkable", 1000, 0, 0, NULL);
	enum { N = 80 }; /* 10 spans of 8 */
	void *p[N];
	alloc_n(c, p, N);
	ck_assert_uint_eq(stats(c).slabs, 10);
	for (int i = 0; i < N; i++)
		if (i % 8 != 0) /* one object keeps each span */
			kmem_cache_free(c, p[i]);
	ck_assert_int_eq(kmem_cache_shrink(c), 0);
	for (int i = 0; i < N; i += 8)
		kmem_cache_free(c, p[i]);
	/* all ten: their objects were in magazines until the drain, and
	 * shrink keeps no spare span either */
	ck_assert_int_eq(kmem_cache_shrink(c), 10);
	ck_assert_uint_eq(stats(c).slabs, 0);
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
}
END_TEST

static void dump(void *arg)
{
	(void)arg;
	kmalloc_dump();
}

START_TEST(slabinfo_in_dump)
{
	struct kmem_cache *c = kmem_cache_create("task_struct", 1000, 0, 0, NULL);
	void *p[10];
	alloc_n(c, p, 10);
	struct child_result r;
	child_exits_0(dump, &r);
	char name[32];
	unsigned long active, num, size, per, pages;
	const char *l = strstr(r.out, "kmalloc: slabinfo: task_struct");
	ck_assert_ptr_nonnull(l);
	ck_assert_int_eq(sscanf(l, "kmalloc: slabinfo: %31s %lu %lu %lu %lu %lu", name, &active,
	                        &num, &size, &per, &pages),
	                 6);
	ck_assert_uint_eq(active, 10);
	ck_assert_uint_eq(num, 16);
	ck_assert_uint_eq(size, 1000);
	ck_assert_uint_eq(per, 8);
	ck_assert_uint_eq(pages, 1);
	/* after the class table, before the large objects */
	const char *table = strstr(r.out, "kmalloc: class"),
	           *large = strstr(r.out, "kmalloc: large allocs");
	ck_assert(table != NULL && table < l);
	ck_assert(large != NULL && large > l);
	for (int i = 0; i < 10; i++)
		kmem_cache_free(c, p[i]);
}
END_TEST

CHECK_MAIN_SETUP("kmemcache", 120, setup, CHECK_TEST(create_alloc_free_destroy),
                 CHECK_TEST(exact_sizes), CHECK_TEST(alignment), CHECK_TEST(ctor_once_per_object),
                 CHECK_TEST(km_zero_without_ctor), CHECK_TEST(isolation),
                 CHECK_TEST(kfree_and_ksize_of_cache_objects),
                 CHECK_TEST(krealloc_of_cache_objects), CHECK_TEST(wrong_cache_free),
                 CHECK_TEST(double_and_interior_free), CHECK_TEST(destroyed_cache_is_refused),
                 CHECK_TEST(destroy_with_live_objects),
                 CHECK_TEST(destroy_lists_sixteen_then_counts),
                 CHECK_TEST(create_destroy_loop_metadata_flat), CHECK_TEST(limit_and_reuse),
                 CHECK_TEST(shrink_gives_back_empty_spans), CHECK_TEST(slabinfo_in_dump))
