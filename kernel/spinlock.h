/*
 * spinlock.h: the kernel's one lock, a ticket spinlock.
 *
 * A CPU takes a ticket (fetch-add on next) and spins until owner reaches
 * it, so waiters are served in arrival order. Acquire ordering on the spin
 * load and release ordering on the owner increment make the critical
 * section's stores visible to the next holder. The _irqsave variants keep
 * interrupts off while held, so an interrupt handler on the same CPU can
 * never spin on a lock its own CPU holds. spin_lock_bounded is for panic:
 * it gives up after a number of spins instead of deadlocking on a lock a
 * dead or stuck CPU holds. Used by printk/panic and, through mm/sys.h, by
 * the allocator's port.
 */
#ifndef KERNEL_SPINLOCK_H
#define KERNEL_SPINLOCK_H

#include <stdint.h>
#include "../arch/x86_64/cpu.h"

typedef struct spinlock {
    uint32_t next;   /* next ticket to hand out */
    uint32_t owner;  /* ticket now allowed in */
} spinlock_t;

#define SPINLOCK_INIT { 0, 0 }

static inline void spin_lock(spinlock_t *l)
{
    uint32_t me = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED);
    while (__atomic_load_n(&l->owner, __ATOMIC_ACQUIRE) != me)
        cpu_pause();
}

/* spin_lock that returns how many pause iterations it waited (SMP
 * contention counters in the heap's port, arch/x86_64/sys.c). */
static inline uint64_t spin_lock_counted(spinlock_t *l)
{
    uint64_t spins = 0;
    uint32_t me = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED);
    while (__atomic_load_n(&l->owner, __ATOMIC_ACQUIRE) != me) {
        cpu_pause();
        spins++;
    }
    return spins;
}

static inline void spin_unlock(spinlock_t *l)
{
    /* only the holder writes owner, so read-then-store is not a race */
    uint32_t o = __atomic_load_n(&l->owner, __ATOMIC_RELAXED);
    __atomic_store_n(&l->owner, o + 1, __ATOMIC_RELEASE);
}

/* Take the lock only if nobody holds or waits for it. Returns 1 if taken. */
static inline int spin_trylock(spinlock_t *l)
{
    uint32_t owner = __atomic_load_n(&l->owner, __ATOMIC_RELAXED);
    uint32_t expect = owner;
    return __atomic_compare_exchange_n(&l->next, &expect, owner + 1, 0,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static inline int spin_is_locked(spinlock_t *l)
{
    return __atomic_load_n(&l->owner, __ATOMIC_RELAXED) != __atomic_load_n(&l->next, __ATOMIC_RELAXED);
}

static inline uint64_t spin_lock_irqsave(spinlock_t *l)
{
    uint64_t flags = irq_save();
    spin_lock(l);
    return flags;
}

static inline void spin_unlock_irqrestore(spinlock_t *l, uint64_t flags)
{
    spin_unlock(l);
    irq_restore(flags);
}

/*
 * Try for about `spins` iterations without joining the ticket queue (a
 * queued ticket could never be abandoned). Returns 1 if taken, 0 if the
 * caller must go on without the lock.
 */
static inline int spin_lock_bounded(spinlock_t *l, uint64_t spins)
{
    for (uint64_t i = 0; i < spins; i++) {
        if (spin_trylock(l))
            return 1;
        cpu_pause();
    }
    return 0;
}

#endif
