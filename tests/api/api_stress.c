/*
 * api_stress.c: multi-threaded stress of the host port, where each thread
 * is a CPU with its own mcache. Not a benchmark.
 *
 * NT worker threads (2..16, default 4) allocate objects of random sizes,
 * fill them with a pattern, and either keep them or pass them to another
 * worker through a ring (one ring per ordered pair of workers, so objects
 * flow in both directions between any two). Each worker drains its
 * incoming rings, checks the pattern and frees what it received: frees of
 * objects whose span sits in another CPU's mcache. Meanwhile short-lived
 * threads allocate a batch, hand it over and exit with their objects
 * still live (the port flushes their mcache at exit), and workers free
 * those too. Workers finish with objects still live in rings and in the
 * orphan list; the main thread frees them after every thread has exited.
 * Along the way one worker trims the heap, one samples the stats and the
 * others flush their own mcache, racing with everybody's fast paths.
 * Every worker also naps now and then (6 ms, with objects in its caches
 * and in flight): with KMALLOC_RELEASE_MS=5 the background thread drains
 * a napping worker's caches (mm/mcache.c, "idle CPUs"), and the worker
 * takes them back on its next call, racing with the others' frees into
 * its spans. At the end every class must balance (allocs == frees, nothing live, no
 * span in use) and a trim must return every page. A first test makes
 * each entry point a thread's first call after another thread set the
 * heap up (TSan: no read of the heap's set-up before its acquire). A
 * third test runs the threads into the port's commit limit together:
 * NULL, no crash, intact objects, and an empty heap once the main thread
 * has freed them all.
 *
 *   api_stress [ITERS]      per-worker iterations, default 200000
 *   KMALLOC_STRESS_THREADS  workers, default 4
 *   KMALLOC_STRESS_SEED     seed (printed first)
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api_util.h"

enum { MAX_THREADS = 16, RING = 512, LOCAL = 256, EPHEMERAL_BATCH = 300 };

struct obj {
	void *p;
	size_t size;
	uint32_t seed;
};

/* A bounded queue from one worker to another; the lock is held only to
 * move entries, never across a call into the allocator. */
struct ring {
	pthread_mutex_t lock;
	unsigned head, tail; /* guarded by lock; tail - head entries */
	struct obj e[RING];
};

static struct ring rings[MAX_THREADS][MAX_THREADS]; /* [from][to] */
static int nthreads = 4;
static uint64_t iters = 200000;
static uint64_t seed0;

/* Objects whose owner thread has exited. */
static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct obj *orphans;      /* guarded by orphan_lock */
static size_t norphans, orphan_cap; /* guarded by orphan_lock */

static void orphan_push(const struct obj *o)
{
	pthread_mutex_lock(&orphan_lock);
	if (norphans == orphan_cap) {
		orphan_cap = orphan_cap ? orphan_cap * 2 : 1024;
		orphans = realloc(orphans, orphan_cap * sizeof *orphans);
		if (!orphans)
			abort();
	}
	orphans[norphans++] = *o;
	pthread_mutex_unlock(&orphan_lock);
}

static int orphan_pop(struct obj *o)
{
	int got = 0;
	pthread_mutex_lock(&orphan_lock);
	if (norphans) {
		*o = orphans[--norphans];
		got = 1;
	}
	pthread_mutex_unlock(&orphan_lock);
	return got;
}

