/*
 * sys_arch.h (host): the inline part of mm/sys.h for Linux. A "CPU" is a
 * thread: the first call of sys_cpu_id in a thread takes an id from a
 * recyclable pool (arch/host/sys.c) and keeps it in a thread-local
 * variable, so the fast path is one TLS load and a test. There are no
 * interrupts to disable on the host: a thread cannot be migrated off its
 * "CPU" id, so sys_irq_save/restore do nothing (signal handlers must not
 * call kmalloc, as with any malloc).
 */
#ifndef ARCH_HOST_SYS_ARCH_H
#define ARCH_HOST_SYS_ARCH_H

/* Zero = unlocked. Guarded by the host's test-and-test-and-set spinlock. */
struct sys_lock {
	int locked;
};

/* The calling thread's CPU id + 1; 0 until the thread first allocates.
 * initial-exec keeps access a single %fs-relative load even when the
 * library is built into the LD_PRELOAD shared object. */
extern __thread unsigned host_cpu_plus1 __attribute__((tls_model("initial-exec")));
unsigned host_cpu_assign(void);

static inline unsigned sys_cpu_id(void)
{
	unsigned c = host_cpu_plus1;
	if (__builtin_expect(c == 0, 0))
		return host_cpu_assign();
	return c - 1;
}

/* The thread's mcache once its first allocation found it (mm/sys.h's
 * SYS_MCACHE_GET/SET); cpu_release in sys.c clears it with the id. A new
 * thread's slot is NULL, so its first kmalloc takes the slow path, which
 * assigns the id: the fast path needs no id at all. */
struct mcache;
extern __thread struct mcache *host_mcache __attribute__((tls_model("initial-exec")));
#define SYS_MCACHE_GET() host_mcache
#define SYS_MCACHE_SET(c) (host_mcache = (c))

static inline unsigned long sys_irq_save(void)
{
	return 0;
}

static inline void sys_irq_restore(unsigned long flags)
{
	(void)flags;
}

#endif /* ARCH_HOST_SYS_ARCH_H */
