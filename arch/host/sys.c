/*
 * sys.c (host): mm/sys.h on Linux, for unit tests, fuzzing, benchmarks and
 * the LD_PRELOAD shim. See mm/malloc.c for the overview.
 *
 *   sys_reserve  mmap(PROT_NONE), private, without MAP_NORESERVE: address
 *                space, no memory, and nothing charged yet (Linux charges a
 *                private mapping to its overcommit account only once it is
 *                writable). Under an address-space limit (RLIMIT_AS,
 *                ulimit -v) only a free place is chosen ("soft" region) and
 *                nothing is mapped until committed
 *   sys_commit   mprotect(PROT_READ|PROT_WRITE) of the whole granules
 *                around the range (a soft region: mmap of them), once per
 *                granule; making them writable is where Linux applies its
 *                overcommit check, so a commit bigger than RAM + swap fails
 *                with ENOMEM as a glibc mmap would. The kernel backs pages
 *                with zeroed memory on first touch
 *   sys_release  madvise(MADV_DONTNEED) alone: memory goes back to Linux,
 *                the pages stay mapped and read as zero if touched. One
 *                system call, and no split of the mapping (an mprotect to
 *                PROT_NONE as well doubled the cost of every release and
 *                cut the region into ever more mappings)
 *   move         mremap(MREMAP_FIXED | MREMAP_DONTUNMAP): a big krealloc
 *                moves page-table entries, not bytes; the source stays
 *                mapped and empty, which is Reserved here. Only from
 *                move_min (8 MiB) up: below, memcpy is cheaper (HOST_MOVE_MIN)
 *   nomem        errno = ENOMEM, so the shim's malloc is kmalloc
 *   release_zero sys_release itself: what it leaves reads as zero
 *   leak detector  track_sites: KMALLOC_LEAK_CHECK=1 in the environment
 *                (KMALLOC_LEAK_FRAMES=n: frames per allocation, default 8);
 *                stop_world, start_world: stopworld.c stops every other
 *                thread by a signal, outside allocator critical sections;
 *                roots (threadroots.c): every loaded object's writable
 *                segments (dl_iterate_phdr, before the stop), the calling
 *                thread's stack from the hook's frame up (unless
 *                host_set_leak_scan_stack(0)) and TLS, and every stopped
 *                thread's registers, stack and TLS; symbolize: dladdr
 *                (hex while other threads are stopped).
 *   backtrace    libgcc's DWARF unwinder (backtrace.c)
 *   cpu_unpublish, cpu_fence, cpu_busy  the idle-CPU drain's hooks
 *                (cpuidle.c): a registry of each id's thread's fast
 *                slot and section depth; membarrier
 *   guard        guarded sampling's pool pages, KMALLOC_KFENCE=<ms>, and
 *                the SIGSEGV handler meshing shares (guard.c)
 *   sys_cpu_id   one id per thread from a pool of HOST_MAX_CPUS; a
 *                pthread key destructor flushes the thread's mcache
 *                (kmalloc_flush_cpu) and returns the id when the thread exits
 *   sys_lock     test-and-test-and-set; after a few spins it yields, since
 *                the holder may be preempted (threads are not CPUs)
 *   sys_fault    "kmalloc: <msg>: 0x<p>" on stderr with write(2), then abort
 *   sys_log      one line on stdout with write(2)
 *   now_ns, now_coarse_ns, release_ms, start_background  background.c:
 *                CLOCK_MONOTONIC and _COARSE, KMALLOC_RELEASE_MS, the
 *                background scavenger thread
 *
 * Mappings. Linux allows a process vm.max_map_count (65,530) mappings, and
 * every run of the region with other protections than its neighbours is
 * one. Only commits change protections here (releases do not), and the
 * writable part only grows, so the region is a few writable islands in
 * PROT_NONE. A commit makes its whole 4 MiB granules writable, and also
 * the PROT_NONE gap down to (or up to) a writable granule at most
 * GRAN_BRIDGE granules away: islands are then more than 64 MiB apart, so
 * the region is at most 2 * (region size / 64 MiB) + 1 mappings (about
 * 2,500 for the default 80 GiB region) whatever the allocation pattern,
 * e.g. aligned allocations that leave gaps. Pages made writable that mm
 * still counts as Reserved are untouched and cost no memory, only
 * overcommit charge. A soft region uses 64 KiB granules and no bridging
 * (address space is what is short there; its size bounds the islands).
 * The moves of big reallocs add mappings of their own, until the process
 * has an eighth of vm.max_map_count (see host_move).
 *
 * The port counts committed bytes (what mm asked for, not the granules) so
 * tests can compare them with kmalloc_stats and simulate out-of-memory
 * (host.h).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "host.h"
#include "host_port.h"
#include "kmalloc.h"
#include "sys.h"

static int host_move(void *dst, void *src, size_t n);

/* Where mremap starts to beat memcpy. Measured 2026-12-07 on this
 * project's 2-CPU EPYC VM (Linux 6.18, 4 KiB pages, no THP), medians of
 * 9-41 runs, both ranges resident before each step (microseconds):
 *
 *   size        64K   256K   1M    2M    4M    8M    16M    64M
 *   memcpy      5.2   8.4    50    131   372   970   2470   9700
 *   mremap      13    22     94    188   388   836   1290   5770
 *
 * mremap's figure is the move alone; the range it leaves is empty, and
 * touching it again costs its page faults (2.5 us a page here: 635 us
 * for 1 MiB), which a copy never causes (a copy's source pages stay, and
 * its destination faults only where the heap had never been written).
 * Moving is worth it only where the move alone costs less than the copy:
 * from 8 MiB. (The kernel's PTE moves have no fault of their own to pay
 * for; it keeps sys.h's default.) */
