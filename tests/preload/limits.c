/*
 * limits.c: the shim at the limits of a Linux process (mappings, threads,
 * fork, ENOMEM, ulimit -v), one case per invocation, `limits CASE [N]`, run through
 * LD_PRELOAD by tests/preload/run-limits (so every case starts from a
 * fresh process). The same binary runs on glibc for the figures it is
 * compared with. Each case prints one line of results; the exit status is
 * the number of failed checks, each named on stderr.
 *
 *   vma        80,000 mallocs of 40 KiB, every other one freed (and 70,000
 *              then malloc_trim), 40,000 memalign(1 MiB) of 40 KiB (each
 *              leaves an aligned gap), and big reallocs that move by
 *              mremap until the port stops moving: /proc/self/maps stays
 *              under VMA_BOUND lines for the first three, under an eighth
 *              of vm.max_map_count (+ slack) for the moves, and nothing
 *              aborts
 *   enomem     impossible sizes, and sizes above RAM + swap, through
 *              malloc, calloc, realloc, aligned_alloc, posix_memalign,
 *              memalign, valloc, pvalloc: NULL (or ENOMEM) with errno
 *              ENOMEM, realloc's block untouched, the heap fine after.
 *              "Above RAM + swap" fails exactly when Linux refuses a
 *              mapping that big (as glibc's malloc would, being an mmap):
 *              under vm.overcommit_memory=1 Linux refuses nothing
 *   blocks     1 MiB blocks until NULL (errno ENOMEM); frees them and
 *              allocates again; prints blocks=N (run under ulimit -v)
 *   smallheap  a working heap: objects of every size, checked, reallocated,
 *              freed, in two threads, then exhaustion and recovery (run
 *              under ulimit -v 50000)
 *   threads N  N threads alive at once, each with its objects (10,000)
 *   lifetimes N  N short-lived threads, 64 at a time, each allocating and
 *              freeing (some of it freed by the main thread); RSS after
 *              malloc_trim at the end within LIFETIME_RSS_SLACK (4 MiB)
 *              of what it was after the first 10,000
 *   fork N     a parent with 1,000 threads (a few of them churning the
 *              heap while it forks), N forks; each child starts 500
 *              threads that allocate, check and free, and exits 0
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/fill.h"
#include "../lib/proc_lines.h"
#include "../lib/xorshift.h"

static int failures;

#define CHECK(name, cond)                                                    \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, \
			        name, #cond);                                \
			failures++;                                          \
		}                                                            \
	} while (0)

/* Mappings the three allocation patterns of `vma` may leave: kmalloc
 * needs about 30, glibc about 25; vm.max_map_count is 65,530. */
#define VMA_BOUND 1000
/* After the warm-up, RSS may still grow by the mcache pages of the ~65
 * CPU ids in use that later threads touch first (at most 65 x 46 KiB,
 * about 3 MiB; 0.2-2.3 MiB measured) and glibc's thread-stack cache; a
 * leak of 50 bytes per thread lifetime would pass 4 MiB by itself. */
#define LIFETIME_RSS_SLACK (4L << 20)
#define STACK (64 << 10) /* thread stacks: 10,000 of them fit anywhere */

static long maps(void)
{
	return proc_lines("/proc/self/maps");
}

/* The start of a small /proc file in buf (NUL-ended), or -1. */
static int proc_read(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, cap - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = '\0';
	return 0;
}

static long proc_long(const char *path)
{
	char buf[64];
	if (proc_read(path, buf, sizeof(buf)) != 0)
		return -1;
	return strtol(buf, NULL, 10);
}

static long rss_bytes(void)
{
	char buf[128];
	if (proc_read("/proc/self/statm", buf, sizeof(buf)) != 0)
		return -1;
	long size, res;
	if (sscanf(buf, "%ld %ld", &size, &res) != 2)
		return -1;
	return res * sysconf(_SC_PAGESIZE);
}

/* ---- vma ---- */

