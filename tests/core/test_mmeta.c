/*
 * test_mmeta.c: kmalloc_trim gives back the page maps (page -> span map
 * and page descriptors) of chunks that hold no span (mm/mmeta.c), and
 * what a user relies on stays true: the memory counts as given back, the
 * heap grows into those chunks again and every object there frees and
 * sizes normally; a stray or repeated free of a pointer into a trimmed
 * chunk still stops with the exact fault line; a refused recommit is an
 * allocation that returns NULL, after which the heap serves again; the
 * validator (mheap_valid) checks what was given back; allocation, free
 * and trim on several threads at once keep the heap valid. The page
 * allocator's records of such chunks go too, a sys page at a time, and
 * the entry pages of emptied transfer caches, which come back on their
 * next overflow (mm/mtransfer.c).
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <pthread.h>
#include <string.h>

#include "../lib/child_util.h"
#include "host.h"
#include "internal.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Enough objects to spread spans over several chunks: 24 MiB of 1 KiB
 * objects (8 per span) with a 40 KB large object every eighth. */
enum { N = 24000 };
static void *objs[N];

static size_t obj_size(int i) { return i % 8 == 7 ? 40000 : 1024; }

static void fill(void)
{
	for (int i = 0; i < N; i++) {
		objs[i] = kmalloc(obj_size(i), 0);
		ck_assert_ptr_nonnull(objs[i]);
		memset(objs[i], 0x5a, 64);
	}
}

static void empty(void)
{
	for (int i = 0; i < N; i++)
		kfree(objs[i]);
}

static size_t chunk_of(const void *p) { return ((uintptr_t)p - mheap_.arena_start) >> CHUNK_SHIFT; }

/* Chunks whose map words are given back. */
static size_t released_chunks(void)
{
	size_t n = 0;
	lock_heap();
	for (size_t c = 0; c < mheap_.pages.nchunks; c++)
		n += !mheap_maps_ready(c);
	unlock_heap();
	return n;
}

/* Pages of chunk records given back. */
static size_t released_record_pages(void)
{
	size_t n = 0;
	lock_heap();
	for (size_t p = 0; p < mheap_.m_chunks.committed / sys_config.page_size; p++)
		n += mheap_.pages.pgstate[p] == CP_RELEASED;
	unlock_heap();
	return n;
}

START_TEST(trim_gives_back_maps_and_they_come_back)
{
	fill();
	size_t grown = mheap_.pages.nchunks;
	ck_assert_uint_ge(grown, 6);
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	uint64_t meta_full = st.meta_sys;
	empty();
	kmalloc_trim();
	ck_assert(mheap_valid());
	/* nothing is live: every chunk's words went, 8 KiB each (two 4 KiB
	 * pages of words per chunk), and the counts say so exactly */
	ck_assert_uint_eq(released_chunks(), grown);
	kmalloc_stats(&st);
	ck_assert_uint_le(st.meta_sys + grown * 8 * KiB, meta_full);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	ck_assert_ptr_null(spanOf((uintptr_t)objs[0]));

	/* The same load again: the heap grows back into the same chunks, and
	 * every object is a normal one (ksize and kfree read the maps). */
	fill();
	ck_assert(mheap_valid());
	ck_assert_uint_eq(mheap_.pages.nchunks, grown);
	for (int i = 0; i < N; i++)
		ck_assert_uint_ge(ksize(objs[i]), obj_size(i));
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	empty();
	ck_assert(mheap_valid());
}
END_TEST

/* A chunk with a live object keeps its words; the others go. */
START_TEST(trim_keeps_maps_of_chunks_with_spans)
{
	fill();
	void *keep = objs[N - 1];
	objs[N - 1] = NULL;
	empty();
	kmalloc_trim();
	ck_assert(mheap_valid());
	lock_heap();
	ck_assert(mheap_maps_ready(chunk_of(keep)));
	unlock_heap();
	ck_assert_uint_eq(released_chunks(), mheap_.pages.nchunks - 1);
	ck_assert_uint_eq(ksize(keep), 40960);
	kfree(keep);
}
END_TEST

struct bad_call {
	int op; /* 0 kfree, 1 ksize, 2 krealloc */
	const void *p;
};

