/*
 * mesh.c (host): meshing's hooks on Linux (mm/sys.h: mesh_protect,
 * mesh_alias, mesh_unalias; the core is mm/mmesh.c), with KMALLOC_MESH=1.
 *
 * Two virtual ranges can share memory only if it is a file's: with
 * KMALLOC_MESH=1 (and memfd_create, and no address-space limit) the
 * arena's granules are mapped MAP_SHARED from a memfd as they are
 * committed, file offset = address - region start, instead of made
 * writable in the private anonymous reservation; the metadata below the
 * arena stays private, so a fork child's copy of it is exact. Then:
 *   release       madvise(MADV_REMOVE): the file's pages go (a private
 *                 mapping's MADV_DONTNEED would leave them in the file)
 *   mesh_protect  the window [src, src+len) is published, then mprotect
 *                 read-only; a thread that writes there faults into our
 *                 SIGSEGV handler, which waits until the window is gone
 *                 and returns, so the write is retried on the new mapping
 *   mesh_alias    mmap(src, MAP_SHARED|MAP_FIXED, fd, offset of dst):
 *                 src now shows dst's pages, writable; then src's own
 *                 pages are punched out of the file; the window closes
 *   mesh_unalias  mmap(src, ..., offset of src): its own (empty) pages
 * The SIGSEGV handler is the port's one (guard.c, shared with guarded
 * sampling): a fault that is not in the window goes to the handler that
 * was there before ours (the program's). It is installed again before
 * every mesh, so a program that set its own later still gets its faults,
 * and ours is first while it counts.
 *
 * What it costs, and what a program may notice:
 *   - the file's pages are not charged to overcommit when the arena is
 *     committed: memory exhaustion is a SIGBUS on first touch, not a NULL
 *     from malloc. That is why it is not the default.
 *   - krealloc copies big objects instead of moving their pages (mremap
 *     would give dst src's file offsets, and meshing needs offsets to
 *     follow addresses).
 *   - a range mapped onto another's offsets is a mapping of its own,
 *     unless its neighbour maps the offsets right after (or before) its
 *     own: Linux merges adjacent mappings of one file whose offsets
 *     follow their addresses, so a run of adjacent aliases onto a run of
 *     adjacent spans, in order, is one mapping (the core pairs spans in
 *     address order for that, mm/mmesh.c). Meshing stops while the
 *     process has half of vm.max_map_count mappings (the mapping budget
 *     below), leaving the rest to thread stacks and files; an alias that
 *     cannot be unmapped then waits (the core reaps it later).
 *   - a system call that writes into a span while it is being meshed
 *     (read(2) into a heap buffer, some microseconds) fails with EFAULT
 *     instead of waiting: the kernel does not deliver SIGSEGV for it.
 *   - fork: MAP_SHARED would share the heap with the child, so the child
 *     copies the file into a new memfd and maps it over the arena (its
 *     aliases again), while the parent's forking thread waits on a pipe
 *     with mm's locks held. The parent's other threads run meanwhile:
 *     what they write into their objects during the copy may show in the
 *     child (the allocator's metadata is private and exact).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "host_port.h"
#include "internal.h"

#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif

static int mesh_fd = -1;           /* written once by sys_reserve (then a
                                    fork child's new file) */
static uintptr_t mesh_lo, mesh_hi; /* the region, immutable */
/* The spans being meshed: a span and its aliases (a group moves whole,
 * mm/mmesh.c), each [lo, hi) or hi 0 when free. Written by the mesher
 * (one at a time: the core's background gate), read by the handler. */
#define WINDOWS 8
static struct {
	uintptr_t lo, hi; /* atomic */
} win[WINDOWS];
static int fork_pipe[2] = { -1, -1 };

/* The mapping budget. A change of one range (a protect, an alias, an
 * unalias) adds at most two mappings, the pieces of the one it cuts,
 * and may merge some away, so the count of /proc/self/maps at the last
 * reading plus two per change since bounds the mappings meshing made:
 * when that would pass the limit, the mappings are counted again (each
 * count costs O(mappings)), and the change is refused if the count says
 * so too; then counting waits MAPS_RECOUNT_NS, so the mesher's retries
 * cost nothing. Meshes stop at maps_limit (each takes two per range at
 * its first protect, see mesh_ranges); unaliases, which mostly merge
 * mappings (an alias between spans mapped as their own) and give memory
 * back, may go an eighth further (MAPS_UNALIAS), so a heap meshed up to
 * the limit can still be freed. All of it the mesher's: one at a time
 * (the core's background gate); a fork child starts from its parent's
 * mappings. */
#define MAPS_RECOUNT_NS (100u * 1000 * 1000)
#define MAPS_UNALIAS    (maps_limit + maps_limit / 8)
static long maps_limit = 32765; /* written once by host_mesh_setup: half
                                   of vm.max_map_count */
static long maps_est = -1;      /* the bound; -1: not counted yet */
static uint64_t maps_refused;   /* when a count last refused, 0: never */

