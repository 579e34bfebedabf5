/*
 * guard.c (host): guarded sampling's hook (mm/sys.h: guard; the core is
 * mm/mkfence.c) and the port's one SIGSEGV handler, which meshing
 * (mesh.c) and guarded sampling share.
 *
 *   KMALLOC_KFENCE=<ms>  the sampling interval (read by sys_reserve,
 *                        before kmalloc_init sets sampling up); unset or
 *                        0: off, the default on the host
 *   guard(p, n, 1)       mprotect read-write (a region under ulimit -v
 *                        has nothing mapped there: mmap it)
 *   guard(p, n, 0)       mmap PROT_NONE over it (MAP_FIXED): the memory
 *                        goes back and the range stays ours, inaccessible
 * The pool lies after the arena in whole 4 MiB granules of its own, which
 * make_writable never makes writable (they never are in its map), so only
 * this hook changes their protections. Opened pages count as committed.
 *
 * The handler, SA_SIGINFO: a fault in a meshing window waits and retries
 * (host_mesh_segv); one in the guarded pool prints kfence's report on
 * stderr and aborts; any other goes to the handler ours displaced (the
 * program's), or, if that was the default, the default action runs (the
 * handler is put back and the access faults again). It is installed
 * again before every mesh and every sample, so a program that set its
 * own handler later still gets its own faults, and ours sees the pool's.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "host_port.h"
#include "internal.h"

static struct sigaction chained; /* the handler ours displaced; written
                                    by host_segv_install under
                                    install_lock */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

void host_kfence_env(void)
{
	const char *v = getenv("KMALLOC_KFENCE");
	if (v != NULL && *v != '\0') {
		char *end;
		unsigned long ms = strtoul(v, &end, 10);
		if (*end == '\0')
			sys_config.kfence_ms = ms > 86400000 ? 86400000 : (unsigned)ms;
	}
}

static void log_stderr(const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(2, s, n);
		if (w <= 0)
			break;
		s += w;
		n -= (size_t)w;
	}
	if (write(2, "\n", 1) < 0)
		return;
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	if (host_mesh_segv(a))
		return; /* retried, on the mesh's pages now */
	const ucontext_t *uc = ctx;
	int write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
	if (kmalloc_kfence_fault(a, write, (uintptr_t)uc->uc_mcontext.gregs[REG_RIP], log_stderr))
		abort();
	if (chained.sa_flags & SA_SIGINFO) {
		if (chained.sa_sigaction != NULL) {
			chained.sa_sigaction(sig, si, ctx);
			return;
		}
	} else if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
		chained.sa_handler(sig);
		return;
	}
	/* the default action: put it back and let the access fault again */
	signal(SIGSEGV, SIG_DFL);
}

void host_segv_install(void)
{
	struct sigaction sa, old;
	pthread_mutex_lock(&install_lock);
	if (sigaction(SIGSEGV, NULL, &old) == 0 && old.sa_sigaction != on_segv) {
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, &old) == 0 && old.sa_sigaction != on_segv)
			chained = old;
	}
	pthread_mutex_unlock(&install_lock);
}

int host_guard(void *p, size_t n, int open)
{
	if (open) {
		if (mprotect(p, n, PROT_READ | PROT_WRITE) != 0 &&
		    mmap(p, n, PROT_READ | PROT_WRITE,
		         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != p)
			return -1;
		host_committed_add((long)n);
		host_segv_install(); /* a sample may be next: ours must see its faults */
		return 0;
	}
	if (mmap(p, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != p) {
		/* cannot happen short of a broken kernel; the page must not
		 * stay readable, so make it so the slow way */
		madvise(p, n, MADV_DONTNEED);
		mprotect(p, n, PROT_NONE);
	}
	host_committed_add(-(long)n);
	return 0;
}
