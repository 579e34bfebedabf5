/*
 * elf_check.c: check kernel.elf before trusting any of it (see elf_check.h).
 * Every offset is compared against the file size by subtraction, never by
 * adding to an untrusted value, so a huge field cannot wrap past a check.
 */
#include <stddef.h>
#include "elf_check.h"
#include "elf64.h"
#include "../arch/x86_64/memlayout.h"

#define PAGE 4096ull

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

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

