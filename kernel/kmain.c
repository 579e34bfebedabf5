/*
 * kmain.c: the kernel's boot sequence, in the order each step needs the
 * previous one:
 *   1. serial console (everything after can report);
 *   2. boot-info check (bad magic/version/layout: panic, which ends QEMU);
 *   3. GDT/TSS/IDT for CPU 0 (exceptions now print and panic), then the
 *      loader's identity map is dropped and write/NX protection forced on;
 *   4. command line (options registered with KPARAM);
 *   5. layout and memory summary;
 *   6. memory init: frame allocator, paging, kmalloc (kernel/mem.c);
 *   7. SMP: the other CPUs started, the timer running on each, interrupts on;
 *   8. the self-tests, the heap and frame reports, then (kmemleak=on) a
 *      leak scan of what the self-tests left: every leak is printed and
 *      fails the run, so the summary line is the last thing a run shows
 *      before QEMU exits with the verdict.
 */
#include <stdint.h>
#include "bootinfo_check.h"
#include "cmdline.h"
#include "ktest.h"
#include "mem.h"
#include "panic.h"
#include "printk.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/debugexit.h"
#include "../arch/x86_64/gdt.h"
#include "../arch/x86_64/idt.h"
#include "../arch/x86_64/kmemleak.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"
#include "../arch/x86_64/vm.h"

__attribute__((noreturn)) void kmain(uint64_t boot_info_phys);
extern const char boot_stack_guard[];  /* entry.S */

void kmain(uint64_t boot_info_phys)
{
    console_init();
    printk("\nkernel: kmalloc-go kernel starting, boot info at phys 0x%lx\n", boot_info_phys);

    const struct boot_info *bi = PHYS_TO_VIRT(boot_info_phys);
    const char *bad = boot_info_check(bi);
    if (bad)
        panic("boot info rejected: %s (magic 0x%lx, version %u; this kernel wants 0x%llx, %u)",
              bad, bi->magic, bi->version, BOOT_INFO_MAGIC, BOOT_INFO_VERSION);
    boot_info = bi;

    gdt_init_cpu(0);
    idt_init();
    idt_load_cpu(0);
    percpu_init_cpu(0, 0);  /* GS base: this_cpu_id() works from here on */
    vm_drop_identity();
    vm_enable_protection();
    if (vm_unmap_4k((uint64_t)(uintptr_t)boot_stack_guard) != 0)
        panic("cannot unmap the boot stack guard page at %p", (void *)boot_stack_guard);
    printk("kernel: GDT, TSS (IST stacks) and IDT loaded on CPU 0; identity map dropped; boot stack guard page unmapped\n");

    cmdline_apply(bi->cmdline, bi->cmdline_truncated);
    layout_print();

    /*
     * ---- MEMORY INIT ----
     * Frame allocator from the boot memory map, paging on the live tables,
     * kmalloc with its arena at KMALLOC_ARENA_BASE, the heap's page-fault
     * diagnosis (kernel/mem.c). From here on kernel code allocates with
     * kmalloc (mm/kmalloc.h).
     */
    mem_init(bi);

    smp_init(bi);

    unsigned failed = ktest_run();
    mem_report();  /* kmalloc_dump table and the frame allocator's summary */
    if (kmemleak_enabled()) {
        /* The tests must free what they allocate or keep it reachable. */
        uint64_t leaks = kmemleak_report();
        if (leaks == KMALLOC_LEAK_NO_SCAN) {
            printk("kmemleak: FAILED: no scan after the self-tests\n");
            failed++;
        } else if (leaks != 0) {
            printk("kmemleak: FAILED: the self-tests leaked %lu object(s) (listed above)\n", leaks);
            failed++;
        }
    }
    qemu_exit(failed ? KEXIT_FAIL : KEXIT_PASS);
}
