/*
 * sys_arch.h (template for a kernel port): the inline part of mm/sys.h for
 * an x86-64 kernel that runs kmalloc on one CPU and has no per-CPU segment
 * register set up. Copy it into your port's directory, build the library
 * against it (make lib PORT=<that directory>) and write the five
 * out-of-line hooks (docs/porting.md; tests/portkit/kernel/port.c is a
 * complete example that uses this file as it is).
 *
 * What mm gets from here, and why it must be inline: every kmalloc and
 * kfree calls sys_irq_save, sys_cpu_id and sys_irq_restore, and the slow
 * paths take sys_lock; a call per use would cost more than the fast path.
 *
 *   sys_irq_save     pushf/cli: kmalloc runs in interrupt handlers, so
 *                    while mm uses this CPU's cache, nothing on this CPU
 *                    may enter mm again
 *   sys_irq_restore  popf: puts IF back exactly as sys_irq_save found it
 *                    (on inside a thread, off inside a handler)
 *   sys_cpu_id       0: one CPU (sys_config.max_cpus = 1)
 *   sys_lock         interrupts off, then a test-and-set spinlock; the
 *                    flags to restore are kept in the lock itself, since
 *                    sys_unlock takes no argument. A lock that left
 *                    interrupts on would deadlock as soon as an interrupt
 *                    handler allocates while the code it interrupted holds
 *                    the same lock.
 *
 * For SMP, only sys_cpu_id changes (a dense id < sys_config.max_cpus,
 * read with interrupts off, e.g. from your per-CPU area); the lock is
 * already safe across CPUs. If you define SYS_MCACHE_GET/SET (mm/sys.h)
 * on a per-CPU slot, you save one table lookup per kmalloc and kfree;
 * define SYS_MAX_CPUS (mm/sys.h) to your kernel's CPU limit and mm's
 * static tables shrink from 544 KiB (32768 CPUs) to 17 bytes a CPU.
 *
 * sys_lock/sys_unlock are declared again (without `static`) in sys.h after
 * this file; C keeps the internal linkage of the first declaration, so the
 * library calls these inline versions and needs no out-of-line ones.
 */
#ifndef SYS_ARCH_H
#define SYS_ARCH_H

#if !defined(__x86_64__)
#error "this sys_arch.h template is for x86-64: write sys_irq_save/restore for your CPU"
#endif

/* All-zero storage is unlocked (mm's locks live in zeroed memory). */
struct sys_lock {
	volatile unsigned locked;
	unsigned long flags; /* the holder's RFLAGS from before sys_lock */
};

static inline unsigned long sys_irq_save(void)
{
	unsigned long flags;
	__asm__ volatile("pushfq\n\tpopq %0\n\tcli" : "=r"(flags) : : "memory");
	return flags;
}

static inline void sys_irq_restore(unsigned long flags)
{
	__asm__ volatile("pushq %0\n\tpopfq" : : "r"(flags) : "memory", "cc");
}

static inline unsigned sys_cpu_id(void)
{
	return 0;
}

static inline void sys_lock(struct sys_lock *l)
{
	unsigned long flags = sys_irq_save();
	/* GCC builtins, not mm/atomic.h: this file is copied out of the tree
	 * into the porter's kernel, which only has the library's headers. */
	while (__atomic_exchange_n(&l->locked, 1u, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED))
			__asm__ volatile("pause");
	l->flags = flags;
}

static inline void sys_unlock(struct sys_lock *l)
{
	unsigned long flags = l->flags;
	__atomic_store_n(&l->locked, 0u, __ATOMIC_RELEASE);
	sys_irq_restore(flags);
}

#endif /* SYS_ARCH_H */
