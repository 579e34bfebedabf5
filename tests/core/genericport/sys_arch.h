/*
 * sys_arch.h for tests/core/test_genericport.c: the port-specific part of
 * mm/sys.h with no inline fast path at all. The CPU and interrupt
 * functions are ordinary out-of-line functions of that test's port and the
 * lock is one word, so the core is exercised on the host exactly as a port
 * with nothing inline would drive it. (mm/generic/sys_arch.h, which this
 * test used before, is now the x86-64 kernel template, whose cli cannot
 * run in user mode.)
 */
#ifndef TEST_GENERICPORT_SYS_ARCH_H
#define TEST_GENERICPORT_SYS_ARCH_H

/* Zero = unlocked; the test's sys_lock/sys_unlock define the rest. */
struct sys_lock {
	volatile unsigned long word;
};

#endif /* TEST_GENERICPORT_SYS_ARCH_H */
