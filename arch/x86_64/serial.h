/*
 * serial.h: the 16550 UART on COM1 (I/O port 0x3f8), polled, 115200 8N1.
 * The raw byte path under printk; callers serialise through printk's
 * console lock (panic may bypass it, see kernel/panic.c).
 */
#ifndef ARCH_X86_64_SERIAL_H
#define ARCH_X86_64_SERIAL_H

#include <stddef.h>

void serial_init(void);
void serial_write(const char *s, size_t n);  /* "\n" goes out as "\r\n" */

#endif
