/*
 * pair.c: N malloc(SIZE)+free pairs, for instruction counts under
 * valgrind --tool=callgrind (tests/benchpeers/run-bench). It is linked
 * directly against each allocator (build/bench/pair-<allocator>), so the
 * calls go through the PLT as in any program using that allocator.
 *
 *   pair pair  SIZE N   N malloc/free pairs
 *   pair empty SIZE N   the same loop calling two empty functions
 *
 * The runner counts both modes at two values of N: the difference per
 * iteration is the cost of one pair net of the loop and of process start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		fprintf(stderr, "usage: pair pair|empty SIZE N\n");
		return 2;
	}
	int empty = strcmp(argv[1], "empty") == 0;
	size_t size = strtoull(argv[2], NULL, 0);
	long n = strtol(argv[3], NULL, 0);
	/* volatile pointers: the compiler can neither elide nor inline the
	 * calls, in either mode */
	void *(*volatile alloc_fn)(size_t) = empty ? noop_alloc : malloc;
	void (*volatile free_fn)(void *) = empty ? noop_free : free;
	/* warm up: the first allocation of a size sets up caches */
	free_fn(alloc_fn(size));
	for (long i = 0; i < n; i++)
		free_fn(alloc_fn(size));
	return 0;
}
