/*
 * test_aging.c: memory that comes back by age (mm/mscavenge.c, with the
 * port's clock): free pages nobody reused for the release delay go back
 * to the port in steps of kmalloc_background, oldest chunks first, and
 * pages that are reused within the delay stay committed; per-CPU caches
 * and transfer caches nobody used for half the delay go back to their
 * spans; the port's background context is asked for once, past the
 * threshold. Time is a fake clock each test moves by hand (installed
 * before the heap exists; each test runs in its own process), so no
 * assertion depends on how fast the machine is. After every step the
 * accounting is exact and, in the debug build, mheap_valid holds.
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"
#include "internal.h"
#include "heap_stats.h"

#define MiB ((size_t)1 << 20)
#define MS  ((uint64_t)1000000)

static uint64_t fake_ns = 1000 * MS;
static unsigned long fine_reads; /* calls of sys_config.now_ns */
static uint64_t fake_now(void)
{
	__atomic_add_fetch(&fine_reads, 1, __ATOMIC_RELAXED);
	return __atomic_load_n(&fake_ns, __ATOMIC_RELAXED);
}
static void advance_ms(uint64_t ms) { __atomic_add_fetch(&fake_ns, ms * MS, __ATOMIC_RELAXED); }
/* The coarse reading the host gives: the clock at its last 4 ms tick */
static uint64_t fake_coarse(void)
{
	return __atomic_load_n(&fake_ns, __ATOMIC_RELAXED) / (4 * MS) * (4 * MS);
}

static int bg_starts, bg_answer;
static int fake_start(void)
{
	bg_starts++;
	return bg_answer;
}

/* Runs in each test's process before the test: the heap does not exist
 * yet, so kmalloc_init takes this clock, a 1 s delay and our starter. */
static void setup(void)
{
	ck_assert(!mheap_inited());
	sys_config.now_ns = fake_now;
	sys_config.now_coarse_ns = fake_coarse;
	sys_config.release_ms = 1000;
	sys_config.start_background = fake_start;
	bg_answer = -1;
}


/* Steps until kmalloc_background has nothing left that is due. */
static void background_until_idle(void)
{
	for (int i = 0; i < 10000; i++) {
		advance_ms(1);
		if (kmalloc_background() >= mheap_.release_ns / 4 - 1 * MS)
			return;
		checked_stats();
	}
	ck_abort_msg("kmalloc_background never ran out of work");
}

START_TEST(idle_heap_returns_after_delay)
{
	enum { N = 64 };
	void *big[N];
	for (int i = 0; i < N; i++) { /* 16 MiB of large objects */
		big[i] = kmalloc(256 << 10, 0);
		ck_assert_ptr_nonnull(big[i]);
		memset(big[i], 1, 256 << 10);
	}
	for (int i = 0; i < N; i++)
		kfree(big[i]);
	kmalloc_flush_cpu(); /* this CPU's large bins: their aging is tested below */
	struct kmalloc_stats freed = checked_stats();
	ck_assert_uint_ge(freed.heap_free, 16 * MiB);

	advance_ms(900); /* younger than the delay: nothing goes */
	background_until_idle();
	struct kmalloc_stats st = checked_stats();
	ck_assert_uint_eq(st.heap_released, freed.heap_released);

	advance_ms(200); /* past it: everything free goes, without a trim */
	background_until_idle();
	st = checked_stats();
	ck_assert_uint_eq(st.heap_free, 0);
	ck_assert_uint_eq(st.heap_released, freed.heap_released + freed.heap_free);

	/* released pages come back committed and zeroed when reused */
	char *p = kmalloc(256 << 10, 0);
	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < 256 << 10; i += 4096)
		ck_assert_int_eq(p[i], 0);
	kfree(p);
	checked_stats();
}
END_TEST

/* A loop that frees and allocates big blocks every few milliseconds
 * touches its chunks each round: nothing is released and faulted back. */
START_TEST(reuse_within_delay_keeps_pages)
{
	void *blk[2] = { NULL, NULL };
	for (int i = 0; i < 400; i++) {
		kfree(blk[i & 1]);
		blk[i & 1] = kmalloc((4 + i % 5) * MiB, 0);
		ck_assert_ptr_nonnull(blk[i & 1]);
		advance_ms(10); /* 4 s in all, four times the delay */
		kmalloc_background();
	}
	/* What the first rounds grew and never used again may have gone by
	 * now; from here on no step releases a page (each would be faulted
	 * back in a few rounds later), and nothing is committed again. */
	for (int i = 0; i < 100; i++) {
		kfree(blk[i & 1]);
		blk[i & 1] = kmalloc((4 + i % 5) * MiB, 0);
		advance_ms(10);
		uint64_t released = checked_stats().heap_released;
		mheap_.bg_due = 0; /* a step now, whatever the pacing says */
		kmalloc_background();
		ck_assert_uint_eq(checked_stats().heap_released, released);
	}
	kfree(blk[0]);
	kfree(blk[1]);
}
END_TEST

