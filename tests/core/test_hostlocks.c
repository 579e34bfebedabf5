/*
 * test_hostlocks.c: the host port's own mutexes and the leak scan's stop
 * (arch/host/host_port.h, host_section_lock). A thread the stop signal
 * finds outside an allocator section parks at once, so a port mutex that
 * some thread takes inside a section (depth > 0) must never be held
 * outside one: a parked holder would keep the thread waiting for it from
 * ever reaching its safe point, and the stop would give up after 20 s
 * (it did, in api_leak_threads' storm, one run in 40).
 *
 * pthread_mutex_lock is wrapped here (the executable's definition wins
 * over the C library's for every call from the port's code) to record
 * the calling thread's depth whenever it takes host_commit_lock or
 * host_pool_lock. Threads then take CPU ids, commit fresh heap and
 * metadata pages, and exit; every acquisition must have been inside a
 * section. fork's prepare handler takes them outside one by design (it
 * holds host_stw_lock, so no stop can run): this test does not fork.
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "host_port.h"
#include "internal.h"

static int (*real_lock)(pthread_mutex_t *);
static unsigned long taken, outside; /* atomics */

int pthread_mutex_lock(pthread_mutex_t *m)
{
	if (real_lock == NULL)
		real_lock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
	if (m == &host_commit_lock || m == &host_pool_lock) {
		__atomic_add_fetch(&taken, 1, __ATOMIC_RELAXED);
		if (host_self.irq_depth == 0)
			__atomic_add_fetch(&outside, 1, __ATOMIC_RELAXED);
	}
	return real_lock(m);
}

enum { THREADS = 8, BIG = 64, BIG_SIZE = 1 << 20 };

/* A CPU id (the pool), fresh heap pages and metadata (commits), and the
 * id given back at exit (the pool again, from the key's destructor). */
static void *worker(void *arg)
{
	(void)arg;
	void *big[BIG];
	for (int i = 0; i < BIG; i++) {
		big[i] = kmalloc(BIG_SIZE, 0);
		ck_assert_ptr_nonnull(big[i]);
		memset(big[i], 1, BIG_SIZE);
	}
	for (int i = 0; i < BIG; i++)
		kfree(big[i]);
	return NULL;
}

START_TEST(port_mutexes_are_held_only_inside_sections)
{
	for (int round = 0; round < 2; round++) {
		pthread_t t[THREADS];
		for (int i = 0; i < THREADS; i++)
			ck_assert_int_eq(pthread_create(&t[i], NULL, worker, NULL), 0);
		for (int i = 0; i < THREADS; i++)
			ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		kmalloc_trim(); /* the next round commits its pages again */
	}
	/* ids taken and given back by 16 threads, commits of 64 MiB a round */
	ck_assert_uint_ge(__atomic_load_n(&taken, __ATOMIC_RELAXED), 2 * THREADS);
	ck_assert_uint_eq(__atomic_load_n(&outside, __ATOMIC_RELAXED), 0);
}
END_TEST

/* clang-format off */
CHECK_MAIN("host port mutexes", 120,
	   CHECK_TEST(port_mutexes_are_held_only_inside_sections))
/* clang-format on */
