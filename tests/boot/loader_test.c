/*
 * loader_test.c: host unit tests (Check) for the loader's two pure parts,
 * run by `make test` before the QEMU boot cases:
 *   - elf_check.c on the real build/kernel/kernel.elf and on corrupted
 *     copies (every truncation length, each header field broken, seeded
 *     random byte flips): bad images are rejected with a reason, accepted
 *     ones always satisfy the invariants the loader relies on;
 *   - memmap.c: UEFI -> boot type mapping, sorting, merging, the cap.
 * The kernel image path comes from the KERNEL_ELF environment variable.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/elf_check.h"
#include "boot/elf64.h"
#include "boot/memmap.h"
#include "arch/x86_64/memlayout.h"
#include "../lib/xorshift.h"

static uint8_t *image;
static size_t image_size;

static void load_image(void)
{
    const char *path = getenv("KERNEL_ELF");
    ck_assert_msg(path != NULL, "set KERNEL_ELF to the kernel image");
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    image_size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    image = malloc(image_size);
    ck_assert(image != NULL);
    ck_assert_uint_eq(fread(image, 1, image_size, f), image_size);
    fclose(f);
}

static void free_image(void)
{
    free(image);
    image = NULL;
}

/* What the loader relies on for any accepted image, whatever its bytes. */
static void check_invariants(const struct kernel_image *k, size_t size)
{
    ck_assert_uint_ge(k->nseg, 1);
    ck_assert_uint_le(k->nseg, KERNEL_MAX_SEGMENTS);
    int entry_in_exec = 0;
    for (unsigned i = 0; i < k->nseg; i++) {
        const struct kernel_segment *s = &k->seg[i];
        ck_assert_uint_eq(s->vaddr % 4096, 0);
        ck_assert_uint_le(s->filesz, s->memsz);
        ck_assert_uint_le(s->offset, size);
        ck_assert_uint_le(s->filesz, size - s->offset);
        ck_assert_uint_ge(s->vaddr, KERNEL_VIRT_BASE);
        ck_assert_uint_le(s->vaddr - KERNEL_VIRT_BASE + s->memsz, KERNEL_VIRT_MAX);
        if (i > 0)
            ck_assert_uint_ge(s->vaddr, k->seg[i - 1].vaddr + ((k->seg[i - 1].memsz + 4095) & ~4095ull));
        if ((s->flags & PF_X) && k->entry >= s->vaddr && k->entry < s->vaddr + s->memsz)
            entry_in_exec = 1;
    }
    ck_assert(entry_in_exec);
    ck_assert_uint_eq(k->virt_base, k->seg[0].vaddr);
    ck_assert_uint_eq(k->size % 4096, 0);
}

static const char *validate_copy(void (*patch)(uint8_t *img))
{
    uint8_t *copy = malloc(image_size);
    memcpy(copy, image, image_size);
    patch(copy);
    struct kernel_image k;
    const char *why = kernel_validate(copy, image_size, &k);
    free(copy);
    return why;
}

static struct elf64_ehdr *eh(uint8_t *img) { return (struct elf64_ehdr *)img; }
static struct elf64_phdr *ph(uint8_t *img, int i) { return (struct elf64_phdr *)(img + eh(img)->e_phoff) + i; }

START_TEST(real_kernel_accepted)
{
    struct kernel_image k;
    const char *why = kernel_validate(image, image_size, &k);
    ck_assert_msg(why == NULL, "rejected: %s", why);
    check_invariants(&k, image_size);
    ck_assert_uint_eq(k.virt_base, KERNEL_VIRT_BASE);
    ck_assert_uint_eq(k.entry, eh(image)->e_entry);
    /* text R-X, rodata R--, data R-W: the loader maps each differently */
    ck_assert_uint_eq(k.nseg, 3);
    ck_assert_uint_eq(k.seg[0].flags, PF_R | PF_X);
    ck_assert_uint_eq(k.seg[1].flags, PF_R);
    ck_assert_uint_eq(k.seg[2].flags, PF_R | PF_W);
    ck_assert_uint_gt(k.seg[2].memsz, k.seg[2].filesz);  /* .bss */
}
END_TEST

