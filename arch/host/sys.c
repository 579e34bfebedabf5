/*
 * sys.c (host): mm/sys.h on Linux, for unit tests, fuzzing, benchmarks and
 * the LD_PRELOAD shim. See mm/malloc.c for the overview.
 *
 *   sys_reserve  mmap(PROT_NONE, MAP_NORESERVE): address space, no memory
 *   sys_commit   mprotect(PROT_READ|PROT_WRITE): the kernel backs pages with
 *                zeroed memory on first touch
 *   sys_release  madvise(MADV_DONTNEED) alone: memory goes back to Linux,
 *                the pages stay mapped and read as zero if touched. One
 *                system call, and no split of the mapping (an mprotect to
 *                PROT_NONE as well doubled the cost of every release and
 *                cut the region into ever more mappings)
 *   move         mremap(MREMAP_FIXED | MREMAP_DONTUNMAP): a big krealloc
 *                moves page-table entries, not bytes; the source stays
 *                mapped and empty, which is Reserved here
 *   nomem        errno = ENOMEM, so the shim's malloc is kmalloc
 *   leak detector  track_sites: KMALLOC_LEAK_CHECK=1 in the environment;
 *                roots: every loaded object's writable segments
 *                (dl_iterate_phdr) and the calling thread's stack from
 *                the hook's frame up (unless host_set_leak_scan_stack(0));
 *                symbolize: dladdr. No stop_world: threads
 *                cannot be stopped from here (kmalloc.h says what the
 *                caller must then make sure of).
 *   sys_cpu_id   one id per thread from a pool of HOST_MAX_CPUS; a
 *                pthread key destructor flushes the thread's mcache
 *                (kmalloc_flush_cpu) and returns the id when the thread exits
 *   sys_lock     test-and-test-and-set; after a few spins it yields, since
 *                the holder may be preempted (threads are not CPUs)
 *   sys_fault    "kmalloc: <msg>: 0x<p>" on stderr with write(2), then abort
 *   sys_log      one line on stdout with write(2)
 *
 * The port counts committed bytes so tests can compare them with
 * kmalloc_stats and simulate out-of-memory (host.h).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host.h"
#include "kmalloc.h"
#include "sys.h"

#define HOST_MAX_CPUS 1024

static int host_move(void *dst, void *src, size_t n);
static void host_nomem(void);
static int host_track_sites(void);
static void host_roots(void (*scan)(const void *, size_t, void *), void *arg);
static size_t host_symbolize(uintptr_t pc, char *buf, size_t cap);

struct sys_config sys_config = {
	.page_size = 4096,
	.commit_zeroed = 1,
	.max_cpus = HOST_MAX_CPUS,
	.arena_size = (size_t)64 << 30,
	.move = host_move,
	.nomem = host_nomem,
	.track_sites = host_track_sites,
	.roots = host_roots,
	.symbolize = host_symbolize,
};

static size_t committed;    /* bytes Ready; atomic */
static size_t commit_limit; /* 0 = none; atomic */

void host_set_commit_limit(size_t bytes)
{
	__atomic_store_n(&commit_limit, bytes, __ATOMIC_RELAXED);
}

size_t host_committed_bytes(void)
{
	return __atomic_load_n(&committed, __ATOMIC_RELAXED);
}

