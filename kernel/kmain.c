/*
 * kmain.c: the kernel's boot sequence, in the order each step needs the
 * previous one:
 *   1. serial console (everything after can report);
 *   2. boot-info check (bad magic/version: message and stop);
 *   3. GDT/TSS/IDT for CPU 0 (exceptions now print and panic), then the
 *      loader's identity map is dropped and write/NX protection forced on;
 *   4. command line (options registered with KPARAM);
 *   5. layout and memory summary;
 *   6. memory init: the seam for the frame allocator, paging and kmalloc;
 *   7. SMP: the other CPUs started, the timer running on each, interrupts on;
 *   8. the self-tests, then QEMU exits with the verdict.
 */
#include <stdint.h>
#include "bootinfo_check.h"
#include "cmdline.h"
#include "ktest.h"
#include "panic.h"
#include "printk.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/debugexit.h"
#include "../arch/x86_64/gdt.h"
#include "../arch/x86_64/idt.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"
#include "../arch/x86_64/vm.h"

__attribute__((noreturn)) void kmain(uint64_t boot_info_phys);

void kmain(uint64_t boot_info_phys)
{
    console_init();
    printk("\nkernel: kmalloc-go kernel starting, boot info at phys 0x%lx\n", boot_info_phys);

    const struct boot_info *bi = PHYS_TO_VIRT(boot_info_phys);
    const char *bad = boot_info_check(bi);
    if (bad) {
        printk("kernel: FATAL: boot info rejected: %s (magic 0x%lx, version %u; want 0x%llx, %u)\n",
               bad, bi->magic, bi->version, BOOT_INFO_MAGIC, BOOT_INFO_VERSION);
        qemu_exit(KEXIT_PANIC);
    }
    boot_info = bi;

    gdt_init_cpu(0);
    idt_init();
    idt_load_cpu(0);
    percpu_init_cpu(0, 0);  /* GS base: this_cpu_id() works from here on */
    vm_drop_identity();
    vm_enable_protection();
    printk("kernel: GDT, TSS (IST stacks) and IDT loaded on CPU 0; identity map dropped\n");

    cmdline_apply(bi->cmdline, bi->cmdline_truncated);
    layout_print();

    /*
     * ---- MEMORY INIT SEAM ----
     * Issue 3/4 go here, in this order: the frame allocator from the boot
     * memory map (pmm_init(boot_memmap(), bi->memmap_count)), the paging
     * API on the loader's tables (bi->pml4_phys), then kmalloc_init() with
     * the arena at KMALLOC_ARENA_BASE; link the heap through KERNEL_LIBS in
     * kernel/build.mk. Register its fault diagnosis with idt_set_pf_hook().
     */
    printk("kernel: memory init: no allocator linked yet (seam in kmain)\n");

    smp_init(bi);

    unsigned failed = ktest_run();
    qemu_exit(failed ? KEXIT_FAIL : KEXIT_PASS);
}