/* May n more mappings come, up to limit? Takes them if so. */
static int maps_room(long n, long limit)
{
	if (maps_est < 0 || maps_est + n > limit) {
		uint64_t now = host_now_ns();
		if (maps_refused != 0 && now - maps_refused < MAPS_RECOUNT_NS)
			return 0;
		long c = host_count_maps();
		if (c < 0 || c + n > limit) {
			maps_refused = now | 1;
			return 0;
		}
		maps_est = c;
		maps_refused = 0;
	}
	maps_est += n;
	return 1;
}

int host_mesh_wanted(void)
{
	const char *v = getenv("KMALLOC_MESH");
	return v != NULL && v[0] == '1';
}

int host_mesh_on(void) { return mesh_fd >= 0; }

/* Is a in a window now? */
static int in_window(uintptr_t a)
{
	for (int i = 0; i < WINDOWS; i++)
		if (a < __atomic_load_n(&win[i].hi, __ATOMIC_ACQUIRE) &&
		    a >= __atomic_load_n(&win[i].lo, __ATOMIC_ACQUIRE))
			return 1;
	return 0;
}

/* The arena address this thread last retried without a window open. */
static __thread uintptr_t retried;

/* For the port's SIGSEGV handler (guard.c): 1 if the fault at a was
 * meshing's (the access is retried), 0 if not ours. */
int host_mesh_segv(uintptr_t a)
{
	if (in_window(a)) {
		int saved = errno;
		while (in_window(a))
			sched_yield();
		errno = saved;
		return 1; /* the write is retried, on dst's pages now */
	}
	if (a >= mesh_lo && a < mesh_hi && a != retried && !kfence_owns(a)) {
		/* The window may have closed between the fault and now: retry
		 * once; a second fault at the same address is not ours. */
		retried = a;
		return 1;
	}
	return 0;
}

/* The ranges of the mesh in flight (the mesher's): its first protect
 * takes mappings for WINDOWS ranges from the budget, before any write is
 * held off (a count of /proc/self/maps takes tens of milliseconds at
 * tens of thousands of mappings), and the last window to close gives
 * back what the mesh did not use. */
static int mesh_ranges;

static void close_window(uintptr_t lo)
{
	int open = 0;
	for (int i = 0; i < WINDOWS; i++) {
		if (win[i].lo == lo && win[i].hi != 0) {
			__atomic_store_n(&win[i].hi, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&win[i].lo, 0, __ATOMIC_RELEASE);
		}
		open |= win[i].hi != 0;
	}
	if (!open && mesh_ranges != 0) {
		maps_est -= 2 * (WINDOWS - mesh_ranges);
		mesh_ranges = 0;
	}
}

static int mesh_protect(void *src, size_t len)
{
	int i = 0;
	while (i < WINDOWS && win[i].hi != 0)
		i++;
	if (i == WINDOWS || (i == 0 && !maps_room(2 * WINDOWS, maps_limit)))
		return -1;
	if (i == 0)
		host_segv_install(); /* once per mesh, before its first window */
	mesh_ranges++;
	__atomic_store_n(&win[i].lo, (uintptr_t)src, __ATOMIC_RELEASE);
	__atomic_store_n(&win[i].hi, (uintptr_t)src + len, __ATOMIC_RELEASE);
	if (mprotect(src, len, PROT_READ) != 0) {
		close_window((uintptr_t)src);
		return -1;
	}
	return 0;
}

static void mesh_unprotect(void *src, size_t len)
{
	mprotect(src, len, PROT_READ | PROT_WRITE);
	close_window((uintptr_t)src);
}

/* mmap MAP_SHARED | MAP_FIXED of the file at off over [p, p+len), as a
 * system call of its own: ThreadSanitizer's mmap interceptor takes a new
 * mapping for a write of every byte by this thread, and would report it
 * racing with the program's later writes to the live objects there,
 * which nothing orders after the mesh (their bytes did not change). */
static void *remap(void *p, size_t len, off_t off)
{
	return (void *)syscall(SYS_mmap, p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
	                       mesh_fd, off);
}

static int mesh_alias(void *dst, void *src, size_t len, int own)
{
	void *r = remap(src, len, (off_t)((uintptr_t)dst - mesh_lo));
	if (r != src) {
		mesh_unprotect(src, len);
		return -1;
	}
	close_window((uintptr_t)src);
	if (!own)
		return 0; /* an alias moving with its group: as many aliases */
	/* src's own pages: the range no longer shows them */
	fallocate(mesh_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	          (off_t)((uintptr_t)src - mesh_lo), (off_t)len);
	host_committed_add(-(long)len);
	return 0;
}

static int mesh_unalias(void *src, size_t len)
{
	/* an alias amid a run of them cuts the run's mapping in three */
	if (!maps_room(2, MAPS_UNALIAS))
		return -1;
	/* its own offset, a hole since mesh_alias: reads as zero */
	if (remap(src, len, (off_t)((uintptr_t)src - mesh_lo)) != src)
		sys_fault("mesh: cannot unmap an alias", src);
	return 0;
}

/* After sys_reserve's anonymous reservation [lo, lo+size): a file as
 * big, for the arena's granules to map (host_mesh_map). */
