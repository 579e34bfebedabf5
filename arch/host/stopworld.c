/*
 * stopworld.c (host): the leak scan's stop_world / start_world on Linux,
 * and the roots the stopped threads contribute (their registers, stacks
 * and thread-local storage). See mm/mgcmark.c for the scan and
 * mm/malloc.c for the overview.
 *
 * Stopping. A real-time signal (STOP_SIGNAL, SIGRTMAX - 2 unless
 * KMALLOC_STOP_SIGNAL=n names another) goes to every other thread of the
 * process listed in /proc/self/task, by rt_tgsigqueueinfo with the
 * thread's slot and the stop's epoch in the signal's value. The handler
 * runs on the thread itself:
 *   - inside an allocator critical section (host_self.irq_depth != 0,
 *     sys_arch.h: the host's "interrupts off") it marks the stop pending
 *     and returns; the thread parks at the safe point where its depth
 *     returns to 0 (host_stop_point, from sys_irq_restore), as a kernel
 *     takes a pending interrupt when it turns interrupts back on. So a
 *     stopped thread never holds an mm lock or has a cache half updated,
 *     and each thread needs one signal (a thread that declined and was
 *     asked again, as Go's asynchronous preemption does, needed a
 *     scheduling round per try: 15 s for 1,000 threads on 2 CPUs);
 *   - otherwise it copies its saved registers (general and SSE: the
 *     compiler keeps pointers there too) and its thread pointer into its
 *     slot, says "parked", and waits on a futex until start_world. At
 *     the safe point the registers are already on the stack: the safe
 *     point's caller spilled them (__builtin_unwind_init) above its sp.
 * A thread blocked in a system call takes the signal too; the handler is
 * installed with SA_RESTART, so read, write, futex waits and the like
 * resume as if nothing happened (calls Linux never restarts, such as
 * nanosleep and epoll_wait, return EINTR, as with any signal). The task
 * list is read again once every listed thread is parked: only a running
 * thread can create one, so a listing that finds nothing new is the
 * whole process. A thread that goes away while being stopped (it exits,
 * or it is the zombie of a main thread that called pthread_exit) is
 * dropped; one that keeps the signal blocked for 2 s (the allocator's own
 * background thread, which blocks every signal and never allocates, is
 * skipped) makes the stop fail with a line naming it, and the scan does
 * not happen (kmalloc.h: KMALLOC_LEAK_NO_SCAN).
 *
 * The signal's disposition. The handler is installed at every stop. A
 * signal the program itself sends (another si_code, pid or value) is
 * passed to the handler the program had; if it had none, the default
 * action (termination, for a real-time signal) or SIG_IGN is applied.
 * After the scan the program's own handler is put back; the default
 * disposition is not (ours then acts as it would), so a stop signal still
 * queued to a thread that keeps it blocked can never kill the process.
 *
 * The stopped threads' registers, stack pointers and thread pointers
 * are what threadroots.c turns into roots (host_parked_thread).
 *
 * Data flow: mgcmark.c -> sys_config.stop_world (host_stop_world) ->
 * signals -> handlers park -> the scan reads the heap and calls
 * sys_config.roots (sys.c) -> host_stopworld_roots (threadroots.c) ->
 * start_world wakes the handlers and waits until every one has left.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "host_port.h"
#include "sys.h"

#define STW_TAG         0x4b4dull      /* "KM": the top 16 bits of our value */
#define STW_MAX_THREADS (1u << 20)     /* slots (the value's low 24 bits) */
#define STW_HASH        (1u << 21)     /* tid -> slot table, power of two */
#define STW_PROBE_NS    10000000ull    /* an unanswered signal: look at the thread */
#define STW_BLOCKED_NS  2000000000ull  /* blocked this long: give up */
#define STW_GIVEUP_NS   20000000000ull /* the whole stop */

enum { ST_NEW, ST_SENT, ST_PENDING, ST_PARKED, ST_GONE };

