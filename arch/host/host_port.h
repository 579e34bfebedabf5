/*
 * host_port.h: what the host port's own files share and nothing else
 * sees: arch/host/sys.c (memory, CPU ids, locks) and arch/host/fork.c
 * (fork() handling: locks across fork, CPU ids and caches of the threads
 * the child does not have), background.c (the clock and the scavenger
 * thread) and stopworld.c (stopping the threads for a leak scan). mm/
 * never includes it.
 *
 * Data flow: sys.c owns the CPU-id pool and the port's two mutexes;
 * fork.c takes them (after mm's locks, see the order there) before fork
 * and, in the child, hands the ids of the parent's other threads back to
 * the pool through host_cpu_reclaim.
 */
#ifndef ARCH_HOST_HOST_PORT_H
#define ARCH_HOST_HOST_PORT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sys.h"

/* The pool: one bit per id, 1 = taken by a live thread. HOST_MAX_CPUS
 * equals mm's MM_MAX_CPUS, so sys_config.max_cpus may use all of it. */
#define HOST_MAX_CPUS 32768u

/* A port mutex that a thread may take inside an allocator section (at a
 * nonzero depth, sys_arch.h) is held only inside one, as a kernel takes
 * a lock its interrupt handlers take with interrupts off: a thread the
 * leak scan's stop signal found holding it outside a section would park
 * with it held (stopworld.c), and a thread waiting for it inside a
 * section would never reach its safe point, so the stop gave up after
 * 20 s (api_leak_threads' storm, one run in 40: a commit's mprotect
 * under host_commit_lock at depth 0 while another thread's metadata
 * commit under mheap.lock waited for it). */
static inline void host_section_lock(pthread_mutex_t *m)
{
	sys_irq_save();
	pthread_mutex_lock(m);
}

static inline void host_section_unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
	sys_irq_restore(0); /* a stop that came meanwhile parks here */
}

/* Guards the pool. Leaf: nothing else is taken while it is held. */
extern pthread_mutex_t host_pool_lock;
/* Guards the commit bookkeeping (which granules are mapped writable);
 * taken inside sys_commit, which may run under mheap.lock. */
extern pthread_mutex_t host_commit_lock;
/* Guards the mremap budget (host_move); taken with no mm lock held. */
extern pthread_mutex_t host_move_lock;

/* Called by fork.c in the child (the only thread): is id taken? Give it
 * back (its thread does not exist here), marked so that the next thread
 * to take it calls host_fork_adopt(id) first. */
int host_cpu_taken(unsigned id);
void host_cpu_reclaim(unsigned id);
/* Highest id ever taken + 1 (ids below it may have an mcache). */
unsigned host_cpu_high(void);

/* fork.c: register the fork handlers once (pthread_once); sys.c calls it
 * when the first thread takes a CPU id, the shim from its constructor. */
void host_fork_init(void);
/* fork.c: check the cached spans and large bins of an mcache a fork
 * child's thread is about to adopt with id. No lock held. */
void host_fork_adopt(unsigned id);

/* cpuidle.c: the idle-CPU hooks; register/unregister (under
 * host_pool_lock: by the thread that takes the id / when it gives it up,
 * or a fork child for ids of threads it does not have) */
void host_cpu_register(unsigned id);
void host_cpu_unregister(unsigned id);
int host_cpu_unpublish(unsigned cpu);
int host_cpu_fence(void);
int host_cpu_busy(unsigned cpu);

/* backtrace.c: the backtrace hook */
unsigned host_backtrace(uintptr_t *pcs, unsigned max);

/* background.c: sys_config.now_ns and .start_background; the
 * environment's KMALLOC_RELEASE_MS and KMALLOC_BACKGROUND, read by
 * sys_reserve (kmalloc_init's first call into the port). */
uint64_t host_now_ns(void);
uint64_t host_now_coarse_ns(void);
int host_start_background(void);
void host_read_env(void);