static int ring_push(struct ring *r, const struct obj *o)
{
	int ok = 0;
	pthread_mutex_lock(&r->lock);
	if (r->tail - r->head < RING) {
		r->e[r->tail++ % RING] = *o;
		ok = 1;
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

static int ring_pop(struct ring *r, struct obj *o)
{
	int ok = 0;
	pthread_mutex_lock(&r->lock);
	if (r->tail != r->head) {
		*o = r->e[r->head++ % RING];
		ok = 1;
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

/* Failures in threads are counted, reported once, and asserted by the
 * main thread (Check's asserts must run on the test's own thread). */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_msg[512]; /* guarded by fail_lock */
static int failures;        /* guarded by fail_lock */

static void stress_fail(const char *what, const struct obj *o, size_t at)
{
	pthread_mutex_lock(&fail_lock);
	if (!failures++)
		snprintf(fail_msg, sizeof fail_msg,
			 "%s: object %p (%zu bytes, seed %u) bad at offset %zu (run seed %" PRIu64 ")",
			 what, o->p, o->size, o->seed, at, seed0);
	pthread_mutex_unlock(&fail_lock);
}

/* Set by the out-of-memory test before its threads start. */
static int null_expected;

static void obj_make(struct obj *o, uint64_t *r, uint32_t tag)
{
	uint64_t k = rng_below(r, 100);
	o->size = k < 90 ? 1 + rng_below(r, 1024)
		: k < 99 ? 1 + rng_below(r, KMALLOC_MAX_SMALL)
			 : KMALLOC_MAX_SMALL + rng_below(r, 96 << 10);
	o->seed = tag;
	o->p = kmalloc(o->size, 0);
	if (!o->p) {
		if (!null_expected)
			stress_fail("kmalloc returned NULL", o, 0);
		return;
	}
	fill_pattern(o->p, o->size, o->seed);
}

static void obj_free(const struct obj *o, const char *who)
{
	size_t bad;

	if (!o->p)
		return;
	bad = check_pattern(o->p, o->size, o->seed);
	if (bad != (size_t)-1)
		stress_fail(who, o, bad);
	kfree(o->p);
}

struct worker {
	pthread_t th;
	int id;
};

/* kmalloc_stats while other threads allocate: every per-class snapshot
 * must still satisfy live == allocs - frees (heap totals may be mid-move,
 * so only the counters that are defined together are compared). */
static void stats_sample(void)
{
	struct kmalloc_stats st;
	struct obj none = { NULL, 0, 0 };

	kmalloc_stats(&st);
	for (int c = 0; c < KMALLOC_NUM_CLASSES; c++)
		if (st.cls[c].live != st.cls[c].allocs - st.cls[c].frees)
			stress_fail("concurrent kmalloc_stats: live != allocs - frees",
				    &none, (size_t)c);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct obj local[LOCAL];
	uint64_t r = (seed0 ^ ((uint64_t)(w->id + 1) * 0x9E3779B97F4A7C15ULL)) | 1;
	uint32_t tag = (uint32_t)w->id << 24;
	struct obj o;

	memset(local, 0, sizeof local);
	for (uint64_t it = 0; it < iters; it++) {
		int slot = (int)rng_below(&r, LOCAL);
		int to = (int)rng_below(&r, (uint64_t)nthreads);

		obj_free(&local[slot], "local free");
		obj_make(&local[slot], &r, ++tag);
		/* Hand some objects to another worker. */
		if (to != w->id && rng_below(&r, 2) &&
		    ring_push(&rings[w->id][to], &local[slot]))
			local[slot].p = NULL;
		/* Free what others sent us. */
		for (int from = 0; from < nthreads; from++)
			if (from != w->id && ring_pop(&rings[from][w->id], &o))
				obj_free(&o, "cross-thread free");
		if ((it & 63) == 0 && orphan_pop(&o))
			obj_free(&o, "orphan free");
		/* The maintenance calls race with everyone's fast paths:
		 * worker 0 trims the heap, worker 1 reads the stats, and
		 * every worker now and then flushes its own mcache. */
		if ((it & 1023) == 512 && rng_below(&r, 2)) {
			struct timespec nap = { 0, 6000000 };
			nanosleep(&nap, NULL);
		}
		if ((it & 4095) == 4095) {
			if (w->id == 0)
				kmalloc_trim();
			else if (w->id == 1)
				stats_sample();
			else
				kmalloc_flush_cpu();
		}
	}
	/* Exit with objects still live: the main thread frees them. */
	for (int i = 0; i < LOCAL; i++)
		if (local[i].p)
			orphan_push(&local[i]);
	return NULL;
}

/* A thread that lives just long enough to allocate a batch. */
static void *ephemeral_main(void *arg)
{
	uint64_t r = (seed0 ^ ((uint64_t)(uintptr_t)arg << 32)) | 1;
	struct obj o;

	for (int i = 0; i < EPHEMERAL_BATCH; i++) {
		obj_make(&o, &r, (uint32_t)(uintptr_t)arg * 1000u + (uint32_t)i);
		if (o.p)
			orphan_push(&o);
	}
	return NULL;
}

START_TEST(stress)
{
	struct worker w[MAX_THREADS];
	struct obj o;
	struct kmalloc_stats st;
	uint64_t allocs = 0, frees = 0;

	for (int i = 0; i < nthreads; i++)
		for (int j = 0; j < nthreads; j++)
			pthread_mutex_init(&rings[i][j].lock, NULL);
	for (int i = 0; i < nthreads; i++) {
		w[i].id = i;
		ck_assert_int_eq(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
	}
	/* Short-lived threads come and go while the workers run. */
	for (uintptr_t e = 1; e <= 32; e++) {
		pthread_t th;
		ck_assert_int_eq(pthread_create(&th, NULL, ephemeral_main, (void *)e), 0);
		ck_assert_int_eq(pthread_join(th, NULL), 0);
	}
	for (int i = 0; i < nthreads; i++)
		ck_assert_int_eq(pthread_join(w[i].th, NULL), 0);

	/* Every thread that allocated is gone; free what they left. */
	for (int i = 0; i < nthreads; i++)
		for (int j = 0; j < nthreads; j++)
			while (ring_pop(&rings[i][j], &o))
				obj_free(&o, "free after owner exit");
	while (orphan_pop(&o))
		obj_free(&o, "free after owner exit");
	ck_assert_msg(failures == 0, "%d failures, first: %s", failures, fail_msg);

	kmalloc_flush_cpu();
	kmalloc_trim();
	ASSERT_STATS_CONSISTENT(&st);
	for (int c = 0; c < KMALLOC_NUM_CLASSES; c++) {
		ck_assert_msg(st.cls[c].allocs == st.cls[c].frees,
			      "class %d: %llu allocs, %llu frees", c,
			      (unsigned long long)st.cls[c].allocs,
			      (unsigned long long)st.cls[c].frees);
		ck_assert_msg(st.cls[c].spans == 0,
			      "class %d keeps %llu spans after every thread exited", c,
			      (unsigned long long)st.cls[c].spans);
		allocs += st.cls[c].allocs;
		frees += st.cls[c].frees;
	}
	ck_assert_uint_eq(st.large_allocs, st.large_frees);
	allocs += st.large_allocs;
	frees += st.large_frees;
	/* Each worker iteration allocates one object; ephemerals a batch. */
	ck_assert_uint_eq(allocs, (uint64_t)nthreads * iters + 32u * EPHEMERAL_BATCH);
	ck_assert_uint_eq(frees, allocs);
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(st.heap_released, st.heap_sys);
	ck_assert_uint_eq(st.committed, st.meta_sys);
	printf("api_stress: %d workers x %" PRIu64 " iterations + 32 short-lived threads: %" PRIu64
	       " objects, all freed; heap grew to %llu KiB; %llu idle caches drained\n",
	       nthreads, iters, allocs, (unsigned long long)st.heap_sys >> 10,
	       (unsigned long long)st.idle_drains);
}
END_TEST

/* A thread's first call, when another thread set the heap up and the
 * two never synchronised (the flag below is relaxed: no happens-before,
 * as between two threads of a program that share nothing yet). Every
 * read the first call makes of what mheap_init wrote must come after
 * the acquire of mheap_.inited; under TSan a plain read before it is a
 * data race report (the large fast path read mheap_.track_sites first,
 * which failed one TSan stress run in six when a worker's first object
 * was large). main() never allocates through kmalloc, so a process
 * forked from the test's has no heap yet. */
static int heap_made; /* relaxed on purpose: 1 once made, then whose turn */

static void *first_small(void *arg)
{
	(void)arg;
	void *p = kmalloc(64, 0); /* sets the heap up */
	__atomic_store_n(&heap_made, 1, __ATOMIC_RELAXED);
	return p;
}

/* Each allocating entry point, and kfree(NULL), as a thread's first
 * call once the heap is made (kfree read the arena's start before its
 * acquire too); the object is filled, so a wrong size shows under ASan
 * too. */
enum { FIRST_CALLS = 8 };

/* the large paths and the small */
static size_t first_size(int which) { return which % 2 == 0 ? 64 << 10 : 48; }

static void *first_call(void *arg)
{
	int which = (int)(intptr_t)arg;
	size_t n = first_size(which);
	/* one at a time, the large kmalloc first: calls that read the word
	 * after their acquire would push mheap_init's write out of TSan's
	 * memory of it */
	while (__atomic_load_n(&heap_made, __ATOMIC_RELAXED) != which + 1)
		sched_yield();
	void *p = NULL;
	switch (which) {
	case 0:
	case 1:
		p = kmalloc(n, 0);
		break;
	case 2:
	case 3:
		p = kzalloc(n, 0);
		break;
	case 4:
	case 5:
		p = krealloc(NULL, n, 0);
		break;
	case 6: /* free(NULL), as programs do, then an allocation */
	case 7:
		kfree(NULL);
		p = kmalloc(n, 0);
		break;
	}
	if (p != NULL)
		memset(p, 0x5a, n);
	__atomic_store_n(&heap_made, which + 2, __ATOMIC_RELAXED);
	return p;
}

/* One race in a new process: 0, or the line of the first check that
 * failed (a TSan report exits with 66 itself). */
static int first_calls_race(void)
{
	pthread_t a, b[FIRST_CALLS];
	void *small, *p[FIRST_CALLS];
	for (intptr_t i = 0; i < FIRST_CALLS; i++)
		if (pthread_create(&b[i], NULL, first_call, (void *)i) != 0)
			return __LINE__;
	if (pthread_create(&a, NULL, first_small, NULL) != 0 || pthread_join(a, &small) != 0 ||
	    small == NULL)
		return __LINE__;
	for (int i = 0; i < FIRST_CALLS; i++) {
		if (pthread_join(b[i], &p[i]) != 0 || p[i] == NULL || ksize(p[i]) < first_size(i))
			return __LINE__;
		kfree(p[i]);
	}
	kfree(small);
	return 0;
}

static void first_calls_child(void *arg)
{
	(void)arg;
	_exit(first_calls_race());
}

/* TSan keeps four accesses per word and forgets one at random when a
 * fifth comes, so one process may miss the race: 16 processes, each
 * with a heap of its own. */
START_TEST(first_calls_after_another_threads_init)
{
	for (int r = 0; r < 16; r++) {
		struct child_result res;
		run_in_child(first_calls_child, NULL, &res);
		ck_assert_msg(!res.signaled && res.status == 0,
		              "process %d of 16: %s %d (exit 66: TSan; else the failing line of "
		              "api_stress.c): %s",
		              r + 1, res.signaled ? "signal" : "exit",
		              res.signaled ? res.sig : res.status, res.err);
	}
}
END_TEST

/* Out of memory with every thread allocating: each fills its own list
 * until the port refuses to commit; nobody crashes, every pointer is
 * distinct and intact, and after another thread frees them all (remote
 * frees into spans the owners still cache) the heap is empty again. */
enum { OOM_MAX = 1 << 16 };

struct oom_worker {
	pthread_t th;
	uint64_t seed;
	size_t n;              /* objects it got before NULL */
	int saw_null;
	struct obj o[OOM_MAX];
};

static void *oom_main(void *arg)
{
	struct oom_worker *w = arg;

	while (w->n < OOM_MAX) {
		struct obj *o = &w->o[w->n];
		obj_make(o, &w->seed, (uint32_t)w->n);
		if (!o->p) {
			w->saw_null = 1;
			break;
		}
		w->n++;
	}
	return NULL;
}

START_TEST(stress_oom)
{
	static struct oom_worker w[MAX_THREADS];
	struct kmalloc_stats st;
	size_t total = 0;
	void *p;

	kfree(kmalloc(64, 0));
	kmalloc_stats(&st);
	host_set_commit_limit((size_t)st.committed + (16u << 20));
	null_expected = 1; /* NULL is the expected end here */
	for (int i = 0; i < nthreads; i++) {
		w[i].seed = (seed0 ^ (uint64_t)(i + 77)) | 1;
		ck_assert_int_eq(pthread_create(&w[i].th, NULL, oom_main, &w[i]), 0);
	}
	for (int i = 0; i < nthreads; i++)
		ck_assert_int_eq(pthread_join(w[i].th, NULL), 0);
	for (int i = 0; i < nthreads; i++) {
		ck_assert_msg(w[i].saw_null, "thread %d never hit the commit limit", i);
		total += w[i].n;
		for (size_t k = 0; k < w[i].n; k++)
			obj_free(&w[i].o[k], "free after out of memory");
	}
	ck_assert_msg(total > 0, "no thread got anything under the limit");
	ck_assert_msg(failures == 0, "%d failures, first: %s", failures, fail_msg);
	host_set_commit_limit(0);
	kmalloc_flush_cpu();
	kmalloc_trim();
	ASSERT_HEAP_EMPTY(&st);
	ck_assert_uint_eq(st.heap_inuse, 0);
	p = kmalloc(1 << 20, 0);
	ck_assert_ptr_nonnull(p);
	kfree(p);
}
END_TEST

/* ---- typed caches from every thread ----
 * Workers allocate from two caches (one constructed, one KMC_NOSCAN),
 * fill each object and pass it to the next worker, which checks and frees
 * it to its cache: every free is remote. One worker shrinks a cache now
 * and then, racing with the others' fast paths. Afterwards nothing is
 * live and both caches are destroyed. */
enum { CQ = 1024 };
struct cqueue {
	pthread_mutex_t lock;
	void *p[CQ];
	unsigned n;
};
static struct cqueue cq[MAX_THREADS];
static struct kmem_cache *caches[2];
static const size_t cache_size[2] = { 72, 200 };
#define CMAGIC 0xc0ffee11u

static void cache_ctor(void *p) { ((uint32_t *)p)[0] = CMAGIC; }

/* Word 0 is the constructed magic (cache 0), word 1 the owner's tag,
 * the rest a pattern of the tag. */
static void cobj_fill(uint32_t *o, size_t size, uint32_t tag)
{
	o[1] = tag;
	fill_pattern(o + 2, size - 8, tag);
}

static int cobj_ok(const uint32_t *o, size_t size, int which)
{
	if (which == 0 && o[0] != CMAGIC)
		return 0;
	return check_pattern(o + 2, size - 8, o[1]) == SIZE_MAX;
}

static void cache_fail(const char *what, void *p)
{
	struct obj o = { p, 0, 0 };
	stress_fail(what, &o, 0);
}

static void cobj_free(void *p)
{
	/* the tag's low bit says which cache */
	int which = (int)(((uint32_t *)p)[1] & 1);
	if (!cobj_ok(p, cache_size[which], which))
		cache_fail("cache object lost its fill", p);
	kmem_cache_free(caches[which], p);
}

static void *cache_worker(void *arg)
{
	int me = (int)(intptr_t)arg, next = (me + 1) % nthreads;
	uint64_t r = seed0 ^ (uint64_t)(me + 1) * 0x9e3779b97f4a7c15ull;
	for (uint64_t i = 0; i < iters; i++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		int which = (int)(r >> 33) & 1;
		uint32_t *o = kmem_cache_alloc(caches[which], 0);
		if (o == NULL) {
			cache_fail("kmem_cache_alloc returned NULL", NULL);
			break;
		}
		if (which == 0 && o[0] != CMAGIC)
			cache_fail("cache object not constructed", o);
		cobj_fill(o, cache_size[which], ((uint32_t)(r >> 8) & ~1u) | (uint32_t)which);
		void *spill = NULL;
		pthread_mutex_lock(&cq[next].lock);
		if (cq[next].n < CQ)
			cq[next].p[cq[next].n++] = o;
		else
			spill = o;
		pthread_mutex_unlock(&cq[next].lock);
		if (spill != NULL)
			cobj_free(spill);
		void *got[64];
		unsigned k = 0;
		pthread_mutex_lock(&cq[me].lock);
		while (cq[me].n > 0 && k < 64)
			got[k++] = cq[me].p[--cq[me].n];
		pthread_mutex_unlock(&cq[me].lock);
		for (unsigned j = 0; j < k; j++)
			cobj_free(got[j]);
		if (me == 0 && i % 4096 == 4095)
			(void)kmem_cache_shrink(caches[i / 4096 % 2]);
	}
	return NULL;
}

START_TEST(stress_caches)
{
	caches[0] = kmem_cache_create("stress_ctor", cache_size[0], 0, 0, cache_ctor);
	caches[1] = kmem_cache_create("stress_noscan", cache_size[1], 0, KMC_NOSCAN, NULL);
	ck_assert_ptr_nonnull(caches[0]);
	ck_assert_ptr_nonnull(caches[1]);
	pthread_t th[MAX_THREADS];
	for (int t = 0; t < nthreads; t++)
		pthread_mutex_init(&cq[t].lock, NULL);
	for (int t = 0; t < nthreads; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, cache_worker, (void *)(intptr_t)t),
		                 0);
	for (int t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < nthreads; t++)
		while (cq[t].n > 0)
			cobj_free(cq[t].p[--cq[t].n]);
	ck_assert_msg(failures == 0, "%s", fail_msg);
	for (int c = 0; c < 2; c++) {
		struct kmem_cache_stats st;
		kmem_cache_stats(caches[c], &st);
		ck_assert_uint_eq(st.active_objs, 0);
		ck_assert_uint_eq(st.allocs, st.frees);
		ck_assert_uint_gt(st.allocs, 0);
		/* the workers exited (flushing their caches): nothing holds the
		 * class back, so it is free for the next create at once */
		ck_assert_int_eq(kmem_cache_destroy(caches[c]), 0);
	}
	struct kmem_cache *again = kmem_cache_create("again", 72, 0, 0, NULL);
	ck_assert_ptr_eq(again, caches[0]);
	ck_assert_int_eq(kmem_cache_destroy(again), 0);
}
END_TEST

int main(int argc, char **argv)
{
	iters = env_u64("KMALLOC_STRESS_ITERS", iters);
	if (argc > 1)
		iters = strtoull(argv[1], NULL, 0);
	nthreads = (int)env_u64("KMALLOC_STRESS_THREADS", 4);
	if (nthreads < 2 || nthreads > MAX_THREADS) {
		fprintf(stderr, "KMALLOC_STRESS_THREADS must be 2..%d\n", MAX_THREADS);
		return 2;
	}
	seed0 = env_u64("KMALLOC_STRESS_SEED",
			(uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid());
	printf("api_stress: %d threads, %" PRIu64 " iterations, KMALLOC_STRESS_SEED=%" PRIu64 "\n",
	       nthreads, iters, seed0);
	fflush(stdout);

	const struct check_test tests[] = {
		CHECK_TEST(first_calls_after_another_threads_init),
		CHECK_TEST(stress),
		CHECK_TEST(stress_oom),
		CHECK_TEST(stress_caches),
	};
	return check_run("kmalloc threads", 600, tests, sizeof(tests) / sizeof(tests[0]));
}
