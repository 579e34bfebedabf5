/*
 * api_mesh_runs.c: runs of adjacent spans mesh onto runs (mm/mmeshpick.c)
 * and cost the host few mappings (arch/host/mesh.c: a run of aliases of
 * adjacent spans onto adjacent spans, in order, is one Linux mapping,
 * where a lone alias is one or two), counted in /proc/self/maps. Each
 * test runs in its own forked process (Check) with a fresh heap, meshing
 * on (KMALLOC_MESH=1) and no clock, so only its own kmalloc_mesh calls
 * mesh. Objects are 256 B, 32 to an 8 KiB span, handed out lowest slot
 * first on a fresh heap, so spans are laid out as the test asks.
 */
#define _GNU_SOURCE
#include <check.h>
#include "../lib/check_runner.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "api_util.h"
#include "../lib/proc_lines.h"
#include "kmalloc.h"
#include "mesh_setup.h"


/* ---- a run meshes into few mappings ----
 * n adjacent spans, each keeping the slots keep() says, coming back to
 * their mcentral span by span in a shuffled order (the order says
 * nothing of where they are). The host maps a run of aliases of adjacent
 * spans onto adjacent spans, in order, as one mapping (Linux merges
 * them), where one alias each would add one or two. */

#define RUN 48
static unsigned char *runobj[2 * RUN][PER_SPAN]; /* NULL: freed */

/* The mappings of the heap's memfd (arch/host/mesh.c names it
 * "kmalloc"): the ones meshing spends. Not all of the process's: under
 * ASan the sanitizer's own allocator maps memory as the test runs. */
static long maps_lines(void)
{
	long n = proc_lines_with("/proc/self/maps", "/memfd:kmalloc");
	ck_assert_int_gt(n, 0); /* the heap is there, and named so */
	return n;
}

static void make_runs(int n, bool (*keep)(int sp, int k))
{
	for (int sp = 0; sp < n; sp++)
		for (int k = 0; k < PER_SPAN; k++) {
			runobj[sp][k] = kmalloc(OBJ, 0);
			ck_assert_ptr_eq(runobj[sp][k], runobj[0][0] + (sp * PER_SPAN + k) * OBJ);
		}
	int order[2 * RUN];
	uint64_t r = 7;
	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(xorshift64star(&r) % (uint64_t)(i + 1)), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (int i = 0; i < n; i++) {
		int sp = order[i];
		for (int k = 0; k < PER_SPAN; k++)
			if (keep(sp, k)) {
				fill_pattern(runobj[sp][k], OBJ, (uint64_t)(sp * PER_SPAN + k));
			} else {
				kfree(runobj[sp][k]);
				runobj[sp][k] = NULL;
			}
		kmalloc_flush_cpu(); /* span by span, in the shuffled order */
	}
}

/* The kept objects of n spans are intact; those of spans sp % free_every
 * == 0 are freed (free_every 0: none, 1: all). */
static void check_runs(int n, int free_every)
{
	for (int sp = 0; sp < n; sp++)
		for (int k = 0; k < PER_SPAN; k++)
			if (runobj[sp][k] != NULL) {
				ck_assert(check_pattern(runobj[sp][k], OBJ,
				                        (uint64_t)(sp * PER_SPAN + k)) == SIZE_MAX);
				if (free_every != 0 && sp % free_every == 0) {
					kfree(runobj[sp][k]);
					runobj[sp][k] = NULL;
				}
			}
	kmalloc_flush_cpu();
}

/* Everything freed, every alias reaped, every page back. */
static void free_runs(int n, long maps_before)
{
	check_runs(n, 1);
	kmalloc_trim();
	struct kmalloc_stats st;
	ASSERT_STATS_CONSISTENT(&st);
	ck_assert_uint_eq(st.mesh_spans, 0);
	ck_assert_uint_eq(st.heap_inuse, 0);
	ck_assert_int_le(maps_lines(), maps_before);
}

/* The lower RUN keep their even slots, the upper RUN their odd ones:
 * each lower span meshes with the span RUN above it, in order. */
static bool keep_halves(int sp, int k) { return k % 2 == (sp >= RUN); }

START_TEST(runs_mesh_into_few_mappings)
{
	make_runs(2 * RUN, keep_halves);
	long before = maps_lines();
	ck_assert_uint_eq(kmalloc_mesh(), RUN);
	long added = maps_lines() - before;
	ck_assert_msg(added <= RUN / 8, "%d aliases added %ld mappings", RUN, added);
	check_runs(2 * RUN, 0);
	/* every third span emptied: its alias (or its dst's) goes, cutting
	 * the run; then everything, and every page comes back */
	check_runs(2 * RUN, 3);
	kmalloc_trim();
	free_runs(2 * RUN, before);
}
END_TEST

/* ---- a run meshes past the spans facing it that conflict ----
 * 2 * CONF spans: the lower keep the slots k % 4 == 0, the upper
 * k % 4 == 2, and every third pair facing each other (lower span i,
 * upper span i, i % 3 == 2) both keep slot 1 too. Cut at each conflict,
 * the lower run would mesh in runs of two with a span left between
 * them, each run and each span a mapping (11 aliases, 11 mappings more);
 * onto the upper spans one further on, all but the last lower span
 * mesh as one run (whose one spare span may still mesh). */

#define CONF 16
static bool keep_conflicts(int sp, int k)
{
	return k % 4 == (sp >= CONF ? 2 : 0) || (k == 1 && sp % CONF % 3 == 2);
}

START_TEST(runs_mesh_past_conflicts)
{
	make_runs(2 * CONF, keep_conflicts);
	long before = maps_lines();
	unsigned meshed = kmalloc_mesh();
	ck_assert_uint_ge(meshed, CONF - 1);
	long added = maps_lines() - before;
	ck_assert_msg(added <= 2, "%u aliases added %ld mappings", meshed, added);
	check_runs(2 * CONF, 0);
	free_runs(2 * CONF, before);
}
END_TEST

CHECK_MAIN_SETUP("kmalloc mesh runs", 120, mesh_setup, CHECK_TEST(runs_mesh_into_few_mappings),
                 CHECK_TEST(runs_mesh_past_conflicts))