/* Taking pages (a large object, each in-place growth of one) and giving
 * them back date the chunk with the port's cheap clock: the full one is
 * read only where a step runs (on the host the full one costs four times
 * as much, 11% of a realloc-heavy program's time when it was read there). */
START_TEST(page_work_reads_only_the_coarse_clock)
{
	void *warm = kmalloc(64 << 10, 0); /* the heap exists, its first step is due later */
	ck_assert_ptr_nonnull(warm);
	unsigned long before = __atomic_load_n(&fine_reads, __ATOMIC_RELAXED);
	for (int round = 0; round < 20; round++) {
		size_t n = 64 << 10;
		char *p = kmalloc(n, 0);
		ck_assert_ptr_nonnull(p);
		while (n < 4 * MiB) {
			n += n / 8;
			p = krealloc(p, n, 0);
			ck_assert_ptr_nonnull(p);
			p[n - 1] = 1;
		}
		kfree(p);
		advance_ms(1); /* the coarse clock moves every fourth round */
	}
	/* the stamp of a take is the coarse reading: 2 ms after a tick, the
	 * full clock is two epochs further */
	advance_ms(2);
	ck_assert_uint_ne(fake_coarse() >> 20, fake_ns >> 20);
	void *big = kmalloc(8 * MiB, 0);
	ck_assert_ptr_nonnull(big);
	ck_assert_uint_eq(__atomic_load_n(&fine_reads, __ATOMIC_RELAXED), before);
	ck_assert_uint_eq(mheap_.pages.epoch, (uint32_t)(fake_coarse() >> 20));
	kfree(big);
	kfree(warm);
	checked_stats();
}
END_TEST

/* Oldest first is by chunk age, not address: a cold chunk below a hot
 * one goes back, the hot one above it stays. */
START_TEST(cold_chunk_below_hot_one_goes_first)
{
	/* the first chunk: low and a 1 MiB filler; high in the next one */
	void *low = kmalloc(3 * MiB, 0), *fill = kmalloc(MiB, 0), *high = kmalloc(3 * MiB, 0);
	ck_assert_ptr_nonnull(low);
	ck_assert_ptr_nonnull(fill);
	ck_assert_ptr_nonnull(high);
	ck_assert_uint_eq((uintptr_t)low >> CHUNK_SHIFT,
	                  ((uintptr_t)low + 3 * MiB - 1) >> CHUNK_SHIFT);
	ck_assert_uint_lt(((uintptr_t)low + 3 * MiB - 1) >> CHUNK_SHIFT,
	                  (uintptr_t)high >> CHUNK_SHIFT);
	memset(low, 1, 3 * MiB);
	memset(high, 1, 3 * MiB);
	kfree(low);
	advance_ms(800);
	kfree(high); /* the high chunk is touched 0.8 s later */
	advance_ms(300);
	background_until_idle();
	struct kmalloc_stats st = checked_stats();
	uintptr_t lpg = ((uintptr_t)low - mheap_.arena_start) >> PAGE_SHIFT;
	uintptr_t hpg = ((uintptr_t)high - mheap_.arena_start) >> PAGE_SHIFT;
	ck_assert_uint_eq(pa_scav_count(&mheap_.pages, lpg, 3 * MiB / PAGE_SIZE),
	                  3 * MiB / PAGE_SIZE);
	ck_assert_uint_eq(pa_scav_count(&mheap_.pages, hpg, 3 * MiB / PAGE_SIZE), 0);
	ck_assert_uint_ge(st.heap_free, 3 * MiB);
	advance_ms(1000);
	background_until_idle();
	ck_assert_uint_eq(pa_scav_count(&mheap_.pages, hpg, 3 * MiB / PAGE_SIZE),
	                  3 * MiB / PAGE_SIZE);
	ck_assert_uint_eq(checked_stats().heap_free, 0);
	kfree(fill);
}
END_TEST

#define IDLE_SPC (size_to_class(128) << 1)
#define BUSY_SPC (size_to_class(512) << 1)

