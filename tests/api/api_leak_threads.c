/*
 * api_leak_threads.c: the leak detector (kmalloc_leak_scan) in a process
 * with other threads, on the host, where the port stops them for the
 * scan (arch/host/stopworld.c). What users rely on: another thread's
 * stack, registers and thread-local storage are roots; threads that
 * allocate, start, exit, fork or sit in a system call during a scan
 * cause no false report, no crash and no deadlock, and are none the
 * worse after it; a program's own handler for the stop signal stays its
 * own; a thread that keeps the signal blocked means no scan, said so,
 * rather than a wrong one.
 *
 * Each test runs in its own forked process (Check). Objects are made
 * and dropped in helpers kept out of line, and a dropped object's
 * address survives only XORed with KEY, so no root holds it; the
 * scanning thread clears the stack its scan will use first (as in
 * api_leak.c).
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_util.h" /* handshake */
#include "kmalloc.h"

#define KEY         ((uintptr_t)0x5a5a5a5a5a5a5a5aull)
#define STOP_SIGNAL (SIGRTMAX - 2) /* the port's default (stopworld.c) */

/* What a scan reported, through its callback (the scanning thread's). */
#define MAXREP 64
static struct {
	size_t n;
	const void *obj[MAXREP];
} rep;

static void collect(const void *obj, size_t size, uintptr_t site, void *arg)
{
	(void)size;
	(void)site;
	(void)arg;
	if (rep.n < MAXREP)
		rep.obj[rep.n] = obj;
	rep.n++;
}

__attribute__((noinline)) static void clobber_stack(void)
{
	volatile char pad[16384];
	memset((char *)pad, 0, sizeof pad);
}

/* One scan; its leak count (KMALLOC_LEAK_NO_SCAN if the world could not
 * be stopped). */
static uint64_t scan(void)
{
	struct kmalloc_leaks l;
	clobber_stack();
	memset(&rep, 0, sizeof rep);
	uint64_t n = kmalloc_leak_scan(&l, collect, NULL);
	if (n != KMALLOC_LEAK_NO_SCAN)
		ck_assert_uint_eq(rep.n, n);
	return n;
}

static int reported(uintptr_t hidden)
{
	for (size_t i = 0; i < rep.n && i < MAXREP; i++)
		if (rep.obj[i] == (void *)(hidden ^ KEY))
			return 1;
	return 0;
}

/* For the worker threads: Check's assertions take a lock of Check's,
 * which a fork child of a thread-heavy test could inherit held. */
#define REQUIRE(x)                                                           \
	do {                                                                 \
		if (!(x)) {                                                  \
			static const char m_[] = "REQUIRE failed: " #x "\n"; \
			ssize_t w_ = write(2, m_, sizeof m_ - 1);            \
			(void)w_;                                            \
			abort();                                             \
		}                                                            \
	} while (0)

static int running; /* atomic: workers loop while it is 1 */

static int still_running(void) { return __atomic_load_n(&running, __ATOMIC_ACQUIRE); }

/* ---- roots of other threads ---- */

static struct handshake phase = HANDSHAKE_INIT;
static __thread void *tls_obj; /* static TLS */
static pthread_key_t key;      /* pthread_setspecific's store */
static uintptr_t on_stack, in_tls, in_key, in_reg, dropped;
static int reg_ready;

__attribute__((noinline)) static uintptr_t hidden_alloc(size_t size)
{
	return (uintptr_t)kmalloc(size, 0) ^ KEY;
}

/* Out of line, so that no copy of the two pointers stays in holder's
 * frame or registers: only the TLS block and the thread descriptor
 * (pthread_setspecific's first keys live there) hold them. */
__attribute__((noinline)) static void fill_tls_and_key(void)
{
	tls_obj = kmalloc(256, 0);
	in_tls = (uintptr_t)tls_obj ^ KEY;
	void *k = kmalloc(512, 0);
	REQUIRE(pthread_setspecific(key, k) == 0);
	in_key = (uintptr_t)k ^ KEY;
}

/* The object nothing reaches, made by a thread that is gone before the
 * scan: a kmalloc that takes its slow path leaves the address in dead
 * stack slots and caller-saved registers of its thread, and a stopped
 * thread's frames and registers are roots, scanned conservatively (the
 * holder made it itself before: the scan found it reachable in one run
 * in ten, when the stop caught the holder before its wait had written
 * over them). */
static void *dropper(void *arg)
{
	(void)arg;
	dropped = hidden_alloc(64);
	return NULL;
}

