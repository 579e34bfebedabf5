/*
 * cpuidle.c (host): the idle-CPU hooks of mm/sys.h (cpu_unpublish,
 * cpu_fence, cpu_busy), with which the background thread drains the
 * caches of threads that stopped calling malloc (mm/mcache.c, "idle
 * CPUs"): a thread pool's workers that block for good would otherwise
 * keep their magazines, cached spans and large bins, hundreds of KiB
 * each.
 *
 * A CPU here is a thread, and what the core needs of it lives in its
 * thread-local storage: its fast slot (host_self.mcache) and its depth in
 * allocator sections (host_self.irq_depth, sys_arch.h). The registry keeps
 * their addresses per CPU id while a thread holds the id: sys.c
 * registers a thread when it takes an id and unregisters it in the
 * thread-exit destructor, before the id is free, under reg_lock, which
 * the hooks take too; so they never touch the TLS of a thread that has
 * gone (its stack may be unmapped or reused). reg_lock is its own, not
 * host_pool_lock: fork's prepare handler holds that one while it waits
 * for a background step to end, and the step may be in these hooks. A
 * thread that allocates again after that destructor ran (another key's
 * destructor, later) takes an id without registering: nothing can be
 * sure to unregister it, so its caches are simply not drained while it
 * idles.
 *
 * The fence is membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): an
 * interrupt runs a full barrier on every CPU that runs one of our
 * threads, which makes a thread's plain "depth + 1, then load the slot"
 * (no barrier in between: the fast path) safe against our "slot = NULL,
 * fence, read depth". Linux 4.14 and later; registered on first use.
 * Where it fails (older kernels, seccomp, valgrind) the fence says no
 * and nothing is drained.
 *
 * Data flow: mcache_idle_pass (background thread) -> host_cpu_unpublish
 * (registry -> the thread's host_self.mcache = NULL) ... half a delay later
 * -> host_cpu_fence -> host_cpu_busy (registry -> depth and slot) ->
 * the core flushes the mcache.
 */
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "host_port.h"
#include "sys.h"

struct cpu_tls {
	struct mcache **slot; /* &host_self.mcache of the thread holding the id */
	unsigned *depth;      /* &host_self.irq_depth of it */
};
/* Taken inside host_pool_lock (register, unregister), never around it. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cpu_tls reg[HOST_MAX_CPUS]; /* reg_lock */

void host_cpu_register(unsigned id)
{
	pthread_mutex_lock(&reg_lock);
	reg[id].slot = &host_self.mcache;
	reg[id].depth = &host_self.irq_depth;
	pthread_mutex_unlock(&reg_lock);
}

void host_cpu_unregister(unsigned id)
{
	pthread_mutex_lock(&reg_lock);
	reg[id].slot = NULL;
	reg[id].depth = NULL;
	pthread_mutex_unlock(&reg_lock);
}

int host_cpu_unpublish(unsigned cpu)
{
	int r = -1;
	pthread_mutex_lock(&reg_lock);
	if (cpu < HOST_MAX_CPUS && reg[cpu].slot != NULL) {
		__atomic_store_n(reg[cpu].slot, NULL, __ATOMIC_RELAXED);
		r = 0;
	}
	pthread_mutex_unlock(&reg_lock);
	return r;
}

static int fence_ok; /* fence_once: 1 if registered */
static pthread_once_t fence_once = PTHREAD_ONCE_INIT;

static void fence_register(void)
{
	fence_ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

int host_cpu_fence(void)
{
	pthread_once(&fence_once, fence_register);
	if (!fence_ok || syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
		return -1;
	return 0;
}

int host_cpu_busy(unsigned cpu)
{
	int busy = 0;
	pthread_mutex_lock(&reg_lock);
	if (cpu < HOST_MAX_CPUS && reg[cpu].slot != NULL) {
		busy = __atomic_load_n(reg[cpu].depth, __ATOMIC_ACQUIRE) != 0 ||
		       __atomic_load_n(reg[cpu].slot, __ATOMIC_RELAXED) != NULL;
		if (!busy)
			HOST_TSAN_ACQUIRE(reg[cpu].depth); /* its sections' writes */
	}
	pthread_mutex_unlock(&reg_lock);
	return busy;
}
