/*
 * bootinfo.h: the one contract between the UEFI loader and the kernel.
 *
 * The loader (boot/loader.c) fills a struct boot_info in a LOADER-type
 * frame, switches to the kernel's page tables and jumps to the kernel
 * entry with the struct's *physical* address in RDI. The kernel reads it
 * (and everything it points to) through the direct map, so every field is
 * a fixed-width integer and every reference is a physical address: no
 * pointer into the loader's address space survives the jump.
 *
 * The kernel checks magic and version before reading anything else. Add
 * fields only at the end and bump BOOT_INFO_VERSION when the layout changes.
 */
#ifndef BOOT_BOOTINFO_H
#define BOOT_BOOTINFO_H

#include <stdint.h>

#define BOOT_INFO_MAGIC   0x4f4f42436f47554bULL  /* "KUGoCBOO" little-endian: Go-style kmalloc boot */
#define BOOT_INFO_VERSION 1u

/*
 * Memory region types. The frame allocator (kernel/pmm) depends on these exact
 * values; the loader maps UEFI types onto them (boot/memmap.c).
 */
enum boot_mem_type {
    BOOT_MEM_USABLE       = 1, /* conventional memory, free now */
    BOOT_MEM_RECLAIMABLE  = 2, /* boot services + loader code/data: free once boot data is no longer needed */
    BOOT_MEM_ACPI_RECLAIM = 3, /* ACPI tables: free after the OS has parsed them */
    BOOT_MEM_ACPI_NVS     = 4, /* ACPI non-volatile storage: never touch */
    BOOT_MEM_RESERVED     = 5, /* runtime services, MMIO, firmware, anything unknown */
    BOOT_MEM_KERNEL       = 6, /* the kernel image's frames */
    BOOT_MEM_LOADER       = 7, /* page tables, boot info, memory map, SMP trampoline: keep */
    BOOT_MEM_BAD          = 8, /* memory the firmware reported as failing */
};
#define BOOT_MEM_TYPE_MAX 8

/* One memory-map entry; entries are sorted by base and never overlap. */
struct boot_mem_region {
    uint64_t base;    /* physical, 4 KiB aligned */
    uint64_t length;  /* bytes, multiple of 4 KiB */
    uint32_t type;    /* enum boot_mem_type */
    uint32_t reserved;
};

#define BOOT_CMDLINE_MAX 1024  /* bytes including the terminating NUL */

struct boot_info {
    uint64_t magic;            /* BOOT_INFO_MAGIC */
    uint32_t version;          /* BOOT_INFO_VERSION */
    uint32_t size;             /* sizeof(struct boot_info) as the loader built it */

    uint64_t memmap_phys;      /* array of struct boot_mem_region */
    uint64_t memmap_count;     /* entries in that array */
    uint64_t memmap_entry_size;/* sizeof(struct boot_mem_region) at build time */

    uint64_t rsdp_phys;        /* ACPI RSDP (2.0 table preferred), 0 if none */

    uint64_t kernel_phys_base; /* first frame of the loaded image */
    uint64_t kernel_phys_size; /* bytes, multiple of 4 KiB */
    uint64_t kernel_virt_base; /* virtual address of kernel_phys_base */
    uint64_t direct_map_offset;/* virtual = physical + this (DIRECT_MAP_BASE) */
    uint64_t direct_map_size;  /* bytes of physical memory the direct map covers */
    uint64_t pml4_phys;        /* the page tables the kernel starts on */
    uint64_t smp_trampoline_phys; /* one 4 KiB LOADER frame below 1 MiB for AP start-up, 0 if none */

    uint32_t cmdline_truncated;/* 1 if cmdline.txt was longer than BOOT_CMDLINE_MAX - 1 */
    uint32_t cmdline_len;      /* bytes before the NUL */
    char     cmdline[BOOT_CMDLINE_MAX]; /* NUL-terminated, newlines turned into spaces */
};

#endif