/* One thread being stopped. tid and sent_ns: the stopper; state: both
 * (atomic: the handler publishes with release); the rest is written by
 * the thread's handler before it publishes ST_PARKED, read by the
 * stopper after. */
struct stw_thread {
	pid_t tid;
	int state;
	uint64_t sent_ns, first_ns;
	uintptr_t sp, tp;
	greg_t regs[NGREG];
	uint64_t xmm[32];
};

/* One stopper at a time; taken by fork's prepare handler too (fork.c),
 * so a fork never copies a half-stopped world. Held from stop to start. */
pthread_mutex_t host_stw_lock = PTHREAD_MUTEX_INITIALIZER;

/* Under host_stw_lock (the tables are mmap'ed on the first stop and never
 * freed; the handlers read thr[] at their own slot). */
static struct stw_thread *thr;
static unsigned nthr;
/* tid -> slot, open addressing: epoch << 32 | (slot + 1); an entry of an
 * earlier stop counts as empty, so nothing is ever cleared. */
static uint64_t *tid_slot;
static int stop_sig;
static struct sigaction prog_sa; /* the program's disposition, for chaining */
static uint64_t stopped_at;
static pid_t my_pid, stopper_tid;

/* Written by the stopper, read by every handler (atomic). */
static uint32_t epoch;  /* of the stop in progress (24 bits used) */
static uint32_t resume; /* futex: bumped by start_world */
static uint32_t acks;   /* futex: bumped by every handler's answer */
static uint32_t parked; /* futex: threads inside the parked handler */

/* Of the last stop, for the report (host.h). host_stw_lock. */
static uint64_t last_ns;
static unsigned last_threads;
static int stopped; /* between a successful stop and its start */

/* background.c's thread, which blocks every signal; 0 if none (atomic). */
pid_t host_background_tid;

static long futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, w, op, val, ts, NULL, 0);
}

static pid_t my_tid(void) { return (pid_t)syscall(SYS_gettid); }

static uintptr_t thread_pointer(void)
{
	uintptr_t tp;
	__asm__("mov %%fs:0, %0" : "=r"(tp)); /* glibc's TCB points to itself */
	return tp;
}

/* The program's own use of the signal: what its disposition says. */
static void chain(int sig, siginfo_t *si, void *uc)
{
	if (prog_sa.sa_flags & SA_SIGINFO) {
		if (prog_sa.sa_sigaction != NULL)
			prog_sa.sa_sigaction(sig, si, uc);
	} else if (prog_sa.sa_handler == SIG_DFL) {
		/* Terminate as the default would: the signal is blocked
		 * here, so it lands when the handler returns. */
		signal(sig, SIG_DFL);
		syscall(SYS_tgkill, getpid(), my_tid(), sig);
	} else if (prog_sa.sa_handler != SIG_IGN) {
		prog_sa.sa_handler(sig);
	}
}