static void every_other(size_t n, int trim, long *peak)
{
	char **p = malloc(n * sizeof(*p));
	CHECK("pointer array", p != NULL);
	if (p == NULL)
		return;
	size_t got = 0;
	for (size_t i = 0; i < n; i++) {
		p[i] = malloc(40 << 10);
		if (p[i] == NULL)
			break;
		p[i][0] = (char)i;
		got++;
	}
	CHECK("every 40 KiB malloc succeeds", got == n);
	long m = maps();
	if (m > *peak)
		*peak = m;
	for (size_t i = 0; i < got; i += 2)
		free(p[i]);
	if ((m = maps()) > *peak)
		*peak = m;
	if (trim)
		malloc_trim(0);
	if ((m = maps()) > *peak)
		*peak = m;
	for (size_t i = 1; i < got; i += 2) {
		if (p[i][0] != (char)i)
			failures++;
		free(p[i]);
	}
	free(p);
	CHECK("mappings stay under the bound", *peak < VMA_BOUND);
}

static void aligned_gaps(size_t n, long *peak)
{
	void **p = malloc(n * sizeof(*p));
	size_t got = 0;
	for (size_t i = 0; i < n; i++) {
		p[i] = memalign(1 << 20, 40 << 10);
		if (p[i] == NULL)
			break;
		memset(p[i], 1, 64);
		got++;
	}
	CHECK("every memalign(1 MiB, 40 KiB) succeeds", got == n);
	long m = maps();
	if (m > *peak)
		*peak = m;
	for (size_t i = 0; i < got; i++)
		free(p[i]);
	free(p);
	CHECK("mappings stay under the bound", *peak < VMA_BOUND);
}

/* Big reallocs that cannot grow in place (a large object right after
 * each one), all kept: on kmalloc each would move by mremap and leave a
 * mapping behind. The port moves until an eighth of vm.max_map_count is used
 * and then copies; the loop stops once 256 reallocs in a row added no
 * mapping. */
#define MOVES_MAX 20000
static void *mv_obj[MOVES_MAX], *mv_block[MOVES_MAX];

static void big_reallocs(long limit, long *peak, int *stopped)
{
	long last = maps();
	int n = 0;
	*stopped = 0;
	for (; n < MOVES_MAX; n++) {
		char *p = malloc(256 << 10);
		mv_block[n] = malloc(40 << 10);
		if (p == NULL || mv_block[n] == NULL) {
			CHECK("malloc during big reallocs", 0);
			break;
		}
		p[0] = 7;
		char *q = realloc(p, 600 << 10);
		CHECK("big realloc", q != NULL && q[0] == 7);
		mv_obj[n] = q != NULL ? q : p;
		if (n % 256 == 255) {
			long m = maps();
			if (m > *peak)
				*peak = m;
			if (m == last) { /* no move in 256 reallocs */
				*stopped = 1;
				n++;
				break;
			}
			last = m;
		}
	}
	long m = maps();
	if (m > *peak)
		*peak = m;
	for (int i = 0; i < n; i++) {
		free(mv_obj[i]);
		free(mv_block[i]);
	}
	CHECK("moves stop at an eighth of vm.max_map_count", *peak < limit / 8 + 1024);
}

static void case_vma(void)
{
	long limit = proc_long("/proc/sys/vm/max_map_count");
	if (limit < 0)
		limit = 65530;
	long base = maps(), p80 = 0, p70 = 0, pal = 0, pmv = 0;
	int stopped;
	every_other(80000, 0, &p80);
	every_other(70000, 1, &p70);
	aligned_gaps(40000, &pal);
	big_reallocs(limit, &pmv, &stopped);
	printf("vma: base %ld; peak lines: 80000x40KiB/2 %ld, 70000x40KiB/2+trim %ld, "
	       "40000 memalign %ld, big reallocs %ld (%s; vm.max_map_count %ld)\n",
	       base, p80, p70, pal, pmv, stopped ? "growth stopped" : "still growing", limit);
}

/* ---- enomem ---- */

static void expect_enomem(const char *what, void *p)
{
	char name[96];
	snprintf(name, sizeof(name), "%s returns NULL", what);
	CHECK(name, p == NULL);
	snprintf(name, sizeof(name), "%s sets ENOMEM", what);
	CHECK(name, errno == ENOMEM);
	free(p);
}

