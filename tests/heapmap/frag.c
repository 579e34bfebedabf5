/*
 * frag.c: the fragmentation workload's heap (frag in
 * tests/benchpeers/workloads.c: the same draws from the same seed, scaled
 * down), dumped with kmalloc_heapmap at three moments for `make heapmap`
 * (tests/heapmap.mk) to draw with scripts/heapmap:
 *
 *   1-peak  the heap full of 8..512 B objects
 *   2-frag  after 90% of them were freed at random and 768..2048 B
 *           objects allocated until the live total was back at half the
 *           peak: where frag measures RSS against live bytes
 *   3-trim  after everything was freed and kmalloc_trim
 *
 * Usage: frag OUTDIR [MiB]: MiB of small objects at the peak (default 64;
 * frag itself uses 1024). Each dump goes to OUTDIR/<moment>.txt (the host
 * port's sys_log writes to stdout, pointed at the file meanwhile); one
 * line of kmalloc_stats per moment goes to stderr. Links
 * build/host/libkmalloc.a directly and calls kmalloc, like the core
 * benchmarks: no shim, no other allocator in the picture.
 */
#define _GNU_SOURCE /* dup under -std=c11 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmalloc.h"
#include "xorshift.h"

#define MiB ((size_t)1 << 20)

static void touch(void *p, size_t n)
{
	((volatile char *)p)[0] = 1;
	((volatile char *)p)[n - 1] = 2;
}

/* Dump the heap to dir/name.txt and say what kmalloc_stats saw. */
static void moment(const char *dir, const char *name, size_t live)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s.txt", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	fflush(stdout);
	int saved = dup(1);
	dup2(fd, 1);
	kmalloc_heapmap();
	dup2(saved, 1);
	close(saved);
	close(fd);
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	fprintf(stderr,
	        "frag: %-6s live %5zu MiB  heap: in use %5llu MiB, free %5llu MiB, released %5llu MiB "
	        "(%s)\n",
	        name, live / MiB, (unsigned long long)(st.heap_inuse / MiB),
	        (unsigned long long)(st.heap_free / MiB),
	        (unsigned long long)(st.heap_released / MiB), path);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: frag OUTDIR [MiB]\n");
		return 2;
	}
	const char *dir = argv[1];
	const size_t target = (argc > 2 ? strtoull(argv[2], NULL, 10) : 64) * MiB;
	size_t cap = target / 8 + 1024, n = 0, live = 0;
	void **objs = calloc(cap, sizeof(void *));
	size_t *sizes = calloc(cap, sizeof(size_t));
	uint64_t s = 5;
	while (live < target) {
		size_t sz = 8 + xorshift64(&s) % 505;
		objs[n] = kmalloc(sz, 0);
		touch(objs[n], sz);
		sizes[n++] = sz;
		live += sz;
	}
	size_t peak_live = live;
	moment(dir, "1-peak", live);
	/* free 90% at random: a random permutation's prefix */
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = xorshift64(&s) % (i + 1);
		void *tp = objs[i];
		size_t ts = sizes[i];
		objs[i] = objs[j];
		sizes[i] = sizes[j];
		objs[j] = tp;
		sizes[j] = ts;
	}
	size_t nfree = n / 10 * 9;
	for (size_t i = 0; i < nfree; i++) {
		kfree(objs[i]);
		live -= sizes[i];
	}
	/* a different size mix, until the live total is half the peak */
	size_t m = 0;
	void **more = calloc(target / 2 / 768 + 1024, sizeof(void *));
	while (live < peak_live / 2) {
		size_t sz = 768 + xorshift64(&s) % 1281;
		more[m] = kmalloc(sz, 0);
		touch(more[m], sz);
		m++;
		live += sz;
	}
	moment(dir, "2-frag", live);
	for (size_t i = nfree; i < n; i++)
		kfree(objs[i]);
	for (size_t i = 0; i < m; i++)
		kfree(more[i]);
	kmalloc_trim();
	moment(dir, "3-trim", 0);
	free(objs);
	free(sizes);
	free(more);
	return 0;
}
