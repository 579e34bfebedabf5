/*
 * api_mesh.c: meshing (kmalloc_mesh, mm/mmesh.c) on the host port's memfd
 * arena (KMALLOC_MESH=1, arch/host/mesh.c), through the public API. Each
 * test runs in its own forked process (Check) with a fresh heap; the
 * setup sets KMALLOC_MESH=1 and no clock (KMALLOC_RELEASE_MS=off), so only
 * the test's own kmalloc_mesh calls mesh.
 *
 * Runs of adjacent spans and the host's mappings: api_mesh_runs.c.
 *
 * The pair tests build two spans whose slots cannot overlap: 256 B
 * objects (32 to an 8 KiB span), the first 32 allocations fill span A and
 * the next 32 span B (a fresh heap hands out the lowest free slot); A
 * keeps its even slots, B its odd ones. One of them becomes the alias
 * (whichever mmesh.c picks), so every check is made on both.
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_util.h"
#include "kmalloc.h"
#include "mesh_setup.h"
#include "sys.h" /* sys_config.now_ns: the port's clock, set before the heap starts */


/* The pair: half[0] survivors of span A, half[1] of span B. */
static unsigned char *half[2][PER_SPAN / 2];

static void make_pair(void)
{
	unsigned char *all[2 * PER_SPAN];
	for (int i = 0; i < 2 * PER_SPAN; i++) {
		all[i] = kmalloc(OBJ, 0);
		ck_assert_ptr_nonnull(all[i]);
	}
	ck_assert_uint_eq((uintptr_t)all[PER_SPAN - 1] - (uintptr_t)all[0], (PER_SPAN - 1) * OBJ);
	for (int i = 0; i < 2 * PER_SPAN; i++) {
		int span = i / PER_SPAN, slot = i % PER_SPAN;
		if (slot % 2 == span) {
			half[span][slot / 2] = all[i];
			fill_pattern(all[i], OBJ, (uint64_t)i);
		} else {
			kfree(all[i]);
		}
	}
	kmalloc_flush_cpu(); /* the spans back to their mcentral, uncached */
}

static uint64_t seed_of(int span, int k) { return (uint64_t)(span * PER_SPAN + 2 * k + span); }

static void check_pair(void)
{
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < PER_SPAN / 2; k++)
			ck_assert_msg(check_pattern(half[s][k], OBJ, seed_of(s, k)) == SIZE_MAX,
			              "span %d object %d lost", s, k);
}

/* A span's worth of new objects, written, while the meshed ones (checked
 * by check) keep their bytes; then the new ones freed intact. */
static void new_objects_beside(void (*check)(void))
{
	unsigned char *more[PER_SPAN];
	for (int i = 0; i < PER_SPAN; i++) {
		more[i] = kmalloc(OBJ, 0);
		fill_pattern(more[i], OBJ, 5000 + (uint64_t)i);
	}
	check();
	for (int i = 0; i < PER_SPAN; i++) {
		ck_assert(check_pattern(more[i], OBJ, 5000 + (uint64_t)i) == SIZE_MAX);
		kfree(more[i]);
	}
}

/* Everything was freed: after a trim every alias is reaped, and nothing
 * is committed but metadata. */
static void trim_to_nothing(void)
{
	struct kmalloc_stats st;
	kmalloc_flush_cpu();
	kmalloc_trim();
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_eq(st.mesh_spans, 0);
	ck_assert_uint_eq(st.mesh_bytes, 0);
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_uint_eq(st.committed, st.meta_sys);
}