START_TEST(every_truncation_rejected)
{
    /* the image needs every byte up to the end of its last file-backed segment */
    struct kernel_image k;
    ck_assert(kernel_validate(image, image_size, &k) == NULL);
    uint64_t need = 0;
    for (unsigned i = 0; i < k.nseg; i++)
        if (k.seg[i].offset + k.seg[i].filesz > need)
            need = k.seg[i].offset + k.seg[i].filesz;
    for (size_t len = 0; len < image_size; len++) {
        struct kernel_image t;
        const char *why = kernel_validate(image, len, &t);
        if (len < need)
            ck_assert_msg(why != NULL, "truncated to %zu of %zu bytes but accepted", len, image_size);
        else
            ck_assert_msg(why == NULL, "truncated only past the segments (%zu) but rejected: %s", len, why);
    }
}
END_TEST

static void p_magic(uint8_t *i) { i[1] = 'X'; }
static void p_class(uint8_t *i) { i[4] = 1; /* ELFCLASS32 */ }
static void p_endian(uint8_t *i) { i[5] = 2; /* big-endian */ }
static void p_machine(uint8_t *i) { eh(i)->e_machine = 183; /* AArch64 */ }
static void p_type(uint8_t *i) { eh(i)->e_type = 3; /* ET_DYN */ }
static void p_phentsize(uint8_t *i) { eh(i)->e_phentsize = 32; }
static void p_phnum0(uint8_t *i) { eh(i)->e_phnum = 0; }
static void p_phoff_past(uint8_t *i) { eh(i)->e_phoff = image_size - 8; }
static void p_phoff_wrap(uint8_t *i) { eh(i)->e_phoff = UINT64_MAX - 8; }
static void p_offset_wrap(uint8_t *i) { ph(i, 0)->p_offset = UINT64_MAX - 16; }
static void p_filesz_big(uint8_t *i) { ph(i, 1)->p_filesz = ph(i, 1)->p_memsz + 4096; }
static void p_low_vaddr(uint8_t *i) { ph(i, 0)->p_vaddr = 0x100000; }
static void p_memsz_huge(uint8_t *i) { ph(i, 2)->p_memsz = UINT64_MAX - 4096; }
static void p_unaligned(uint8_t *i) { ph(i, 1)->p_vaddr += 8; }
static void p_overlap(uint8_t *i) { ph(i, 1)->p_vaddr = ph(i, 0)->p_vaddr; }
static void p_entry_data(uint8_t *i) { eh(i)->e_entry = ph(i, 1)->p_vaddr; }
static void p_no_load(uint8_t *i) { for (int k = 0; k < eh(i)->e_phnum; k++) ph(i, k)->p_type = 0; }

static const struct {
    const char *name;
    void (*patch)(uint8_t *);
    const char *reason_has;  /* a word the loader's message must contain */
} corruptions[] = {
    { "magic", p_magic, "magic" },
    { "class", p_class, "64-bit" },
    { "endianness", p_endian, "little-endian" },
    { "machine", p_machine, "x86-64" },
    { "type", p_type, "executable" },
    { "phentsize", p_phentsize, "program header size" },
    { "phnum 0", p_phnum0, "no program headers" },
    { "phoff past end", p_phoff_past, "past the end" },
    { "phoff wraps", p_phoff_wrap, "past the end" },
    { "segment offset wraps", p_offset_wrap, "past the end" },
    { "filesz > memsz", p_filesz_big, "larger than" },
    { "vaddr in the lower half", p_low_vaddr, "kernel window" },
    { "memsz huge", p_memsz_huge, "kernel window" },
    { "vaddr unaligned", p_unaligned, "aligned" },
    { "segments overlap", p_overlap, "overlap" },
    { "entry in data", p_entry_data, "entry point" },
    { "no PT_LOAD", p_no_load, "no loadable" },
};