#define HOST_MOVE_MIN ((size_t)8 << 20)
static void host_nomem(void);
static int host_track_sites(void);
static void host_roots(void (*scan)(const void *, size_t, void *), void *arg);
static size_t host_symbolize(uintptr_t pc, char *buf, size_t cap);

struct sys_config sys_config = {
	.page_size = 4096,
	.commit_zeroed = 1,
	.max_cpus = HOST_MAX_CPUS,
	.arena_size = (size_t)64 << 30,
	.move = host_move,
	.move_min = HOST_MOVE_MIN,
	.commit_lazy = 1, /* sys_commit: pages come on first touch */
	.nomem = host_nomem,
	.release_zero = sys_release, /* released pages read as zero here */
	.track_sites = host_track_sites,
	.roots = host_roots,
	.stop_world = host_stop_world,
	.start_world = host_start_world,
	.symbolize = host_symbolize,
	.backtrace = host_backtrace,
	.now_ns = host_now_ns,
	.now_coarse_ns = host_now_coarse_ns,
	.start_background = host_start_background,
	.cpu_unpublish = host_cpu_unpublish,
	.cpu_fence = host_cpu_fence,
	.cpu_busy = host_cpu_busy,
	.guard = host_guard,
};

static size_t committed;    /* bytes Ready; atomic */
static size_t commit_limit; /* 0 = none; atomic */

void host_set_commit_limit(size_t bytes)
{
	__atomic_store_n(&commit_limit, bytes, __ATOMIC_RELAXED);
}

size_t host_committed_bytes(void)
{
	return __atomic_load_n(&committed, __ATOMIC_RELAXED);
}

/* ---- the region and its writable granules ---- */

#define GRAN_HARD 22            /* 4 MiB granules (mm's chunk) */
#define GRAN_SOFT 16            /* 64 KiB: address space is what is short */
#define GRAN_BRIDGE 16          /* hard: gaps up to 64 MiB become writable */
#define GRAN_MAX (1u << 21)     /* granules tracked: 128 GiB of region at
                                   64 KiB, 8 TiB at 4 MiB */
/* Where a soft region goes: far below the top-down mmap area and above
 * ASan's shadow, 1 GiB-aligned at a random place (ASLR). */
#define SOFT_LO ((uintptr_t)0x200000000000) /* 32 TiB */
#define SOFT_HI ((uintptr_t)0x600000000000) /* 96 TiB */
#define SOFT_ALIGN ((uintptr_t)1 << 30)

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17 */
#endif

/* Written once by sys_reserve. */
static uintptr_t region_lo, region_hi;
static int region_soft;       /* nothing mapped until committed */
static unsigned gran_shift;
/* Bit g: granule g (counted from region_lo rounded down) is writable
 * (hard) or mapped writable (soft). Set under host_commit_lock, read
 * without it (a set bit never clears). */
static uint64_t gran_rw[GRAN_MAX / 64];
pthread_mutex_t host_commit_lock = PTHREAD_MUTEX_INITIALIZER;