int sys_reserve(size_t size, void **base)
{
	void *p = mmap(NULL, size, PROT_NONE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	*base = p;
	return 0;
}

int sys_commit(void *p, size_t n)
{
	size_t limit = __atomic_load_n(&commit_limit, __ATOMIC_RELAXED);
	size_t now = __atomic_add_fetch(&committed, n, __ATOMIC_RELAXED);
	if (limit != 0 && now > limit) {
		__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
		return -1;
	}
	if (mprotect(p, n, PROT_READ | PROT_WRITE) != 0) {
		/* mprotect fails as a whole only for bad arguments or when the
		 * kernel cannot split the mapping (ENOMEM); either way nothing
		 * we can use was committed. */
		__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
		return -1;
	}
	return 0;
}

void sys_release(void *p, size_t n)
{
	if (madvise(p, n, MADV_DONTNEED) != 0)
		sys_fault("sys_release failed", p);
	__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
}

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7; older C libraries lack the name */
#endif

/* sys_config.move: dst gets src's pages; src stays mapped, empty. Linux
 * before 5.7 (no MREMAP_DONTUNMAP) says EINVAL: then krealloc copies.
 * Whatever dst held is unmapped by MREMAP_FIXED, so dst's committed bytes
 * go and src's now count for dst. */
static int host_move(void *dst, void *src, size_t n)
{
	void *r = mremap(src, n, n, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
	if (r == MAP_FAILED)
		return -1;
	__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
	return 0;
}

static void host_nomem(void)
{
	errno = ENOMEM;
}

/* ---- the leak detector's hooks ---- */

static int host_track_sites(void)
{
	const char *v = getenv("KMALLOC_LEAK_CHECK");
	return v != NULL && v[0] == '1';
}

struct roots_arg {
	void (*scan)(const void *, size_t, void *);
	void *arg;
};

static int writable_segments(struct dl_phdr_info *info, size_t size, void *data)
{
	struct roots_arg *ra = data;
	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) && ph->p_memsz != 0)
			ra->scan((const void *)(info->dlpi_addr + ph->p_vaddr), ph->p_memsz, ra->arg);
	}
	return 0;
}

extern void *__libc_stack_end; /* the main thread's stack top (glibc) */

/* The calling thread's stack, from here up. The main thread's top is
 * __libc_stack_end (pthread_getattr_np would read /proc through malloc);
 * another thread's comes from its attributes. */
static void scan_my_stack(struct roots_arg *ra)
{
	uintptr_t here = (uintptr_t)__builtin_frame_address(0), top = 0;
	uintptr_t main_top = (uintptr_t)__libc_stack_end;
	if (here < main_top && main_top - here < ((uintptr_t)1 << 30)) {
		top = main_top;
	} else {
		pthread_attr_t a;
		void *addr;
		size_t len;
		if (pthread_getattr_np(pthread_self(), &a) == 0) {
			if (pthread_attr_getstack(&a, &addr, &len) == 0)
				top = (uintptr_t)addr + len;
			pthread_attr_destroy(&a);
		}
	}
	if (top > here)
		ra->scan((const void *)here, top - here, ra->arg);
}

static int leak_scan_stack = 1; /* atomic */

void host_set_leak_scan_stack(int on)
{
	__atomic_store_n(&leak_scan_stack, on, __ATOMIC_RELAXED);
}

static void host_roots(void (*scan)(const void *, size_t, void *), void *arg)
{
	struct roots_arg ra = { scan, arg };
	dl_iterate_phdr(writable_segments, &ra);
	if (__atomic_load_n(&leak_scan_stack, __ATOMIC_RELAXED))
		scan_my_stack(&ra);
}

