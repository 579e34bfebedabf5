/*
 * memmap.c: turn the firmware's final memory map into the kernel's.
 *
 * Runs after ExitBootServices, so it must not call the firmware and must
 * not allocate: it writes into an array the loader allocated beforehand,
 * sized for at least one entry per UEFI descriptor (converting never adds
 * entries; merging neighbours of the same type only removes them).
 */
#include "memmap.h"

uint32_t memmap_boot_type(uint32_t t)
{
    switch (t) {
    case EfiConventionalMemory:  return BOOT_MEM_USABLE;
    case EfiLoaderCode:
    case EfiLoaderData:
    case EfiBootServicesCode:
    case EfiBootServicesData:    return BOOT_MEM_RECLAIMABLE;
    case EfiACPIReclaimMemory:   return BOOT_MEM_ACPI_RECLAIM;
    case EfiACPIMemoryNVS:       return BOOT_MEM_ACPI_NVS;
    case EfiUnusableMemory:      return BOOT_MEM_BAD;
    case (uint32_t)LOADER_MEMTYPE_KERNEL: return BOOT_MEM_KERNEL;
    case (uint32_t)LOADER_MEMTYPE_TABLES: return BOOT_MEM_LOADER;
    default:                     return BOOT_MEM_RESERVED; /* runtime services, MMIO, persistent, unknown */
    }
}

static const EFI_MEMORY_DESCRIPTOR *desc_at(const uint8_t *map, UINTN i, UINTN desc_size)
{
    return (const EFI_MEMORY_DESCRIPTOR *)(map + i * desc_size);
}

uint64_t memmap_phys_end(const uint8_t *map, UINTN map_size, UINTN desc_size)
{
    uint64_t end = 0;
    for (UINTN i = 0; i < map_size / desc_size; i++) {
        const EFI_MEMORY_DESCRIPTOR *d = desc_at(map, i, desc_size);
        uint64_t e = d->PhysicalStart + d->NumberOfPages * 4096ull;
        if (e > end)
            end = e;
    }
    return end;
}

/* Returns the number of entries written: sorted by base, neighbours merged. */
uint64_t memmap_convert(const uint8_t *map, UINTN map_size, UINTN desc_size,
                        struct boot_mem_region *out, uint64_t cap)
{
    uint64_t n = 0;
    for (UINTN i = 0; i < map_size / desc_size && n < cap; i++) {
        const EFI_MEMORY_DESCRIPTOR *d = desc_at(map, i, desc_size);
        if (d->NumberOfPages == 0)
            continue;
        struct boot_mem_region r = {
            .base = d->PhysicalStart,
            .length = d->NumberOfPages * 4096ull,
            .type = memmap_boot_type(d->Type),
        };
        /* insertion sort: the firmware's map is normally sorted already */
        uint64_t j = n;
        while (j > 0 && out[j - 1].base > r.base) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = r;
        n++;
    }
    uint64_t w = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (w > 0 && out[w - 1].type == out[i].type && out[w - 1].base + out[w - 1].length == out[i].base)
            out[w - 1].length += out[i].length;
        else
            out[w++] = out[i];
    }
    return w;
}