static void bad_call(void *arg)
{
	const struct bad_call *b = arg;
	if (b->op == 0)
		kfree(b->p);
	else if (b->op == 1)
		(void)ksize(b->p);
	else
		(void)krealloc((void *)b->p, 10, 0);
}

static void expect_fault(int op, const void *p, const char *fault)
{
	struct bad_call b = { op, p };
	struct child_result r;
	run_in_child(bad_call, &b, &r);
	const char *m = misuse_mismatch(&r, fault, p);
	ck_assert_msg(m == NULL, "%s", m);
}

/* Pointers into trimmed chunks below a chunk that still holds a span (so
 * inside the grown arena): freeing a small object or a large one again,
 * or freeing a pointer that never was an object, stops with the exact
 * line, never a fault on a missing map word. The large object's record
 * is gone with the trim, so its second free is an "invalid free", as
 * after any trim that gave its record back (api_misuse.c). */
START_TEST(bad_free_into_trimmed_chunk_is_reported)
{
	fill();
	void *keep = kmalloc(MiB, 0); /* above every chunk of the load */
	ck_assert_ptr_nonnull(keep);
	ck_assert_uint_gt(chunk_of(keep), chunk_of(objs[0]));
	empty();
	kmalloc_trim();
	ck_assert(!mheap_maps_ready(chunk_of(objs[0])));
	ck_assert(!mheap_maps_ready(chunk_of(objs[7])));
	expect_fault(0, objs[0], "invalid free");
	expect_fault(0, objs[7], "invalid free");
	expect_fault(0, (char *)objs[0] + 8, "invalid free");
	expect_fault(1, objs[0], "invalid pointer");
	expect_fault(2, objs[7], "invalid pointer");
	/* the parent's heap is untouched by the children */
	ck_assert(mheap_valid());
	kfree(keep);
}
END_TEST

/* The maps' recommit is a commit like any other: refused, the allocation
 * that needed it returns NULL and nothing changes; with memory back, the
 * heap serves again. */
START_TEST(refused_map_recommit_is_null)
{
	fill();
	empty();
	kmalloc_trim();
	ck_assert_uint_eq(released_chunks(), mheap_.pages.nchunks);
	host_set_commit_limit(host_committed_bytes() + 4 * KiB); /* one page of words, not two */
	ck_assert_ptr_null(kmalloc(40000, 0));
	ck_assert(mheap_valid());
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	host_set_commit_limit(0);
	void *p = kmalloc(40000, 0);
	ck_assert_ptr_nonnull(p);
	memset(p, 1, 40000);
	ck_assert(mheap_valid());
	kfree(p);
}
END_TEST

/* mheap_valid checks what was given back: a nonzero descriptor, or a
 * chunk record saying "ready" (memory a released page must not hold),
 * fails it. */
START_TEST(validator_checks_released_maps)
{
	fill();
	empty();
	kmalloc_trim();
	ck_assert(mheap_valid());
	size_t pg = ((uintptr_t)objs[0] - mheap_.arena_start) >> PAGE_SHIFT;
	mheap_.pagedesc[pg] = 2; /* the host's given-back pages stay writable */
	ck_assert(!mheap_valid());
	mheap_.pagedesc[pg] = 0;
	ck_assert(mheap_valid());
	/* a chunk record on a page given back must read "free, released" */
	void *big[40]; /* 40 chunks: past a page of records */
	for (int i = 0; i < 40; i++)
		big[i] = kmalloc(4 * MiB, 0);
	for (int i = 0; i < 40; i++)
		kfree(big[i]);
	kmalloc_trim();
	ck_assert_uint_eq(mheap_.pages.pgstate[0], CP_RELEASED);
	ck_assert(mheap_valid());
	mheap_.pages.chunks[0].ready[0] = 1; /* chunk 0's record is on page 0 */
	ck_assert(!mheap_valid());
	mheap_.pages.chunks[0].ready[0] = 0;
	ck_assert(mheap_valid());
}
END_TEST

/* Threads allocate and free spans in and out of chunks while another
 * trims over and over: no object is lost or misread, and the heap is
 * valid when they are done. */
static void *churn(void *arg)
{
	(void)arg;
	static __thread void *p[512];
	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < 512; i++) {
			/* 8 MiB objects now and then: more than 31 chunks
			 * grown, so whole pages of chunk records go too */
			p[i] = kmalloc(i % 64 == 0 ? 8 * MiB : i % 16 == 0 ? 70000 : 512, 0);
			ck_assert_ptr_nonnull(p[i]);
			*(volatile char *)p[i] = 1;
		}
		for (int i = 0; i < 512; i++)
			kfree(p[i]);
		kmalloc_flush_cpu();
	}
	return NULL;
}

