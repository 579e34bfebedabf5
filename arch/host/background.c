/*
 * background.c (host): the clock and the background scavenger thread of
 * mm/sys.h (sys_config.now_ns, release_ms, start_background). See
 * mm/mscavenge.c for what the core does with them.
 *
 * The clock is CLOCK_MONOTONIC (a vDSO call, no system call).
 * CLOCK_MONOTONIC_COARSE would be cheaper still, but it ticks every 4 ms
 * here, and the core times its release steps (tens of microseconds) with
 * it to pace them.
 *
 * The thread (Go's bgscavenge) is started by the core once the heap has
 * grown past 64 MiB, from an allocation slow path with no allocator lock
 * held. It loops on kmalloc_background(), sleeping for what each call
 * returns (a quarter of the release delay when there is nothing to do),
 * so an idle program's freed memory goes back to Linux without any call
 * into the allocator. It holds no allocator lock while it sleeps, all
 * signals are blocked in it (a signal handler must not run on a thread
 * the program does not know), and it never allocates. fork() does not
 * copy it: the child handler (fork.c) clears mheap.bg_state, and the
 * child's next slow path starts a thread of its own.
 *
 * Environment, read when the heap is set up (host_read_env, from
 * sys_reserve, kmalloc_init's first call into the port):
 *   KMALLOC_RELEASE_MS=n   the release delay in milliseconds (default
 *                          1000; 0 is taken as 1); "off": no clock, so
 *                          memory returns by allocation volume and
 *                          kmalloc_trim only (the core's unit tests run
 *                          so: they count pages exactly, and a slow run
 *                          under a sanitizer would see pages age)
 *   KMALLOC_BACKGROUND=0   no thread: release happens on the allocation
 *                          slow paths only; =1: the thread starts with
 *                          the heap, not at 64 MiB (the TSan test)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "host_port.h"
#include "internal.h"

static int background_off; /* written once by host_read_env */

uint64_t host_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* sys_config.now_coarse_ns: the kernel's last tick (4 ms here), without
 * reading the TSC */
uint64_t host_now_coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void host_read_env(void)
{
	const char *v = getenv("KMALLOC_RELEASE_MS");
	if (v != NULL && strcmp(v, "off") == 0 && sys_config.now_ns == host_now_ns) {
		sys_config.now_ns = NULL; /* (a test's own clock stays) */
		sys_config.now_coarse_ns = NULL;
	} else if (v != NULL && *v != '\0') {
		char *end;
		unsigned long ms = strtoul(v, &end, 10);
		if (*end == '\0')
			sys_config.release_ms = ms == 0         ? 1
			                        : ms > 86400000 ? 86400000
			                                        : (unsigned)ms;
	}
	v = getenv("KMALLOC_BACKGROUND");
	background_off = v != NULL && v[0] == '0';
	if (v != NULL && v[0] == '1')
		sys_config.background_min = 1; /* from the first growth on */
}

static void *background_main(void *arg)
{
	(void)arg;
	/* never stopped for a leak scan: it blocks the signal (and the scan
	 * keeps its steps out) */
	__atomic_store_n(&host_background_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
	for (;;) {
		uint64_t ns = kmalloc_background();
		if (ns > 1000000000u)
			ns = 1000000000u; /* no clock yet, or a long delay: look again */
		struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int host_start_background(void)
{
	if (background_off)
		return -1;
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	if (pthread_attr_init(&attr) != 0)
		return -1;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 << 10);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits it */
	int r = pthread_create(&t, &attr, background_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return r == 0 ? 0 : -1;
}
