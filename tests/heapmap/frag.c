/*
 * frag.c: the fragmentation workload's heap (frag in
 * tests/benchpeers/workloads.c: the same steps, tests/lib/frag_pattern.h,
 * scaled down), dumped with kmalloc_heapmap at three moments for
 * `make heapmap` (tests/heapmap.mk) to draw with scripts/heapmap:
 *
 *   1-peak  the heap full of 8..512 B objects
 *   2-frag  after 90% of them were freed at random and 768..2048 B
 *           objects allocated until the live total was back at half the
 *           peak: where frag measures RSS against live bytes
 *   2-mesh  the same heap after kmalloc_mesh, where the port meshes
 *           (KMALLOC_MESH=1 on the host)
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
#include <unistd.h>

#include "kmalloc.h"
#include "../lib/frag_pattern.h"

#define MiB ((size_t)1 << 20)

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
	        "frag: %-6s live %5zu MiB  heap: in use %5llu MiB, free %5llu MiB, released %5llu MiB, "
	        "meshed %5llu MiB in %llu meshes (pause max %llu us, sum %llu us) (%s)\n",
	        name, live / MiB, (unsigned long long)(st.heap_inuse / MiB),
	        (unsigned long long)(st.heap_free / MiB),
	        (unsigned long long)(st.heap_released / MiB),
	        (unsigned long long)(st.mesh_bytes / MiB), (unsigned long long)st.mesh_count,
	        (unsigned long long)(st.mesh_pause_max_ns / 1000),
	        (unsigned long long)(st.mesh_pause_sum_ns / 1000), path);
}

static void *km_alloc(size_t n) { return kmalloc(n, 0); }
static void km_free(void *p) { kfree(p); }

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: frag OUTDIR [MiB]\n");
		return 2;
	}
	const char *dir = argv[1];
	/* a typed cache's spans too (hm spanclass lines): 40 B nodes */
	struct kmem_cache *kc = kmem_cache_create("frag_nodes", 40, 0, 0, NULL);
	void *nodes[512];
	for (int i = 0; i < 512; i++)
		nodes[i] = kc != NULL ? kmem_cache_alloc(kc, 0) : NULL;
	struct frag f;
	frag_init(&f, (argc > 2 ? strtoull(argv[2], NULL, 10) : 64) * MiB);
	frag_fill(&f, km_alloc);
	moment(dir, "1-peak", f.live);
	frag_fragment(&f, km_alloc, km_free);
	moment(dir, "2-frag", f.live);
	/* with KMALLOC_MESH=1 (or a port that meshes): the same heap meshed */
	if (kmalloc_mesh() != 0)
		moment(dir, "2-mesh", f.live);
	frag_free_all(&f, km_free);
	for (int i = 0; i < 512; i++)
		kmem_cache_free(kc, nodes[i]);
	if (kc != NULL && kmem_cache_destroy(kc) != 0)
		return 1;
	kmalloc_trim();
	moment(dir, "3-trim", f.live);
	return 0;
}