START_TEST(pair_meshes_and_keeps_contents)
{
	struct kmalloc_stats st, before;
	make_pair();
	kmalloc_stats(&before);
	ck_assert_uint_eq(kmalloc_mesh(), 1);
	ASSERT_STATS_CONSISTENT(&st);
	/* the mesher's 280 KiB of scratch went back with the call's end */
	ck_assert_uint_eq(st.meta_sys, before.meta_sys);
	ck_assert_uint_eq(st.mesh_count, 1);
	ck_assert_uint_eq(st.mesh_steps, 1);
	ck_assert_uint_eq(st.mesh_spans, 1);
	ck_assert_uint_eq(st.mesh_bytes, 8192);
	check_pair();
	/* both halves stay usable: ksize, krealloc in place and beyond */
	for (int s = 0; s < 2; s++) {
		ck_assert_uint_eq(ksize(half[s][0]), OBJ);
		fill_pattern(half[s][1], OBJ, 999);
		ck_assert(check_pattern(half[s][1], OBJ, 999) == SIZE_MAX);
		fill_pattern(half[s][1], OBJ, seed_of(s, 1));
	}
	check_pair();
	/* new objects never land on a slot the other half holds */
	new_objects_beside(check_pair);
	/* everything freed through both addresses: the alias is reaped and
	 * every page comes back */
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < PER_SPAN / 2; k++)
			kfree(half[s][k]);
	trim_to_nothing();
}
END_TEST

/* ---- a group moves whole ----
 * Four spans, span k keeping the slots i with i % 4 == k: the first pass
 * meshes them in two pairs, the second meshes one pair into the other,
 * moving an alias along with its span: one dst, three aliases. */

#define GROUP 4
/* n adjacent spans (make_group(n), n <= GROUP), span s keeping the
 * slots k with k % n == s: member[s][0, nmember[s]) */
static int ngroup;
static unsigned char *member[GROUP][PER_SPAN];
static int nmember[GROUP];

static void free_twice(void *p);

static void make_group(int n)
{
	unsigned char *all[GROUP * PER_SPAN];
	ngroup = n;
	for (int i = 0; i < n * PER_SPAN; i++)
		all[i] = kmalloc(OBJ, 0);
	for (int i = 0; i < n * PER_SPAN; i++) {
		int span = i / PER_SPAN, slot = i % PER_SPAN;
		ck_assert_uint_eq((uintptr_t)all[i] - (uintptr_t)all[span * PER_SPAN], slot * OBJ);
		if (slot % n == span) {
			member[span][nmember[span]++] = all[i];
			fill_pattern(all[i], OBJ, (uint64_t)i);
		} else {
			kfree(all[i]);
		}
	}
	kmalloc_flush_cpu();
}

static void check_group(void)
{
	for (int s = 0; s < ngroup; s++)
		for (int k = 0; k < nmember[s]; k++)
			ck_assert_msg(check_pattern(member[s][k], OBJ,
			                            (uint64_t)(s * PER_SPAN + ngroup * k + s)) ==
			                      SIZE_MAX,
			              "span %d object %d lost", s, k);
}

static void free_group(void)
{
	for (int s = 0; s < ngroup; s++)
		for (int k = 0; k < nmember[s]; k++)
			kfree(member[s][k]);
}

/* make_group(n) meshes onto one set of frames and stays exact: every
 * object kept, a double free through any address caught, new objects
 * in the free slots only, all of it given back once freed. */
static void group_meshes_whole(int n)
{
	struct kmalloc_stats st, before;
	make_group(n);
	kmalloc_stats(&before);
	ck_assert_uint_eq(kmalloc_mesh(), n - 1);
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_eq(st.mesh_spans, n - 1);
	ck_assert_uint_eq(st.mesh_bytes, (n - 1) * 8192);
	ck_assert_uint_eq(before.committed - st.committed, (n - 1) * 8192);
	check_group();
	for (int s = 0; s < n; s++) {
		struct child_result r;
		run_in_child(free_twice, member[s][2], &r);
		const char *m = misuse_mismatch(&r, "double free", member[s][2]);
		ck_assert_msg(m == NULL, "span %d: %s", s, m);
	}
	new_objects_beside(check_group);
	free_group();
	trim_to_nothing();
}

/* The paced background work meshes with a scratch the size of its
 * rounds (24 KiB of metadata, not kmalloc_mesh's 280 KiB), and
 * kmalloc_mesh gives all of it back. */