/* Every allocation function asked for n bytes fails with ENOMEM. */
static void all_fail(size_t n, const char *label)
{
	char w[96];
	void *r;
	errno = 0;
	snprintf(w, sizeof(w), "malloc(%s)", label);
	expect_enomem(w, malloc(n));
	errno = 0;
	snprintf(w, sizeof(w), "calloc(1, %s)", label);
	expect_enomem(w, calloc(1, n));
	char *old = malloc(100);
	memset(old, 5, 100);
	errno = 0;
	snprintf(w, sizeof(w), "realloc(p, %s)", label);
	expect_enomem(w, realloc(old, n));
	CHECK("a failed realloc leaves its block", check_bytes(old, 100, 5) == SIZE_MAX);
	free(old);
	errno = 0;
	snprintf(w, sizeof(w), "aligned_alloc(64, %s)", label);
	expect_enomem(w, aligned_alloc(64, n));
	errno = 0;
	snprintf(w, sizeof(w), "memalign(4096, %s)", label);
	expect_enomem(w, memalign(4096, n));
	errno = 0;
	snprintf(w, sizeof(w), "valloc(%s)", label);
	expect_enomem(w, valloc(n));
	errno = 0;
	snprintf(w, sizeof(w), "pvalloc(%s)", label);
	expect_enomem(w, pvalloc(n));
	r = (void *)1;
	snprintf(w, sizeof(w), "posix_memalign(&p, 64, %s) is ENOMEM", label);
	CHECK(w, posix_memalign(&r, 64, n) == ENOMEM);
	CHECK("posix_memalign leaves *p on failure", r == (void *)1);
}

static void heap_still_works(void)
{
	char *a = malloc(100), *b = malloc(1 << 20);
	CHECK("the heap serves after a failure", a != NULL && b != NULL);
	if (a && b) {
		memset(a, 1, 100);
		memset(b, 2, 1 << 20);
		CHECK("and its objects hold",
		      check_bytes(a, 100, 1) == SIZE_MAX && check_bytes(b, 1 << 20, 2) == SIZE_MAX);
	}
	free(a);
	free(b);
}

static void case_enomem(void)
{
	/* impossible: more than any address space or arena */
	all_fail(SIZE_MAX, "SIZE_MAX");
	all_fail(SIZE_MAX / 2 + 1, "2^63");
	all_fail((size_t)1 << 47, "128 TiB");
	errno = 0;
	expect_enomem("calloc(2^33, 2^33) (overflow)", calloc((size_t)1 << 33, (size_t)1 << 33));
	errno = 0;
	expect_enomem("aligned_alloc(2^62, 16)", aligned_alloc((size_t)1 << 62, 16));
	heap_still_works();

	/* possible address space, but more than RAM + swap */
	struct sysinfo si;
	CHECK("sysinfo", sysinfo(&si) == 0);
	size_t n = (size_t)si.totalram * si.mem_unit + (size_t)si.totalswap * si.mem_unit +
	           ((size_t)1 << 30);
	void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int linux_refuses = m == MAP_FAILED;
	if (m != MAP_FAILED)
		munmap(m, n);
	long mode = proc_long("/proc/sys/vm/overcommit_memory");
	if (linux_refuses) {
		all_fail(n, "RAM + swap + 1 GiB");
	} else {
		/* Linux would hand glibc this mapping: so does the shim */
		void *p = malloc(n);
		CHECK("malloc(RAM + swap + 1 GiB) succeeds where Linux grants it", p != NULL);
		free(p);
	}
	heap_still_works();
	printf("enomem: impossible sizes and %zu MiB (RAM + swap + 1 GiB; overcommit_memory %ld: "
	       "Linux %s it) %s\n",
	       n >> 20, mode, linux_refuses ? "refuses" : "grants",
	       linux_refuses ? "give NULL with ENOMEM" : "succeed");
}

/* ---- blocks ---- */

static void case_blocks(void)
{
	void *first = NULL, *p;
	size_t n = 0;
	errno = 0;
	while ((p = malloc(1 << 20)) != NULL) {
		*(void **)p = first; /* a list through the blocks: no other memory */
		((char *)p)[(1 << 20) - 1] = 1;
		first = p;
		n++;
	}
	int e = errno;
	while (first != NULL) {
		p = *(void **)first;
		free(first);
		first = p;
	}
	malloc_trim(0);
	CHECK("the last 1 MiB malloc fails with ENOMEM", e == ENOMEM);
	CHECK("some blocks were had", n > 0);
	p = malloc(1 << 20);
	CHECK("after freeing them all, a block again", p != NULL);
	free(p);
	printf("blocks=%zu\n", n);
}

/* ---- smallheap ---- */

