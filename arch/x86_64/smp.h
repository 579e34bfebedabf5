/*
 * smp.h: bringing up the other CPUs and running work on all of them.
 *
 * smp_init (kmain, after memory init, before the self-tests) reads the
 * MADT (acpi.h), enables the bootstrap CPU's local APIC and timer, then
 * starts each enabled CPU in turn with INIT-SIPI-SIPI through the real-mode
 * trampoline (trampoline.S) onto a stack with a guard in the KSTACK window
 * (mapped through paging.c, so smp_init runs after mem_init). Each AP sets
 * up its own GDT/TSS, IDT, GS-based per-CPU area, local APIC and 1 kHz
 * timer, prints "cpu N online" and idles in hlt with interrupts on. The BSP waits for each with a timeout, reports
 * any that did not start, prints "cpus: N online" and turns interrupts on.
 * Broken or missing ACPI tables: a message, and the kernel goes on with
 * one CPU (timer still running).
 *
 * CPU indices are dense: 0 is the BSP, 1..smp_cpus_online()-1 the APs that
 * started, so code may loop `for (c = 0; c < smp_cpus_online(); c++)`.
 */
#ifndef ARCH_X86_64_SMP_H
#define ARCH_X86_64_SMP_H

#include <stdint.h>

struct boot_info;

void smp_init(const struct boot_info *bi);

/* CPUs that finished start-up (acquire: their per-CPU setup is visible). */
unsigned smp_cpus_online(void);

/*
 * Run fn(cpu, arg) on every online CPU at once, the caller's CPU included
 * (the caller runs its share as index this_cpu_id()), and return when all
 * have finished. Called from the bootstrap CPU (ktests), interrupts on.
 * Each CPU runs fn with interrupts on. Not reentrant.
 */
typedef void (*smp_work_fn)(unsigned cpu, void *arg);
void smp_run_all(smp_work_fn fn, void *arg);

/* Top of CPU cpu's guarded kernel stack (cpu >= 1; the BSP uses the boot
 * stack) and the stack's size; the guard lies right below it. */
uint64_t smp_stack_top(unsigned cpu);
uint64_t smp_stack_size(void);

/* Panic support: stop every other CPU (NMI); they halt with interrupts off. */
void smp_stop_others(void);

/* For tests and reports: CPUs that did not answer INIT-SIPI-SIPI, and
 * CPUs start-up was attempted for (BSP included). */
unsigned smp_cpus_failed(void);
unsigned smp_cpus_tried(void);

#endif