static uintptr_t gran_base(void)
{
	return region_lo & ~(((uintptr_t)1 << gran_shift) - 1);
}

static int gran_is_rw(size_t g)
{
	return (__atomic_load_n(&gran_rw[g / 64], __ATOMIC_ACQUIRE) >> (g % 64)) & 1;
}

static void gran_set_rw(size_t g0, size_t g1)
{
	for (size_t g = g0; g < g1; g++)
		__atomic_fetch_or(&gran_rw[g / 64], (uint64_t)1 << (g % 64), __ATOMIC_RELEASE);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0;
}

int host_maps_walk(void (*fn)(uintptr_t lo, uintptr_t hi, int readable, void *arg), void *arg)
{
	char buf[4096];
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	uintptr_t a = 0, b = 0;
	int field = 0, readable = 0; /* fields: start, end, permissions, the rest */
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r; i++) {
			char c = buf[i];
			if (c == '\n') {
				if (field != 0)
					fn(a, b, readable, arg);
				a = b = 0;
				field = readable = 0;
			} else if (field == 0) {
				if (c == '-')
					field = 1;
				else
					a = a * 16 + (uintptr_t)hexval(c);
			} else if (field == 1) {
				if (c == ' ')
					field = 2;
				else
					b = b * 16 + (uintptr_t)hexval(c);
			} else if (field == 2) {
				readable = c == 'r';
				field = 3;
			}
		}
	}
	close(fd);
	return 0;
}

struct overlap {
	uintptr_t lo, hi;
	int hit;
};

static void overlaps(uintptr_t a, uintptr_t b, int readable, void *arg)
{
	struct overlap *o = arg;
	(void)readable;
	if (a < o->hi && b > o->lo)
		o->hit = 1;
}

/* 1 if no line of /proc/self/maps overlaps [lo, hi), or if the file cannot
 * be read (then MAP_FIXED_NOREPLACE at commit time is the only check).
 * No stdio, no malloc: this runs inside the first malloc. */
static int range_free(uintptr_t lo, uintptr_t hi)
{
	struct overlap o = { lo, hi, 0 };
	host_maps_walk(overlaps, &o);
	return !o.hit;
}

/* A free place for a soft region of `size` bytes, or 0. */
static uintptr_t soft_place(size_t size)
{
	if (size > SOFT_HI - SOFT_LO - SOFT_ALIGN)
		return 0;
	uint64_t slots = (SOFT_HI - SOFT_LO - size) / SOFT_ALIGN, r = 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = __builtin_ia32_rdtsc() ^ (uintptr_t)&r;
	for (int i = 0; i < 32; i++) {
		uintptr_t base = SOFT_LO + (uintptr_t)((r + (uint64_t)i * 0x9e3779b97f4a7c15ull) % slots) *
		                               SOFT_ALIGN;
		if (range_free(base, base + size))
			return base;
	}
	return 0;
}

int sys_reserve(size_t size, void **base)
{
	host_read_env();   /* before kmalloc_init reads release_ms */
	host_kfence_env(); /* and kfence_ms */
	/* Under an address-space limit (ulimit -v, RLIMIT_AS), a reservation
	 * is charged like memory: reserving the region up front would leave
	 * the program no room for thread stacks, libraries or its own
	 * mappings, and would cap the heap at what is left after mm's
	 * metadata. So the region is only a place then ("soft"): an address
	 * range checked free now, mapped granule by granule as mm commits
	 * (MAP_FIXED_NOREPLACE, so a mapping someone else put there meanwhile
	 * makes that commit fail, never clobbers it). Address space is then
	 * used as glibc uses it, as the heap grows. */
	struct rlimit rl;
	uintptr_t soft = 0;
	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		soft = soft_place(size);
	if (soft != 0) {
		region_soft = 1;
		gran_shift = GRAN_SOFT;
		region_lo = soft;
		region_hi = soft + size;
		*base = (void *)soft;
		return 0;
	}
	/* No MAP_NORESERVE: with it, making pages writable later would not
	 * be charged, and a malloc larger than RAM + swap would succeed now
	 * and meet the OOM killer later. A PROT_NONE private mapping is not
	 * charged until it becomes writable, so reserving stays free. */
	void *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	gran_shift = GRAN_HARD;
	region_lo = (uintptr_t)p;
	region_hi = region_lo + size;
	*base = p;
	if (host_mesh_wanted())
		host_mesh_setup(region_lo, size); /* mesh.c */
	return 0;
}

