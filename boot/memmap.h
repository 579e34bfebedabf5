/*
 * memmap.h: UEFI memory map -> the kernel's boot memory map (memmap.c).
 * Only UEFI type definitions, no firmware calls, so the host tests
 * (tests/boot/loader_test.c) compile it as is.
 */
#ifndef BOOT_MEMMAP_H
#define BOOT_MEMMAP_H

#include <efi.h>
#include "bootinfo.h"

/*
 * UEFI lets an OS loader tag its allocations with memory types
 * 0x80000000 and up; the final memory map then tells them apart, and
 * memmap.c turns them into BOOT_MEM_KERNEL and BOOT_MEM_LOADER.
 */
#define LOADER_MEMTYPE_KERNEL ((EFI_MEMORY_TYPE)0x80000000u)
#define LOADER_MEMTYPE_TABLES ((EFI_MEMORY_TYPE)0x80000001u)

/* The boot_mem_type for a UEFI memory type (unknown -> RESERVED). */
uint32_t memmap_boot_type(uint32_t efi_type);

/*
 * Convert a UEFI map (map_size bytes of desc_size-byte descriptors) into
 * at most cap regions in out: sorted by base, empty descriptors dropped,
 * touching neighbours of the same type merged. Returns the count written.
 * No allocation and no firmware call: safe after ExitBootServices.
 */
uint64_t memmap_convert(const uint8_t *efi_map, UINTN map_size, UINTN desc_size,
                        struct boot_mem_region *out, uint64_t cap);

/* One past the highest physical address any descriptor covers. */
uint64_t memmap_phys_end(const uint8_t *efi_map, UINTN map_size, UINTN desc_size);

#endif
