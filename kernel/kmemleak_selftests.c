/*
 * kmemleak_selftests.c: ktests of the leak detector in the kernel
 * (arch/x86_64/stopworld.c). Each checks what
 * a scan relies on or what a user reads from it:
 *
 *   kmemleak_stop_world     stop_world parks every other online CPU, busy
 *                           or idle: none of them runs while stopped, each
 *                           published a stack pointer inside its stack and
 *                           below the frames it was running, parked CPUs
 *                           still answer a TLB shootdown, and all of them
 *                           run again after start_world
 */
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "kstring.h"
#include "printk.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"
#include "../arch/x86_64/stopworld.h"
#include "../arch/x86_64/tlb.h"

/* ---- stop_world: parked means parked ---- */

static struct {
    uint32_t go_home;            /* atomic: the APs may return */
    uint32_t spinning;           /* atomic: APs in their loop */
    uint64_t frame[MAX_CPUS];    /* each AP's work frame (written before spinning++) */
    uint64_t loops[MAX_CPUS];    /* atomic: each AP's iterations */
    uint64_t before[MAX_CPUS];   /* CPU 0 only: loops when the world stopped */
    uint64_t served[MAX_CPUS];   /* CPU 0 only: tlb_served then */
    struct ktest *t;
} sw;

static uint64_t stack_lo(unsigned c) { return smp_stack_top(c) - smp_stack_size(); }

/* With the world stopped: every other CPU parked, with its RSP in its
 * stack and (busy) below the frame it was running. */
static void check_parked(struct ktest *t, unsigned n, int busy)
{
    for (unsigned c = 1; c < n; c++) {
        uint64_t sp = 0;
        if (stop_world_parked_rsp(c, &sp) != 0) {
            ktest_fail(t, "cpu %u is not parked", c);
            continue;
        }
        if (sp < stack_lo(c) || sp >= smp_stack_top(c))
            ktest_fail(t, "cpu %u parked with RSP 0x%lx outside its stack 0x%lx-0x%lx", c, sp,
                       stack_lo(c), smp_stack_top(c));
        if (busy && sp >= sw.frame[c])
            ktest_fail(t, "cpu %u's RSP 0x%lx is not below its work frame 0x%lx", c, sp, sw.frame[c]);
    }
}

static void busy_until_home(unsigned cpu, void *arg)
{
    (void)arg;
    unsigned n = smp_cpus_online();
    if (cpu != 0) {
        sw.frame[cpu] = (uint64_t)(uintptr_t)__builtin_frame_address(0);
        __atomic_add_fetch(&sw.spinning, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&sw.go_home, __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&sw.loops[cpu], sw.loops[cpu] + 1, __ATOMIC_RELAXED);
            cpu_pause();
        }
        return;
    }
    struct ktest *t = sw.t;
    while (__atomic_load_n(&sw.spinning, __ATOMIC_ACQUIRE) != n - 1)
        cpu_pause();
    if (stop_world() != 0) {
        ktest_fail(t, "stop_world failed with every CPU taking interrupts");
        __atomic_store_n(&sw.go_home, 1, __ATOMIC_RELEASE);
        return;
    }
    check_parked(t, n, 1);
    for (unsigned c = 1; c < n; c++) {
        sw.before[c] = __atomic_load_n(&sw.loops[c], __ATOMIC_RELAXED);
        sw.served[c] = __atomic_load_n(&percpu_area[c].tlb_served, __ATOMIC_RELAXED);
    }
    tsc_delay_us(20000);  /* time for a CPU that was not stopped to loop */
    tlb_shootdown(KERNEL_VIRT_BASE, PAGE_SIZE_4K);  /* returns only once all acked */
    for (unsigned c = 1; c < n; c++) {
        if (__atomic_load_n(&sw.loops[c], __ATOMIC_RELAXED) != sw.before[c])
            ktest_fail(t, "cpu %u ran while the world was stopped", c);
        if (__atomic_load_n(&percpu_area[c].tlb_served, __ATOMIC_RELAXED) == sw.served[c])
            ktest_fail(t, "parked cpu %u did not serve the shootdown", c);
    }
    start_world();
    KTEST_EXPECT_EQ(t, stop_world_last_parked(), n - 1);
    __atomic_store_n(&sw.go_home, 1, __ATOMIC_RELEASE);  /* smp_run_all returns once they all ran on */
}

KTEST(kmemleak_stop_world)
{
    unsigned n = smp_cpus_online();
    memset(&sw, 0, sizeof sw);
    sw.t = t;
    smp_run_all(busy_until_home, NULL);
    /* Again with the other CPUs idle in hlt (tickless): the IPI wakes them. */
    KTEST_ASSERT(t, stop_world() == 0);
    check_parked(t, n, 0);
    start_world();
    KTEST_EXPECT_EQ(t, stop_world_last_parked(), n - 1);
    printk("kmemleak_stop_world: %u other CPU(s) parked busy and idle; pause %lu us\n", n - 1,
           stop_world_last_pause_tsc() / tsc_per_us());
}
