/*
 * loader.h: what the parts of the UEFI loader hand each other.
 *
 * loader.c drives the boot: it reads kernel.elf and cmdline.txt from the
 * ESP, asks elf_load.c to validate the image (pure checks, no firmware
 * calls) and copy it into KERNEL-type frames, asks pagetables.c to build
 * the kernel's 4-level tables in LOADER-type frames, then exits boot
 * services and converts the final UEFI map with memmap.c before jumping.
 */
#ifndef BOOT_LOADER_H
#define BOOT_LOADER_H

#include <efi.h>
#include <efilib.h>
#include "bootinfo.h"

/*
 * UEFI lets an OS loader tag its allocations with memory types
 * 0x80000000 and up; the final memory map then tells them apart, and
 * memmap.c turns them into BOOT_MEM_KERNEL and BOOT_MEM_LOADER.
 */
#define LOADER_MEMTYPE_KERNEL ((EFI_MEMORY_TYPE)0x80000000u)
#define LOADER_MEMTYPE_TABLES ((EFI_MEMORY_TYPE)0x80000001u)

#define KERNEL_MAX_SEGMENTS 8

struct kernel_segment {
    uint64_t vaddr;   /* page aligned */
    uint64_t memsz;   /* bytes, rounded up to pages when mapped */
    uint64_t offset;  /* in the file */
    uint64_t filesz;
    uint32_t flags;   /* PF_R / PF_W / PF_X */
};

struct kernel_image {
    uint64_t entry;
    uint64_t virt_base;   /* first segment's vaddr */
    uint64_t size;        /* bytes from virt_base to the end of the last segment, page rounded */
    uint64_t phys_base;   /* filled by kernel_load */
    unsigned nseg;
    struct kernel_segment seg[KERNEL_MAX_SEGMENTS];
};

/* elf_load.c */
const char *kernel_validate(const uint8_t *file, uint64_t size, struct kernel_image *out);
EFI_STATUS kernel_load(const uint8_t *file, struct kernel_image *img,
                       uint64_t loader_base, uint64_t loader_size);

/* pagetables.c */
struct pt_pool {
    uint64_t base;   /* physical = loader-visible address of the pool */
    uint64_t pages;
    uint64_t used;
};
uint64_t pt_pages_needed(uint64_t direct_size, uint64_t kernel_size);
uint64_t pt_build(struct pt_pool *pool, const struct kernel_image *img, uint64_t direct_size,
                  uint64_t ident_base, uint64_t ident_size, int use_nx);

/* memmap.c */
uint32_t memmap_boot_type(uint32_t efi_type);
uint64_t memmap_convert(const uint8_t *efi_map, UINTN map_size, UINTN desc_size,
                        struct boot_mem_region *out, uint64_t cap);
uint64_t memmap_phys_end(const uint8_t *efi_map, UINTN map_size, UINTN desc_size);

#endif