static size_t host_symbolize(uintptr_t pc, char *buf, size_t cap)
{
	Dl_info di;
	if (cap < 32 || dladdr((void *)pc, &di) == 0)
		return 0;
	const char *name = di.dli_sname;
	uintptr_t base = (uintptr_t)di.dli_saddr;
	if (name == NULL) { /* not exported: file+offset */
		name = di.dli_fname != NULL ? strrchr(di.dli_fname, '/') : NULL;
		name = name != NULL ? name + 1 : di.dli_fname;
		base = (uintptr_t)di.dli_fbase;
	}
	if (name == NULL)
		return 0;
	int n = snprintf(buf, cap, "%s+0x%lx", name, (unsigned long)(pc - base));
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- threads as CPUs ---- */

__thread unsigned host_cpu_plus1 __attribute__((tls_model("initial-exec")));
__thread struct mcache *host_mcache __attribute__((tls_model("initial-exec")));

static pthread_mutex_t cpu_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char cpu_used[HOST_MAX_CPUS]; /* cpu_pool_lock */
static pthread_key_t cpu_key;
static pthread_once_t cpu_key_once = PTHREAD_ONCE_INIT;

static void cpu_release(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg - 1;
	/* Still "this CPU" for the flush; the id is free only afterwards. */
	host_cpu_plus1 = id + 1;
	kmalloc_flush_cpu();
	host_cpu_plus1 = 0;
	host_mcache = NULL; /* the id's mcache may go to another thread */
	pthread_mutex_lock(&cpu_pool_lock);
	cpu_used[id] = 0;
	pthread_mutex_unlock(&cpu_pool_lock);
}

/* fork() copies only the calling thread: had another thread held the pool
 * lock (starting or exiting), the child's copy would stay locked and its
 * first new thread would hang. Hold it across fork, as the shim does with
 * the mm locks; it never nests with them (cpu_release flushes first). */
static void cpu_pool_fork_lock(void)
{
	pthread_mutex_lock(&cpu_pool_lock);
}

static void cpu_pool_fork_unlock(void)
{
	pthread_mutex_unlock(&cpu_pool_lock);
}

static void cpu_key_init(void)
{
	if (pthread_key_create(&cpu_key, cpu_release) != 0)
		sys_fault("pthread_key_create failed", NULL);
	if (pthread_atfork(cpu_pool_fork_lock, cpu_pool_fork_unlock,
	                   cpu_pool_fork_unlock) != 0)
		sys_fault("pthread_atfork failed", NULL);
}

unsigned host_cpu_assign(void)
{
	unsigned id;

	pthread_once(&cpu_key_once, cpu_key_init);
	pthread_mutex_lock(&cpu_pool_lock);
	for (id = 0; id < HOST_MAX_CPUS && cpu_used[id]; id++)
		;
	if (id == HOST_MAX_CPUS) {
		pthread_mutex_unlock(&cpu_pool_lock);
		sys_fault("more live threads than CPU ids", NULL);
	}
	cpu_used[id] = 1;
	pthread_mutex_unlock(&cpu_pool_lock);
	host_cpu_plus1 = id + 1;
	/* The destructor runs only for a non-NULL value, hence id + 1. */
	pthread_setspecific(cpu_key, (void *)(uintptr_t)(id + 1));
	return id;
}

/* ---- locks ---- */

void sys_lock(struct sys_lock *l)
{
	for (;;) {
		for (int spin = 0; spin < 100; spin++) {
			if (__atomic_load_n(&l->locked, __ATOMIC_RELAXED) == 0 &&
			    !__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
				return;
			__builtin_ia32_pause();
		}
		sched_yield();
	}
}

void sys_unlock(struct sys_lock *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

/* ---- reporting (no stdio: it may allocate) ---- */

static size_t fmt_hex(char *out, uintptr_t v)
{
	char tmp[2 + 16];
	size_t n = 0;
	out[n++] = '0';
	out[n++] = 'x';
	size_t k = 0;
	do {
		tmp[k++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v != 0);
	while (k > 0)
		out[n++] = tmp[--k];
	return n;
}

static void write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

_Noreturn void sys_fault(const char *msg, const void *p)
{
	char buf[256];
	size_t n = 0, m = strlen(msg);
	const char *pre = "kmalloc: ";
	if (m > 200)
		m = 200;
	memcpy(buf, pre, 9);
	n = 9;
	memcpy(buf + n, msg, m);
	n += m;
	buf[n++] = ':';
	buf[n++] = ' ';
	n += fmt_hex(buf + n, (uintptr_t)p);
	buf[n++] = '\n';
	write_all(2, buf, n);
	abort();
}

void sys_log(const char *s)
{
	write_all(1, s, strlen(s));
	write_all(1, "\n", 1);
}
