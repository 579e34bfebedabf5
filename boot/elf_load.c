/*
 * elf_load.c: copy a validated kernel.elf (elf_check.c) into freshly
 * allocated KERNEL-type frames: one physically contiguous block for the
 * whole image, zeroed (that is the bss), then the file bytes of each
 * segment at its offset from the image's first virtual address.
 */
#include "loader.h"

#define PAGE 4096ull

EFI_STATUS kernel_load(const uint8_t *file, struct kernel_image *img,
                       uint64_t loader_base, uint64_t loader_size)
{
    EFI_PHYSICAL_ADDRESS phys = 0;
    uint64_t pages = img->size / PAGE;
    EFI_STATUS st = BS->AllocatePages(AllocateAnyPages, LOADER_MEMTYPE_KERNEL, pages, &phys);
    if (EFI_ERROR(st))
        return st;
    /* Cannot happen with firmware that tracks its own image, but a broken
     * map would otherwise make us overwrite ourselves. */
    if (phys < loader_base + loader_size && loader_base < phys + img->size) {
        BS->FreePages(phys, pages);
        return EFI_VOLUME_CORRUPTED;
    }
    uint8_t *dst = (uint8_t *)(uintptr_t)phys;
    for (uint64_t i = 0; i < img->size; i++)
        dst[i] = 0;
    for (unsigned s = 0; s < img->nseg; s++) {
        const struct kernel_segment *k = &img->seg[s];
        uint8_t *to = dst + (k->vaddr - img->virt_base);
        for (uint64_t i = 0; i < k->filesz; i++)
            to[i] = file[k->offset + i];
    }
    img->phys_base = phys;
    return EFI_SUCCESS;
}
