/*
 * kfence_loop.c: issue 22's programs, for guarded sampling under the shim
 * (KMALLOC_KFENCE=<ms>). Each loops until the allocator stops it:
 *   overflow   allocate 64 B, write one byte past the end, free
 *   underflow  allocate 64 B, read one byte before the start, free
 *   uaf        allocate 64 B, free, write into it
 * kfence_loop MODE [MAX [WARMUP_MS]]: at most MAX rounds (0: no limit),
 * after WARMUP_MS of correct 32 B allocations and frees (so the loop
 * starts with sampling under way, not at its first sample). Without
 * sampling they run until MAX; with it the report on stderr ends them by
 * SIGABRT. It prints nothing on stderr itself, so the report is the
 * whole of it, and it says after how many loops on stdout only if it
 * ever returns.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static volatile char sink;

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "overflow";
	unsigned long max = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
	/* kept: the loop's object is never the first of the heap, whose byte
	 * before lies outside the heap (a plain segmentation fault) */
	volatile char *pad = malloc(64);
	(void)pad;
	double warm = argc > 3 ? strtod(argv[3], NULL) : 0, t0 = now_ms();
	while (now_ms() - t0 < warm)
		for (int i = 0; i < 1000; i++) {
			volatile char *q = malloc(32);
			q[31] = 1;
			free((void *)q);
		}
	for (unsigned long i = 0; max == 0 || i < max; i++) {
		volatile char *p = malloc(64);
		if (p == NULL)
			return 2;
		if (strcmp(mode, "overflow") == 0) {
			p[64] = 1;
			free((void *)p);
		} else if (strcmp(mode, "underflow") == 0) {
			sink = p[-1];
			free((void *)p);
		} else {
			free((void *)p);
			p[1] = 1;
		}
	}
	printf("no report after %lu loops\n", max);
	return 1;
}