START_TEST(paced_mesh_commits_its_share)
{
	/* a clock, so kmalloc_background steps mesh; no thread: this test
	 * makes the steps (the heap reads both at its first call) */
	setenv("KMALLOC_RELEASE_MS", "1000", 1);
	setenv("KMALLOC_BACKGROUND", "0", 1);
	struct kmalloc_stats before, st;
	make_pair();
	kmalloc_stats(&before);
	ck_assert_uint_eq(before.mesh_count, 0);
	for (int i = 0; i < 50; i++) {
		kmalloc_background();
		kmalloc_stats(&st);
		if (st.mesh_count != 0)
			break;
		usleep(20 * 1000); /* the paced work meshes every 100 ms */
	}
	ck_assert_uint_eq(st.mesh_count, 1);
	ck_assert_uint_gt(st.meta_sys, before.meta_sys);
	ck_assert_uint_le(st.meta_sys - before.meta_sys, 24 << 10);
	check_pair();
	kmalloc_mesh();
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_eq(st.meta_sys, before.meta_sys);
	check_pair();
}
END_TEST

START_TEST(group_moves_whole) { group_meshes_whole(GROUP); }
END_TEST

/* Three adjacent spans: no run of them meshes onto a run (a run's dsts
 * cannot lie in it), so the pass of any pairs takes them, best fit: one
 * span goes onto the fullest, and the third onto that same dst in the
 * same round (a dst takes more than one src a round, mm/mmeshpick.c
 * pair_fit). Both settle on their own. */
START_TEST(three_spans_share_one_set_of_frames) { group_meshes_whole(3); }
END_TEST

/* A clock that stands still until the test makes it jump 6 ms at each
 * reading: a paced step's 10 ms budget then runs out after a reading or
 * two. (Standing still, no background step falls due in between.) */
static uint64_t jumpy_ns, jumpy_step;
static uint64_t jumpy_clock(void) { return jumpy_ns += jumpy_step; }

/* The paced work reaps dead aliases up to its step's budget, not all of
 * them: a program that frees a meshed heap leaves tens of thousands at
 * once, and one background step that unmapped them all held the gate
 * for 0.5-0.8 s (the frag workload), which a trim then spun on. The rest
 * go in later steps, or all in a trim. */
START_TEST(paced_reap_stops_at_its_budget)
{
	setenv("KMALLOC_RELEASE_MS", "1000", 1);
	setenv("KMALLOC_BACKGROUND", "0", 1);
	sys_config.now_ns = jumpy_clock; /* before the heap's first call */
	sys_config.now_coarse_ns = NULL; /* every reading from the fake clock */
	struct kmalloc_stats st;
	make_group(GROUP);
	ck_assert_uint_eq(kmalloc_mesh(), GROUP - 1);
	free_group();
	kmalloc_flush_cpu(); /* the objects back to their spans: dead aliases */
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_eq(st.mesh_spans, GROUP - 1);
	jumpy_ns += 1000ull * 1000 * 1000; /* a step is due */
	jumpy_step = 6 * 1000 * 1000;
	kmalloc_background();
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_lt(st.mesh_spans, GROUP - 1); /* some reaped */
	ck_assert_uint_gt(st.mesh_spans, 0);         /* not all in one step */
	for (int i = 0; i < 100 && st.mesh_spans != 0; i++) {
		kmalloc_background();
		kmalloc_stats(&st);
	}
	ck_assert_uint_eq(st.mesh_spans, 0);
	trim_to_nothing();
}
END_TEST

/* A port that refuses every mesh (the host does once its mappings reach
 * their budget) is asked once per kmalloc_mesh, and by the paced work
 * less and less often: its wait doubles up to 64 periods (mm/mmesh.c
 * mesh_paced). An idle heap meshed to the host's budget had its
 * background thread count /proc/self/maps every 100 ms for nothing. */
static uint64_t still_ns;
static uint64_t still_clock(void) { return still_ns; }
static unsigned refusals;
static int refuse_protect(void *src, size_t len)
{
	(void)src;
	(void)len;
	refusals++;
	return -1;
}

