/*
 * workloads_mt.c: the multi-threaded workloads of workloads.c (whose
 * header describes each and what it prints): prodcons, larson and
 * xlarson, in which objects are freed by a thread other than the one
 * that allocated them.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/mono_time.h"
#include "../lib/xorshift.h"
#include "workloads.h"

/* ---- shared by larson and xlarson ---- */

/* n threads of fn (each given its index), joined; seconds it took. */
static double timed_threads(unsigned n, void *(*fn)(void *))
{
	pthread_t t[16];
	double t0 = mono_seconds();
	for (uintptr_t i = 0; i < n; i++)
		pthread_create(&t[i], NULL, fn, (void *)i);
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	return mono_seconds() - t0;
}

/* Free the n sets of `set` objects a pool holds at the end. */
static void free_sets(void ***pool, int n, int set)
{
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < set; k++)
			free(pool[i][k]);
		free(pool[i]);
	}
}

/* ---- producer / consumer ---- */

#define RING 4096
static void *ring[RING];
static uint64_t ring_head, ring_tail; /* head: producer, tail: consumer */
static const uint64_t pc_ops = 2000000;

static void *consumer(void *arg)
{
	(void)arg;
	uint64_t tail = 0;
	while (tail < pc_ops) {
		uint64_t head = __atomic_load_n(&ring_head, __ATOMIC_ACQUIRE);
		if (head == tail) {
			__builtin_ia32_pause();
			continue;
		}
		for (; tail < head; tail++)
			free(ring[tail % RING]);
		__atomic_store_n(&ring_tail, tail, __ATOMIC_RELEASE);
	}
	return NULL;
}

void prodcons(void)
{
	pthread_t t;
	uint64_t s = 3;
	double t0 = mono_seconds();
	pthread_create(&t, NULL, consumer, NULL);
	for (uint64_t head = 0; head < pc_ops; head++) {
		while (head - __atomic_load_n(&ring_tail, __ATOMIC_ACQUIRE) >= RING)
			__builtin_ia32_pause();
		size_t n = 16 + xorshift64(&s) % 241;
		void *p = malloc(n);
		touch(p, n);
		ring[head % RING] = p;
		if ((head & 31) == 31 || head + 1 == pc_ops)
			__atomic_store_n(&ring_head, head + 1, __ATOMIC_RELEASE);
	}
	pthread_join(t, NULL);
	report("prodcons", pc_ops, mono_seconds() - t0);
}

/* ---- larson ---- */

enum { LR_THREADS = 4, LR_SET = 10000, LR_ROUND = 20000, LR_ROUNDS = 50 };
static void **l_pool[LR_THREADS]; /* l_lock: sets waiting to be adopted */
static int l_pool_n;
static pthread_mutex_t l_lock = PTHREAD_MUTEX_INITIALIZER;

static void *larson_thread(void *arg)
{
	uint64_t s = 100 + (uintptr_t)arg;
	void **set = malloc(LR_SET * sizeof(void *));
	for (int i = 0; i < LR_SET; i++) {
		size_t n = 8 + xorshift64(&s) % 1017;
		set[i] = malloc(n);
		touch(set[i], n);
	}
	for (int round = 0; round < LR_ROUNDS; round++) {
		for (int i = 0; i < LR_ROUND; i++) {
			uint64_t r = xorshift64(&s);
			unsigned k = (unsigned)(r % LR_SET);
			size_t n = 8 + (r >> 32) % 1017;
			free(set[k]);
			set[k] = malloc(n);
			touch(set[k], n);
		}
		/* trade: leave our set in the pool, take the oldest one there */
		pthread_mutex_lock(&l_lock);
		if (l_pool_n > 0) {
			void **other = l_pool[0];
			memmove(l_pool, l_pool + 1, (size_t)(l_pool_n - 1) * sizeof(void *));
			l_pool[l_pool_n - 1] = set;
			set = other;
		} else {
			l_pool[l_pool_n++] = set;
			set = NULL;
		}
		pthread_mutex_unlock(&l_lock);
		if (set == NULL) {
			set = malloc(LR_SET * sizeof(void *));
			for (int i = 0; i < LR_SET; i++) {
				set[i] = malloc(16);
				touch(set[i], 16);
			}
		}
	}
	for (int i = 0; i < LR_SET; i++)
		free(set[i]);
	free(set);
	return NULL;
}

void larson(void)
{
	_Static_assert(LR_THREADS <= 16, "timed_threads' array");
	double secs = timed_threads(LR_THREADS, larson_thread);
	free_sets(l_pool, l_pool_n, LR_SET);
	report("larson", (uint64_t)LR_THREADS * LR_ROUNDS * LR_ROUND, secs);
}

/* ---- larson, the classic cross-thread run ---- */

/* Two threads; sets circulate through a FIFO of XL_SPARE waiting sets
 * (filled by the main thread first), so a set's next owner is the other
 * thread whenever both run, and the trade never waits. */
enum { XL_THREADS = 2, XL_SET = 5000, XL_ROUNDS = 500, XL_SPARE = 2 };
static void **xl_pool[XL_SPARE + XL_THREADS]; /* xl_lock */
static int xl_pool_n;
static pthread_mutex_t xl_lock = PTHREAD_MUTEX_INITIALIZER;

static void **xl_new_set(uint64_t *s)
{
	void **set = malloc(XL_SET * sizeof(void *));
	for (int i = 0; i < XL_SET; i++) {
		size_t n = 8 + xorshift64(s) % 993;
		set[i] = malloc(n);
		touch(set[i], n);
	}
	return set;
}

static void *xlarson_thread(void *arg)
{
	uint64_t s = 200 + (uintptr_t)arg;
	void **set = xl_new_set(&s);
	for (int round = 0; round < XL_ROUNDS; round++) {
		for (int i = 0; i < XL_SET; i++) {
			uint64_t r = xorshift64(&s);
			unsigned k = (unsigned)(r % XL_SET);
			size_t n = 8 + (r >> 32) % 993; /* 8..1000 */
			free(set[k]);
			set[k] = malloc(n);
			touch(set[k], n);
		}
		pthread_mutex_lock(&xl_lock);
		void **other = xl_pool[0];
		memmove(xl_pool, xl_pool + 1, (size_t)(xl_pool_n - 1) * sizeof(void *));
		xl_pool[xl_pool_n - 1] = set;
		set = other;
		pthread_mutex_unlock(&xl_lock);
	}
	pthread_mutex_lock(&xl_lock);
	xl_pool[xl_pool_n++] = set;
	pthread_mutex_unlock(&xl_lock);
	return NULL;
}

void xlarson(void)
{
	_Static_assert(XL_THREADS <= 16, "timed_threads' array");
	uint64_t s = 99;
	for (int i = 0; i < XL_SPARE; i++)
		xl_pool[xl_pool_n++] = xl_new_set(&s);
	double secs = timed_threads(XL_THREADS, xlarson_thread);
	free_sets(xl_pool, xl_pool_n, XL_SET);
	report("xlarson", (uint64_t)XL_THREADS * XL_ROUNDS * XL_SET, secs);
}
