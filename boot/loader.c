/*
 * loader.c: the UEFI application (EFI/BOOT/BOOTX64.EFI) that starts the kernel.
 *
 * Data flow, in order:
 *   1. read kernel.elf from the ESP into pool memory; elf_load.c validates
 *      it and copies its segments into KERNEL-type frames;
 *   2. read cmdline.txt (optional) into the boot info's inline buffer;
 *   3. find the ACPI RSDP in the firmware's configuration table;
 *   4. allocate LOADER-type frames: boot info, page-table pool, the array
 *      for the kernel's memory map, one SMP trampoline frame below 1 MiB;
 *   5. build the page tables (pagetables.c);
 *   6. GetMemoryMap + ExitBootServices, retrying while the map key is stale;
 *   7. convert the final map (memmap.c), set EFER.NXE and CR0.WP, load CR3
 *      and jump to the kernel entry with the boot info's physical address.
 * Any failure before step 6 prints "loader: error: <why>" and returns the
 * error to the firmware; after step 6 nothing can fail.
 */
#include "loader.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/memlayout.h"

#define FAIL(st, ...) do { Print(L"loader: error: "); Print(__VA_ARGS__); Print(L"\r\n"); return (st); } while (0)

static EFI_GUID acpi20_guid = { 0x8868e871, 0xe4f1, 0x11d3, { 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81 } };
static EFI_GUID acpi10_guid = { 0xeb9d2d30, 0x2d88, 0x11d3, { 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d } };

/* Read a whole file from the ESP root into pool memory. */
static EFI_STATUS read_file(EFI_FILE_HANDLE root, CHAR16 *name, uint8_t **data, uint64_t *size)
{
    EFI_FILE_HANDLE fh;
    EFI_STATUS st = root->Open(root, &fh, name, EFI_FILE_MODE_READ, 0);
    if (EFI_ERROR(st))
        return st;
    EFI_FILE_INFO *info = LibFileInfo(fh);
    if (!info) {
        fh->Close(fh);
        return EFI_DEVICE_ERROR;
    }
    uint64_t sz = info->FileSize;
    FreePool(info);
    uint8_t *buf = AllocatePool(sz ? sz : 1);
    if (!buf) {
        fh->Close(fh);
        return EFI_OUT_OF_RESOURCES;
    }
    uint64_t got = 0;
    while (got < sz) {
        UINTN n = sz - got;
        st = fh->Read(fh, &n, buf + got);
        if (EFI_ERROR(st) || n == 0)
            break;
        got += n;
    }
    fh->Close(fh);
    if (got != sz) {
        FreePool(buf);
        return EFI_ERROR(st) ? st : EFI_END_OF_FILE;
    }
    *data = buf;
    *size = sz;
    return EFI_SUCCESS;
}

