/*
 * pair.c: malloc/free loops for instruction counts under valgrind
 * --tool=callgrind (tests/benchpeers/run-bench). It is linked directly
 * against each allocator (build/bench/peers/pair-<allocator>); the calls
 * go through function pointers read from the GOT, so each lands in the
 * allocator's own malloc and free as a call from any program would.
 *
 *   pair pair       SIZE N   N malloc(SIZE)+free pairs, nothing live
 *   pair fifo       SIZE N   64 objects of SIZE live in a ring; each of the
 *                            N iterations frees the oldest and mallocs its
 *                            replacement (frees in allocation order, so a
 *                            free rarely hits the object just allocated)
 *   pair pair-empty SIZE N   the pair loop calling two empty functions
 *   pair fifo-empty SIZE N   the fifo loop calling two empty functions
 *
 * The runner counts a mode at two values of N: the difference per
 * iteration is one iteration's cost without process start-up and set-up.
 * That figure is the cost "including the benchmark loop" (the issue's
 * targets are stated so); minus the same figure of the matching empty
 * mode it is the cost "net of the loop" (what the allocator's bodies
 * execute, less the three instructions of the empty functions' bodies).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LIVE = 64 }; /* objects live in fifo mode; a power of two (mask) */

static void *noop_alloc(size_t n)
{
	return (void *)n;
}

static void noop_free(void *p)
{
	(void)p;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: pair pair|fifo|pair-empty|fifo-empty SIZE N\n");
		return 2;
	}
	static const struct {
		const char *name;
		int fifo, empty;
	} modes[] = {
		{ "pair", 0, 0 }, { "fifo", 1, 0 }, { "pair-empty", 0, 1 }, { "fifo-empty", 1, 1 },
	};
	int m = -1;
	for (int i = 0; i < (int)(sizeof(modes) / sizeof(modes[0])); i++)
		if (strcmp(argv[1], modes[i].name) == 0)
			m = i;
	if (m < 0) {
		fprintf(stderr, "pair: unknown mode %s\n", argv[1]);
		return 2;
	}
	int fifo = modes[m].fifo, empty = modes[m].empty;
	size_t size = strtoull(argv[2], NULL, 0);
	long n = strtol(argv[3], NULL, 0);
	/* volatile pointers: the compiler can neither elide nor inline the
	 * calls, in either mode, and both modes run the same loop code */
	void *(*volatile alloc_fn)(size_t) = empty ? noop_alloc : malloc;
	void (*volatile free_fn)(void *) = empty ? noop_free : free;
	if (!fifo) {
		/* warm up: the first allocation of a size sets up caches */
		free_fn(alloc_fn(size));
		for (long i = 0; i < n; i++)
			free_fn(alloc_fn(size));
		return 0;
	}
	void *ring[LIVE];
	for (int k = 0; k < LIVE; k++)
		ring[k] = alloc_fn(size);
	for (long i = 0; i < n; i++) {
		void **slot = &ring[i & (LIVE - 1)]; /* the oldest object */
		free_fn(*slot);
		*slot = alloc_fn(size);
	}
	for (int k = 0; k < LIVE; k++)
		free_fn(ring[k]);
	return 0;
}