static void *trimmer(void *arg)
{
	volatile int *stop = arg;
	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE))
		kmalloc_trim();
	return NULL;
}

START_TEST(trim_races_allocation)
{
	pthread_t a, b, t;
	int stop = 0;
	ck_assert_int_eq(pthread_create(&t, NULL, trimmer, &stop), 0);
	ck_assert_int_eq(pthread_create(&a, NULL, churn, NULL), 0);
	ck_assert_int_eq(pthread_create(&b, NULL, churn, NULL), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	kmalloc_trim();
	ck_assert(mheap_valid());
	ck_assert_uint_eq(released_chunks(), mheap_.pages.nchunks);
	/* the first page of records covers chunks 0..30 */
	if (mheap_.pages.nchunks * sizeof(struct pchunk) >= 2 * sys_config.page_size)
		ck_assert_uint_ge(released_record_pages(), 1);
}
END_TEST

/* With more chunks grown than a sys page holds records of (30 of 136
 * bytes), trim gives back those pages too: their chunks read as all free
 * and released, the page allocator finds them again, and the heap grows
 * back into them. */
START_TEST(trim_gives_back_chunk_records)
{
	enum { M = 40 };
	static void *q[M];
	for (int i = 0; i < M; i++) {
		q[i] = kmalloc(4 * MiB, 0); /* a chunk each; only one page touched */
		ck_assert_ptr_nonnull(q[i]);
		*(volatile char *)q[i] = 1;
	}
	size_t grown = mheap_.pages.nchunks;
	for (int i = 0; i < M; i++)
		kfree(q[i]);
	kmalloc_trim();
	ck_assert(mheap_valid());
	ck_assert_uint_ge(released_record_pages(), 1);
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	for (int i = 0; i < M; i++) {
		q[i] = kmalloc(4 * MiB, 0);
		ck_assert_ptr_nonnull(q[i]);
		*(volatile char *)q[i] = 2;
	}
	ck_assert_uint_eq(mheap_.pages.nchunks, grown);
	ck_assert_uint_eq(released_record_pages(), 0);
	ck_assert(mheap_valid());
	for (int i = 0; i < M; i++)
		kfree(q[i]);
	ck_assert(mheap_valid());
}
END_TEST

/* Trim also gives back the entry pages of emptied transfer caches (a
 * burst of frees fills them); the next overflow commits them again and
 * they carry objects between threads as before. */
START_TEST(trim_gives_back_transfer_entries)
{
	enum { M = 4000 };
	static void *q[M];
	unsigned cls = spanclass_make(size_to_class(64), 0);
	struct transfer *t = &mheap_.transfer[cls].t;
	for (int i = 0; i < M; i++)
		q[i] = kmalloc(64, 0);
	for (int i = 0; i < M; i++)
		kfree(q[i]);
	ck_assert_ptr_nonnull(t->e);
	ck_assert_uint_ge(t->cap * sizeof(struct magentry), 4 * KiB);
	kmalloc_trim();
	ck_assert_uint_eq(t->state, TC_RELEASED);
	ck_assert(mheap_valid());
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	for (int i = 0; i < M; i++)
		q[i] = kmalloc(64, 0);
	for (int i = 0; i < M; i++)
		kfree(q[i]);
	ck_assert_uint_eq(t->state, TC_READY);
	ck_assert_uint_gt(t->n, 0);
	ck_assert(mheap_valid());
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
}
END_TEST

/* clang-format off */
CHECK_MAIN("mmeta", 120,
	   CHECK_TEST(trim_gives_back_maps_and_they_come_back),
	   CHECK_TEST(trim_keeps_maps_of_chunks_with_spans),
	   CHECK_TEST(bad_free_into_trimmed_chunk_is_reported),
	   CHECK_TEST(refused_map_recommit_is_null),
	   CHECK_TEST(validator_checks_released_maps),
	   CHECK_TEST(trim_races_allocation),
	   CHECK_TEST(trim_gives_back_transfer_entries),
	   CHECK_TEST(trim_gives_back_chunk_records))
/* clang-format on */