void host_mesh_setup(uintptr_t lo, size_t size)
{
	int fd = memfd_create("kmalloc", MFD_CLOEXEC);
	if (fd < 0)
		return; /* no memfd: anonymous arena, no meshing */
	if (ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return;
	}
	long v = host_max_map_count();
	if (v >= 8192)
		maps_limit = v / 2;
	mesh_fd = fd;
	mesh_lo = lo;
	mesh_hi = lo + size;
	sys_config.move = NULL;
	sys_config.mesh_protect = mesh_protect;
	sys_config.mesh_unprotect = mesh_unprotect;
	sys_config.mesh_alias = mesh_alias;
	sys_config.mesh_unalias = mesh_unalias;
	sys_config.mesh_runs = 1; /* a run of aliases is one mapping */
}

/* Is [p, p+n) arena (the file's) rather than metadata (private)? The
 * core sets arena_start before it commits any of the arena. */
static int in_arena(uintptr_t p)
{
	uintptr_t start = mheap_.arena_start;
	return mesh_fd >= 0 && start != 0 && p >= start;
}

/* make_writable's work for [a, z): metadata below the arena by mprotect,
 * the arena's part as the file's pages. Returns 0 or -1. */
int host_mesh_map(uintptr_t a, uintptr_t z)
{
	uintptr_t start = mheap_.arena_start;
	if (start == 0 || start < a)
		start = start == 0 ? z : a;
	if (start > z)
		start = z;
	if (start > a && mprotect((void *)a, start - a, PROT_READ | PROT_WRITE) != 0)
		return -1;
	if (z > start && remap((void *)start, z - start, (off_t)(start - mesh_lo)) != (void *)start)
		return -1;
	return 0;
}

/* sys_release: 1 if it was the arena's (the file's pages punched). */
int host_mesh_release(void *p, size_t n)
{
	if (!in_arena((uintptr_t)p))
		return 0;
	if (madvise(p, n, MADV_REMOVE) != 0 &&
	    fallocate(mesh_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	              (off_t)((uintptr_t)p - mesh_lo), (off_t)n) != 0)
		memset(p, 0, n);
	return 1;
}

/* ---- fork ---- */

void host_mesh_fork_prepare(void)
{
	if (mesh_fd >= 0 && pipe2(fork_pipe, O_CLOEXEC) != 0)
		sys_fault("mesh: fork: no pipe", NULL);
}

void host_mesh_fork_parent(void)
{
	if (mesh_fd < 0)
		return;
	char c;
	close(fork_pipe[1]);
	while (read(fork_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	close(fork_pipe[0]);
}

/* Copy [off, end) of the old file into the new one. */
static int copy_range(int from, int to, off_t off, off_t end)
{
	while (off < end) {
		loff_t in = off, out = off;
		ssize_t n = copy_file_range(from, &in, to, &out, (size_t)(end - off), 0);
		if (n > 0) {
			off += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		/* no copy_file_range here: through the mapping */
		ssize_t w = pwrite(to, (const void *)(mesh_lo + (uintptr_t)off),
		                   (size_t)(end - off), off);
		if (w <= 0)
			return -1;
		off += w;
	}
	return 0;
}

static int remap_run(uintptr_t a, uintptr_t z)
{
	if (z <= mheap_.arena_start)
		return 0;
	if (a < mheap_.arena_start)
		a = mheap_.arena_start;
	return remap((void *)a, z - a, (off_t)(a - mesh_lo)) == (void *)a ? 0 : -1;
}

static void remap_alias(struct mspan *s)
{
	size_t len = s->npages * PAGE_SIZE;
	if (mmap((void *)s->base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mesh_fd,
	         (off_t)(s->mesh_dst->base - mesh_lo)) != (void *)s->base)
		sys_fault("mesh: fork: cannot map an alias", (void *)s->base);
}

/* The only thread of the child, mm's locks held (fork.c). */
void host_mesh_fork_child(void)
{
	if (mesh_fd < 0)
		return;
	close(fork_pipe[0]);
	int nfd = memfd_create("kmalloc", MFD_CLOEXEC);
	off_t size = (off_t)(mesh_hi - mesh_lo);
	if (nfd < 0 || ftruncate(nfd, size) != 0)
		sys_fault("mesh: fork: no memfd for the child's heap", NULL);
	for (off_t off = 0; off < size;) {
		off_t data = lseek(mesh_fd, off, SEEK_DATA);
		if (data < 0)
			break; /* ENXIO: no data past off */
		off_t hole = lseek(mesh_fd, data, SEEK_HOLE);
		if (hole < 0)
			hole = size;
		if (copy_range(mesh_fd, nfd, data, hole) != 0)
			sys_fault("mesh: fork: cannot copy the heap", NULL);
		off = hole;
	}
	close(mesh_fd);
	mesh_fd = nfd;
	if (host_rw_runs(remap_run) != 0)
		sys_fault("mesh: fork: cannot map the child's heap", NULL);
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
		for (struct mspan *s = mheap_.central[i].c.meshed.head; s != NULL; s = s->next)
			remap_alias(s);
	char c = 1;
	while (write(fork_pipe[1], &c, 1) < 0 && errno == EINTR)
		;
	close(fork_pipe[1]);
}