static void *mix(void *arg)
{
	uint64_t s = (uintptr_t)arg * 7919 + 1;
	enum { N = 1500 };
	static __thread void *p[N];
	static __thread size_t sz[N];
	int *bad = calloc(1, sizeof(int));
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			uint64_t r = xorshift64(&s);
			sz[i] = r % 100 == 0 ? 32768 + r % 200000 : 1 + r % 4096;
			p[i] = malloc(sz[i]);
			if (p[i] == NULL) {
				(*bad)++;
				continue;
			}
			fill_pattern(p[i], sz[i], (unsigned char)i);
		}
		for (int i = 0; i < N; i += 3) {
			if (p[i] == NULL)
				continue;
			size_t nsz = sz[i] * 2 + 1;
			char *q = realloc(p[i], nsz);
			if (q == NULL || check_pattern(q, sz[i], (unsigned char)i) != SIZE_MAX) {
				(*bad)++;
				continue;
			}
			fill_pattern(q, nsz, (unsigned char)i);
			p[i] = q;
			sz[i] = nsz;
		}
		for (int i = 0; i < N; i++) {
			if (p[i] != NULL &&
			    check_pattern(p[i], sz[i], (unsigned char)i) != SIZE_MAX)
				(*bad)++;
			free(p[i]);
		}
		char *z = calloc(1000, 7);
		if (z == NULL || check_bytes(z, 7000, 0) != SIZE_MAX)
			(*bad)++;
		free(z);
	}
	return bad;
}

static void case_smallheap(void)
{
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 256 << 10);
	pthread_t t;
	CHECK("a thread starts", pthread_create(&t, &at, mix, (void *)1) == 0);
	int *bad_main = mix((void *)2), *bad_thr = NULL;
	pthread_join(t, (void **)&bad_thr);
	CHECK("objects of every size intact, in two threads",
	      bad_main != NULL && *bad_main == 0 && bad_thr != NULL && *bad_thr == 0);
	free(bad_main);
	free(bad_thr);
	/* exhaustion in 64 KiB steps, then recovery */
	void *first = NULL, *p;
	size_t n = 0;
	errno = 0;
	while ((p = malloc(64 << 10)) != NULL) {
		*(void **)p = first;
		first = p;
		n++;
	}
	CHECK("exhaustion is NULL with ENOMEM", errno == ENOMEM);
	while (first != NULL) {
		p = *(void **)first;
		free(first);
		first = p;
	}
	int *again = mix((void *)3);
	CHECK("the heap works again after exhaustion", again != NULL && *again == 0);
	free(again);
	printf("smallheap: two threads of mixed objects, then %zu x 64 KiB (%zu MiB) before ENOMEM\n",
	       n, n >> 4);
}

/* ---- threads ---- */

static pthread_barrier_t all_live;

struct live_objs {
	char *a, *b, *c;
	int bad;
};

static void *live_thread(void *arg)
{
	struct live_objs *o = arg;
	o->a = malloc(24);
	o->b = malloc(1000);
	o->c = malloc(4000);
	if (o->a == NULL || o->b == NULL || o->c == NULL) {
		o->bad = 1;
	} else {
		memset(o->a, 0x11, 24);
		memset(o->b, 0x22, 1000);
		memset(o->c, 0x33, 4000);
	}
	pthread_barrier_wait(&all_live); /* every thread holds its objects */
	pthread_barrier_wait(&all_live);
	if (!o->bad && !(check_bytes(o->a, 24, 0x11) == SIZE_MAX &&
	                 check_bytes(o->b, 1000, 0x22) == SIZE_MAX &&
	                 check_bytes(o->c, 4000, 0x33) == SIZE_MAX))
		o->bad = 1;
	free(o->a);
	free(o->b);
	free(o->c);
	return NULL;
}

static void case_threads(int n)
{
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	struct live_objs *o = calloc((size_t)n, sizeof(*o));
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, STACK);
	pthread_barrier_init(&all_live, NULL, (unsigned)n + 1);
	long rss0 = rss_bytes();
	int started = 0;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&t[i], &at, live_thread, &o[i]) != 0)
			break;
		started++;
	}
	CHECK("every thread starts", started == n);
	if (started != n) {
		fprintf(stderr, "limits: only %d threads started; cannot continue\n", started);
		exit(1);
	}
	pthread_barrier_wait(&all_live);
	long rss1 = rss_bytes();
	pthread_barrier_wait(&all_live);
	int bad = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		bad += o[i].bad;
	}
	CHECK("every thread allocated and kept its objects", bad == 0);
	printf("threads: %d alive at once, each with 3 objects (24, 1000, 4000 B); "
	       "RSS %.1f KiB per thread\n",
	       n, (double)(rss1 - rss0) / 1024.0 / n);
	free(t);
	free(o);
}