/* Soft region: map [a, z) anonymous and writable where nothing is. */
static int map_anon(uintptr_t a, uintptr_t z)
{
	void *r = mmap((void *)a, z - a, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (r != (void *)a) {
		/* Taken by someone else (EEXIST), or a kernel before 4.17 that
		 * read the flag as a mere hint and put it elsewhere. */
		if (r != MAP_FAILED)
			munmap(r, z - a);
		return -1;
	}
	return 0;
}

/* Map granules [g0, g1) where not mapped yet, run by run, with map: a
 * soft region's (map_anon), or a meshing arena's (mesh.c's
 * host_mesh_map: never over a mapped granule, which may hold an alias
 * that a fresh mapping of its own offset would undo). pre:
 * host_commit_lock. Returns 0 or -1 (runs mapped before the failure stay
 * mapped and recorded). */
static int map_granules(size_t g0, size_t g1, int (*map)(uintptr_t a, uintptr_t z))
{
	uintptr_t gb = gran_base();
	for (size_t g = g0; g < g1;) {
		if (gran_is_rw(g)) {
			g++;
			continue;
		}
		size_t e = g + 1;
		while (e < g1 && !gran_is_rw(e))
			e++;
		uintptr_t a = gb + ((uintptr_t)g << gran_shift), z = gb + ((uintptr_t)e << gran_shift);
		if (map(a < region_lo ? region_lo : a, z > region_hi ? region_hi : z) != 0)
			return -1;
		gran_set_rw(g, e);
		g = e;
	}
	return 0;
}

/* Make the granules around [p, p+n) writable. Hard region: also a short
 * PROT_NONE gap to a writable neighbour (see the top comment). Returns
 * 0, or -1 if Linux refused (overcommit, RLIMIT_AS, vm.max_map_count, a
 * foreign mapping in a soft region). */
static int make_writable(uintptr_t p, size_t n)
{
	uintptr_t gb = gran_base(), gsz = (uintptr_t)1 << gran_shift;
	size_t ng = (region_hi - gb + gsz - 1) >> gran_shift;
	if (ng > GRAN_MAX)
		/* A region too big to track (a build with a bigger arena):
		 * commit exactly, as the port always did. */
		return mprotect((void *)p, n, PROT_READ | PROT_WRITE);
	size_t g0 = (p - gb) >> gran_shift, g1 = ((p + n - 1 - gb) >> gran_shift) + 1;
	size_t g;
	for (g = g0; g < g1 && gran_is_rw(g); g++)
		;
	if (g == g1)
		return 0; /* the common case: no system call */
	host_section_lock(&host_commit_lock);
	int r;
	if (region_soft) {
		r = map_granules(g0, g1, map_anon);
	} else {
		size_t lo = g0, hi = g1;
		for (size_t k = 1; k <= GRAN_BRIDGE && k <= g0; k++)
			if (gran_is_rw(g0 - k)) {
				lo = g0 - k + 1;
				break;
			}
		for (size_t k = 0; k < GRAN_BRIDGE && g1 + k < ng; k++)
			if (gran_is_rw(g1 + k)) {
				hi = g1 + k;
				break;
			}
		uintptr_t a = gb + ((uintptr_t)lo << gran_shift), e = gb + ((uintptr_t)hi << gran_shift);
		if (a < region_lo)
			a = region_lo;
		if (e > region_hi)
			e = region_hi;
		/* One call for the whole range: Linux charges each PROT_NONE
		 * piece it makes writable against the overcommit limit as a
		 * whole, as it would a mmap of that size. */
		r = host_mesh_on() ? map_granules(lo, hi, host_mesh_map)
		                   : mprotect((void *)a, e - a, PROT_READ | PROT_WRITE);
		if (r == 0)
			gran_set_rw(lo, hi);
	}
	host_section_unlock(&host_commit_lock);
	return r;
}

int sys_commit(void *p, size_t n)
{
	size_t limit = __atomic_load_n(&commit_limit, __ATOMIC_RELAXED);
	size_t now = __atomic_add_fetch(&committed, n, __ATOMIC_RELAXED);
	if (limit != 0 && now > limit) {
		__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
		return -1;
	}
	if (make_writable((uintptr_t)p, n) != 0) {
		/* ENOMEM: the overcommit check refused, or the kernel could
		 * not split a mapping; nothing mm would count as Ready. */
		__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
		return -1;
	}
	return 0;
}

void sys_release(void *p, size_t n)
{
	/* MADV_DONTNEED fails only where it cannot drop pages (mlock'ed
	 * memory, EINVAL). Then the pages stay, but must read as zero when
	 * mm commits them again (sys_config.commit_zeroed), so clear them:
	 * a free() must not abort. */
	if (!host_mesh_release(p, n) && madvise(p, n, MADV_DONTNEED) != 0)
		memset(p, 0, n);
	__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
}

void host_committed_add(long delta)
{
	__atomic_add_fetch(&committed, (size_t)delta, __ATOMIC_RELAXED);
}

int host_rw_runs(int (*fn)(uintptr_t a, uintptr_t z))
{
	uintptr_t gb = gran_base(), gsz = (uintptr_t)1 << gran_shift;
	size_t ng = (region_hi - gb + gsz - 1) >> gran_shift;
	for (size_t g = 0; g < ng && g < GRAN_MAX;) {
		if (!gran_is_rw(g)) {
			g++;
			continue;
		}
		size_t e = g + 1;
		while (e < ng && e < GRAN_MAX && gran_is_rw(e))
			e++;
		uintptr_t a = gb + ((uintptr_t)g << gran_shift),
		          z = gb + ((uintptr_t)e << gran_shift);
		if (fn(a < region_lo ? region_lo : a, z > region_hi ? region_hi : z) != 0)
			return -1;
		g = e;
	}
	return 0;
}

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7; older C libraries lack the name */
#endif

/* ---- the mremap budget ----
 * A move leaves dst as a mapping of its own: Linux cannot merge it with
 * its neighbours (its pages keep the offsets of src), so every move may
 * add up to three mappings (dst, and the two pieces of what dst cut),
 * until a later move or free covers them again (glibc's own mmap'ed
 * blocks merge with their neighbours, so the same pattern costs glibc no
 * mappings). Moves are an optimisation, so they stop long before they
 * could bring the process near vm.max_map_count, which its thread stacks
 * (two mappings each) and files need: a move spends one credit; when
 * credits run out, /proc/self/maps is counted and the heap may have a
 * third of what separates that count from an eighth of the limit
 * (MOVE_SHARE), if that is worth a count (MOVE_MIN_CREDIT); otherwise big
 * reallocs copy, and the count is tried again MOVE_RETRY copies later.
 * Counting costs O(mappings), once per hundreds of moves at least. */

#define MOVE_SHARE 8
#define MOVE_MIN_CREDIT 64
#define MOVE_RETRY 1024

pthread_mutex_t host_move_lock = PTHREAD_MUTEX_INITIALIZER;
static long move_credit;      /* host_move_lock */
static long move_refused;     /* host_move_lock: copies since the last count */
static long map_limit = -1;   /* host_move_lock: vm.max_map_count, once */

/* Lines of a /proc file (for /proc/self/maps: the process's mappings),
 * read without stdio or malloc; -1 if it cannot be read. */
static long count_lines(const char *path)
{
	char buf[4096];
	long lines = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return r < 0 ? -1 : lines;
		}
		for (ssize_t i = 0; i < r; i++)
			lines += buf[i] == '\n';
	}
}

