/*
 * workloads.c: the allocation workloads of `make bench-peers`, one per
 * invocation: `workloads NAME`. It calls only malloc, free, realloc and
 * posix_memalign, so the runner (tests/benchpeers/run-bench) measures any
 * allocator by running it under LD_PRELOAD. Each workload does a fixed
 * amount of work (not a fixed time), takes a few seconds at most (bigblocks
 * up to ~15 s under an allocator that faults every page back in), and
 * prints one line of key=value results:
 *
 *   ops        operations done (one malloc+free pair, or one replacement)
 *   secs       wall time of the measured part (CLOCK_MONOTONIC)
 *   peak_kb    peak RSS of the process (VmHWM)
 *   bigblocks only: stime (system CPU seconds) and minflt (minor page
 *              faults) of the process during the measured part
 *              (getrusage(RUSAGE_SELF), so an allocator's own threads count);
 *              regrow: minflt too
 *   frag, fragsmall: live_bytes (at the end), final_kb (RSS at the end),
 *              peak_live (live bytes at the peak), base_kb (RSS before
 *              the workload), trim_kb (RSS after freeing everything and
 *              asking the allocator to return memory), settled_kb (RSS
 *              2 s after the end, nothing freed), ftrim_kb (then after
 *              asking the allocator to return memory, nothing freed)
 *
 * Workloads (sizes are request sizes; random numbers from a fixed-seed
 * xorshift, so every allocator sees the same sequence; prodcons, larson
 * and xlarson live in workloads_mt.c):
 *   churn     one thread, 50k-object working set, sizes 8..512 B uniform
 *             (5M replacements):
 *             free a random object, allocate its replacement
 *   fixed     malloc(64) + free back to back: the fast path (30M pairs)
 *   loguni    1k-object working set, sizes log-uniform 8 B .. 64 KiB (5M)
 *   prodcons  one thread allocates 16..256 B, another frees, through a
 *             single-producer single-consumer ring (the remote-free path;
 *             2M objects)
 *   larson    4 threads churn their own 10k-object sets (8..1024 B, 1M ops
 *             each) and every 20k ops
 *             trade the whole set through a shared pool, so objects are
 *             freed by threads that did not allocate them
 *   frag      ~1 GiB of 8..512 B objects, free 90% at random, then
 *             allocate 768..2048 B objects until the live total is back to
 *             half of the peak; RSS against live bytes
 *   fragsmall the meshing issue's pattern: 256 MiB of 16..256 B objects,
 *             90% freed at random, then 128 MiB of 320..2048 B; reported
 *             as frag
 *   realloc   2000 chains growing one object from 8 B to 1 MiB by 1/8
 *             steps (about 100 reallocs each)
 *   regrow    8 buffers grown round-robin from 8 B to 1 MiB by 1/8 steps,
 *             each step's new bytes written (20 rounds, about 16k
 *             reallocs): each buffer's neighbours block growth in place,
 *             so this is the realloc that moves (pages or bytes); also
 *             prints minflt, the minor faults of the measured part
 *   xlarson   larson's classic run, 2 threads, 8..1000 B, 5,000 blocks
 *             per thread: each round a thread replaces 5,000 random
 *             blocks of its set, then trades the set for the other
 *             thread's, so nearly every block is freed by the thread that
 *             did not allocate it (5M replacements in all)
 *   aligned   4k-object working set of posix_memalign objects, alignment
 *             16..4096 B (a random power of two), size 8..8192 B uniform
 *             (1M replacements); a misaligned result ends the run with
 *             exit status 1 (Debian's mimalloc 2.0.9 returns some, for
 *             alignments 256..1024: microsoft/mimalloc issue 700)
 *   idle      IDLE_THREADS threads each allocate and free a mix (rounds of
 *             500 objects, 8..2048 B and one in 32 of 32..256 KiB, all
 *             freed), then wait: the RSS each idle thread leaves behind.
 *             Also prints empty_kb, the RSS per thread of as many threads
 *             that never allocate (stacks, kernel), measured first in the
 *             same process, and thread_kb, what an idle thread costs
 *             (idle - empty, per thread): what the allocator keeps for it,
 *             and thread_2s_kb, the same after 2 s more of waiting
 *   bigblocks blocks of 5..25 MiB, at most 2 live: free the older, malloc
 *             a new one and write one byte in each of its 4 KiB pages (300
 *             replacements). An allocator that gives the pages of every
 *             freed block back to the OS pays a system call and then a page
 *             fault per page when the next block reuses them, so this one
 *             also reports stime and minflt (above)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../lib/mono_time.h"
#include "../lib/frag_pattern.h"
#include "../lib/xorshift.h"
#include "workloads.h"

/* Peak RSS of this process image: VmHWM. (getrusage's ru_maxrss would
 * carry the RSS of the runner that forked us across exec.) */