START_TEST(corruption_rejected)
{
    const char *why = validate_copy(corruptions[_i].patch);
    ck_assert_msg(why != NULL, "%s: corrupted image accepted", corruptions[_i].name);
    ck_assert_msg(strstr(why, corruptions[_i].reason_has) != NULL,
                  "%s: reason \"%s\" lacks \"%s\"", corruptions[_i].name, why, corruptions[_i].reason_has);
}
END_TEST

START_TEST(random_header_flips_keep_invariants)
{
    /* Seeded, so a failure reproduces. Flip 1..4 bytes in the ELF and
     * program headers; whatever is accepted must still be safe to load. */
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    size_t hdr = sizeof(struct elf64_ehdr) + eh(image)->e_phnum * sizeof(struct elf64_phdr);
    uint8_t *copy = malloc(image_size);
    unsigned accepted = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(copy, image, image_size);
        int flips = 1 + (int)(xorshift64(&seed) % 4);
        for (int f = 0; f < flips; f++) {
            uint64_t r = xorshift64(&seed);
            size_t at = (r >> 8) % hdr;
            copy[at] ^= (uint8_t)(1u << (r % 8));
        }
        struct kernel_image k;
        if (kernel_validate(copy, image_size, &k) == NULL) {
            check_invariants(&k, image_size);
            accepted++;
        }
    }
    free(copy);
    /* some flips hit fields the loader ignores (e_shoff, p_paddr, ...) */
    ck_assert_uint_gt(accepted, 0);
}
END_TEST

/* ---- memory map ---- */

/* Every UEFI memory type (and the loader's own) and the boot type it
 * becomes; one loop iteration per row, so each wrong row is reported. */
static const struct {
    uint32_t uefi, boot;
} type_map[] = {
    { EfiConventionalMemory, BOOT_MEM_USABLE },
    { EfiLoaderCode, BOOT_MEM_RECLAIMABLE },
    { EfiLoaderData, BOOT_MEM_RECLAIMABLE },
    { EfiBootServicesCode, BOOT_MEM_RECLAIMABLE },
    { EfiBootServicesData, BOOT_MEM_RECLAIMABLE },
    { EfiRuntimeServicesCode, BOOT_MEM_RESERVED },
    { EfiRuntimeServicesData, BOOT_MEM_RESERVED },
    { EfiACPIReclaimMemory, BOOT_MEM_ACPI_RECLAIM },
    { EfiACPIMemoryNVS, BOOT_MEM_ACPI_NVS },
    { EfiUnusableMemory, BOOT_MEM_BAD },
    { EfiMemoryMappedIO, BOOT_MEM_RESERVED },
    { EfiMemoryMappedIOPortSpace, BOOT_MEM_RESERVED },
    { EfiPalCode, BOOT_MEM_RESERVED },
    { 14 /* persistent */, BOOT_MEM_RESERVED },
    { 0x70000000u /* OEM */, BOOT_MEM_RESERVED },
    { LOADER_MEMTYPE_KERNEL, BOOT_MEM_KERNEL },
    { LOADER_MEMTYPE_TABLES, BOOT_MEM_LOADER },
    { 0x80000002u, BOOT_MEM_RESERVED },
};

START_TEST(uefi_types_mapped)
{
    ck_assert_msg(memmap_boot_type(type_map[_i].uefi) == type_map[_i].boot,
                  "UEFI type %#x: boot type %u, want %u", (unsigned)type_map[_i].uefi,
                  (unsigned)memmap_boot_type(type_map[_i].uefi), (unsigned)type_map[_i].boot);
}
END_TEST

/* Descriptors are 48 bytes here, as OVMF reports them: larger than the
 * struct, so the code must step by desc_size. */
#define DESC 48

