/*
 * sys_arch.h (host): the inline part of mm/sys.h for Linux. A "CPU" is a
 * thread: the first call of sys_cpu_id in a thread takes an id from a
 * recyclable pool (arch/host/sys.c) and keeps it in a thread-local
 * variable, so the fast path is one TLS load and a test. A thread cannot
 * be migrated off its "CPU" id, so there is nothing to disable for that;
 * what sys_irq_save/restore keep off is the one "interrupt" the host has,
 * the leak scan's stop signal (arch/host/stopworld.c): they count the
 * thread's depth in allocator critical sections (sys_lock/sys_unlock
 * count too, as a kernel keeps interrupts off while it holds a lock); a
 * thread the signal finds at a nonzero depth marks the stop pending and
 * stops when its depth returns to 0 (the safe point in sys_irq_restore),
 * as a kernel takes a pending interrupt when it turns interrupts back
 * on, so no scan ever sees a half-done operation. Signal handlers must not call kmalloc,
 * as with any malloc.
 */
#ifndef ARCH_HOST_SYS_ARCH_H
#define ARCH_HOST_SYS_ARCH_H

/* Zero = unlocked. Guarded by the host's test-and-test-and-set spinlock. */
struct sys_lock {
	int locked;
};

/* prefetchw (sys.h): a line kfree will write comes owned in one request.
 * Every x86-64 CPU executes it (Intel's before Broadwell as a no-op). */
#define SYS_PREFETCH_W(p) __asm__ volatile("prefetchw %0" : : "m"(*(const volatile char *)(p)))

/* The thread's allocator state, in one thread-local block: initial-exec
 * keeps each access a %fs-relative load even when the library is built
 * into the LD_PRELOAD shared object, where every thread-local variable
 * also costs a load of its offset from the GOT; kmalloc and kfree touch
 * two of these fields, so one block saves them a load each.
 *   irq_depth   the depth in allocator critical sections (sys_irq_save)
 *   cpu_plus1   the thread's CPU id + 1; 0 until it first allocates
 *   mcache      the thread's mcache (SYS_MCACHE_GET/SET below) */
struct mcache;
struct host_thread {
	unsigned irq_depth;
	unsigned cpu_plus1;
	struct mcache *mcache;
};
extern __thread struct host_thread host_self __attribute__((tls_model("initial-exec")));
unsigned host_cpu_assign(void);

static inline unsigned sys_cpu_id(void)
{
	unsigned c = host_self.cpu_plus1;
	if (__builtin_expect(c == 0, 0))
		return host_cpu_assign();
	return c - 1;
}

/* The thread's mcache once its first allocation found it (mm/sys.h's
 * SYS_MCACHE_GET/SET); cpu_release in sys.c clears it with the id. A new
 * thread's slot is NULL, so its first kmalloc takes the slow path, which
 * assigns the id: the fast path needs no id at all. */
/* Relaxed atomics (plain moves on x86-64): the background thread empties
 * an idle thread's slot (cpuidle.c, mm/mcache.c's "idle CPUs"). */
#define SYS_MCACHE_GET()  __atomic_load_n(&host_self.mcache, __ATOMIC_RELAXED)
#define SYS_MCACHE_SET(c) __atomic_store_n(&host_self.mcache, (c), __ATOMIC_RELAXED)

/* ThreadSanitizer cannot see the asm below: a section's end is made a
 * release for it, which the idle-CPU drain acquires (cpuidle.c), as the
 * membarrier there does for the hardware. Nothing in other builds. */
#if defined(__SANITIZE_THREAD__)
#define HOST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HOST_TSAN 1
#endif
#endif
#ifdef HOST_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define HOST_TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#define HOST_TSAN_RELEASE(p) __tsan_release((void *)(p))
#else
#define HOST_TSAN_ACQUIRE(p) ((void)0)
#define HOST_TSAN_RELEASE(p) ((void)0)
#endif

/* The thread's depth in allocator critical sections; a stop signal that
 * finds it nonzero adds HOST_STOP_PENDING - 1, so the decrement that
 * leaves the outermost section goes from 0x80000000 to 0x7fffffff, the one
 * signed overflow a decrement can make, and calls the safe point
 * (host_stop_point_asm, stopworld.c, which sets it back to 0). Written
 * only by the thread and its own signal handler, each change one
 * instruction (a signal arrives between instructions; no lock prefix
 * needed). The "memory" clobbers keep the section's accesses between the
 * two. The call is made from the asm, past the 128-byte red zone, to a
 * stub that keeps every register: a C call here would give kmalloc and
 * kfree a stack frame and register saves on every call (measured: 20
 * instructions more per kmalloc+kfree pair, where this costs 4: an add,
 * a subtract and a never-taken jump on a thread-local, and its address). */
#define HOST_STOP_PENDING 0x80000000u

static inline unsigned long sys_irq_save(void)
{
	__asm__ volatile("addl $1, %0" : "+m"(host_self.irq_depth) : : "memory", "cc");
	return 0;
}

static inline void sys_irq_restore(unsigned long flags)
{
	(void)flags;
	HOST_TSAN_RELEASE(&host_self.irq_depth);
	/* An input operand written by the asm, as the Linux kernel's
	 * read-modify-write macros do (the asm says it clobbers memory). */
	__asm__ volatile("subl $1, %0\n\t"
	                 "jno 1f\n\t"
	                 "lea -128(%%rsp), %%rsp\n\t"
	                 "call host_stop_point_asm@PLT\n\t"
	                 "lea 128(%%rsp), %%rsp\n"
	                 "1:"
	                 :
	                 : "m"(host_self.irq_depth)
	                 : "memory", "cc");
}

#endif /* ARCH_HOST_SYS_ARCH_H */
