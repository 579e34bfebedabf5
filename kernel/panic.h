/*
 * panic.h: stopping the kernel with a diagnosis.
 *
 * panic(fmt, ...) prints "PANIC: <message>" and a symbolised backtrace on
 * the serial console, reports the running ktest (if any) as failed, and
 * ends QEMU with KEXIT_PANIC. It is safe from any CPU at any time: it turns
 * interrupts off, takes the console lock with a bounded spin (printing
 * without it if another CPU holds it too long), and a panic inside a panic
 * exits at once. The exception path (arch/x86_64/idt.c) uses the three
 * steps separately to print a register dump in between.
 */
#ifndef KERNEL_PANIC_H
#define KERNEL_PANIC_H

#include <stdint.h>

__attribute__((noreturn, format(printf, 1, 2))) void panic(const char *fmt, ...);

/* Step 1: interrupts off, console owned (or bypassed) by this CPU. */
void panic_enter(void);
/* Step 2: print rip (skipped if 0), then the return addresses of the
 * frame-pointer chain starting at rbp. */
void backtrace_print(uint64_t rip, uint64_t rbp);
/* The same walk, stored: up to max return addresses of the frame-pointer
 * chain starting at rbp, innermost first; returns how many. Reads only
 * frames frame_ok accepts, so a broken chain ends it, never a fault. */
unsigned backtrace_save(uint64_t rbp, uintptr_t *pcs, unsigned max);
/* Step 3: report to ktest and end QEMU. */
__attribute__((noreturn)) void panic_finish(const char *reason);

#endif
