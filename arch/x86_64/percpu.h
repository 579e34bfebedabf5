/*
 * percpu.h: how many CPUs the kernel is built for, the per-CPU descriptor
 * state every CPU gets (GDT, TSS, IST stacks), and struct percpu, the
 * CPU-local data reached through the GS base.
 *
 * The bootstrap CPU is index 0; application processors (smp.c) get dense
 * indices 1..n-1 in the order they came up and call gdt_init_cpu(i),
 * idt_load_cpu(i) and percpu_init_cpu(i) with their own index. After
 * percpu_init_cpu, IA32_GS_BASE points at percpu_area[i], whose first
 * field points at itself: this_cpu() is one GS-relative load and
 * this_cpu_id() another, with no table lookup and no lock.
 *
 * Ownership: a CPU writes only its own struct percpu, except the
 * tlb_pending bitmask (any CPU sets bits with an atomic OR, the owner
 * clears them with an atomic exchange), tlb_acks (targets decrement it
 * atomically), tlb_lazy_skips (initiators add to it) and nmi_request (a requester sets bits with an atomic OR,
 * the owner's NMI handler clears them); see tlb.c and smp.c for those
 * protocols' happens-before edges. Other CPUs read the counters with
 * relaxed atomic loads (progress checks and reports only).
 *
 * MAX_CPUS: 256. With xAPIC the APIC ids must stay below 255 (0xff is
 * the broadcast id), which is all QEMU's TCG can emulate (`-smp` up to
 * 255); with x2APIC (apic.c) any 32-bit id works.
 */
#ifndef ARCH_X86_64_PERCPU_H
#define ARCH_X86_64_PERCPU_H

#include <stdint.h>
#include "cpu.h"

#define MAX_CPUS 256
/* 64-bit words of a bitmask with one bit per CPU index */
#define CPU_MASK_WORDS (MAX_CPUS / 64)

/* Interrupt stack table slots (TSS.IST1..7); 0 means "current stack". */
#define IST_DOUBLE_FAULT 1
#define IST_NMI          2
#define IST_STACK_SIZE   (16 * 1024)

struct percpu {
    struct percpu *self;      /* gs:0; set once by percpu_init_cpu */
    uint32_t cpu;             /* gs:8; dense index, 0 = bootstrap CPU */
    uint32_t apic_id;         /* this CPU's local APIC id (x2APIC: 32 bits) */
    void *mcache;             /* gs:16; this CPU's struct mcache, NULL until
                                 its first kmalloc slow path stores it
                                 (SYS_MCACHE_GET/SET in sys_arch.h) */
    uint64_t stack_top;       /* this CPU's kernel stack (its own top) */

    /* TLB shootdown mailbox (tlb.c) */
    uint64_t tlb_pending[CPU_MASK_WORDS]; /* atomic; bit i: CPU i's request
                                             awaits our flush */
    uint64_t tlb_start;       /* this CPU's outstanding request [start, end): */
    uint64_t tlb_end;         /*   written before any target's pending bit is
                                   set (release) */
    uint32_t tlb_acks;        /* atomic; targets of our request yet to flush */
    uint32_t tlb_lazy;        /* atomic (SEQ_CST); 1 while this AP idles in
                                 hlt: initiators skip it, and it flushes its
                                 whole TLB before touching memory again */
    uint64_t tlb_lazy_skips;  /* atomic add by initiators: requests that
                                 skipped this CPU because it was lazy */
    uint32_t online;          /* atomic; 1 once this CPU finished start-up */
    uint32_t parked;          /* atomic; 1: started but parked on purpose
                                 (smp_park_last): never online, no timer */
    uint32_t nmi_request;     /* atomic; NMI_REQ_* bits a requester set */
    uint32_t timer_on;        /* owner only: 1 from lapic_timer_start to
                                 lapic_timer_stop; a tick taken while 0
                                 was pending when the timer stopped */

    /* counters, written by the owner only (relaxed atomics for readers) */
    uint64_t irq_count;       /* interrupts taken (any vector): the progress
                                 a waiting TLB initiator watches */
    uint64_t timer_ticks;     /* LAPIC timer interrupts taken */
    uint64_t tlb_requests;    /* shootdowns this CPU started */
    uint64_t tlb_served;      /* remote requests this CPU flushed for */
    uint64_t hook_calls;      /* per-tick hook invocations */
    uint64_t nmi_pings;       /* NMI_REQ_PING requests answered */
    uint64_t parked_irqs;     /* parked CPU only: interrupts it received */
    uint64_t parked_nmis;     /* parked CPU only: NMIs it received */
    uint32_t parked_vector;   /* parked CPU only: the last vector received */
    uint32_t nmi_state_seq;   /* atomic; bumped (release) after nmi_rip..
                                 below are written by the NMI handler */
    uint64_t nmi_rip, nmi_rsp, nmi_rbp, nmi_rflags; /* where an NMI_REQ_STATE
                                 found this CPU (tlb.c's stall report) */
} __attribute__((aligned(64)));

/* nmi_request bits (smp.c's NMI handler answers them and returns) */
#define NMI_REQ_PING  1u      /* count it in nmi_pings (tests) */
#define NMI_REQ_STATE 2u      /* record RIP/RSP/RBP/RFLAGS (stall reports) */

#define PERCPU_OFF_CPU    8
#define PERCPU_OFF_MCACHE 16

extern struct percpu percpu_area[MAX_CPUS];

/* Point this CPU's GS base at percpu_area[cpu] and fill its identity. */
void percpu_init_cpu(unsigned cpu, uint32_t apic_id);

/* The running CPU's per-CPU area and index. Before percpu_init_cpu(0)
 * (in kmain, right after the CPU 0 GDT) they must not be called. */
static inline struct percpu *this_cpu(void)
{
    return (struct percpu *)(uintptr_t)gs_load64(0);
}

static inline unsigned this_cpu_id(void)
{
    return gs_load32(PERCPU_OFF_CPU);
}

#endif