static void *holder(void *arg)
{
	(void)arg;
	void *volatile mine = kmalloc(128, 0); /* only on this stack */
	on_stack = (uintptr_t)mine ^ KEY;
	fill_tls_and_key();
	pthread_t d;
	REQUIRE(pthread_create(&d, NULL, dropper, NULL) == 0);
	REQUIRE(pthread_join(d, NULL) == 0);
	handshake_set(&phase, 1);
	handshake_wait(&phase, 2); /* blocked in a futex wait meanwhile */
	kfree(mine);
	kfree(tls_obj);
	kfree(pthread_getspecific(key));
	return NULL;
}

/* The pointer lives only in a register while the thread spins (the
 * stack holds it XORed): the stop signal's saved context is the root. */
static void *reg_holder(void *arg)
{
	(void)arg;
	uintptr_t p = hidden_alloc(96);
	in_reg = p;
	p ^= KEY;
	__atomic_store_n(&reg_ready, 1, __ATOMIC_RELEASE);
	while (still_running())
		__asm__ volatile("" : "+r"(p));
	kfree((void *)p);
	return NULL;
}

static void start_holder(pthread_t *t)
{
	ck_assert_int_eq(pthread_key_create(&key, NULL), 0);
	ck_assert_int_eq(pthread_create(t, NULL, holder, NULL), 0);
}

START_TEST(other_threads_stacks_registers_tls_are_roots)
{
	pthread_t t, r;
	running = 1;
	start_holder(&t);
	ck_assert_int_eq(pthread_create(&r, NULL, reg_holder, NULL), 0);
	handshake_wait(&phase, 1);
	while (!__atomic_load_n(&reg_ready, __ATOMIC_ACQUIRE))
		sched_yield();
	ck_assert_uint_eq(scan(), 1);
	ck_assert(reported(dropped));
	ck_assert(!reported(on_stack));
	ck_assert(!reported(in_tls));
	ck_assert(!reported(in_key));
	ck_assert(!reported(in_reg));
	__atomic_store_n(&running, 0, __ATOMIC_RELEASE);
	handshake_set(&phase, 2);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(pthread_join(r, NULL), 0);
	kfree((void *)(dropped ^ KEY));
	ck_assert_uint_eq(scan(), 0);
}
END_TEST

/* ---- an allocation storm ---- */

enum { STORM_THREADS = 16, STORM_SLOTS = 256, STORM_SCANS = 100 };

/* Random allocations and frees; every live object is held by this
 * stack's array, or by a register between kmalloc and the store. */
static void *stormer(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	void *slot[STORM_SLOTS] = { 0 };
	while (still_running()) {
		unsigned i = (unsigned)rng_below(&seed, STORM_SLOTS);
		kfree(slot[i]);
		size_t size = rng_below(&seed, 64) == 0 ? 40000 : 8 + rng_below(&seed, 2000);
		slot[i] = kmalloc(size, 0);
		REQUIRE(slot[i] != NULL);
		if (rng_below(&seed, 4) == 0) /* a chain: objects point to objects */
			*(void **)slot[i] = slot[(i + 1) % STORM_SLOTS];
	}
	for (unsigned i = 0; i < STORM_SLOTS; i++)
		kfree(slot[i]);
	return NULL;
}

START_TEST(storm_of_16_threads_no_false_report)
{
	pthread_t t[STORM_THREADS];
	running = 1;
	for (uintptr_t i = 0; i < STORM_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, stormer, (void *)i), 0);
	for (int s = 0; s < STORM_SCANS; s++)
		ck_assert_uint_eq(scan(), 0);
	__atomic_store_n(&running, 0, __ATOMIC_RELEASE);
	for (int i = 0; i < STORM_THREADS; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
}
END_TEST

/* ---- threads starting and ending during scans ---- */

static void *short_lived(void *arg)
{
	void *volatile mine = kmalloc(200, 0);
	for (volatile int i = 0; i < 1000 * (int)(uintptr_t)arg; i++)
		;
	kfree(mine);
	return NULL;
}

static void *spawner(void *arg)
{
	(void)arg;
	for (uintptr_t n = 0; still_running(); n++) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			REQUIRE(pthread_create(&t[i], NULL, short_lived, (void *)(n % 8)) == 0);
		for (int i = 0; i < 4; i++)
			REQUIRE(pthread_join(t[i], NULL) == 0);
	}
	return NULL;
}

START_TEST(threads_starting_and_exiting_during_scans)
{
	pthread_t sp[2];
	running = 1;
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&sp[i], NULL, spawner, NULL), 0);
	for (int s = 0; s < 100; s++)
		ck_assert_uint_eq(scan(), 0);
	__atomic_store_n(&running, 0, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(sp[i], NULL), 0);
}
END_TEST

/* ---- fork during scans ---- */

static int forks_done; /* atomic */