long host_count_maps(void) { return count_lines("/proc/self/maps"); }

/* A decimal number from a /proc file, or dflt. */
static long read_long(const char *path, long dflt)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return dflt;
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return dflt;
	long v = 0;
	for (ssize_t i = 0; i < r && buf[i] >= '0' && buf[i] <= '9'; i++)
		v = v * 10 + (buf[i] - '0');
	return v > 0 ? v : dflt;
}

long host_max_map_count(void) { return read_long("/proc/sys/vm/max_map_count", 65530); }

/* Take one move credit; 0 if the move must not happen. */
static int move_allowed(void)
{
	int ok = 0;
	pthread_mutex_lock(&host_move_lock);
	if (move_credit == 0 && move_refused % MOVE_RETRY == 0) {
		if (map_limit < 0)
			map_limit = host_max_map_count();
		long n = count_lines("/proc/self/maps");
		long room = n < 0 ? 0 : (map_limit / MOVE_SHARE - n) / 3;
		move_credit = room >= MOVE_MIN_CREDIT ? room : 0;
		move_refused = 0;
	}
	if (move_credit > 0) {
		move_credit--;
		ok = 1;
	} else {
		move_refused++;
	}
	pthread_mutex_unlock(&host_move_lock);
	return ok;
}

/* sys_config.move: dst gets src's pages; src stays mapped, empty. Linux
 * before 5.7 (no MREMAP_DONTUNMAP) says EINVAL: then krealloc copies, as
 * it does when the mapping budget above is spent.
 * Whatever dst held is unmapped by MREMAP_FIXED, so dst's committed bytes
 * go and src's now count for dst. dst stays writable (its granules'
 * bits stay set) and src too (DONTUNMAP keeps its protection). */
