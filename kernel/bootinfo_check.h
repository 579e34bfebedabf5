/*
 * bootinfo_check.h: the kernel's view of the loader's hand-off. kmain
 * validates it once (boot_info_check) and keeps the direct-map pointer in
 * `boot_info` for every later reader; it is read-only after kmain's start.
 */
#ifndef KERNEL_BOOTINFO_CHECK_H
#define KERNEL_BOOTINFO_CHECK_H

#include "../boot/bootinfo.h"

extern const struct boot_info *boot_info;

/* NULL if bi is usable, else why not. */
const char *boot_info_check(const struct boot_info *bi);

static inline const struct boot_mem_region *boot_memmap(void)
{
    return (const struct boot_mem_region *)(uintptr_t)(boot_info->memmap_phys + boot_info->direct_map_offset);
}

const char *boot_mem_type_name(uint32_t type);

/* Print the kernel's virtual layout and the physical memory summary. */
void layout_print(void);

#endif