START_TEST(refused_meshes_back_off)
{
	setenv("KMALLOC_RELEASE_MS", "1000", 1);
	setenv("KMALLOC_BACKGROUND", "0", 1);
	sys_config.now_ns = still_clock; /* before the heap's first call */
	sys_config.now_coarse_ns = NULL;
	struct kmalloc_stats st;
	make_group(GROUP);
	int (*protect)(void *, size_t) = sys_config.mesh_protect;
	sys_config.mesh_protect = refuse_protect;
	ck_assert_uint_eq(kmalloc_mesh(), 0);
	ck_assert_uint_eq(refusals, 1); /* the first refusal ended the call */
	/* 6.4 s of background steps, each as soon as it is due: a mesh
	 * every period would be asked 25 times (a step that meshes nothing
	 * comes back after a quarter of the release delay) */
	refusals = 0;
	for (int i = 0; i < 64; i++) {
		still_ns += 100ull * 1000 * 1000;
		kmalloc_background();
	}
	ck_assert_uint_ge(refusals, 3);
	ck_assert_uint_le(refusals, 8);
	/* the port takes meshes again: the paced work meshes within the
	 * longest wait */
	sys_config.mesh_protect = protect;
	for (int i = 0; i < 70; i++) {
		still_ns += 100ull * 1000 * 1000;
		kmalloc_background();
	}
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_eq(st.mesh_spans, GROUP - 1);
	check_group();
	free_group();
	trim_to_nothing();
}
END_TEST

/* ---- a typed cache's spans mesh like kmalloc's ---- */

START_TEST(typed_cache_meshes)
{
	struct kmem_cache *c = kmem_cache_create("meshy", OBJ, 0, 0, NULL);
	ck_assert_ptr_nonnull(c);
	unsigned char *all[2 * PER_SPAN], *keep[PER_SPAN];
	int nkeep = 0;
	for (int i = 0; i < 2 * PER_SPAN; i++)
		all[i] = kmem_cache_alloc(c, 0);
	for (int i = 0; i < 2 * PER_SPAN; i++) {
		if ((i % PER_SPAN) % 2 == i / PER_SPAN) {
			keep[nkeep++] = all[i];
			fill_pattern(all[i], OBJ, (uint64_t)i + 100);
		} else {
			kmem_cache_free(c, all[i]);
		}
	}
	kmalloc_flush_cpu();
	ck_assert_uint_eq(kmalloc_mesh(), 1);
	for (int k = 0; k < nkeep; k++) {
		uint64_t i = (uint64_t)(k < PER_SPAN / 2 ? 2 * k
		                                         : PER_SPAN + 2 * (k - PER_SPAN / 2) + 1);
		ck_assert_msg(check_pattern(keep[k], OBJ, i + 100) == SIZE_MAX, "object %d lost",
		              k);
	}
	/* busy: destroy refuses; then everything goes through both halves */
	ck_assert_int_eq(kmem_cache_destroy(c), -1);
	for (int k = 0; k < nkeep; k++)
		kmem_cache_free(c, keep[k]);
	kmalloc_flush_cpu();
	ck_assert_int_eq(kmem_cache_destroy(c), 0);
	trim_to_nothing();
}
END_TEST

/* ---- misuse through either half: the usual messages ---- */

static void free_twice(void *p)
{
	kfree(p);
	kfree(p);
}

static void free_inside(void *p) { kfree((char *)p + 8); }

START_TEST(misuse_on_both_halves)
{
	make_pair();
	ck_assert_uint_eq(kmalloc_mesh(), 1);
	for (int s = 0; s < 2; s++) {
		struct child_result r;
		const char *m;
		run_in_child(free_twice, half[s][3], &r);
		m = misuse_mismatch(&r, "double free", half[s][3]);
		ck_assert_msg(m == NULL, "span %d: %s", s, m);
		run_in_child(free_inside, half[s][4], &r);
		m = misuse_mismatch(&r, "invalid free", (char *)half[s][4] + 8);
		ck_assert_msg(m == NULL, "span %d: %s", s, m);
	}
	check_pair();
}
END_TEST

/* ---- fork: the child gets its own copy of a meshed heap ---- */

static void child_rewrites(void *arg)
{
	(void)arg;
	check_pair();
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < PER_SPAN / 2; k++)
			fill_pattern(half[s][k], OBJ, 77);
	for (int k = 0; k < PER_SPAN / 2; k += 2)
		kfree(half[1][k]);
	void *p = kmalloc(OBJ, 0);
	memset(p, 0xee, OBJ);
	if (check_pattern(half[0][1], OBJ, 77) != SIZE_MAX)
		abort();
}

