/*
 * elf_check.h: validation of kernel.elf before the loader trusts any of it
 * (elf_check.c). Pure function over a byte buffer: no firmware calls, so
 * the host tests (tests/boot/loader_test.c) run it on real and corrupted
 * images.
 */
#ifndef BOOT_ELF_CHECK_H
#define BOOT_ELF_CHECK_H

#include <stdint.h>

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

/*
 * NULL when the image is acceptable (and *out describes it), else a
 * one-line reason. Accepted means: an x86-64 little-endian ELF64
 * executable whose program headers and PT_LOAD file ranges lie inside the
 * file; segments page aligned, sorted, disjoint, with filesz <= memsz,
 * inside the kernel window (KERNEL_VIRT_BASE + 1 GiB, far from the
 * identity-mapped loader); the entry point inside an executable segment.
 */
const char *kernel_validate(const uint8_t *file, uint64_t size, struct kernel_image *out);

#endif
