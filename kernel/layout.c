/*
 * layout.c: the boot report: where the kernel's sections and windows are
 * (linker symbols and arch/x86_64/memlayout.h) and how much physical
 * memory the boot map describes, by region type, in KiB and MiB.
 */
#include "bootinfo_check.h"
#include "printk.h"
#include "../arch/x86_64/memlayout.h"

const struct boot_info *boot_info;

extern const char __text_start[], __text_end[], __rodata_start[], __rodata_end[];
extern const char __data_start[], __data_end[], __bss_start[], __bss_end[];
extern const char boot_stack_bottom[], boot_stack_top[];

const char *boot_info_check(const struct boot_info *bi)
{
    if (bi->magic != BOOT_INFO_MAGIC)
        return "bad magic (not loaded by our loader?)";
    if (bi->version != BOOT_INFO_VERSION)
        return "version mismatch between loader and kernel";
    if (bi->size < sizeof(*bi))
        return "boot info smaller than this kernel expects";
    if (bi->memmap_entry_size != sizeof(struct boot_mem_region))
        return "memory-map entry size mismatch";
    if (bi->direct_map_offset != DIRECT_MAP_BASE)
        return "direct map is not at DIRECT_MAP_BASE";
    if (bi->memmap_count == 0)
        return "empty memory map";
    if (bi->direct_map_size < DIRECT_MAP_MIN_SIZE || bi->direct_map_size > DIRECT_MAP_MAX_SIZE)
        return "direct map size out of range";
    /* everything the kernel reads through the direct map must be inside it */
    if (bi->memmap_count > bi->direct_map_size / sizeof(struct boot_mem_region) ||
        bi->memmap_phys > bi->direct_map_size - bi->memmap_count * sizeof(struct boot_mem_region))
        return "memory map outside the direct map";
    if (bi->cmdline_len >= BOOT_CMDLINE_MAX || bi->cmdline[bi->cmdline_len] != 0)
        return "command line not NUL-terminated";
    return 0;
}

const char *boot_mem_type_name(uint32_t type)
{
    static const char *const names[] = {
        "?", "usable", "reclaimable", "ACPI reclaim", "ACPI NVS", "reserved", "kernel", "loader", "bad",
    };
    return type <= BOOT_MEM_TYPE_MAX ? names[type] : "?";
}

/* Size in the largest unit that keeps it a whole number of at least 1. */
static void range(const char *what, uint64_t lo, uint64_t hi, const char *note)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    uint64_t size = hi - lo;
    unsigned u = 0;
    while (u < 4 && size >= 1024 && size % 1024 == 0) {
        size /= 1024;
        u++;
    }
    printk("  %-14s 0x%016lx-0x%016lx %6lu %-3s %s\n", what, lo, hi, size, unit[u], note);
}

#define A(x) ((uint64_t)(uintptr_t)(x))

void layout_print(void)
{
    const struct boot_info *bi = boot_info;
    printk("kernel: virtual memory layout:\n");
    range("text", A(__text_start), A(__text_end), "r-x");
    range("rodata", A(__rodata_start), A(__rodata_end), "r-- nx");
    range("data", A(__data_start), A(__data_end), "rw- nx");
    range("bss", A(__bss_start), A(__bss_end), "rw- nx");
    range("boot stack", A(boot_stack_bottom), A(boot_stack_top), "rw- nx (in bss)");
    range("direct map", DIRECT_MAP_BASE, DIRECT_MAP_BASE + bi->direct_map_size, "rw- nx, 2 MiB pages");
    range("kmalloc arena", KMALLOC_ARENA_BASE, KMALLOC_ARENA_BASE + KMALLOC_ARENA_SIZE, "reserved, unmapped");
    range("kernel stacks", KSTACK_WINDOW_BASE, KSTACK_WINDOW_BASE + KSTACK_WINDOW_SIZE, "reserved, unmapped");
    printk("  kernel image   phys 0x%lx-0x%lx at virt 0x%lx\n", bi->kernel_phys_base,
           bi->kernel_phys_base + bi->kernel_phys_size, bi->kernel_virt_base);
    printk("  page tables    PML4 at phys 0x%lx, SMP trampoline frame at phys 0x%lx\n",
           bi->pml4_phys, bi->smp_trampoline_phys);
    printk("  ACPI RSDP      phys 0x%lx\n", bi->rsdp_phys);

    uint64_t by_type[BOOT_MEM_TYPE_MAX + 1] = { 0 }, total = 0;
    const struct boot_mem_region *m = boot_memmap();
    printk("kernel: boot memory map, %lu regions:\n", bi->memmap_count);
    for (uint64_t i = 0; i < bi->memmap_count; i++) {
        uint32_t t = m[i].type <= BOOT_MEM_TYPE_MAX ? m[i].type : 0;
        by_type[t] += m[i].length;
        total += m[i].length;
        printk("  [0x%012lx-0x%012lx] %-12s %8lu KiB\n", m[i].base, m[i].base + m[i].length - 1,
               boot_mem_type_name(m[i].type), m[i].length >> 10);
    }
    printk("kernel: physical memory by type:\n");
    for (uint32_t t = 1; t <= BOOT_MEM_TYPE_MAX; t++)
        printk("  %-12s %9lu KiB %6lu MiB\n", boot_mem_type_name(t), by_type[t] >> 10, by_type[t] >> 20);
    printk("  %-12s %9lu KiB %6lu MiB (every region in the map)\n", "total", total >> 10, total >> 20);
    /*
     * "reserved" mixes firmware RAM with MMIO windows (PCIe ECAM, flash),
     * which are not memory, so the RAM figure leaves it out, like Linux's
     * "Memory: available/total" line counts only RAM pages.
     */
    uint64_t ram = total - by_type[BOOT_MEM_RESERVED];
    printk("Memory: %luK/%luK available (%luK kernel, %luK loader, %luK reclaimable, %luK ACPI, %luK reserved)\n",
           by_type[BOOT_MEM_USABLE] >> 10, ram >> 10, by_type[BOOT_MEM_KERNEL] >> 10,
           by_type[BOOT_MEM_LOADER] >> 10, by_type[BOOT_MEM_RECLAIMABLE] >> 10,
           (by_type[BOOT_MEM_ACPI_RECLAIM] + by_type[BOOT_MEM_ACPI_NVS]) >> 10,
           by_type[BOOT_MEM_RESERVED] >> 10);
}