static void read_cmdline(EFI_FILE_HANDLE root, struct boot_info *bi)
{
    uint8_t *data;
    uint64_t size;
    bi->cmdline[0] = 0;
    if (EFI_ERROR(read_file(root, L"cmdline.txt", &data, &size))) {
        Print(L"loader: no cmdline.txt, empty command line\r\n");
        return;
    }
    uint64_t n = 0;
    for (uint64_t i = 0; i < size; i++) {
        char c = (char)data[i];
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        if (n == BOOT_CMDLINE_MAX - 1) {
            bi->cmdline_truncated = 1;
            break;
        }
        bi->cmdline[n++] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    while (n > 0 && bi->cmdline[n - 1] == ' ')
        n--;
    bi->cmdline[n] = 0;
    bi->cmdline_len = (uint32_t)n;
    FreePool(data);
}

static int guid_eq(const EFI_GUID *a, const EFI_GUID *b)
{
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    for (unsigned i = 0; i < sizeof(EFI_GUID); i++)
        if (x[i] != y[i])
            return 0;
    return 1;
}

static uint64_t find_rsdp(EFI_SYSTEM_TABLE *st)
{
    uint64_t v1 = 0;
    for (UINTN i = 0; i < st->NumberOfTableEntries; i++) {
        EFI_CONFIGURATION_TABLE *t = &st->ConfigurationTable[i];
        if (guid_eq(&t->VendorGuid, &acpi20_guid))
            return (uint64_t)(uintptr_t)t->VendorTable;
        if (guid_eq(&t->VendorGuid, &acpi10_guid))
            v1 = (uint64_t)(uintptr_t)t->VendorTable;
    }
    return v1;
}

static EFI_STATUS alloc_loader_pages(uint64_t pages, uint64_t *phys)
{
    EFI_PHYSICAL_ADDRESS a = 0;
    EFI_STATUS st = BS->AllocatePages(AllocateAnyPages, LOADER_MEMTYPE_TABLES, pages, &a);
    *phys = a;
    return st;
}

/* 1. the kernel image: read, checked, placed at its physical base. */
static EFI_STATUS load_kernel(EFI_FILE_HANDLE root, EFI_LOADED_IMAGE *li, struct kernel_image *img)
{
    uint8_t *file;
    uint64_t file_size;
    EFI_STATUS st = read_file(root, L"kernel.elf", &file, &file_size);
    if (EFI_ERROR(st))
        FAIL(st, L"cannot read kernel.elf from the boot volume (%r)", st);
    const char *why = kernel_validate(file, file_size, img);
    if (why)
        FAIL(EFI_LOAD_ERROR, L"kernel.elf rejected: %a", why);
    st = kernel_load(file, img, (uint64_t)(uintptr_t)li->ImageBase, li->ImageSize);
    if (EFI_ERROR(st))
        FAIL(st, L"cannot place the kernel image (%r)", st);
    FreePool(file);
    Print(L"loader: kernel.elf %ld KiB at phys 0x%lx, entry 0x%lx\r\n", img->size / 1024,
          img->phys_base, img->entry);
    return EFI_SUCCESS;
}

/* 4. boot info, with 2. the command line and 3. the RSDP, and the SMP
 * trampoline frame. */
static EFI_STATUS make_boot_info(EFI_FILE_HANDLE root, EFI_SYSTEM_TABLE *systab, uint64_t *bi_phys)
{
    EFI_STATUS st = alloc_loader_pages((sizeof(struct boot_info) + 4095) / 4096, bi_phys);
    if (EFI_ERROR(st))
        FAIL(st, L"cannot allocate the boot info (%r)", st);
    struct boot_info *bi = (struct boot_info *)(uintptr_t)*bi_phys;
    SetMem(bi, sizeof(*bi), 0);
    bi->magic = BOOT_INFO_MAGIC;
    bi->version = BOOT_INFO_VERSION;
    bi->size = sizeof(*bi);
    bi->memmap_entry_size = sizeof(struct boot_mem_region);
    read_cmdline(root, bi);
    bi->rsdp_phys = find_rsdp(systab);
    EFI_PHYSICAL_ADDRESS tramp = 0xfffff;
    st = BS->AllocatePages(AllocateMaxAddress, LOADER_MEMTYPE_TABLES, 1, &tramp);
    if (EFI_ERROR(st)) {
        Print(L"loader: warning: no free frame below 1 MiB for the SMP trampoline (%r)\r\n", st);
        tramp = 0;
    }
    bi->smp_trampoline_phys = tramp;
    return EFI_SUCCESS;
}

/* The firmware's memory map, in a buffer with room to fetch it again. */
struct efimap {
    uint8_t *buf;
    UINTN cap, size, key, desc_size;
    UINT32 desc_ver;
};

/* Size the direct map and the map buffers from a first look at the map;
 * allocate the kernel's memory map (its regions at *mm_phys, room for
 * *region_cap). */
static EFI_STATUS size_from_map(struct boot_info *bi, struct efimap *m, uint64_t *mm_phys,
                                uint64_t *region_cap)
{
    m->size = 0;
    EFI_STATUS st = BS->GetMemoryMap(&m->size, NULL, &m->key, &m->desc_size, &m->desc_ver);
    if (st != EFI_BUFFER_TOO_SMALL)
        FAIL(st, L"GetMemoryMap size query failed (%r)", st);
    /* Slack for the allocations below and for a map that changes under us. */
    m->cap = m->size + 32 * m->desc_size;
    m->buf = AllocatePool(m->cap);
    if (!m->buf)
        FAIL(EFI_OUT_OF_RESOURCES, L"cannot allocate the memory-map buffer");
    m->size = m->cap;
    st = BS->GetMemoryMap(&m->size, (EFI_MEMORY_DESCRIPTOR *)m->buf, &m->key, &m->desc_size,
                          &m->desc_ver);
    if (EFI_ERROR(st))
        FAIL(st, L"GetMemoryMap failed (%r)", st);
    uint64_t direct = memmap_phys_end(m->buf, m->size, m->desc_size);
    if (direct < DIRECT_MAP_MIN_SIZE)
        direct = DIRECT_MAP_MIN_SIZE;
    direct = (direct + PAGE_SIZE_1G - 1) & ~(PAGE_SIZE_1G - 1);
    if (direct > DIRECT_MAP_MAX_SIZE) {
        Print(L"loader: warning: direct map capped at %ld GiB\r\n", DIRECT_MAP_MAX_SIZE >> 30);
        direct = DIRECT_MAP_MAX_SIZE;
    }
    bi->direct_map_offset = DIRECT_MAP_BASE;
    bi->direct_map_size = direct;
    *region_cap = m->cap / m->desc_size + 8;
    st = alloc_loader_pages((*region_cap * sizeof(struct boot_mem_region) + 4095) / 4096, mm_phys);
    if (EFI_ERROR(st))
        FAIL(st, L"cannot allocate the kernel memory map (%r)", st);
    return EFI_SUCCESS;
}

/* 6. final map and ExitBootServices; a stale key means the map changed
 * between the two calls, so fetch it again into the same buffer (after a
 * failed ExitBootServices only the memory services may be called; the
 * error message is best effort). */
static EFI_STATUS exit_boot(EFI_HANDLE image, struct efimap *m)
{
    for (int attempt = 0;; attempt++) {
        m->size = m->cap;
        EFI_STATUS st = BS->GetMemoryMap(&m->size, (EFI_MEMORY_DESCRIPTOR *)m->buf, &m->key,
                                         &m->desc_size, &m->desc_ver);
        if (EFI_ERROR(st))
            FAIL(st, L"final GetMemoryMap failed (%r)", st);
        st = BS->ExitBootServices(image, m->key);
        if (!EFI_ERROR(st))
            return EFI_SUCCESS;
        if (st != EFI_INVALID_PARAMETER || attempt == 8)
            FAIL(st, L"ExitBootServices failed after %d tries (%r)", attempt + 1, st);
    }
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab)
{
    InitializeLib(image, systab);
    Print(L"loader: kmalloc-go UEFI loader starting\r\n");

    EFI_LOADED_IMAGE *li = NULL;
    EFI_STATUS st = BS->HandleProtocol(image, &LoadedImageProtocol, (void **)&li);
    if (EFI_ERROR(st))
        FAIL(st, L"no LoadedImage protocol (%r)", st);
    EFI_FILE_HANDLE root = LibOpenRoot(li->DeviceHandle);
    if (!root)
        FAIL(EFI_NOT_FOUND, L"cannot open the boot volume");
    static struct kernel_image img;
    uint64_t bi_phys;
    st = load_kernel(root, li, &img);
    if (!EFI_ERROR(st))
        st = make_boot_info(root, systab, &bi_phys);
    if (EFI_ERROR(st))
        return st;
    root->Close(root);
    struct boot_info *bi = (struct boot_info *)(uintptr_t)bi_phys;
    struct efimap map;
    uint64_t mm_phys = 0, region_cap = 0;
    st = size_from_map(bi, &map, &mm_phys, &region_cap);
    if (EFI_ERROR(st))
        return st;

    /* 5. page tables */
    uint64_t loader_base = (uint64_t)(uintptr_t)li->ImageBase;
    struct pt_pool pool = { .pages = pt_pages_needed(bi->direct_map_size, img.size) };
    st = alloc_loader_pages(pool.pages, &pool.base);
    if (EFI_ERROR(st))
        FAIL(st, L"cannot allocate %ld page-table pages (%r)", pool.pages, st);
    int nx = cpu_has_nx();
    if (!nx)
        Print(L"loader: warning: CPU has no NX bit; data pages stay executable\r\n");
    uint64_t pml4 = pt_build(&pool, &img, bi->direct_map_size, loader_base, li->ImageSize, nx);
    if (!pml4)
        FAIL(EFI_OUT_OF_RESOURCES, L"page-table pool exhausted");
    bi->kernel_phys_base = img.phys_base;
    bi->kernel_phys_size = img.size;
    bi->kernel_virt_base = img.virt_base;
    bi->pml4_phys = pml4;
    Print(L"loader: direct map %ld GiB, %ld page-table pages, cmdline \"%a\"\r\n",
          bi->direct_map_size >> 30, pool.used, bi->cmdline);
    Print(L"loader: exiting boot services, jumping to the kernel\r\n");
    st = exit_boot(image, &map);
    if (EFI_ERROR(st))
        return st;

    /* 7. no firmware from here on */
    bi->memmap_phys = mm_phys;
    bi->memmap_count = memmap_convert(map.buf, map.size, map.desc_size,
                                      (struct boot_mem_region *)(uintptr_t)mm_phys, region_cap);
    if (nx)
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
    write_cr0(read_cr0() | CR0_WP);
    cpu_enter_kernel(pml4, img.entry, bi_phys);
}
