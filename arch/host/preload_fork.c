/*
 * preload_fork.c: keeps the heap usable in the child of fork(). See
 * arch/host/preload.c for the shim's overview.
 *
 * fork() copies the address space but only the calling thread. A lock that
 * another thread held at that moment stays locked forever in the child,
 * and the first allocation that needs it hangs. So, as glibc does for its
 * own arenas, the prepare handler takes every mm lock in the documented
 * order (mm/internal.h: mcentral[i].lock -> mheap.lock; taking all the
 * mcentral locks in index order cannot deadlock because no other code
 * holds two of them), and the parent and child handlers release them.
 * Between prepare and release no other thread can be inside a locked
 * section, so the child's copy of every mm structure is consistent.
 *
 * What this does not cover, and why it is still safe:
 *   - The lock-free paths (the mcache fast path, a remote free's atomic
 *     OR and sweep-stack push) cannot be stopped by a lock. A thread caught
 *     in one does not exist in the child; at worst its half-done free
 *     leaves the span's `inflight` raised or its slot unfreed, so the child
 *     never reuses that span's memory: a leak, never a corruption.
 *   - The mcaches of the parent's other threads stay assigned to CPU ids
 *     nobody in the child holds; their cached spans are leaked the same
 *     way (objects in them can still be freed from the child: that is a
 *     remote free).
 *   - arch/host/sys.c's CPU-id pool mutex is private to that file; a fork
 *     while another thread is between taking and returning an id (thread
 *     start or exit) could leave it locked in the child. Closing that needs
 *     an atfork handler in sys.c (see the shim's report).
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "internal.h"
#include "preload.h"

static void fork_prepare(void)
{
	for (unsigned i = 1; i < _NumSizeClasses; i++)
		sys_lock(&mheap_.central[i].c.lock);
	sys_lock(&mheap_.lock);
}

/* Parent and child alike: the locks were ours, the same bytes in both. */
static void fork_release(void)
{
	sys_unlock(&mheap_.lock);
	for (unsigned i = _NumSizeClasses - 1; i >= 1; i--)
		sys_unlock(&mheap_.central[i].c.lock);
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_register(void)
{
	if (pthread_atfork(fork_prepare, fork_release, fork_release) != 0)
		sys_fault("preload: pthread_atfork failed", NULL);
}

void preload_fork_init(void)
{
	pthread_once(&fork_once, fork_register);
}
