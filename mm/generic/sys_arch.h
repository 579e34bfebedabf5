/*
 * sys_arch.h (generic): the port-specific part of mm/sys.h for a port that
 * has no inline fast path: the CPU and interrupt functions are ordinary
 * out-of-line functions of the port, and the lock is one word. mm/build.mk
 * compiles the freestanding library against this file until the x86-64
 * port provides arch/x86_64/sys_arch.h; any port may use it as it is.
 */
#ifndef MM_GENERIC_SYS_ARCH_H
#define MM_GENERIC_SYS_ARCH_H

/* Zero = unlocked; the port's sys_lock/sys_unlock define the rest. */
struct sys_lock {
	volatile unsigned long word;
};

#endif /* MM_GENERIC_SYS_ARCH_H */