long peak_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static long rss_kb(void)
{
	long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res * (sysconf(_SC_PAGESIZE) / 1024);
}


void report(const char *name, uint64_t ops, double secs)
{
	printf("workload=%s ops=%llu secs=%.6f peak_kb=%ld\n", name,
	       (unsigned long long)ops, secs, peak_kb());
}

/* ---- single thread ---- */

/* An object of a working-set workload: its size, and its alignment
 * (0: plain malloc). */
struct ws_obj {
	size_t size, align;
};

/* Allocate and touch one. A posix_memalign result that is not aligned
 * ends the run: a wrong answer must not be reported as a fast one (this
 * is a guard, not a test; tests/ checks alignment). */
static inline void *ws_new(struct ws_obj o)
{
	void *p = NULL;
	if (o.align == 0) {
		p = malloc(o.size);
	} else {
		int err = posix_memalign(&p, o.align, o.size);
		if (err != 0 || ((uintptr_t)p & (o.align - 1)) != 0) {
			fprintf(stderr, "workloads: posix_memalign(%zu, %zu): %s %p\n", o.align,
				o.size, err != 0 ? strerror(err) : "misaligned", p);
			exit(1);
		}
	}
	touch(p, o.size);
	return p;
}

/* The working-set workloads (churn, loguni, aligned): fill `nset` slots,
 * then `ops` times free a random slot and put a new object there; only
 * the replacement loop is timed. draw gives an object's size and
 * alignment from one random number: at fill time a whole draw, in the
 * loop the high half of the draw whose low bits chose the slot. Always
 * inlined, so each workload's loop has its draw (and the malloc or
 * posix_memalign branch) folded in, as a hand-written loop would: an
 * indirect call per operation would be timed too. The slots are static,
 * not malloc'ed: the allocator under test sees only the workload's
 * objects. */
static void *ws_slot[50000];

static inline __attribute__((always_inline)) void
working_set(const char *name, unsigned nset, uint64_t ops, uint64_t seed,
	    struct ws_obj (*draw)(uint64_t r))
{
	uint64_t s = seed;
	for (unsigned i = 0; i < nset; i++)
		ws_slot[i] = ws_new(draw(xorshift64(&s)));
	double t0 = mono_seconds();
	for (uint64_t i = 0; i < ops; i++) {
		uint64_t r = xorshift64(&s);
		unsigned k = (unsigned)(r % nset);
		free(ws_slot[k]);
		ws_slot[k] = ws_new(draw(r >> 32));
	}
	report(name, ops, mono_seconds() - t0);
	for (unsigned i = 0; i < nset; i++)
		free(ws_slot[i]);
}

/* 8..512 B, uniform */
static struct ws_obj churn_obj(uint64_t r)
{
	return (struct ws_obj){ 8 + r % 505, 0 };
}

static void churn(void)
{
	working_set("churn", 50000, 5000000, 1, churn_obj);
}

static void fixed(void)
{
	const uint64_t ops = 30000000;
	double t0 = mono_seconds();
	for (uint64_t i = 0; i < ops; i++) {
		void *p = malloc(64);
		touch(p, 64);
		free(p);
	}
	report("fixed", ops, mono_seconds() - t0);
}

