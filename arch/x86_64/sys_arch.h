/*
 * sys_arch.h (x86-64 kernel): the inline part of mm/sys.h. mm/build.mk puts
 * arch/x86_64 on the core's include path when this file exists, so the
 * kmalloc fast path gets these as inline code: interrupts off with
 * pushf/cli, the CPU id, and a lock that is the kernel's ticket spinlock
 * plus the interrupt state it must restore. The out-of-line rest of the
 * port is arch/x86_64/sys.c.
 */
#ifndef ARCH_X86_64_SYS_ARCH_H
#define ARCH_X86_64_SYS_ARCH_H

#include "../../kernel/spinlock.h"
#include "cpu.h"
#include "percpu.h"

/* All-zero storage is unlocked (SPINLOCK_INIT is { 0, 0 }). */
struct sys_lock {
    spinlock_t lock;
    uint64_t irqflags; /* guarded by lock: the holder's saved RFLAGS */
    /* SMP contention counters, guarded by lock (read racily
     * for reports): how often it was taken, and pause-loop iterations
     * spent waiting for it. */
    uint64_t acquisitions;
    uint64_t spins;
};


/* ---- SMP: the dense CPU index from the per-CPU area at the GS
 * base (arch/x86_64/percpu.h): one GS-relative load. ---- */
static inline unsigned sys_cpu_id(void)
{
    return this_cpu_id();
}

/* mm's static per-CPU tables for the kernel's CPUs only (mm/sys.h). */
#define SYS_MAX_CPUS MAX_CPUS

/* This CPU's mcache in its struct percpu (mm/sys.h, SYS_MCACHE_GET/SET):
 * kmalloc's fast path finds it in one GS-relative load. The slot starts
 * NULL (percpu_area is zeroed BSS) and only mm's slow path on the owning
 * CPU fills it, with interrupts off; kernel CPUs never go offline or
 * change index, so nothing ever clears it (the host clears it when a
 * thread gives its id back). */
struct mcache;
#define SYS_MCACHE_GET() ((struct mcache *)(uintptr_t)gs_load64(PERCPU_OFF_MCACHE))
#define SYS_MCACHE_SET(c) gs_store64(PERCPU_OFF_MCACHE, (uint64_t)(uintptr_t)(c))

static inline unsigned long sys_irq_save(void)
{
    return irq_save();
}

static inline void sys_irq_restore(unsigned long flags)
{
    irq_restore(flags);
}

#endif /* ARCH_X86_64_SYS_ARCH_H */
