/*
 * memlayout.h: the kernel's virtual address map, drawn once.
 *
 * The UEFI loader builds the first page tables from these constants and
 * the kernel reads them back; nothing else hard-codes a virtual address.
 * x86-64 4-level paging gives 48-bit canonical addresses; the kernel owns
 * the upper half (PML4 slots 256..511):
 *
 *   0x0000000000000000 .. 0x00007fffffffffff  lower half: the loader's
 *        identity map during the jump only; the kernel clears PML4 slots
 *        0..255 in kmain, so any low access faults afterwards
 *   0xffff800000000000 .. +max(phys end, 4 GiB)  DIRECT MAP of physical
 *        memory with 2 MiB pages, writable, NX (phys p is at DIRECT_MAP_BASE+p)
 *   0xffffa00000000000 .. +16 TiB  KMALLOC ARENA window: reserved, empty at
 *        boot; the heap (mm/) maps its pages here
 *   0xffffb00000000000 .. +1 TiB  guarded kernel stacks (one per CPU, with
 *        unmapped guard pages between them); reserved, empty at boot
 *   0xffffc00000000000            never mapped: fault_selftest probes here
 *   0xffffffff80000000 .. +1 GiB  KERNEL IMAGE (-mcmodel=kernel), 4 KiB
 *        pages: text R-X, rodata R--+NX, data/bss RW-+NX
 *
 * Physical memory is described only by the boot memory map (boot/bootinfo.h).
 */
#ifndef ARCH_X86_64_MEMLAYOUT_H
#define ARCH_X86_64_MEMLAYOUT_H

#define PAGE_SIZE_4K        0x1000ULL
#define PAGE_SIZE_2M        0x200000ULL
#define PAGE_SIZE_1G        0x40000000ULL

#define DIRECT_MAP_BASE     0xffff800000000000ULL
#define DIRECT_MAP_MIN_SIZE 0x100000000ULL        /* always cover low 4 GiB (LAPIC, IOAPIC) */
#define DIRECT_MAP_MAX_SIZE 0x200000000000ULL     /* 32 TiB: up to the arena window */

#define KMALLOC_ARENA_BASE  0xffffa00000000000ULL
#define KMALLOC_ARENA_SIZE  0x100000000000ULL     /* 16 TiB */

#define KSTACK_WINDOW_BASE  0xffffb00000000000ULL
#define KSTACK_WINDOW_SIZE  0x10000000000ULL      /* 1 TiB */

#define UNMAPPED_PROBE_ADDR 0xffffc00000000000ULL

#define KERNEL_VIRT_BASE    0xffffffff80000000ULL
#define KERNEL_VIRT_MAX     0x40000000ULL         /* the image must fit in 1 GiB */

/* Physical address -> its alias in the direct map, and back. */
#define PHYS_TO_VIRT(p)     ((void *)((unsigned long long)(p) + DIRECT_MAP_BASE))
#define VIRT_TO_PHYS(v)     ((unsigned long long)(v) - DIRECT_MAP_BASE)

/* Page-table entry bits (Intel SDM vol. 3, 4.5). */
#define PTE_P               (1ULL << 0)
#define PTE_W               (1ULL << 1)
#define PTE_U               (1ULL << 2)
#define PTE_PS              (1ULL << 7)
#define PTE_G               (1ULL << 8)
#define PTE_NX              (1ULL << 63)
#define PTE_ADDR_MASK       0x000ffffffffff000ULL

#define PML4_INDEX(va)      (((va) >> 39) & 511)
#define PDPT_INDEX(va)      (((va) >> 30) & 511)
#define PD_INDEX(va)        (((va) >> 21) & 511)
#define PT_INDEX(va)        (((va) >> 12) & 511)

#endif
