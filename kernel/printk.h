/*
 * printk.h: formatted output to the serial console.
 *
 * vsnprintk is the one formatter; snprintk fills a buffer (tests use it to
 * check formatting) and printk formats into a stack buffer, then writes it
 * under the console lock with interrupts off, so lines from different CPUs
 * never interleave. A printk line longer than PRINTK_LINE_MAX is cut.
 *
 * Conversions: %d %i %u %x %X %p %s %c %%, length modifiers hh h l ll z t,
 * flags '-' (left-justify) and '0' (zero pad), a width (number or '*') and,
 * for %s, a precision (".N" or ".*"). %p prints 0x and 16 hex digits.
 * An unknown conversion is printed as-is, so a bad format is visible.
 */
#ifndef KERNEL_PRINTK_H
#define KERNEL_PRINTK_H

#include <stdarg.h>
#include <stddef.h>

#define PRINTK_LINE_MAX 512

/* Like vsnprintf: returns the length the full output would have had. */
size_t vsnprintk(char *buf, size_t size, const char *fmt, va_list ap);
__attribute__((format(printf, 3, 4))) size_t snprintk(char *buf, size_t size, const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void printk(const char *fmt, ...);

void console_init(void);
/* Panic support: try to own the console for `spins` iterations, then
 * switch printk to lock-free output on every CPU. */
void console_panic_mode(unsigned long spins);

#endif
