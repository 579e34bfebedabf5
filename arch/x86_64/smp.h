/*
 * smp.h: bringing up the other CPUs and running work on all of them.
 *
 * smp_init (kmain, after memory init, before the self-tests) reads the
 * MADT (acpi.h), enables the bootstrap CPU's local APIC and timer, then
 * starts each enabled CPU in turn with INIT-SIPI-SIPI through the real-mode
 * trampoline (trampoline.S) onto a stack with a guard in the KSTACK window
 * (mapped through paging.c, so smp_init runs after mem_init). Each AP sets
 * up its own GDT/TSS, IDT, GS-based per-CPU area, local APIC and 1 kHz
 * timer, prints "cpu N online" and idles in hlt with interrupts on and its
 * timer stopped (it ticks only while it runs work). The BSP waits for
 * each with a timeout, reports
 * any that did not start, prints "cpus: N online" and turns interrupts on.
 * Broken or missing ACPI tables: a message, and the kernel goes on with
 * one CPU (timer still running).
 *
 * CPU indices are dense: 0 is the BSP, 1..smp_cpus_online()-1 the APs that
 * started, so code may loop `for (c = 0; c < smp_cpus_online(); c++)`.
 *
 * kmalloc on several CPUs (the port: arch/x86_64/sys_arch.h, sys.c):
 *   - mcache: each CPU's own, reached with sys_cpu_id() = this_cpu_id()
 *     (one GS-relative load); every mcache operation runs between
 *     sys_irq_save (pushf; cli) and sys_irq_restore, takes no lock, and so
 *     cannot be interrupted by an allocating timer handler on its CPU.
 *   - mcentral and mheap locks: the ticket spinlock, taken with interrupts
 *     off and held with them off, so an interrupt handler that allocates
 *     never spins on a lock its own CPU holds.
 * Happens-before edges the allocator relies on across CPUs:
 *   - lock release -> acquire: the holder's critical section, then its
 *     RELEASE store of owner; the next holder's ACQUIRE load sees owner
 *     reach its ticket (kernel/spinlock.h);
 *   - span publication: a span and the mcache pointers are initialised,
 *     then published (page-map entries and mm_mcaches with release
 *     stores); readers load them with acquire (mm/atomic.h's names);
 *   - an object freed on another CPU -> the span's owner sees it: the
 *     free stores 0 in the object's live byte and puts it in that CPU's
 *     magazine; batches move through the transfer cache under its lock,
 *     and back to the span with an atomic OR into its free_bits (release)
 *     under the mcentral lock; the owner's sweep takes them with an
 *     exchange (acquire) before it reuses a slot (mm/mcentral.c,
 *     mm/mspan.c);
 *   - release of arena pages -> frame reuse: unmap, then tlb_shootdown's
 *     acknowledgements (tlb.c), then the frames go back to the frame
 *     allocator (sys.c).
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
/* [*start, *end): the .bss memory behind every AP stack (the KSTACK
 * window maps it a second time). The leak scan leaves it out of its .bss
 * roots and reads each CPU's live stack through the window instead. */
void smp_stack_area(uint64_t *start, uint64_t *end);

/* Panic support: stop every other online CPU (one NMI each); they halt
 * with interrupts off. CPUs that are not online get nothing. */
void smp_stop_others(void);

/* Post request bits (NMI_REQ_*, percpu.h) to online CPU `cpu` and send it
 * an NMI; its handler answers and returns. smp_ping_others pings every
 * other online CPU through the same path the panic stop uses (tests). */
void smp_nmi_request(unsigned cpu, uint32_t req);
void smp_ping_others(void);

/* Index of the CPU parked by smp_park_last (started, never online), or -1. */
int smp_parked_cpu(void);

/* For tests and reports: CPUs that did not answer INIT-SIPI-SIPI (or
 * could not be addressed), and CPUs start-up was attempted for (BSP and
 * a parked CPU included). */
unsigned smp_cpus_failed(void);
unsigned smp_cpus_tried(void);

#endif
