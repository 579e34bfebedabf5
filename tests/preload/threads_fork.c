/*
 * threads_fork.c: the shim across thread creation and exit and across
 * fork(), run under LD_PRELOAD by tests/preload.mk.
 *
 *   threads   3000 short-lived threads, 8 at a time, whose CPU ids are
 *             recycled when they exit (limits.c's lifetimes case runs
 *             100,000, more than the port's 32768 ids);
 *             each allocates with fill patterns, hands half its objects to
 *             the main thread (freed there: cross-thread frees) and frees
 *             one more object from a pthread key destructor, i.e. after
 *             the port's own destructor has flushed its cache.
 *   fork      while 3 threads churn the heap, fork 100 times; each child
 *             allocates and frees (small and large, one extra thread) and
 *             exits 0. A child that inherited a held lock would hang: the
 *             parent's alarm turns that into a failure.
 * Exit status: number of failures. Every message names the check.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/fill.h"
#include "../lib/xorshift.h"

static int failures;

#define CHECK(name, cond)                                                    \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, name); \
			failures++;                                          \
		}                                                            \
	} while (0)

static size_t pick_size(uint64_t *s)
{
	unsigned r = (unsigned)xorshift64(s);
	if (r % 64 == 0)
		return 32768 + r % 100000; /* a large object now and then */
	return 1 + (r >> 8) % 2048;
}

/* An object whose bytes all equal its seed: corruption shows on check. */
struct obj {
	unsigned char *p;
	size_t n;
	unsigned char v;
};

static void obj_make(struct obj *o, uint64_t *s)
{
	o->n = pick_size(s);
	o->v = (unsigned char)(xorshift64(s) | 1);
	o->p = malloc(o->n);
	if (o->p != NULL)
		memset(o->p, o->v, o->n);
}

static int obj_ok(const struct obj *o)
{
	return o->p != NULL && check_bytes(o->p, o->n, o->v) == SIZE_MAX;
}

/* ---- threads ---- */

#define THREADS 3000
#define BATCH 8
#define PER_THREAD 200

struct worker {
	pthread_t tid;
	uint64_t seed;
	struct obj handoff[PER_THREAD / 2];
	int bad;
};

static pthread_key_t late_key;
static volatile int late_frees;

/* Runs at thread exit, after the port's own key destructor (created
 * earlier, so it runs first): this free must still work. */
static void late_free(void *p)
{
	free(p);
	__atomic_add_fetch(&late_frees, 1, __ATOMIC_RELAXED);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct obj mine[PER_THREAD];
	for (int i = 0; i < PER_THREAD; i++)
		obj_make(&mine[i], &w->seed);
	for (int i = 0; i < PER_THREAD; i++) {
		if (!obj_ok(&mine[i]))
			w->bad++;
		if (i % 2 == 0)
			w->handoff[i / 2] = mine[i];
		else
			free(mine[i].p);
	}
	pthread_setspecific(late_key, malloc(40));
	return NULL;
}

static void test_threads(void)
{
	static struct worker w[BATCH];
	int bad = 0, started = 0;
	struct rusage r0, r1;

	pthread_key_create(&late_key, late_free);
	getrusage(RUSAGE_SELF, &r0);
	for (int done = 0; done < THREADS; done += BATCH) {
		for (int i = 0; i < BATCH; i++) {
			w[i].seed = (uint64_t)(done + i) * 0x9e3779b97f4a7c15ull + 1;
			w[i].bad = 0;
			if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) == 0)
				started++;
		}
		for (int i = 0; i < BATCH; i++) {
			pthread_join(w[i].tid, NULL);
			bad += w[i].bad;
			for (int k = 0; k < PER_THREAD / 2; k++) {
				bad += !obj_ok(&w[i].handoff[k]);
				free(w[i].handoff[k].p); /* cross-thread free */
			}
		}
	}
	getrusage(RUSAGE_SELF, &r1);
	CHECK("all threads started", started == THREADS);
	CHECK("objects intact across threads", bad == 0);
	CHECK("key destructors freed after the port's", late_frees == THREADS);
	/* 3000 threads x ~300 KB allocated each: if exited threads kept their
	 * memory, this would be ~1 GB. */
	CHECK("exited threads' memory is reused (max RSS grew < 128 MiB)",
	      r1.ru_maxrss - r0.ru_maxrss < 128 * 1024);
}

/* ---- fork ---- */

static volatile int stop_churn;

static void *churn_main(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 7919 + 3;
	struct obj ring[64];
	memset(ring, 0, sizeof(ring));
	for (unsigned i = 0; !stop_churn; i++) {
		struct obj *o = &ring[i % 64];
		if (o->p != NULL && !obj_ok(o))
			abort();
		free(o->p);
		obj_make(o, &seed);
	}
	for (int i = 0; i < 64; i++)
		free(ring[i].p);
	return NULL;
}

static void *child_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000; i++)
		free(malloc((size_t)i * 13 + 1));
	return NULL;
}

static int child_work(unsigned seed)
{
	uint64_t s = seed * 2654435761u + 1;
	struct obj o[500];
	for (int i = 0; i < 500; i++)
		obj_make(&o[i], &s);
	for (int i = 0; i < 500; i++) {
		if (!obj_ok(&o[i]))
			return 1;
		free(o[i].p);
	}
	pthread_t t;
	if (pthread_create(&t, NULL, child_thread, NULL) != 0)
		return 2;
	pthread_join(t, NULL);
	return 0;
}

static void test_fork(void)
{
	pthread_t churn[3];
	for (uintptr_t i = 0; i < 3; i++)
		pthread_create(&churn[i], NULL, churn_main, (void *)(i + 1));
	int bad = 0;
	for (unsigned k = 0; k < 100; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			alarm(20); /* a deadlocked child dies of SIGALRM */
			_exit(child_work(k));
		}
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			fprintf(stderr, "fork child %u: status %d\n", k, pid < 0 ? -1 : st);
			bad++;
		}
	}
	stop_churn = 1;
	for (int i = 0; i < 3; i++)
		pthread_join(churn[i], NULL);
	CHECK("every fork child used the heap and exited cleanly", bad == 0);
}

int main(void)
{
	test_threads();
	test_fork();
	printf("threads_fork: %d failures\n", failures);
	return failures;
}
