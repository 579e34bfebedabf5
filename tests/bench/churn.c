/*
 * churn.c: single-thread small-object churn, and the memory it leaves.
 *
 *   churn-kmalloc [WS [OPS [SEED]]]    defaults 50000 objects, 4000000 ops
 *
 * A working set of WS objects of 8..512 bytes (uniform) is filled, then
 * OPS times a random one is freed and replaced by a new object of a random
 * size; each new object gets its first and last byte written, as a user
 * would. The replacement loop is timed (CLOCK_MONOTONIC) and reported as
 * operations (one free + one malloc) per second. The PRNG and its draws
 * are the same for every allocator, so runs compare like with like.
 * Under callgrind the replacement loop is also dumped on its own
 * ("churn"), which gives instructions per operation: unlike ops/s, that
 * does not move when other work shares the machine.
 *
 * After the churn the program reports memory: live bytes (what the user
 * asked for and still holds), what the allocator holds from the OS
 * (ba_footprint) and, as the yardstick, Go's waste bound for this very
 * live set: each live object charged span_bytes / objects_per_span of
 * its size class (class round-up plus span tail, the 12.5% + 12.5% design
 * bound of Go's size-class generator, from mm/sizeclasses.h). An
 * allocator at the bound has every span full; above it are partly empty
 * spans, free pages kept, and metadata.
 *
 * Output, one line, for run-core.sh:
 *   churn NAME ops_per_s=X live=B held=B in_use=B go_bound=B
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <valgrind/callgrind.h>

#include "bench_alloc.h"
#include "sizeclasses.h"
#include "../lib/mono_time.h"
#include "../lib/xorshift.h"

/* Go's per-object bound for a request of n <= 32768 bytes. */
static double go_bound(size_t n)
{
	int c = 1;
	while (class_to_size[c] < n)
		c++;
	uint64_t span = (uint64_t)class_to_allocnpages[c] << _PageShift;
	uint64_t objs = span / class_to_size[c];
	return (double)span / (double)objs;
}

static size_t draw_size(uint64_t *r)
{
	return 8 + xorshift64star(r) % 505; /* 8..512 */
}

int main(int argc, char **argv)
{
	size_t ws = argc > 1 ? strtoull(argv[1], NULL, 0) : 50000;
	uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 4000000;
	uint64_t r = argc > 3 ? strtoull(argv[3], NULL, 0) : 0x5eed;
	unsigned char **obj = calloc(ws, sizeof *obj);
	size_t *sz = calloc(ws, sizeof *sz);
	struct ba_footprint f;
	uint64_t live = 0;
	double bound = 0, t0, secs;

	if (!obj || !sz || ws == 0) {
		fprintf(stderr, "churn: bad working set\n");
		return 2;
	}
	r |= 1;
	for (size_t i = 0; i < ws; i++) {
		sz[i] = draw_size(&r);
		obj[i] = ba_malloc(sz[i]);
		if (!obj[i])
			return 1;
		obj[i][0] = obj[i][sz[i] - 1] = (unsigned char)i;
	}
	CALLGRIND_ZERO_STATS;
	t0 = mono_seconds();
	for (uint64_t k = 0; k < ops; k++) {
		size_t i = xorshift64star(&r) % ws;
		ba_free(obj[i]);
		sz[i] = draw_size(&r);
		obj[i] = ba_malloc(sz[i]);
		if (!obj[i])
			return 1;
		obj[i][0] = obj[i][sz[i] - 1] = (unsigned char)k;
	}
	secs = mono_seconds() - t0;
	CALLGRIND_DUMP_STATS_AT("churn");

	for (size_t i = 0; i < ws; i++) {
		live += sz[i];
		bound += go_bound(sz[i]);
	}
	ba_footprint(&f);
	printf("churn %s ops_per_s=%.0f live=%" PRIu64 " held=%" PRIu64
	       " in_use=%" PRIu64 " go_bound=%.0f\n",
	       BENCH_ALLOC_NAME, (double)ops / secs, live, f.held, f.in_use, bound);
	for (size_t i = 0; i < ws; i++)
		ba_free(obj[i]);
	free(obj);
	free(sz);
	return 0;
}
