/*
 * host.h: knobs of the host port (arch/host/sys.c) that only tests and
 * benchmarks use; the kernel has no equivalent.
 */
#ifndef ARCH_HOST_HOST_H
#define ARCH_HOST_HOST_H

#include <stddef.h>
#include <stdint.h>

/* Make sys_commit fail (return -1, commit nothing) once the bytes the port
 * has committed would exceed `bytes`; 0 removes the limit. Lets tests drive
 * kmalloc into out-of-memory (NULL) and back. */
void host_set_commit_limit(size_t bytes);

/* Bytes currently committed through sys_commit and not released: what the
 * port sees; kmalloc_stats().committed must equal it. */
size_t host_committed_bytes(void);

/* Whether the leak detector's roots include the calling thread's stack
 * (default 1). The shim's check at exit turns it off: main has returned,
 * and the exit path's frames only hold stale copies of its locals. */
void host_set_leak_scan_stack(int on);

/* The last leak scan's stop (arch/host/stopworld.c): how long the other
 * threads were stopped, from the first stop signal to their release, in
 * nanoseconds, and how many were. */
void host_leak_stop_stats(uint64_t *ns, unsigned *threads);

#endif /* ARCH_HOST_HOST_H */