/* Each child allocates, scans (its heap holds the parent's other
 * threads' objects, which no thread of the child reaches: leaks there,
 * so only that the scan runs is checked) and exits 0. */
static void *forker(void *arg)
{
	(void)arg;
	while (still_running()) {
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			void *p = kmalloc(100, 0);
			struct kmalloc_leaks l;
			uint64_t n = kmalloc_leak_scan(&l, collect, NULL);
			kfree(p);
			_exit(p != NULL && n != KMALLOC_LEAK_NO_SCAN ? 0 : 1);
		}
		int st;
		REQUIRE(waitpid(pid, &st, 0) == pid);
		REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		__atomic_add_fetch(&forks_done, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

START_TEST(fork_during_scans)
{
	pthread_t f, w[2];
	running = 1;
	for (uintptr_t i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&w[i], NULL, stormer, (void *)i), 0);
	ck_assert_int_eq(pthread_create(&f, NULL, forker, NULL), 0);
	for (int s = 0; s < 50 || __atomic_load_n(&forks_done, __ATOMIC_RELAXED) < 20; s++)
		ck_assert_uint_eq(scan(), 0);
	__atomic_store_n(&running, 0, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_join(f, NULL), 0);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(w[i], NULL), 0);
}
END_TEST

/* ---- a thread blocked in a system call ---- */

static int pipefd[2];
static ssize_t read_result;
static int read_errno;
static char read_byte;

static void *reader(void *arg)
{
	(void)arg;
	void *volatile mine = kmalloc(300, 0); /* its stack is still a root */
	handshake_set(&phase, 1);
	read_result = read(pipefd[0], &read_byte, 1); /* blocks until written */
	read_errno = read_result < 0 ? errno : 0;
	kfree(mine);
	return NULL;
}

START_TEST(thread_in_system_call_is_stopped_and_resumes)
{
	pthread_t t;
	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, reader, NULL), 0);
	handshake_wait(&phase, 1);
	usleep(10000); /* let it reach read: the test holds either way */
	for (int s = 0; s < 20; s++)
		ck_assert_uint_eq(scan(), 0);
	ck_assert_int_eq(write(pipefd[1], "x", 1), 1);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(read_result == 1, "read returned %zd, errno %d", read_result, read_errno);
	ck_assert_int_eq(read_byte, 'x');
}
END_TEST

/* ---- the program's own handler for the stop signal ---- */

static int own_calls; /* atomic */

static void own_handler(int sig)
{
	(void)sig;
	__atomic_add_fetch(&own_calls, 1, __ATOMIC_RELAXED);
}

START_TEST(program_handler_for_the_stop_signal_stays)
{
	struct sigaction sa, now;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = own_handler;
	ck_assert_int_eq(sigaction(STOP_SIGNAL, &sa, NULL), 0);
	pthread_t t;
	start_holder(&t);
	handshake_wait(&phase, 1);
	ck_assert_uint_eq(scan(), 1); /* holder's dropped object */
	ck_assert_int_eq(own_calls, 0);
	ck_assert_int_eq(sigaction(STOP_SIGNAL, NULL, &now), 0);
	ck_assert_ptr_eq((void *)now.sa_handler, (void *)own_handler);
	ck_assert_int_eq(raise(STOP_SIGNAL), 0);
	ck_assert_int_eq(own_calls, 1);
	handshake_set(&phase, 2);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
}
END_TEST

/* ---- a thread that keeps the signal blocked ---- */

static void *blocker(void *arg)
{
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	handshake_set(&phase, 1);
	handshake_wait(&phase, 2);
	return NULL; /* exits with the stale signal still blocked */
}

START_TEST(blocked_stop_signal_means_no_scan)
{
	void *volatile kept = kmalloc(32, 0); /* the heap exists: a scan runs */
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, blocker, NULL), 0);
	handshake_wait(&phase, 1);
	ck_assert_uint_eq(scan(), KMALLOC_LEAK_NO_SCAN);
	handshake_set(&phase, 2);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_uint_eq(scan(), 0); /* without it, scans work again */
	kfree(kept);
}
END_TEST

/* clang-format off */
CHECK_MAIN("kmalloc leak detector with threads", 240,
	   CHECK_TEST(other_threads_stacks_registers_tls_are_roots),
	   CHECK_TEST(storm_of_16_threads_no_false_report),
	   CHECK_TEST(threads_starting_and_exiting_during_scans),
	   CHECK_TEST(fork_during_scans),
	   CHECK_TEST(thread_in_system_call_is_stopped_and_resumes),
	   CHECK_TEST(program_handler_for_the_stop_signal_stays),
	   CHECK_TEST(blocked_stop_signal_means_no_scan))
/* clang-format on */