/* This CPU's caches: a class nobody used for half the delay goes back to
 * its spans at the next safe point; a class in use keeps its magazine. */
START_TEST(unused_magazines_age)
{
	enum { N = 40 };
	void *a[N], *b[N];
	for (int i = 0; i < N; i++) {
		a[i] = kmalloc(128, 0);
		b[i] = kmalloc(512, 0);
	}
	for (int i = 0; i < N; i++) {
		kfree(a[i]);
		kfree(b[i]);
	}
	struct mcache *c = mm_mcaches[cpu_slot(sys_cpu_id())];
	ck_assert_uint_gt(mag_count(&c->mag[IDLE_SPC]), 0);
	ck_assert_uint_gt(mag_count(&c->mag[BUSY_SPC]), 0);
	kmalloc_safepoint();                   /* the first look sees both classes change */
	for (int step = 0; step < 6; step++) { /* 0.6 s: only 512 B is used */
		advance_ms(100);
		kfree(kmalloc(512, 0));
		kmalloc_safepoint();
	}
	ck_assert_uint_eq(mag_count(&c->mag[IDLE_SPC]), 0);
	ck_assert_ptr_eq(c->alloc[IDLE_SPC], &mspan_none);
	ck_assert_uint_gt(mag_count(&c->mag[BUSY_SPC]), 0);
	checked_stats();
}
END_TEST

/* ---- idle CPUs: another thread's caches (mm/mcache.c) ---- */

/* A second thread ("CPU") that fills its caches, then waits for orders:
 * 1 = allocate and free again (checking its objects), 2 = exit. */
struct idler {
	pthread_t th;
	unsigned cpu;    /* its CPU id */
	int order, done; /* atomics: order given, orders carried out */
	uint64_t ops;    /* atomic: kmalloc+kfree pairs made */
	int bad;         /* an object did not hold what was written */
};

static void nap(void)
{
	struct timespec t = { 0, 100000 };
	nanosleep(&t, NULL);
}

static void idler_round(struct idler *d)
{
	enum { N = 48 };
	void *p[N];
	for (int i = 0; i < N; i++) { /* 16 B .. 3 KiB, and a 64 KiB large one */
		size_t n = i == 0 ? 64 << 10 : (size_t)16 << (i % 8);
		p[i] = kmalloc(n, 0);
		if (p[i] == NULL)
			d->bad = 1;
		else
			memset(p[i], i, n);
	}
	for (int i = 0; i < N; i++) {
		if (p[i] != NULL && ((unsigned char *)p[i])[0] != (unsigned char)i)
			d->bad = 1;
		kfree(p[i]);
	}
	__atomic_add_fetch(&d->ops, N, __ATOMIC_RELEASE);
}

static void *idler_main(void *arg)
{
	struct idler *d = arg;
	idler_round(d);
	unsigned long f = sys_irq_save();
	d->cpu = sys_cpu_id();
	sys_irq_restore(f);
	/* the round above carries out order 1: with 0 here, order 1 also
	 * made a second round, which raced with the test's idle passes (its
	 * kmalloc took back the cache a pass had just marked: the drain
	 * test failed about one run in fifty) */
	int seen = 1;
	__atomic_store_n(&d->done, 1, __ATOMIC_RELEASE);
	for (;;) {
		int o;
		while ((o = __atomic_load_n(&d->order, __ATOMIC_ACQUIRE)) == seen)
			nap();
		seen = o;
		if (o == 2)
			return NULL;
		idler_round(d);
		__atomic_store_n(&d->done, o, __ATOMIC_RELEASE);
	}
}

static void idler_order(struct idler *d, int o)
{
	__atomic_store_n(&d->order, o, __ATOMIC_RELEASE);
	if (o == 2)
		return;
	while (__atomic_load_n(&d->done, __ATOMIC_ACQUIRE) != o)
		nap();
}

static bool mcache_holds_nothing(const struct mcache *c)
{
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
		if (mag_count(&c->mag[i]) != 0 || c->alloc[i] != &mspan_none)
			return false;
	return c->nlarge == 0;
}

/* One background step a half delay after the last. */
static void idle_pass(void)
{
	advance_ms(500);
	kmalloc_background();
}

/* A thread that stopped calling kmalloc (blocked, here waiting for an
 * order) keeps its magazines, cached spans and large bins until the
 * background steps drain them: marked at one step, drained at the next.
 * It takes its caches back on its next call, and its objects are
 * intact; the heap's accounting is exact throughout. Where the port's
 * fence is missing (no membarrier), nothing is drained, and the thread
 * keeps its caches as before. */
