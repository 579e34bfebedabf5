/*
 * threadroots.c (host): the leak scan's roots on Linux: the loaded
 * objects' globals, the threads the scan stopped (stopworld.c stops
 * them) and the scanning thread's own stack and TLS.
 * See mm/mgcmark.c for the scan and mm/malloc.c for the overview.
 *
 * Roots of a stopped thread (host_stopworld_roots, called from the port's
 * roots hook, sys.c): its registers; its stack from the saved stack
 * pointer less the 128-byte red zone up to the end of the mapping that
 * holds it (/proc/self/maps, read while the world is stopped); and its
 * thread-local storage: glibc puts a thread's static TLS blocks just below
 * its thread pointer and the thread descriptor above it (which holds the
 * pthread_setspecific values and the pointer to the DTV, the malloc'ed
 * array that points to the dynamically allocated TLS blocks of dlopen'ed
 * modules, so those are reached through it as heap objects). On threads
 * glibc made, both lie at the top of the stack mapping; the main thread's
 * are elsewhere, so [tp - static TLS size, tp + 4 KiB) is scanned within
 * the mapping that holds tp. Ranges are cut where the allocator's region
 * begins (a mapping Linux merged with a thread stack must not make heap
 * pages roots). Not scanned: an alternate signal stack's owner's stack if
 * the thread was stopped on the alternate stack, and a stack the program
 * placed inside a kmalloc object (that object is reached through the
 * thread descriptor in it, then scanned whole).
 *
 * Globals: the writable PT_LOAD segments of every loaded object, listed
 * by dl_iterate_phdr before the threads are signalled: it takes the
 * loader's lock, which a stopped thread may hold (inside dlopen, or in an
 * unwinder's callback), so it cannot run while they are stopped
 * (LeakSanitizer stops the world from inside dl_iterate_phdr for the same
 * reason). An object a library loaded between that listing and the stop
 * points to from its data only would be reported.
 *
 * Data flow: stopworld.c, before signalling -> host_thread_roots_globals
 * (dl_iterate_phdr); once every thread is parked ->
 * host_thread_roots_prepare (reads /proc/self/maps) -> the scan calls the
 * port's roots hook (sys.c) -> host_stopworld_roots -> scan() of each
 * range.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host_port.h"

#define STW_MAX_MAPS (1u << 20)
#define STW_MAX_SEGS (1u << 16)
#define STW_REDZONE  128  /* below sp, the x86-64 ABI's red zone */
#define STW_TCB_MAX  4096 /* glibc's thread descriptor is ~2.3 KiB */

struct stw_map {
	uintptr_t lo, hi;
};

/* host_stw_lock (written by the stopper between stop and start). */
static struct stw_map *maps;
static unsigned nmaps;
static struct stw_map *segs; /* writable segments, [lo, hi) */
static unsigned nsegs;
static size_t tls_static_size;

static uintptr_t thread_pointer(void)
{
	uintptr_t tp;
	__asm__("mov %%fs:0, %0" : "=r"(tp)); /* glibc's TCB points to itself */
	return tp;
}

int host_thread_roots_setup(void)
{
	/* glibc's (GLIBC_PRIVATE, what the sanitizers use); dlsym may
	 * allocate, which is why this runs before the world stops */
	void (*info)(size_t *, size_t *) =
	        (void (*)(size_t *, size_t *))dlsym(RTLD_DEFAULT, "_dl_get_tls_static_info");
	size_t align = 0;
	if (info != NULL)
		info(&tls_static_size, &align);
	else
		tls_static_size = 64 << 10; /* cut at the mapping's start */
	void *p = mmap(NULL, (STW_MAX_MAPS + STW_MAX_SEGS) * sizeof(*maps), PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	maps = p;
	segs = maps + STW_MAX_MAPS;
	return 0;
}

static int writable_segments(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	(void)data;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) && ph->p_memsz != 0 &&
		    nsegs < STW_MAX_SEGS) {
			uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
			segs[nsegs++] = (struct stw_map){ lo, lo + ph->p_memsz };
		}
	}
	return 0;
}

void host_thread_roots_globals(void)
{
	nsegs = 0;
	dl_iterate_phdr(writable_segments, NULL);
}

static void add_map(uintptr_t lo, uintptr_t hi, int readable, void *arg)
{
	(void)arg;
	if (readable && nmaps < STW_MAX_MAPS)
		maps[nmaps++] = (struct stw_map){ lo, hi };
}

/* /proc/self/maps, readable mappings only, in address order. */
void host_thread_roots_prepare(void)
{
	nmaps = 0;
	host_maps_walk(add_map, NULL);
}

static const struct stw_map *map_of(uintptr_t p)
{
	unsigned lo = 0, hi = nmaps;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (maps[mid].hi <= p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nmaps && maps[lo].lo <= p ? &maps[lo] : NULL;
}

/* Clip [lo, hi) below the allocator's region, then scan it. */
static void scan_clipped(uintptr_t lo, uintptr_t hi, void (*scan)(const void *, size_t, void *),
                         void *arg)
{
	uintptr_t rlo, rhi;
	host_region(&rlo, &rhi);
	if (lo < rhi && hi > rlo) {
		if (lo >= rlo)
			return; /* inside the heap: see the top comment */
		hi = rlo;
	}
	if (hi > lo)
		scan((const void *)lo, hi - lo, arg);
}

/* sp up to its mapping's end, and the TLS around tp unless that range
 * already covered it. */
static void scan_thread(uintptr_t sp, uintptr_t tp, void (*scan)(const void *, size_t, void *),
                        void *arg)
{
	const struct stw_map *s = sp != 0 ? map_of(sp - STW_REDZONE) : NULL;
	if (s == NULL && sp != 0)
		s = map_of(sp);
	uintptr_t lo = 0, hi = 0;
	if (s != NULL) {
		lo = sp - STW_REDZONE > s->lo ? sp - STW_REDZONE : s->lo;
		hi = s->hi;
		scan_clipped(lo, hi, scan, arg);
	}
	const struct stw_map *f = map_of(tp);
	if (f == NULL)
		return;
	uintptr_t tlo = tp - f->lo > tls_static_size ? tp - tls_static_size : f->lo;
	uintptr_t thi = f->hi - tp > STW_TCB_MAX ? tp + STW_TCB_MAX : f->hi;
	if (tlo >= lo && thi <= hi)
		return;
	scan_clipped(tlo, thi, scan, arg);
}

void host_stopworld_roots(void (*scan)(const void *, size_t, void *), void *arg, uintptr_t my_sp)
{
	for (unsigned i = 0; i < nsegs; i++)
		scan((const void *)segs[i].lo, segs[i].hi - segs[i].lo, arg);
	scan_thread(my_sp, thread_pointer(), scan, arg);
	struct host_parked t;
	for (unsigned i = 0, n = host_parked_slots(); i < n; i++) {
		if (host_parked_thread(i, &t) != 0)
			continue;
		scan(t.regs, t.regs_len, arg);
		scan(t.xmm, t.xmm_len, arg);
		scan_thread(t.sp, t.tp, scan, arg);
	}
}