static int host_move(void *dst, void *src, size_t n)
{
	if (!move_allowed())
		return -1;
	void *r = mremap(src, n, n, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
	if (r == MAP_FAILED)
		return -1;
	__atomic_sub_fetch(&committed, n, __ATOMIC_RELAXED);
	return 0;
}

static void host_nomem(void)
{
	errno = ENOMEM;
}

/* ---- the leak detector's hooks ---- */

/* KMALLOC_LEAK_CHECK=1: track, with KMALLOC_LEAK_FRAMES frames (1..8,
 * default 8) per allocation. */
static int host_track_sites(void)
{
	const char *v = getenv("KMALLOC_LEAK_CHECK");
	if (v == NULL || v[0] != '1')
		return 0;
	const char *f = getenv("KMALLOC_LEAK_FRAMES");
	int n = f != NULL ? atoi(f) : 8;
	return n < 1 ? 1 : n > 8 ? 8 : n;
}

static int leak_scan_stack = 1; /* atomic */

void host_set_leak_scan_stack(int on)
{
	__atomic_store_n(&leak_scan_stack, on, __ATOMIC_RELAXED);
}

/* pre: the world is stopped (host_stop_world). The calling thread's
 * stack is scanned from this frame up: the core spilled its callers'
 * registers into a frame above. */
static void host_roots(void (*scan)(const void *, size_t, void *), void *arg)
{
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);
	host_stopworld_roots(scan, arg,
	                     __atomic_load_n(&leak_scan_stack, __ATOMIC_RELAXED) ? here : 0);
}

void host_region(uintptr_t *lo, uintptr_t *hi)
{
	*lo = region_lo;
	*hi = region_hi;
}

/* dladdr takes the loader's lock, which a thread the scan stopped may
 * hold (inside dlopen, or an unwinder's dl_iterate_phdr callback): while
 * other threads are stopped, sites print as hex (the shim reports after
 * the world restarts, preload_leaks.c). */