/* ---- lifetimes ---- */

struct life {
	pthread_t t;
	uint64_t seed;
	void *handoff;
	size_t hsz;
	int bad;
};

static void *life_thread(void *arg)
{
	struct life *l = arg;
	enum { N = 24 };
	void *p[N];
	size_t sz[N];
	for (int i = 0; i < N; i++) {
		/* one large object in every 8th thread or so */
		uint64_t r = xorshift64(&l->seed);
		sz[i] = r % 192 == 0 ? 32768 + r % 16384 : 1 + r % 512;
		p[i] = malloc(sz[i]);
		if (p[i] == NULL) {
			l->bad++;
			return NULL;
		}
		fill_pattern(p[i], sz[i], (unsigned char)i);
	}
	for (int i = 1; i < N; i++) {
		if (check_pattern(p[i], sz[i], (unsigned char)i) != SIZE_MAX)
			l->bad++;
		free(p[i]);
	}
	l->handoff = p[0]; /* freed by the main thread */
	l->hsz = sz[0];
	return NULL;
}

static void lifetimes(int from, int to, struct life *l, int batch, int *bad)
{
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, STACK);
	for (int done = from; done < to; done += batch) {
		int k = to - done < batch ? to - done : batch;
		for (int i = 0; i < k; i++) {
			l[i].seed = (uint64_t)(done + i) * 0x9e3779b97f4a7c15ull + 1;
			l[i].handoff = NULL;
			l[i].bad = 0;
			if (pthread_create(&l[i].t, &at, life_thread, &l[i]) != 0) {
				(*bad)++;
				k = i;
				break;
			}
		}
		for (int i = 0; i < k; i++) {
			pthread_join(l[i].t, NULL);
			*bad += l[i].bad;
			if (l[i].handoff != NULL &&
			    check_pattern(l[i].handoff, l[i].hsz, 0) != SIZE_MAX)
				(*bad)++;
			free(l[i].handoff);
		}
	}
}

static void case_lifetimes(int n)
{
	enum { BATCH = 64, WARM = 10000 };
	static struct life l[BATCH];
	int bad = 0;
	lifetimes(0, WARM, l, BATCH, &bad);
	malloc_trim(0);
	long rss0 = rss_bytes();
	lifetimes(WARM, n, l, BATCH, &bad);
	malloc_trim(0);
	long rss1 = rss_bytes();
	CHECK("every thread started, allocated, checked and freed", bad == 0);
	CHECK("RSS back near its start (within 4 MiB)", rss1 - rss0 < LIFETIME_RSS_SLACK);
	printf("lifetimes: %d threads, 64 at a time; RSS after trim %.1f MiB after %d, "
	       "%.1f MiB after %d\n",
	       n, rss0 / 1048576.0, WARM, rss1 / 1048576.0, n);
}

/* ---- fork ---- */

enum { PARENT_THREADS = 1000, CHURNERS = 4, CHILD_THREADS = 500 };
static int hold_fd[2];
static volatile int stop_churn;
static pthread_barrier_t parent_ready;

static void *holder(void *arg)
{
	uint64_t s = (uintptr_t)arg + 1;
	void *p[16];
	for (int i = 0; i < 16; i++)
		p[i] = malloc(1 + xorshift64(&s) % 3000);
	for (int i = 0; i < 16; i += 2)
		free(p[i]); /* into this thread's caches */
	pthread_barrier_wait(&parent_ready);
	char c;
	ssize_t r = read(hold_fd[0], &c, 1); /* until the parent is done */
	(void)r;
	for (int i = 1; i < 16; i += 2)
		free(p[i]);
	return NULL;
}

static void *churner(void *arg)
{
	uint64_t s = (uintptr_t)arg * 31 + 7;
	enum { RING = 64 };
	void *ring[RING] = { 0 };
	size_t sz[RING] = { 0 };
	pthread_barrier_wait(&parent_ready);
	for (unsigned i = 0; !stop_churn; i++) {
		unsigned k = i % RING;
		if (ring[k] != NULL && check_pattern(ring[k], sz[k], (unsigned char)k) != SIZE_MAX)
			abort();
		free(ring[k]);
		uint64_t r = xorshift64(&s);
		sz[k] = r % 64 == 0 ? 32768 + r % 200000 : 1 + r % 2048;
		ring[k] = malloc(sz[k]);
		if (ring[k] != NULL)
			fill_pattern(ring[k], sz[k], (unsigned char)k);
	}
	for (int k = 0; k < RING; k++)
		free(ring[k]);
	return NULL;
}

