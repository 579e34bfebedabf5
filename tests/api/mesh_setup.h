/*
 * mesh_setup.h: what the meshing tests (api_mesh.c, api_mesh_runs.c)
 * share: their objects, 256 B, 32 to an 8 KiB span (a fresh heap hands
 * out the lowest free slot, so a test lays spans out as it likes), and
 * the setup each test's forked process runs before it: meshing on the
 * host's memfd arena (KMALLOC_MESH=1) and no clock (KMALLOC_RELEASE_MS=
 * off), so only the test's own kmalloc_mesh calls mesh.
 */
#ifndef TESTS_API_MESH_SETUP_H
#define TESTS_API_MESH_SETUP_H

#include <stdlib.h>

#define OBJ      256
#define PER_SPAN 32

static inline void mesh_setup(void)
{
	setenv("KMALLOC_MESH", "1", 1);
	setenv("KMALLOC_RELEASE_MS", "off", 1);
}

#endif /* TESTS_API_MESH_SETUP_H */
