/*
 * port.c: the kit kernel's port of the allocator, the worked example of
 * docs/porting.md. Together with mm/generic/sys_arch.h, used as it is
 * (CPU id 0, pushf/cli, a spinlock that keeps the saved flags), this is
 * the whole port: the five out-of-line hooks of sys.h and sys_config.
 *
 * Data flow: kmalloc_init asks sys_reserve for address space and gets the
 * fixed heap window (its PML4 slot made at boot, kernel.c). As the heap
 * grows, sys_commit takes frames from the kernel's frame allocator,
 * zeroes them (frames come back dirty) and maps them 4 KiB at a time (or
 * 2 MiB at a time in the kit's second, 2 MiB-page kernel: KIT_HUGE);
 * sys_release unmaps them and gives them back. Both may run inside the
 * timer interrupt (the self-test allocates there), so the frame allocator
 * and page-table code they call keep interrupts off themselves.
 */
#include "kernel.h"
#include "sys.h"

#ifdef KIT_HUGE
/* The 2 MiB configuration: a kernel that maps only 2 MiB pages commits
 * in 2 MiB units (mm/sys.h). */
#define UNIT       HUGE
#define unit_alloc huge_frame_alloc
#define unit_free  huge_frame_free
#define map_unit   map_huge
#define unmap_unit unmap_huge
#else
#define UNIT       PAGE
#define unit_alloc frame_alloc
#define unit_free  frame_free
#define map_unit   map_page
#define unmap_unit unmap_page
#endif

struct sys_config sys_config = {
	.page_size = UNIT,         /* 4 KiB pages, or 2 MiB ones (KIT_HUGE) */
	.commit_zeroed = 1,        /* sys_commit zeroes */
	.max_cpus = 1,             /* sys_cpu_id() is always 0 */
	.arena_size = 256ul << 20, /* more than the machine has: OOM is tested */
};

size_t port_committed; /* bytes: the self-test checks mm agrees */

int sys_reserve(size_t size, void **base)
{
	static int reserved;
	if (reserved || size > ARENA_WINDOW)
		return -1; /* kmalloc_init retries with half the arena */
	reserved = 1;
	*base = (void *)ARENA_BASE;
	return 0;
}

/* Unmap [va, va + n) and give the frames back. */
static void unmap_range(uintptr_t va, size_t n)
{
	for (size_t off = 0; off < n; off += UNIT)
		unit_free(unmap_unit(va + off));
}

/* All or nothing: on the first frame (or page-table frame) that cannot be
 * had, undo this call's pages and fail; mm returns NULL to its caller. */
int sys_commit(void *p, size_t n)
{
	uintptr_t va = (uintptr_t)p;
	for (size_t off = 0; off < n; off += UNIT) {
		uintptr_t pa = unit_alloc();
		if (pa != 0)
			memset((void *)pa, 0, UNIT);
		if (pa == 0 || map_unit(va + off, pa) != 0) {
			if (pa != 0)
				unit_free(pa);
			unmap_range(va, off);
			return -1;
		}
	}
	__atomic_add_fetch(&port_committed, n, __ATOMIC_RELAXED);
	return 0;
}

void sys_release(void *p, size_t n)
{
	unmap_range((uintptr_t)p, n);
	__atomic_sub_fetch(&port_committed, n, __ATOMIC_RELAXED);
}

/* One line, then stop: this kernel's panic ends the QEMU run. */
_Noreturn void sys_fault(const char *msg, const void *p)
{
	kprintf("kmalloc: %s: %p\n", msg, p);
	kernel_exit(KEXIT_FAULT);
}

void sys_log(const char *s)
{
	kprintf("%s\n", s);
}