/* log-uniform in [8, 65536]: 2^(3 + 13u) */
static struct ws_obj loguni_obj(uint64_t r)
{
	unsigned e = 3 + (unsigned)(r % 13);      /* 2^3 .. 2^15 */
	size_t lo = (size_t)1 << e;
	return (struct ws_obj){ lo + (size_t)((r >> 8) % lo), 0 }; /* uniform within the octave */
}

static void loguni(void)
{
	working_set("loguni", 1000, 5000000, 2, loguni_obj);
}

/* ---- fragmentation ---- */

/* Ask whichever allocator is loaded to give free memory back to the OS. */
static void allocator_trim(void)
{
	void (*mi_collect)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "mi_collect");
	void (*tc_release)(void) =
		(void (*)(void))dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
	int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
		(int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
	int (*trim)(size_t) = (int (*)(size_t))dlsym(RTLD_DEFAULT, "malloc_trim");
	if (mi_collect != NULL)
		mi_collect(1);
	if (tc_release != NULL)
		tc_release();
	if (mallctl != NULL) {
		/* MALLCTL_ARENAS_ALL = 4096; decay first so purge finds dirty pages */
		mallctl("arena.4096.decay", NULL, NULL, NULL, 0);
		mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
	}
	if (trim != NULL)
		trim(0);
}

/* Fill, fragment, then measure RSS against live bytes at the end, 2 s
 * later (a background thread may work meanwhile: release, meshing) and
 * after a trim, with nothing freed: what each allocator gives back of a
 * fragmented heap; then free everything and trim. base: the RSS before
 * f was initialised (its arrays are the allocator's too). */
static void frag_measure(const char *name, struct frag *f, long base)
{
	double t0 = mono_seconds();
	frag_fill(f, malloc);
	frag_fragment(f, malloc, free);
	double secs = mono_seconds() - t0;
	long final = rss_kb();
	size_t live = f->live;
	sleep(2);
	long settled = rss_kb();
	allocator_trim();
	long ftrim = rss_kb();
	frag_free_all(f, free);
	allocator_trim();
	long trimmed = rss_kb();
	printf("workload=%s ops=%zu secs=%.6f peak_kb=%ld live_bytes=%zu final_kb=%ld "
	       "peak_live=%zu base_kb=%ld trim_kb=%ld settled_kb=%ld ftrim_kb=%ld\n",
	       name, f->n + f->m, secs, peak_kb(), live, final, f->peak_live, base, trimmed,
	       settled, ftrim);
}

static void frag(void)
{
	long base = rss_kb();
	struct frag f;
	frag_init(&f, (size_t)1 << 30);
	frag_measure("frag", &f, base);
}

static void fragsmall(void)
{
	long base = rss_kb();
	struct frag f;
	frag_init_sizes(&f, (size_t)256 << 20, 16, 256, 320, 2048, (size_t)128 << 20);
	frag_measure("fragsmall", &f, base);
}

/* ---- realloc growth ---- */

static void realloc_growth(void)
{
	const int chains = 2000;
	uint64_t ops = 0;
	double t0 = mono_seconds();
	for (int c = 0; c < chains; c++) {
		size_t n = 8;
		char *p = malloc(n);
		touch(p, n);
		while (n < ((size_t)1 << 20)) {
			n += n / 8 + 8;
			p = realloc(p, n);
			touch(p, n);
			ops++;
		}
		free(p);
	}
	report("realloc", ops, mono_seconds() - t0);
}

/* 8 buffers side by side, grown in turns as a program filling several
 * growing arrays at once does: each realloc's neighbours are the other
 * buffers, and the appended bytes are written, so an allocator whose
 * moves leave pages to fault in again pays here (minflt). */