START_TEST(fork_copies_meshed_heap)
{
	make_pair();
	ck_assert_uint_eq(kmalloc_mesh(), 1);
	struct child_result r;
	run_in_child(child_rewrites, NULL, &r);
	ck_assert_msg(!r.signaled && r.status == 0, "child: signal %d status %d: %s", r.sig,
	              r.status, r.err);
	check_pair(); /* the child's writes and frees stayed the child's */
	struct kmalloc_stats st;
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_eq(st.mesh_spans, 1);
}
END_TEST

/* ---- fork while another thread meshes ----
 * A mesh in flight holds no lock while it copies; fork's handlers wait
 * for it (the background gate), so a child never sees a half-meshed span
 * (write-protected, or copied but not remapped). */

#define FORK_OBJS 6000
static unsigned char *fobj[FORK_OBJS];
static volatile int fstop;

static void *mesher(void *arg)
{
	(void)arg;
	uint64_t r = 99;
	while (!__atomic_load_n(&fstop, __ATOMIC_ACQUIRE)) {
		/* more sparse spans to mesh, then mesh */
		void *tmp[512];
		for (int i = 0; i < 512; i++)
			tmp[i] = kmalloc(64, 0);
		for (int i = 0; i < 512; i++)
			if (xorshift64star(&r) % 8 != 0)
				kfree(tmp[i]);
		kmalloc_flush_cpu();
		kmalloc_mesh();
	}
	return NULL;
}

static void child_checks_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < FORK_OBJS; i++)
		if (check_pattern(fobj[i], 64, (uint64_t)i) != SIZE_MAX)
			abort();
	for (int i = 0; i < FORK_OBJS; i += 3)
		kfree(fobj[i]);
	kmalloc_mesh();
	for (int i = 1; i < FORK_OBJS; i += 3)
		if (check_pattern(fobj[i], 64, (uint64_t)i) != SIZE_MAX)
			abort();
}

START_TEST(fork_while_meshing)
{
	uint64_t r = 5;
	for (int i = 0; i < FORK_OBJS * 8; i++) {
		void *p = kmalloc(64, 0);
		if (i % 8 == 0 || xorshift64star(&r) % 8 == 0) {
			if (i / 8 < FORK_OBJS && i % 8 == 0) {
				fobj[i / 8] = p;
				fill_pattern(p, 64, (uint64_t)(i / 8));
				continue;
			}
		}
		kfree(p);
	}
	kmalloc_flush_cpu();
	pthread_t th;
	pthread_create(&th, NULL, mesher, NULL);
	for (int k = 0; k < 20; k++) {
		struct child_result res;
		run_in_child(child_checks_all, NULL, &res);
		ck_assert_msg(!res.signaled && res.status == 0, "child %d: signal %d status %d: %s",
		              k, res.sig, res.status, res.err);
	}
	__atomic_store_n(&fstop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	for (int i = 0; i < FORK_OBJS; i++)
		ck_assert(check_pattern(fobj[i], 64, (uint64_t)i) == SIZE_MAX);
	struct kmalloc_stats st;
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_gt(st.mesh_count, 0);
}
END_TEST

/* ---- threads writing into objects while their spans are meshed ---- */

#define WRITERS 2
#define ROUNDS  40
#define BATCH   4096
static unsigned char *volatile wobj[WRITERS][BATCH / 8];
static volatile int wstop, wready;
static volatile uint64_t wfail;

static void *writer(void *arg)
{
	int t = (int)(intptr_t)arg;
	uint64_t seq = 0;
	__atomic_add_fetch(&wready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&wstop, __ATOMIC_ACQUIRE)) {
		seq++;
		for (int k = 0; k < BATCH / 8; k++) {
			uint64_t *w = (uint64_t *)wobj[t][k];
			if (w == NULL)
				continue;
			/* each word holds what this thread wrote last */
			if (w[0] != w[7])
				__atomic_add_fetch(&wfail, 1, __ATOMIC_RELAXED);
			w[0] = seq;
			w[7] = seq;
		}
	}
	return NULL;
}