START_TEST(idle_thread_caches_drained)
{
	static struct idler d;
	kfree(kmalloc(16, 0)); /* the heap, and this thread's own mcache */
	ck_assert_int_eq(pthread_create(&d.th, NULL, idler_main, &d), 0);
	idler_order(&d, 1); /* done == 1 after its first round */
	struct mcache *c = mcache_at(cpu_slot(d.cpu));
	ck_assert_ptr_nonnull(c);
	ck_assert(!mcache_holds_nothing(c));
	struct kmalloc_stats before = checked_stats();
	bool fence = sys_config.cpu_fence != NULL && sys_config.cpu_fence() == 0;

	idle_pass(); /* marks it */
	ck_assert_uint_eq(mm_load_acquire(&c->idle), MC_MARKED);
	ck_assert(!mcache_holds_nothing(c));
	idle_pass(); /* drains it */
	struct kmalloc_stats st = checked_stats();
	if (!fence) {
		printf("idle_thread_caches_drained: no membarrier here: nothing drained\n");
		ck_assert_uint_eq(st.idle_drains, 0);
		ck_assert(!mcache_holds_nothing(c));
	} else {
		ck_assert_uint_eq(st.idle_drains, 1); /* never the stepping thread's own */
		ck_assert_uint_eq(mm_load_acquire(&c->idle), MC_DRAINED);
		ck_assert(mcache_holds_nothing(c));
		ck_assert_uint_lt(st.heap_inuse, before.heap_inuse);
	}
	idler_order(&d, 2 + 1); /* a round after the drain: claims it back */
	ck_assert_int_eq(d.bad, 0);
	ck_assert_uint_eq(mm_load_acquire(&c->idle), MC_OWNED);
	idler_order(&d, 2);
	ck_assert_int_eq(pthread_join(d.th, NULL), 0);
	checked_stats();
}
END_TEST

/* A thread that keeps calling kmalloc is never drained: each step
 * empties its fast slot, its next call takes the mcache back, and the
 * next step finds it in use again. */
START_TEST(busy_thread_never_drained)
{
	static struct idler d;
	kfree(kmalloc(16, 0));
	ck_assert_int_eq(pthread_create(&d.th, NULL, idler_main, &d), 0);
	idler_order(&d, 1);
	struct mcache *c = mcache_at(cpu_slot(d.cpu));
	for (int step = 0; step < 20; step++) {
		idle_pass();
		idler_order(&d, 3 + step); /* it ran a round since the step */
		ck_assert_uint_eq(mm_load_acquire(&c->idle), MC_OWNED);
	}
	ck_assert_uint_eq(checked_stats().idle_drains, 0);
	ck_assert_int_eq(d.bad, 0);
	idler_order(&d, 2);
	ck_assert_int_eq(pthread_join(d.th, NULL), 0);
}
END_TEST

/* The background context is asked for once, when the heap passes the
 * threshold; refused, the allocation slow paths do the steps. */
START_TEST(background_asked_once_past_threshold)
{
	void *p = kmalloc(MiB, 0);
	ck_assert_int_eq(bg_starts, 0); /* a 4 MiB heap: not yet */
	mheap_.bg_threshold = 8 * MiB;
	void *q = kmalloc(8 * MiB, 0);
	kfree(kmalloc(64, 0));
	ck_assert_int_eq(bg_starts, 1);
	ck_assert_int_eq(mheap_.bg_state, BG_REFUSED);
	size_t qpg = ((uintptr_t)q - mheap_.arena_start) >> PAGE_SHIFT, qn = 8 * MiB / PAGE_SIZE;
	kfree(q);
	kmalloc_flush_cpu();
	advance_ms(1100);
	ck_assert_uint_eq(pa_scav_count(&mheap_.pages, qpg, qn), 0);
	/* first allocations of small classes: each a slow path, whose step
	 * releases what is due. Their spans take some of q's pages (first
	 * fit). */
	for (unsigned c = 1; c < _NumSizeClasses; c++) {
		advance_ms(1);
		kfree(kmalloc(class_to_size[c], 0));
	}
	/* (the chunks those spans went into are young again and keep
	 * their free pages: age is kept per 4 MiB chunk) */
	ck_assert_uint_ge(pa_scav_count(&mheap_.pages, qpg, qn), qn / 2);
	ck_assert_int_eq(bg_starts, 1);
	checked_stats();
	kfree(p);
}
END_TEST