static void realloc_rr(void)
{
	enum { BUFS = 8, ROUNDS = 20 };
	const size_t max = (size_t)1 << 20;
	uint64_t ops = 0;
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	double t0 = mono_seconds();
	for (int round = 0; round < ROUNDS; round++) {
		char *b[BUFS];
		size_t n[BUFS];
		for (int i = 0; i < BUFS; i++) {
			n[i] = 8;
			b[i] = malloc(n[i]);
			memset(b[i], i, n[i]);
		}
		while (n[BUFS - 1] < max)
			for (int i = 0; i < BUFS; i++) {
				size_t m = n[i] + n[i] / 8 + 8;
				b[i] = realloc(b[i], m);
				memset(b[i] + n[i], i, m - n[i]);
				n[i] = m;
				ops++;
			}
		for (int i = 0; i < BUFS; i++)
			free(b[i]);
	}
	double secs = mono_seconds() - t0;
	getrusage(RUSAGE_SELF, &r1);
	printf("workload=regrow ops=%llu secs=%.6f peak_kb=%ld minflt=%ld\n",
	       (unsigned long long)ops, secs, peak_kb(), r1.ru_minflt - r0.ru_minflt);
}

/* ---- aligned ---- */

/* posix_memalign of a random power-of-two alignment (ws_new checks the
 * result) */
static struct ws_obj aligned_obj(uint64_t r)
{
	size_t align = (size_t)16 << (r % 9);  /* 16 .. 4096 */
	size_t n = 8 + (size_t)((r >> 8) % 8185); /* 8 .. 8192 */
	return (struct ws_obj){ n, align };
}

static void aligned(void)
{
	working_set("aligned", 4000, 1000000, 6, aligned_obj);
}

/* ---- idle threads ---- */

#define IDLE_THREADS 200
static pthread_barrier_t idle_ready, idle_go;

static void *idle_empty(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&idle_ready);
	pthread_barrier_wait(&idle_go);
	return NULL;
}

static void *idle_worker(void *arg)
{
	uint64_t s = (uintptr_t)arg * 7919 + 1;
	enum { N = 500 };
	static __thread void *p[N];
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < N; i++) {
			uint64_t r = xorshift64(&s);
			size_t n = r % 32 == 0 ? 32768 + r % (224 << 10) : 8 + r % 2041;
			p[i] = malloc(n);
			touch(p[i], n);
		}
		for (int i = 0; i < N; i++)
			free(p[i]);
	}
	pthread_barrier_wait(&idle_ready);
	pthread_barrier_wait(&idle_go);
	return NULL;
}

/* RSS per thread of IDLE_THREADS threads running fn, all waiting: as
 * soon as they all wait, and (*later) after 2 s more of waiting, when an
 * allocator that returns memory by age has had time to. */
static double idle_round(void *(*fn)(void *), double *later)
{
	static pthread_t t[IDLE_THREADS];
	pthread_barrier_init(&idle_ready, NULL, IDLE_THREADS + 1);
	pthread_barrier_init(&idle_go, NULL, IDLE_THREADS + 1);
	long before = rss_kb();
	for (int i = 0; i < IDLE_THREADS; i++)
		if (pthread_create(&t[i], NULL, fn, (void *)(uintptr_t)(i + 1)) != 0) {
			fprintf(stderr, "workloads: pthread_create failed\n");
			exit(1);
		}
	pthread_barrier_wait(&idle_ready);
	long idle = rss_kb();
	struct timespec two = { 2, 0 };
	nanosleep(&two, NULL);
	*later = (double)(rss_kb() - before) / IDLE_THREADS;
	pthread_barrier_wait(&idle_go);
	for (int i = 0; i < IDLE_THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&idle_ready);
	pthread_barrier_destroy(&idle_go);
	return (double)(idle - before) / IDLE_THREADS;
}

static void idle_threads(void)
{
	double empty2, busy2;
	double empty = idle_round(idle_empty, &empty2);
	double t0 = mono_seconds();
	double busy = idle_round(idle_worker, &busy2);
	double secs = mono_seconds() - t0 - 2;
	printf("workload=idle ops=%d secs=%.6f peak_kb=%ld idle_kb=%.1f empty_kb=%.1f "
	       "thread_kb=%.1f thread_2s_kb=%.1f\n",
	       IDLE_THREADS * 4 * 500, secs, peak_kb(), busy, empty, busy - empty, busy2 - empty2);
}

