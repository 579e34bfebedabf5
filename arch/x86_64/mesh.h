/*
 * mesh.h: the kernel's meshing hooks (mesh.c), which sys.c puts in
 * sys_config, and their counters for the self-tests.
 */
#ifndef ARCH_X86_64_MESH_H
#define ARCH_X86_64_MESH_H

#include <stddef.h>
#include <stdint.h>

int kmem_mesh_alias(void *dst, void *src, size_t len, int own);
int kmem_mesh_unalias(void *src, size_t len);
int kmem_mesh_context(void);

struct kmem_mesh_stats {
    uint64_t aliased_pages;   /* 4 KiB pages ever made aliases */
    uint64_t freed_frames;    /* their own frames given back */
    uint64_t unaliased_pages; /* alias pages ever cleared again */
};
void kmem_mesh_stats(struct kmem_mesh_stats *st);

/* sys.c: n data frames left the heap other than by sys_release (their
 * pages are aliases now), for kmem_port_stats.data_frames. */
void kmem_port_frames_gone(uint64_t n);

#endif
