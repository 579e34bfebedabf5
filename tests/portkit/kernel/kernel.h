/*
 * kernel.h: what the kit kernel's parts share. kernel.c owns the console,
 * the frame allocator, the page tables and the interrupts; port.c (the
 * allocator's port) uses frames and pages; selftest.c drives the
 * allocator through the library's public header and runs from kmain.
 */
#ifndef KIT_KERNEL_H
#define KIT_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#define PAGE 4096ul

/* The heap's window: PML4 slot 2 (512 GiB), created at boot so that
 * every address space cloned from the kernel's would share it. */
#define ARENA_BASE 0x10000000000ul
#define ARENA_WINDOW (512ul << 30)

/* QEMU's isa-debug-exit turns code c into exit status 2c + 1
 * (tests/portkit/boot-case reads it). */
enum kexit {
	KEXIT_FAULT = 0x10, /* sys_fault: the double free at the end */
	KEXIT_FAIL = 0x11,  /* a self-test failed */
	KEXIT_TRAP = 0x12,  /* CPU exception */
	KEXIT_DONE = 0x13,  /* ran off the end: the double free went unseen */
};
_Noreturn void kernel_exit(enum kexit code);

void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);

/* Frame allocator: 4 KiB frames, identity-mapped (physical = virtual).
 * Frames come back dirty: frame_free fills them with 0x5a. */
uintptr_t frame_alloc(void); /* 0 when none is left */
void frame_free(uintptr_t pa);
extern size_t frames_total, frames_free;

/* 4 KiB pages in the heap window. map_page returns -1 when a page-table
 * frame cannot be had; unmap_page returns the frame that was mapped. */
int map_page(uintptr_t va, uintptr_t pa);
uintptr_t unmap_page(uintptr_t va);

/* The 2 MiB configuration (built with -DKIT_HUGE, the kit's second
 * kernel): the heap window is mapped with 2 MiB pages only, from 2 MiB
 * frames set apart at boot (counted in frames_total/frames_free as 512
 * frames each). */
#define HUGE (2ul << 20)
uintptr_t huge_frame_alloc(void); /* 0 when none is left */
void huge_frame_free(uintptr_t pa);
int map_huge(uintptr_t va, uintptr_t pa);
uintptr_t unmap_huge(uintptr_t va);
extern size_t pt_frames; /* page-table frames made for the window */

/* The port's count of bytes it has committed (port.c). */
extern size_t port_committed;

/* The kernel's allocator from before the migration: a bump allocator
 * for boot-time tables that never frees. It keeps the name kmalloc; the
 * library's functions are gok_kmalloc etc. (KMALLOC_PREFIX=gok_). */
void *kmalloc(size_t n);

void timer_start(void);
void timer_stop(void);
extern void (*volatile timer_hook)(void);

void selftest(void);

#endif /* KIT_KERNEL_H */
