/*
 * sitecost.c: what site tracking costs an allocation (the leak
 * detector's KMALLOC_LEAK_CHECK=1: the slow paths only, the caller's
 * backtrace walked and looked up in the stack depot, mm/mstack.c).
 * Tracking is decided when the heap starts, so `make bench-sites` runs
 * this twice, without and with the variable, and compares.
 *
 * Each round allocates and frees BATCH objects of 64 bytes from a call
 * chain DEPTH frames below main, from SITES call sites in turn (traces
 * the depot already holds after the first round: the common case). The
 * best of ROUNDS rounds, in ns per kmalloc + kfree pair:
 *   sitecost: tracking on  ns/pair 6984.7
 * then, tracking on, kmalloc_dump (its depot_ lines: 3 traces stored).
 * Nothing is asserted (a benchmark, not a test).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kmalloc.h"
#include "../lib/mono_time.h"

enum { BATCH = 20000, ROUNDS = 15, DEPTH = 6 };

static void *objs[BATCH];

/* Three call sites, so the depot holds a few distinct traces. */
__attribute__((noinline)) static void alloc_a(int i) { objs[i] = kmalloc(64, 0); }
__attribute__((noinline)) static void alloc_b(int i) { objs[i] = kmalloc(64, 0); }
__attribute__((noinline)) static void alloc_c(int i) { objs[i] = kmalloc(64, 0); }

__attribute__((noinline)) static double round_at(int depth)
{
	if (depth > 0) {
		double t = round_at(depth - 1);
		__asm__ volatile("" ::: "memory"); /* keep the frame */
		return t;
	}
	double t0 = mono_seconds();
	for (int i = 0; i < BATCH; i++) {
		if (i % 3 == 0)
			alloc_a(i);
		else if (i % 3 == 1)
			alloc_b(i);
		else
			alloc_c(i);
	}
	for (int i = 0; i < BATCH; i++)
		kfree(objs[i]);
	return mono_seconds() - t0;
}

int main(void)
{
	const char *v = getenv("KMALLOC_LEAK_CHECK");
	int on = v != NULL && v[0] == '1';
	double best = 1e9;
	for (int r = 0; r < ROUNDS; r++) {
		double t = round_at(DEPTH);
		if (t < best)
			best = t;
	}
	printf("sitecost: tracking %s ns/pair %.1f\n", on ? "on " : "off", best * 1e9 / BATCH);
	if (on)
		kmalloc_dump(); /* the depot's counts, among the rest */
	return 0;
}
