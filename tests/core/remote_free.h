/*
 * remote_free.h: free a batch of objects on a thread of its own, so they
 * come back to their spans through the remote-free path (a CPU that did
 * not allocate them). Header-only: test_genericport.c is built from the
 * core's sources with its own port instead of linking the host library
 * and tests/lib/child_util.o, and includes it like the host-port tests.
 */
#ifndef TESTS_CORE_REMOTE_FREE_H
#define TESTS_CORE_REMOTE_FREE_H

#include <check.h>
#include <pthread.h>
#include <stddef.h>

#include "kmalloc.h"

struct remote_batch {
	void *const *objs;
	size_t n;
	int flush; /* kmalloc_flush_cpu before the thread exits */
};

static inline void *remote_batch_main(void *arg)
{
	const struct remote_batch *b = arg;
	for (size_t i = 0; i < b->n; i++)
		kfree(b->objs[i]);
	if (b->flush)
		kmalloc_flush_cpu();
	return NULL;
}

/* kfree objs[0..n) on a new thread and wait for it to end. flush: the
 * thread flushes its CPU's caches itself, for a port with no thread-exit
 * hook (the host port's hook flushes at exit). */
static inline void remote_kfree(void *const *objs, size_t n, int flush)
{
	struct remote_batch b = { objs, n, flush };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, remote_batch_main, &b), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
}

#endif /* TESTS_CORE_REMOTE_FREE_H */