START_TEST(writers_during_mesh)
{
	pthread_t th[WRITERS];
	uint64_t meshes = 0;
	static unsigned char *objs[BATCH];
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t r = (uint64_t)round * 0x9e3779b97f4a7c15ull + 1;
		for (int i = 0; i < BATCH; i++)
			objs[i] = kzalloc(64, 0);
		/* one in eight survives, at random places, shared out to the
		 * writers (who start on the first round's) */
		for (int i = 0; i < BATCH; i++)
			if (xorshift64star(&r) % 8 != 0 || i / 8 >= BATCH / 8)
				kfree(objs[i]);
			else if (round == 0)
				wobj[i % WRITERS][i / 8] = objs[i];
		kmalloc_flush_cpu();
		if (round == 0)
			for (int t = 0; t < WRITERS; t++)
				pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t);
		while (__atomic_load_n(&wready, __ATOMIC_ACQUIRE) < WRITERS)
			;
		meshes += kmalloc_mesh();
	}
	__atomic_store_n(&wstop, 1, __ATOMIC_RELEASE);
	for (int t = 0; t < WRITERS; t++)
		pthread_join(th[t], NULL);
	ck_assert_uint_eq(wfail, 0);
	ck_assert_uint_gt(meshes, 0);
	struct kmalloc_stats st;
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_eq(st.mesh_failed, 0);
}
END_TEST

/* ---- the leak detector sees each object once, through its address ---- */

/* Under the sanitizers the leak scan is left out, as api_leak and
 * api_leak_threads are (not in tests/api.mk's sanitized lists): a
 * conservative scan of data and bss reads the redzones ASan puts between
 * globals, and the host's scan stops every thread with a signal, which
 * ThreadSanitizer's own thread never takes (the scan then refuses). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MESH_SAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MESH_SAN 1
#endif
#endif
#ifndef MESH_SAN
#define MESH_SAN 0
#endif

#if !MESH_SAN

static unsigned char *volatile roots[2][PER_SPAN / 2];
static uintptr_t dropped[2]; /* complemented: no pointer for the scan */

__attribute__((noinline)) static void keep_all_but_one_each(void)
{
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < PER_SPAN / 2; k++)
			roots[s][k] = half[s][k];
	dropped[0] = ~(uintptr_t)half[0][5];
	dropped[1] = ~(uintptr_t)half[1][6];
	roots[0][5] = NULL;
	roots[1][6] = NULL;
	memset(half, 0, sizeof half);
}

__attribute__((noinline)) static void clobber_stack(void)
{
	volatile char pad[16384];
	memset((char *)pad, 0, sizeof pad);
}

static uint64_t nleaks;
static int leak_ok = 1;

static void count_leak(const void *obj, size_t size, uintptr_t site, void *arg)
{
	(void)size;
	(void)site;
	(void)arg;
	nleaks++;
	if ((uintptr_t)obj != ~dropped[0] && (uintptr_t)obj != ~dropped[1])
		leak_ok = 0;
}

START_TEST(leak_scan_on_meshed_spans)
{
	make_pair();
	ck_assert_uint_eq(kmalloc_mesh(), 1);
	keep_all_but_one_each();
	clobber_stack();
	struct kmalloc_leaks l;
	uint64_t n = kmalloc_leak_scan(&l, count_leak, NULL);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(nleaks, 2);
	ck_assert(leak_ok);
	ck_assert_uint_eq(l.marked, PER_SPAN - 2);
}
END_TEST
#define LEAK_CASE , CHECK_TEST(leak_scan_on_meshed_spans)
#else
#define LEAK_CASE
#endif

CHECK_MAIN_SETUP("kmalloc mesh", 120, mesh_setup, CHECK_TEST(pair_meshes_and_keeps_contents),
                 CHECK_TEST(paced_mesh_commits_its_share),
                 CHECK_TEST(paced_reap_stops_at_its_budget), CHECK_TEST(group_moves_whole),
                 CHECK_TEST(three_spans_share_one_set_of_frames),
                 CHECK_TEST(refused_meshes_back_off), CHECK_TEST(misuse_on_both_halves),
                 CHECK_TEST(fork_copies_meshed_heap), CHECK_TEST(typed_cache_meshes),
                 CHECK_TEST(fork_while_meshing), CHECK_TEST(writers_during_mesh) LEAK_CASE)