/* fork() copies no thread: the child's first slow path asks for a
 * background context of its own, and steps are not left blocked by a
 * step the parent's thread was taking. */
START_TEST(fork_child_asks_again)
{
	bg_answer = 0;                       /* "started" */
	sys_config.background_min = 4 * MiB; /* read when the heap is set up */
	void *p = kmalloc(6 * MiB, 0);
	kfree(kmalloc(64, 0));
	ck_assert_int_eq(bg_starts, 1);
	ck_assert_int_eq(mheap_.bg_state, BG_RUNNING);
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int bad = mheap_.bg_state != BG_NONE || mheap_.bg_busy != 0;
		kfree(kmalloc(6 * MiB, 0));
		kfree(kmalloc(100, 0));
		bad |= (bg_starts != 2 || mheap_.bg_state != BG_RUNNING) << 1;
		_exit(bad);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	ck_assert_int_eq(bg_starts, 1); /* the parent's own is untouched */
	kfree(p);
}
END_TEST

#if defined(MM_DEBUG) && MM_DEBUG >= 2
/* A background step that ages a typed cache's transfer cache holds each
 * batch on its way back to the spans. A kmem_cache_destroy meanwhile
 * must not count the class's spans then and retire a class nothing of is
 * live: the next create would not get it back. The hook (debug build
 * only) keeps the background thread inside that window until the
 * destroying thread keeps background steps out, or is done. */
static __thread int on_background;
static unsigned held_class;
static int in_window, destroy_done;

static void hold_batch(enum mm_hook_at at, const void *p)
{
	if (at != MM_HOOK_TRANSFER_HELD || !on_background ||
	    spanOf((uintptr_t)p)->spanclass != held_class)
		return;
	mm_store_release(&mm_test_hook, NULL);
	__atomic_store_n(&in_window, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&destroy_done, __ATOMIC_ACQUIRE) &&
	       mm_load_seq_cst(&mheap_.bg_excl) == 0)
		;
}

static void *aging_step(void *arg)
{
	(void)arg;
	on_background = 1;
	mheap_.bg_due = 0; /* a step now, whatever the pacing says */
	kmalloc_background();
	return NULL;
}

START_TEST(destroy_waits_for_an_aging_batch)
{
	struct kmem_cache *c = kmem_cache_create("aged", 64, 0, 0, NULL);
	ck_assert_ptr_nonnull(c);
	enum { N = 4096 };
	static void *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = kmem_cache_alloc(c, 0);
		ck_assert_ptr_nonnull(p[i]);
	}
	for (int i = 0; i < N; i++)
		kmem_cache_free(c, p[i]);
	ck_assert_uint_gt(mheap_.transfer[c->spanclass].t.n, 0);
	advance_ms(300); /* the first step sees the class's transfer cache used */
	mheap_.bg_due = 0;
	kmalloc_background();
	advance_ms(600); /* the next finds it idle for half the delay */
	held_class = c->spanclass;
	mm_store_release(&mm_test_hook, hold_batch);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, aging_step, NULL), 0);
	while (!__atomic_load_n(&in_window, __ATOMIC_ACQUIRE))
		;
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
	__atomic_store_n(&destroy_done, 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	struct kmem_cache *again = kmem_cache_create("again", 64, 0, 0, NULL);
	ck_assert_ptr_eq(again, c); /* the class came back at once */
	ck_assert_int_eq(kmem_cache_destroy(again), 0);
	checked_stats();
}
END_TEST
#define DEBUG_BUILD_TESTS , CHECK_TEST(destroy_waits_for_an_aging_batch)
#else
#define DEBUG_BUILD_TESTS
#endif

/* clang-format off */
CHECK_MAIN_SETUP("aging", 60, setup,
	   CHECK_TEST(idle_heap_returns_after_delay),
	   CHECK_TEST(reuse_within_delay_keeps_pages),
	   CHECK_TEST(page_work_reads_only_the_coarse_clock),
	   CHECK_TEST(cold_chunk_below_hot_one_goes_first),
	   CHECK_TEST(unused_magazines_age),
	   CHECK_TEST(background_asked_once_past_threshold),
	   CHECK_TEST(fork_child_asks_again),
	   CHECK_TEST(idle_thread_caches_drained),
	   CHECK_TEST(busy_thread_never_drained)
	   DEBUG_BUILD_TESTS)
/* clang-format on */
