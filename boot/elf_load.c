/*
 * elf_load.c: check kernel.elf before trusting any of it, then copy its
 * loadable segments into freshly allocated KERNEL-type frames.
 *
 * kernel_validate only reads the file buffer (no firmware calls), so every
 * field it returns is already known to be consistent: header inside the
 * file, program headers inside the file, segments inside the file, page
 * aligned, sorted, disjoint and inside the kernel's higher-half window.
 * kernel_load then allocates one physically contiguous block for the whole
 * image, zeroes it (that is the bss) and copies the file bytes in.
 */
#include "loader.h"
#include "elf64.h"
#include "../arch/x86_64/memlayout.h"

#define PAGE 4096ull

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

/* Returns NULL when the image is acceptable, else a one-line reason. */
const char *kernel_validate(const uint8_t *file, uint64_t size, struct kernel_image *out)
{
    const struct elf64_ehdr *eh = (const struct elf64_ehdr *)file;

    if (size < sizeof(*eh))
        return "file too small for an ELF header (truncated?)";
    if (eh->e_ident[0] != 0x7f || eh->e_ident[1] != 'E' || eh->e_ident[2] != 'L' || eh->e_ident[3] != 'F')
        return "bad ELF magic (not an ELF file)";
    if (eh->e_ident[4] != ELFCLASS64)
        return "not a 64-bit ELF (EI_CLASS)";
    if (eh->e_ident[5] != ELFDATA2LSB)
        return "not a little-endian ELF (EI_DATA)";
    if (eh->e_machine != EM_X86_64)
        return "not an x86-64 ELF (e_machine)";
    if (eh->e_type != ET_EXEC)
        return "not an executable ELF (e_type)";
    if (eh->e_phentsize != sizeof(struct elf64_phdr))
        return "unexpected program header size";
    if (eh->e_phnum == 0)
        return "no program headers";
    if (eh->e_phoff > size || (uint64_t)eh->e_phnum * sizeof(struct elf64_phdr) > size - eh->e_phoff)
        return "program headers extend past the end of the file (truncated?)";

    const struct elf64_phdr *ph = (const struct elf64_phdr *)(file + eh->e_phoff);
    unsigned n = 0;
    uint64_t prev_end = KERNEL_VIRT_BASE;
    int entry_ok = 0;

    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
            continue;
        const struct elf64_phdr *p = &ph[i];
        if (n == KERNEL_MAX_SEGMENTS)
            return "too many loadable segments";
        if (p->p_vaddr % PAGE != 0)
            return "segment not page aligned";
        if (p->p_filesz > p->p_memsz)
            return "segment file size larger than its memory size";
        if (p->p_offset > size || p->p_filesz > size - p->p_offset)
            return "segment extends past the end of the file (truncated?)";
        /* The window check also keeps every segment away from the loader,
         * which runs identity-mapped in the lower half. */
        if (p->p_vaddr < KERNEL_VIRT_BASE || p->p_memsz > KERNEL_VIRT_MAX ||
            p->p_vaddr - KERNEL_VIRT_BASE > KERNEL_VIRT_MAX - p->p_memsz)
            return "segment outside the kernel window 0xffffffff80000000 + 1 GiB";
        if (p->p_vaddr < prev_end)
            return "segments overlap or are not sorted by address";
        prev_end = p->p_vaddr + round_up(p->p_memsz, PAGE);
        if ((p->p_flags & PF_X) && eh->e_entry >= p->p_vaddr && eh->e_entry < p->p_vaddr + p->p_memsz)
            entry_ok = 1;
        out->seg[n].vaddr = p->p_vaddr;
        out->seg[n].memsz = p->p_memsz;
        out->seg[n].offset = p->p_offset;
        out->seg[n].filesz = p->p_filesz;
        out->seg[n].flags = p->p_flags;
        n++;
    }
    if (n == 0)
        return "no loadable segments";
    if (!entry_ok)
        return "entry point is not inside an executable segment";
    out->nseg = n;
    out->entry = eh->e_entry;
    out->virt_base = out->seg[0].vaddr;
    out->size = prev_end - out->virt_base;
    return NULL;
}

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
