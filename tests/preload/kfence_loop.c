/*
 * kfence_loop.c: issue 22's programs, for guarded sampling under the shim
 * (KMALLOC_KFENCE=<ms>). Each loops until the allocator stops it:
 *   overflow   allocate 64 B, write one byte past the end, free
 *   underflow  allocate 64 B, read one byte before the start, free
 *   uaf        allocate 64 B, free, write into it
 * Without sampling they run forever (make test bounds them); with it the
 * report on stderr ends them by SIGABRT. It prints nothing itself, so the
 * report is the whole of its stderr, and it says after how many loops on
 * the way out only if it ever returns (it should not).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile char sink;

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "overflow";
	unsigned long max = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
	/* kept: the loop's object is never the first of the heap, whose byte
	 * before lies outside the heap (a plain segmentation fault) */
	volatile char *pad = malloc(64);
	(void)pad;
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