static void *child_worker(void *arg)
{
	uint64_t s = (uintptr_t)arg * 7 + 5;
	int *bad = malloc(sizeof(int));
	if (bad == NULL)
		return (void *)1;
	*bad = 0;
	for (int round = 0; round < 4; round++) {
		enum { N = 30 };
		void *p[N];
		size_t sz[N];
		for (int i = 0; i < N; i++) {
			uint64_t r = xorshift64(&s);
			sz[i] = r % 30 == 0 ? 32768 + r % 100000 : 1 + r % 2048;
			p[i] = malloc(sz[i]);
			if (p[i] == NULL)
				(*bad)++;
			else
				fill_pattern(p[i], sz[i], (unsigned char)(i + round));
		}
		for (int i = 0; i < N; i++) {
			if (p[i] != NULL &&
			    check_pattern(p[i], sz[i], (unsigned char)(i + round)) != SIZE_MAX)
				(*bad)++;
			free(p[i]);
		}
	}
	return bad;
}

/* The child: CHILD_THREADS allocating threads, all alive together. */
static int child_main(void)
{
	alarm(60); /* a child that hangs dies of SIGALRM */
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, STACK);
	static pthread_t t[CHILD_THREADS];
	int started = 0, bad = 0;
	for (int i = 0; i < CHILD_THREADS; i++) {
		if (pthread_create(&t[i], &at, child_worker, (void *)(uintptr_t)i) != 0)
			break;
		started++;
	}
	for (int i = 0; i < started; i++) {
		void *r;
		pthread_join(t[i], &r);
		if (r == NULL || r == (void *)1)
			bad++;
		else
			bad += *(int *)r;
		if (r != (void *)1)
			free(r);
	}
	if (started != CHILD_THREADS)
		return 2;
	return bad != 0 ? 3 : 0;
}

static void case_fork(int forks)
{
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, STACK);
	static pthread_t t[PARENT_THREADS];
	CHECK("pipe", pipe(hold_fd) == 0);
	pthread_barrier_init(&parent_ready, NULL, PARENT_THREADS + 1);
	int started = 0;
	for (int i = 0; i < PARENT_THREADS; i++) {
		void *(*fn)(void *) = i < CHURNERS ? churner : holder;
		if (pthread_create(&t[i], &at, fn, (void *)(uintptr_t)i) != 0)
			break;
		started++;
	}
	CHECK("the parent's 1,000 threads start", started == PARENT_THREADS);
	if (started != PARENT_THREADS)
		exit(1);
	pthread_barrier_wait(&parent_ready);
	int ok = 0;
	for (int k = 0; k < forks; k++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(child_main());
		int st;
		if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			ok++;
		else
			fprintf(stderr, "limits: fork child %d: %s %d\n", k,
			        pid < 0 ? "fork failed" : WIFSIGNALED(st) ? "signal" : "status",
			        pid < 0 ? errno : WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	CHECK("every child of the 1,000-thread parent ran 500 allocating threads", ok == forks);
	stop_churn = 1;
	close(hold_fd[1]);
	for (int i = 0; i < PARENT_THREADS; i++)
		pthread_join(t[i], NULL);
	printf("fork: %d children of a %d-thread parent (%d churning) each ran %d allocating "
	       "threads: %d ok\n",
	       forks, PARENT_THREADS, CHURNERS, CHILD_THREADS, ok);
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	int n = argc > 2 ? atoi(argv[2]) : 0;
	if (strcmp(c, "vma") == 0)
		case_vma();
	else if (strcmp(c, "enomem") == 0)
		case_enomem();
	else if (strcmp(c, "blocks") == 0)
		case_blocks();
	else if (strcmp(c, "smallheap") == 0)
		case_smallheap();
	else if (strcmp(c, "threads") == 0 && n > 0)
		case_threads(n);
	else if (strcmp(c, "lifetimes") == 0 && n > 10000)
		case_lifetimes(n);
	else if (strcmp(c, "fork") == 0 && n > 0)
		case_fork(n);
	else {
		fprintf(stderr, "usage: limits vma|enomem|blocks|smallheap|threads N|lifetimes N|fork N\n");
		return 2;
	}
	return failures;
}