/* sys.c, for mesh.c: add to the committed-bytes count (meshing gives
 * frames back without sys_release); call fn for every run of writable
 * granules (the only thread: a fork child); 0, or -1 if fn failed. */
void host_committed_add(long delta);
int host_rw_runs(int (*fn)(uintptr_t a, uintptr_t z));

/* mesh.c: meshing's hooks (KMALLOC_MESH=1): the arena as a memfd's pages;
 * sys_reserve calls host_mesh_setup, make_writable host_mesh_map once
 * host_mesh_on, sys_release host_mesh_release (1: done, the arena's);
 * fork.c the three fork steps (prepare before its locks' release,
 * parent and child with them held). */
int host_mesh_wanted(void);
int host_mesh_on(void);
void host_mesh_setup(uintptr_t lo, size_t size);
int host_mesh_map(uintptr_t a, uintptr_t z);
int host_mesh_release(void *p, size_t n);
void host_mesh_fork_prepare(void);
void host_mesh_fork_parent(void);
void host_mesh_fork_child(void);
/* guard.c: KMALLOC_KFENCE (sys_reserve reads it), the guard hook, and
 * the one SIGSEGV handler (installed again by each mesh and sample);
 * mesh.c's part of it: 1 if a fault was meshing's (retry). */
void host_kfence_env(void);
int host_guard(void *p, size_t n, int open);
void host_segv_install(void);
int host_mesh_segv(uintptr_t a);
/* sys.c: the region sys_reserve took, [lo, hi) (0, 0 before it). */
void host_region(uintptr_t *lo, uintptr_t *hi);
/* sys.c: call fn for every line of /proc/self/maps, in address order,
 * without stdio or malloc; -1 if the file cannot be read. */
int host_maps_walk(void (*fn)(uintptr_t lo, uintptr_t hi, int readable, void *arg), void *arg);
/* sys.c: the process's mappings now (lines of /proc/self/maps, read
 * without stdio or malloc), -1 if the file cannot be read; O(mappings). */
long host_count_maps(void);
/* sys.c: vm.max_map_count, the mappings Linux allows the process (65530
 * if it cannot be read). */
long host_max_map_count(void);

/* stopworld.c: sys_config.stop_world / start_world (the signal handshake
 * with every other thread), and the roots of the stopped threads plus
 * the caller's own stack from my_sp up (0: none) and TLS. pre for the
 * roots: between the two. host_stw_lock is held from stop to start and
 * by fork's prepare handler (taken first of all, fork.c);
 * host_background_tid is the background thread's id (it blocks every
 * signal and is never stopped), written by background.c. */
int host_stop_world(void);
void host_start_world(void);
void host_stopworld_fork_child(void);
/* stopworld.c, for threadroots.c between stop and start: what a parked
 * thread's handler saved (slots below host_parked_slots(); -1 for a
 * slot whose thread is not parked: gone, or never stopped). */
struct host_parked {
	uintptr_t sp, tp; /* stack pointer at the stop, thread pointer (%fs) */
	const void *regs, *xmm;
	size_t regs_len, xmm_len;
};
unsigned host_parked_slots(void);
int host_parked_thread(unsigned i, struct host_parked *out);
/* threadroots.c: set up at the first stop (may allocate), the globals
 * listed before each stop, prepare once every thread is parked (reads
 * /proc/self/maps), and the roots: the globals, every parked thread's
 * registers, stack and TLS, plus the caller's own stack from my_sp up
 * (0: none) and TLS. */
int host_thread_roots_setup(void);
void host_thread_roots_globals(void); /* before signalling: loader lock */
void host_thread_roots_prepare(void);
void host_stopworld_roots(void (*scan)(const void *, size_t, void *), void *arg, uintptr_t my_sp);
/* stopworld.c: 1 while a stop holds other threads parked (then nothing
 * may take a lock they might hold: the loader's, stdio's, malloc's). */
int host_threads_parked(void);
extern pthread_mutex_t host_stw_lock;
extern pid_t host_background_tid;

#endif /* ARCH_HOST_HOST_PORT_H */