static void answer(void)
{
	__atomic_add_fetch(&acks, 1, __ATOMIC_RELEASE);
	futex(&acks, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* Park the calling thread in slot t until start_world, unless the stop
 * gave up on it meanwhile (its state is no longer `from`). uc: the
 * signal's context, or NULL at the safe point (whose caller spilled its
 * callee-saved registers onto the stack above sp). */
static void park(struct stw_thread *t, int from, const ucontext_t *uc, uintptr_t sp)
{
	if (uc != NULL) {
		memcpy(t->regs, uc->uc_mcontext.gregs, sizeof(t->regs));
		if (uc->uc_mcontext.fpregs != NULL)
			memcpy(t->xmm, uc->uc_mcontext.fpregs->_xmm, sizeof(t->xmm));
		else
			memset(t->xmm, 0, sizeof(t->xmm));
		sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
	} else {
		memset(t->regs, 0, sizeof(t->regs));
		memset(t->xmm, 0, sizeof(t->xmm));
	}
	t->sp = sp;
	t->tp = thread_pointer();
	uint32_t r = __atomic_load_n(&resume, __ATOMIC_ACQUIRE);
	__atomic_add_fetch(&parked, 1, __ATOMIC_ACQ_REL);
	if (__atomic_compare_exchange_n(&t->state, &from, ST_PARKED, false, __ATOMIC_ACQ_REL,
	                                __ATOMIC_ACQUIRE)) {
		answer();
		while (__atomic_load_n(&resume, __ATOMIC_ACQUIRE) == r)
			futex(&resume, FUTEX_WAIT_PRIVATE, r, NULL);
	}
	if (__atomic_sub_fetch(&parked, 1, __ATOMIC_ACQ_REL) == 0)
		futex(&parked, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* The slot a pending stop parks this thread in (its handler wrote it). */
static __thread unsigned stop_slot __attribute__((tls_model("initial-exec")));

static void stop_handler(int sig, siginfo_t *si, void *ucv)
{
	int saved_errno = errno;
	uint64_t v = (uint64_t)(uintptr_t)si->si_value.sival_ptr;
	if (si->si_code != SI_QUEUE || si->si_pid != getpid() || v >> 48 != STW_TAG) {
		chain(sig, si, ucv);
		errno = saved_errno;
		return;
	}
	uint32_t e = (uint32_t)(v >> 24) & 0xffffff;
	unsigned slot = (unsigned)v & 0xffffff;
	/* A signal of an earlier stop (sent, then the thread was found
	 * gone or the stop failed) is dropped. */
	if (e != (__atomic_load_n(&epoch, __ATOMIC_ACQUIRE) & 0xffffff) ||
	    slot >= __atomic_load_n(&nthr, __ATOMIC_ACQUIRE)) {
		errno = saved_errno;
		return;
	}
	struct stw_thread *t = &thr[slot];
	if (__atomic_load_n(&t->state, __ATOMIC_ACQUIRE) != ST_SENT || t->tid != my_tid()) {
		errno = saved_errno;
		return;
	}
	if (host_self.irq_depth != 0) {
		/* Inside the allocator: stop at the end of the section
		 * (sys_arch.h; one signal per thread, so never pending yet). */
		stop_slot = slot;
		host_self.irq_depth += HOST_STOP_PENDING - 1;
		int from = ST_SENT;
		if (__atomic_compare_exchange_n(&t->state, &from, ST_PENDING, false,
		                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			answer();
		errno = saved_errno;
		return;
	}
	park(t, ST_SENT, ucv, 0);
	errno = saved_errno;
}

/* sys_irq_restore's safe point: the section that a stop signal found
 * this thread in is over. Called by host_stop_point_asm only. */
__attribute__((used, noinline, visibility("hidden"))) void host_stop_point(void);
void host_stop_point(void)
{
	int saved_errno = errno;
	host_self.irq_depth = 0; /* 0x7fffffff: the pending mark, decremented */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	__builtin_unwind_init(); /* the callers' registers, into this frame */
	unsigned slot = stop_slot;
	if (slot < __atomic_load_n(&nthr, __ATOMIC_ACQUIRE) && thr[slot].tid == my_tid())
		park(&thr[slot], ST_PENDING, NULL, (uintptr_t)__builtin_frame_address(0));
	errno = saved_errno;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *map_table(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* First stop: the tables and the signal (the world is not stopped yet:
 * the roots' setup may allocate). */
static int setup(void)
{
	if (thr != NULL)
		return 0;
	const char *v = getenv("KMALLOC_STOP_SIGNAL");
	int s = v != NULL ? atoi(v) : 0;
	stop_sig = s >= SIGRTMIN && s <= SIGRTMAX ? s : SIGRTMAX - 2;
	tid_slot = map_table(STW_HASH * sizeof(*tid_slot));
	struct stw_thread *t = map_table(STW_MAX_THREADS * sizeof(*thr));
	if (tid_slot == NULL || t == NULL || host_thread_roots_setup() != 0)
		return -1;
	thr = t;
	return 0;
}

/* The entry of tid in this stop, or the empty one where it would go. */
static uint64_t *hash_find(pid_t tid)
{
	uint32_t h = ((uint32_t)tid * 0x9e3779b1u) & (STW_HASH - 1);
	while (tid_slot[h] >> 32 == epoch && thr[(uint32_t)tid_slot[h] - 1].tid != tid)
		h = (h + 1) & (STW_HASH - 1);
	return &tid_slot[h];
}

/* Append x in decimal to buf at n (room for 10 digits); the new length. */
static size_t put_dec(char *buf, size_t n, unsigned x)
{
	char d[16];
	int k = 0;
	do
		d[k++] = (char)('0' + x % 10);
	while ((x /= 10) != 0);
	while (k > 0)
		buf[n++] = d[--k];
	return n;
}

static void log_tid(const char *what, pid_t tid, const char *rest)
{
	char line[160];
	size_t n = 0;
	for (const char *s = what; *s != '\0' && n < 100; s++)
		line[n++] = *s;
	n = put_dec(line, n, (unsigned)tid);
	for (const char *s = rest; *s != '\0' && n < sizeof(line) - 1; s++)
		line[n++] = *s;
	line[n] = '\0';
	sys_log(line);
}

/* Add a slot for every thread of the task list not seen yet. Returns
 * how many, or -1 if the list cannot be read or the table is full. */
static int list_tasks(void)
{
	char buf[8192];
	int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int added = 0;
	for (;;) {
		long r = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return r < 0 ? -1 : added;
		}
		for (long off = 0; off < r;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + off);
			off += d->reclen;
			pid_t tid = 0;
			for (const char *c = d->name; *c >= '0' && *c <= '9'; c++)
				tid = tid * 10 + (*c - '0');
			if (tid <= 0 || tid == stopper_tid ||
			    tid == __atomic_load_n(&host_background_tid, __ATOMIC_RELAXED))
				continue;
			uint64_t *h = hash_find(tid);
			if (*h >> 32 == epoch)
				continue;
			if (nthr == STW_MAX_THREADS) {
				close(fd);
				return -1;
			}
			struct stw_thread *t = &thr[nthr];
			t->tid = tid;
			t->state = ST_NEW;
			t->first_ns = 0;
			__atomic_store_n(&nthr, nthr + 1, __ATOMIC_RELEASE);
			*h = (uint64_t)epoch << 32 | nthr;
			added++;
		}
	}
}

static int send_stop(unsigned slot)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	si.si_signo = stop_sig;
	si.si_code = SI_QUEUE;
	si.si_pid = my_pid;
	si.si_uid = getuid();
	si.si_value.sival_ptr =
	        (void *)(uintptr_t)(STW_TAG << 48 | (uint64_t)(epoch & 0xffffff) << 24 | slot);
	return (int)syscall(SYS_rt_tgsigqueueinfo, my_pid, thr[slot].tid, stop_sig, &si);
}

/* Read a small /proc/self/task/<tid>/<file> into buf; its length or -1. */
static long read_task_file(pid_t tid, const char *file, char *buf, size_t cap)
{
	char path[64] = "/proc/self/task/";
	size_t n = put_dec(path, strlen(path), (unsigned)tid);
	path[n++] = '/';
	strcpy(path + n, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	long r = read(fd, buf, cap - 1);
	close(fd);
	if (r >= 0)
		buf[r] = '\0';
	return r;
}

/* A thread that has not answered: 1 if it is gone (exited, or a zombie
 * main thread), -1 if it has kept the signal blocked too long, else 0. */
static int probe(struct stw_thread *t, uint64_t now)
{
	char buf[2048];
	if (read_task_file(t->tid, "stat", buf, sizeof(buf)) < 0)
		return 1;
	const char *p = strrchr(buf, ')'); /* the name may hold anything */
	if (p == NULL || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X')
		return 1;
	if (now - t->first_ns < STW_BLOCKED_NS ||
	    read_task_file(t->tid, "status", buf, sizeof(buf)) < 0)
		return 0;
	const char *b = strstr(buf, "SigBlk:");
	if (b == NULL)
		return 0;
	uint64_t mask = 0;
	for (b += 7; *b == ' ' || *b == '\t'; b++)
		;
	for (; (*b >= '0' && *b <= '9') || (*b >= 'a' && *b <= 'f'); b++)
		mask = mask * 16 + (uint64_t)(*b <= '9' ? *b - '0' : *b - 'a' + 10);
	return (mask >> (stop_sig - 1)) & 1 ? -1 : 0;
}

/* Signal every listed thread until each is parked or gone. 0, or -1
 * (logged) if one cannot be stopped. */
static int settle(uint64_t start)
{
	for (;;) {
		uint32_t seen = __atomic_load_n(&acks, __ATOMIC_ACQUIRE);
		uint64_t now = now_ns();
		int busy = 0;
		for (unsigned i = 0; i < nthr; i++) {
			struct stw_thread *t = &thr[i];
			int st = __atomic_load_n(&t->state, __ATOMIC_ACQUIRE);
			if (st == ST_PARKED || st == ST_GONE)
				continue;
			busy = 1;
			if (st == ST_SENT && now - t->sent_ns > STW_PROBE_NS) {
				int r = probe(t, now);
				if (r < 0) {
					log_tid("kmemleak: thread ", t->tid,
					        " keeps the stop signal blocked");
					return -1;
				}
				if (r > 0)
					t->state = ST_GONE;
				t->sent_ns = now;
				continue;
			}
			if (st == ST_SENT || st == ST_PENDING)
				continue; /* PENDING: stops at its safe point */
			/* NEW: (again) */
			t->state = ST_SENT;
			t->sent_ns = now;
			if (t->first_ns == 0)
				t->first_ns = now;
			if (send_stop(i) != 0) {
				if (errno == ESRCH)
					t->state = ST_GONE;
				else
					t->state = ST_NEW; /* EAGAIN: the queue is full */
			}
		}
		if (!busy)
			return 0;
		if (now - start > STW_GIVEUP_NS) {
			sys_log("kmemleak: threads did not stop within 20 s");
			return -1;
		}
		struct timespec ts = { 0, 1000000 };
		futex(&acks, FUTEX_WAIT_PRIVATE, seen, &ts);
	}
}

static void resume_parked(void)
{
	__atomic_add_fetch(&resume, 1, __ATOMIC_RELEASE);
	futex(&resume, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
	for (;;) {
		uint32_t n = __atomic_load_n(&parked, __ATOMIC_ACQUIRE);
		if (n == 0)
			break;
		futex(&parked, FUTEX_WAIT_PRIVATE, n, NULL);
	}
}

static void put_back_disposition(void)
{
	if (prog_sa.sa_flags & SA_SIGINFO ||
	    (prog_sa.sa_handler != SIG_DFL && prog_sa.sa_handler != SIG_IGN))
		sigaction(stop_sig, &prog_sa, NULL);
}

int host_stop_world(void)
{
	pthread_mutex_lock(&host_stw_lock);
	if (setup() != 0) {
		sys_log("kmemleak: no memory for the thread table");
		pthread_mutex_unlock(&host_stw_lock);
		return -1;
	}
	my_pid = getpid();
	stopper_tid = my_tid();
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = stop_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	sigaction(stop_sig, &sa, &old);
	if (old.sa_sigaction != stop_handler || !(old.sa_flags & SA_SIGINFO))
		prog_sa = old; /* else ours stayed from the last stop */
	host_thread_roots_globals();
	__atomic_store_n(&nthr, 0, __ATOMIC_RELEASE);
	__atomic_add_fetch(&epoch, 1, __ATOMIC_RELEASE);
	uint64_t start = now_ns();
	stopped_at = start;
	for (int pass = 0;; pass++) {
		int added = list_tasks();
		if (added < 0) {
			sys_log("kmemleak: cannot list the threads (/proc/self/task)");
			break;
		}
		if (added == 0 && pass > 0) {
			host_thread_roots_prepare();
			stopped = 1;
			return 0;
		}
		if (settle(start) != 0)
			break;
	}
	/* Give up: a thread still on its way must not park now. */
	for (unsigned i = 0; i < nthr; i++) {
		int st = __atomic_load_n(&thr[i].state, __ATOMIC_ACQUIRE);
		while ((st == ST_SENT || st == ST_PENDING) &&
		       !__atomic_compare_exchange_n(&thr[i].state, &st, ST_GONE, false,
		                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			;
	}
	resume_parked();
	put_back_disposition();
	pthread_mutex_unlock(&host_stw_lock);
	return -1;
}

static unsigned last_threads_now(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < nthr; i++)
		n += thr[i].state == ST_PARKED;
	return n;
}

int host_threads_parked(void) { return stopped && last_threads_now() != 0; }

void host_start_world(void)
{
	stopped = 0;
	last_threads = last_threads_now();
	resume_parked();
	last_ns = now_ns() - stopped_at;
	put_back_disposition();
	pthread_mutex_unlock(&host_stw_lock);
}

void host_leak_stop_stats(uint64_t *ns, unsigned *threads)
{
	*ns = last_ns;
	*threads = last_threads;
}

/* The stub sys_irq_restore calls (sys_arch.h), in the middle of the
 * allocator's code: it keeps every register but the stack pointer (the
 * general ones, the flags, and the SSE state by fxsave; mm is built
 * without AVX) and calls host_stop_point on an aligned stack. */
__asm__(".text\n"
        ".globl host_stop_point_asm\n"
        ".hidden host_stop_point_asm\n"
        ".type host_stop_point_asm, @function\n"
        "host_stop_point_asm:\n"
        "\tpushfq\n\tpush %rax\n\tpush %rcx\n\tpush %rdx\n\tpush %rsi\n"
        "\tpush %rdi\n\tpush %r8\n\tpush %r9\n\tpush %r10\n\tpush %r11\n"
        "\tpush %rbp\n\tmov %rsp, %rbp\n"
        "\tand $-64, %rsp\n\tsub $512, %rsp\n\tfxsave64 (%rsp)\n"
        "\tcall host_stop_point\n"
        "\tfxrstor64 (%rsp)\n\tmov %rbp, %rsp\n\tpop %rbp\n"
        "\tpop %r11\n\tpop %r10\n\tpop %r9\n\tpop %r8\n\tpop %rdi\n"
        "\tpop %rsi\n\tpop %rdx\n\tpop %rcx\n\tpop %rax\n\tpopfq\n"
        "\tret\n"
        ".size host_stop_point_asm, .-host_stop_point_asm\n");

int host_parked_thread(unsigned i, struct host_parked *out)
{
	const struct stw_thread *t = &thr[i];
	if (i >= nthr || t->state != ST_PARKED)
		return -1;
	*out = (struct host_parked){ .sp = t->sp,
		                     .tp = t->tp,
		                     .regs = t->regs,
		                     .xmm = t->xmm,
		                     .regs_len = sizeof(t->regs),
		                     .xmm_len = sizeof(t->xmm) };
	return 0;
}

unsigned host_parked_slots(void) { return nthr; }

/* fork.c, in the child: no stop is in progress here (the prepare handler
 * held host_stw_lock), and none of the parent's threads exist. */
void host_stopworld_fork_child(void)
{
	nthr = 0;
	__atomic_store_n(&host_background_tid, 0, __ATOMIC_RELAXED);
}