static size_t host_symbolize(uintptr_t pc, char *buf, size_t cap)
{
	Dl_info di;
	if (cap < 32 || host_threads_parked() || dladdr((void *)pc, &di) == 0)
		return 0;
	const char *name = di.dli_sname;
	uintptr_t base = (uintptr_t)di.dli_saddr;
	if (name == NULL) { /* not exported: file+offset */
		name = di.dli_fname != NULL ? strrchr(di.dli_fname, '/') : NULL;
		name = name != NULL ? name + 1 : di.dli_fname;
		base = (uintptr_t)di.dli_fbase;
	}
	if (name == NULL)
		return 0;
	int n = snprintf(buf, cap, "%s+0x%lx", name, (unsigned long)(pc - base));
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- threads as CPUs ---- */

__thread struct host_thread host_self __attribute__((tls_model("initial-exec")));
/* 1 once the thread's exit destructor gave its id back: an id it takes
 * after that is not registered for the idle-CPU drain (cpuidle.c). */
static __thread int host_cpu_gone __attribute__((tls_model("initial-exec")));

/* The pool: bit id of cpu_used is 1 while a live thread holds id. The
 * lowest free id is handed out, so the mcaches in use (one per id ever
 * held, mcache.c) stay as few as the most threads ever alive at once. */
pthread_mutex_t host_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t cpu_used[HOST_MAX_CPUS / 64]; /* host_pool_lock */
/* Bit id: id came back from a thread a fork child does not have; its
 * next thread checks the mcache first (host_fork_adopt, fork.c). */
static uint64_t cpu_adopt[HOST_MAX_CPUS / 64]; /* host_pool_lock */
static unsigned cpu_free_word;  /* host_pool_lock: no free id below
                                   64 * cpu_free_word */
static unsigned cpu_high;       /* host_pool_lock: highest id taken + 1 */
static pthread_key_t cpu_key;
static pthread_once_t cpu_key_once = PTHREAD_ONCE_INIT;

int host_cpu_taken(unsigned id)
{
	return (cpu_used[id / 64] >> (id % 64)) & 1;
}

static void cpu_free(unsigned id)
{
	cpu_used[id / 64] &= ~((uint64_t)1 << (id % 64));
	if (id / 64 < cpu_free_word)
		cpu_free_word = id / 64;
}

void host_cpu_reclaim(unsigned id)
{
	host_cpu_unregister(id);
	cpu_free(id);
	cpu_adopt[id / 64] |= (uint64_t)1 << (id % 64);
}

unsigned host_cpu_high(void)
{
	return cpu_high;
}

static void cpu_release(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg - 1;
	/* Still "this CPU" for the flush; the id is free only afterwards. */
	host_self.cpu_plus1 = id + 1;
	kmalloc_flush_cpu();
	host_self.cpu_plus1 = 0;
	SYS_MCACHE_SET(NULL); /* the id's mcache may go to another thread */
	host_cpu_gone = 1;
	host_section_lock(&host_pool_lock);
	host_cpu_unregister(id);
	cpu_free(id);
	host_section_unlock(&host_pool_lock);
}

static void cpu_key_init(void)
{
	if (pthread_key_create(&cpu_key, cpu_release) != 0)
		sys_fault("pthread_key_create failed", NULL);
	host_fork_init();
}

unsigned host_cpu_assign(void)
{
	unsigned w, id;

	pthread_once(&cpu_key_once, cpu_key_init);
	host_section_lock(&host_pool_lock);
	for (w = cpu_free_word; w < HOST_MAX_CPUS / 64 && cpu_used[w] == ~(uint64_t)0; w++)
		;
	if (w == HOST_MAX_CPUS / 64) {
		host_section_unlock(&host_pool_lock);
		sys_fault("more live threads than CPU ids", NULL);
	}
	cpu_free_word = w;
	id = w * 64 + (unsigned)__builtin_ctzll(~cpu_used[w]);
	cpu_used[w] |= (uint64_t)1 << (id % 64);
	if (id + 1 > cpu_high)
		cpu_high = id + 1;
	int adopt = (cpu_adopt[w] >> (id % 64)) & 1;
	cpu_adopt[w] &= ~((uint64_t)1 << (id % 64));
	if (!host_cpu_gone)
		host_cpu_register(id);
	host_section_unlock(&host_pool_lock);
	if (adopt)
		host_fork_adopt(id);
	host_self.cpu_plus1 = id + 1;
	/* The destructor runs only for a non-NULL value, hence id + 1. */
	pthread_setspecific(cpu_key, (void *)(uintptr_t)(id + 1));
	return id;
}

/* ---- locks ---- */

/* A holder counts as inside the allocator (sys_arch.h): the stop signal
 * never parks a thread holding an mm lock, which the scan may need. A
 * waiter does not count: it holds nothing and may be parked. */
void sys_lock(struct sys_lock *l)
{
	for (;;) {
		for (int spin = 0; spin < 100; spin++) {
			if (__atomic_load_n(&l->locked, __ATOMIC_RELAXED) == 0 &&
			    !__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE)) {
				sys_irq_save();
				return;
			}
			__builtin_ia32_pause();
		}
		sched_yield();
	}
}

void sys_unlock(struct sys_lock *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
	sys_irq_restore(0);
}

/* ---- reporting (no stdio: it may allocate) ---- */

static size_t fmt_hex(char *out, uintptr_t v)
{
	char tmp[2 + 16];
	size_t n = 0;
	out[n++] = '0';
	out[n++] = 'x';
	size_t k = 0;
	do {
		tmp[k++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v != 0);
	while (k > 0)
		out[n++] = tmp[--k];
	return n;
}

static void write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

_Noreturn void sys_fault(const char *msg, const void *p)
{
	char buf[256];
	size_t n = 0, m = strlen(msg);
	const char *pre = "kmalloc: ";
	if (m > 200)
		m = 200;
	memcpy(buf, pre, 9);
	n = 9;
	memcpy(buf + n, msg, m);
	n += m;
	buf[n++] = ':';
	buf[n++] = ' ';
	n += fmt_hex(buf + n, (uintptr_t)p);
	buf[n++] = '\n';
	write_all(2, buf, n);
	abort();
}

void sys_log(const char *s)
{
	write_all(1, s, strlen(s));
	write_all(1, "\n", 1);
}
