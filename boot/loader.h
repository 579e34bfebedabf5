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
#include "elf_check.h"
#include "memmap.h"

/* elf_load.c (kernel_validate is in elf_check.c) */
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


#endif
