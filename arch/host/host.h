/*
 * host.h: knobs of the host port (arch/host/sys.c) that only tests and
 * benchmarks use; the kernel has no equivalent.
 */
#ifndef ARCH_HOST_HOST_H
#define ARCH_HOST_HOST_H

#include <stddef.h>

/* Make sys_commit fail (return -1, commit nothing) once the bytes the port
 * has committed would exceed `bytes`; 0 removes the limit. Lets tests drive
 * kmalloc into out-of-memory (NULL) and back. */
void host_set_commit_limit(size_t bytes);

/* Bytes currently committed through sys_commit and not released: what the
 * port sees; kmalloc_stats().committed must equal it. */
size_t host_committed_bytes(void);

#endif /* ARCH_HOST_HOST_H */