/* ---- a burst, then idle ---- */

/* Allocate about 256 MiB of mixed objects (8..4096 B, and one in 64 of
 * 64 KiB..1 MiB), touch them, free them all (no malloc_trim), then sleep
 * without calling the allocator and sample the RSS. */
static void burst(void)
{
	const size_t target = (size_t)256 << 20;
	static const double at[] = { 0, 0.5, 1, 2, 5 };
	size_t cap = 1 << 20, n = 0, total = 0;
	void **p = mmap(NULL, cap * sizeof(void *), PROT_READ | PROT_WRITE,
	                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* not the heap's */
	uint64_t s = 11;
	long base = rss_kb();
	double t0 = mono_seconds();
	while (total < target && n < cap) {
		uint64_t r = xorshift64(&s);
		size_t sz = r % 64 == 0 ? (64 << 10) + r % (960 << 10) : 8 + r % 4089;
		p[n] = malloc(sz);
		if (p[n] == NULL) {
			fprintf(stderr, "workloads: malloc(%zu) failed\n", sz);
			exit(1);
		}
		memset(p[n++], 1, sz); /* every page resident: RSS is the burst */
		total += sz;
	}
	long peak = rss_kb();
	for (size_t i = 0; i < n; i++)
		free(p[i]);
	double tf = mono_seconds();
	printf("workload=burst ops=%zu secs=%.6f peak_kb=%ld base_kb=%ld burst_kb=%ld", n, tf - t0,
	       peak_kb(), base, peak);
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		double wait = tf + at[i] - mono_seconds();
		if (wait > 0) {
			struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
			nanosleep(&ts, NULL);
		}
		printf(" rss_%gs_kb=%ld", at[i], rss_kb());
	}
	printf("\n");
	munmap(p, cap * sizeof(void *));
}

/* ---- big blocks ---- */

static void bigblocks(void)
{
	const int iters = 300;
	const size_t mib = (size_t)1 << 20;
	char *blk[2] = { NULL, NULL };
	uint64_t s = 7;
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	double t0 = mono_seconds();
	for (int i = 0; i < iters; i++) {
		size_t n = 5 * mib + (size_t)(xorshift64(&s) % (20 * mib + 1)); /* 5..25 MiB */
		free(blk[i & 1]); /* the older of the two */
		char *p = malloc(n);
		if (p == NULL) {
			fprintf(stderr, "workloads: malloc(%zu) failed\n", n);
			exit(1);
		}
		/* one write per 4 KiB page, whatever the allocator's page size:
		 * each page that was released since its last use faults here */
		for (size_t off = 0; off < n; off += 4096)
			((volatile char *)p)[off] = 1;
		((volatile char *)p)[n - 1] = 2;
		blk[i & 1] = p;
	}
	double secs = mono_seconds() - t0;
	getrusage(RUSAGE_SELF, &r1);
	free(blk[0]);
	free(blk[1]);
	double stime = (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
		       (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) * 1e-6;
	printf("workload=bigblocks ops=%d secs=%.6f peak_kb=%ld stime=%.6f minflt=%ld\n", iters,
	       secs, peak_kb(), stime, r1.ru_minflt - r0.ru_minflt);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} w[] = {
		{ "churn", churn },         { "fixed", fixed },
		{ "loguni", loguni },       { "prodcons", prodcons },
		{ "larson", larson },       { "frag", frag },
		{ "fragsmall", fragsmall }, { "realloc", realloc_growth },
		{ "regrow", realloc_rr },   { "xlarson", xlarson },
		{ "aligned", aligned },     { "bigblocks", bigblocks },
		{ "idle", idle_threads },   { "burst", burst },
	};
	if (argc == 2)
		for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
			if (strcmp(argv[1], w[i].name) == 0) {
				w[i].fn();
				return 0;
			}
	fprintf(stderr,
	        "usage: workloads churn|fixed|loguni|prodcons|larson|xlarson|frag|fragsmall|realloc|regrow|aligned|bigblocks|idle|burst\n");
	return 2;
}