static void put_desc(uint8_t *map, int i, uint32_t type, uint64_t base, uint64_t pages)
{
    EFI_MEMORY_DESCRIPTOR d = { .Type = type, .PhysicalStart = base, .NumberOfPages = pages };
    memset(map + i * DESC, 0xa5, DESC);
    memcpy(map + i * DESC, &d, sizeof(d));
}

START_TEST(convert_sorts_and_merges)
{
    uint8_t map[8 * DESC];
    put_desc(map, 0, EfiBootServicesData, 0x200000, 16);  /* -> reclaimable */
    put_desc(map, 1, EfiConventionalMemory, 0x1000, 4);
    put_desc(map, 2, EfiLoaderCode, 0x210000, 1);         /* touches #0, same boot type: merge */
    put_desc(map, 3, EfiConventionalMemory, 0x5000, 3);   /* touches #1: merge */
    put_desc(map, 4, EfiConventionalMemory, 0x9000, 1);   /* gap at 0x8000: separate */
    put_desc(map, 5, EfiRuntimeServicesData, 0x100000, 0);/* empty: dropped */
    put_desc(map, 6, LOADER_MEMTYPE_KERNEL, 0x300000, 2);
    put_desc(map, 7, EfiMemoryMappedIO, 0xfec00000, 1);

    struct boot_mem_region out[8];
    uint64_t n = memmap_convert(map, sizeof(map), DESC, out, 8);
    ck_assert_uint_eq(n, 5);
    const struct boot_mem_region want[] = {
        { 0x1000, 7 * 4096, BOOT_MEM_USABLE, 0 },
        { 0x9000, 4096, BOOT_MEM_USABLE, 0 },
        { 0x200000, 17 * 4096, BOOT_MEM_RECLAIMABLE, 0 },
        { 0x300000, 2 * 4096, BOOT_MEM_KERNEL, 0 },
        { 0xfec00000, 4096, BOOT_MEM_RESERVED, 0 },
    };
    for (unsigned i = 0; i < n; i++) {
        ck_assert_uint_eq(out[i].base, want[i].base);
        ck_assert_uint_eq(out[i].length, want[i].length);
        ck_assert_uint_eq(out[i].type, want[i].type);
    }
    ck_assert_uint_eq(memmap_phys_end(map, sizeof(map), DESC), 0xfec01000ull);
}
END_TEST

START_TEST(convert_respects_capacity)
{
    uint8_t map[4 * DESC];
    for (int i = 0; i < 4; i++)
        put_desc(map, i, i % 2 ? EfiConventionalMemory : EfiACPIMemoryNVS, 0x100000 * (uint64_t)(4 - i), 1);
    struct boot_mem_region out[3];
    memset(out, 0x5a, sizeof(out));
    uint64_t n = memmap_convert(map, sizeof(map), DESC, out, 2);
    ck_assert_uint_le(n, 2);
    /* the entry past the cap is untouched */
    ck_assert_uint_eq(out[2].base, 0x5a5a5a5a5a5a5a5aull);
    for (unsigned i = 1; i < n; i++)
        ck_assert_uint_gt(out[i].base, out[i - 1].base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loader");
    TCase *elf = tcase_create("elf_check");
    tcase_add_checked_fixture(elf, load_image, free_image);
    tcase_set_timeout(elf, 60);
    tcase_add_test(elf, real_kernel_accepted);
    tcase_add_test(elf, every_truncation_rejected);
    tcase_add_loop_test(elf, corruption_rejected, 0, sizeof(corruptions) / sizeof(corruptions[0]));
    tcase_add_test(elf, random_header_flips_keep_invariants);
    suite_add_tcase(s, elf);
    TCase *mm = tcase_create("memmap");
    tcase_add_loop_test(mm, uefi_types_mapped, 0, sizeof(type_map) / sizeof(type_map[0]));
    tcase_add_test(mm, convert_sorts_and_merges);
    tcase_add_test(mm, convert_respects_capacity);
    suite_add_tcase(s, mm);

    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
