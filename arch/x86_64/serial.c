/*
 * serial.c: polled 16550 driver for COM1 (see serial.h). Register offsets
 * and bits are the classic PC16550D ones: THR/DLL +0, IER/DLM +1, FCR +2,
 * LCR +3, MCR +4, LSR +5 (bit 5: transmit holding register empty).
 */
#include "serial.h"
#include "cpu.h"

#define COM1 0x3f8

void serial_init(void)
{
    outb(COM1 + 1, 0x00);  /* no UART interrupts: we poll */
    outb(COM1 + 3, 0x80);  /* DLAB on to set the divisor */
    outb(COM1 + 0, 0x01);  /* 115200 / 1 */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);  /* 8 data bits, no parity, 1 stop, DLAB off */
    outb(COM1 + 2, 0xc7);  /* FIFOs on and cleared */
    outb(COM1 + 4, 0x03);  /* DTR + RTS */
}

static void put_raw(char c)
{
    /* Bounded wait: a missing UART must not hang the kernel. */
    for (unsigned i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
        cpu_pause();
    outb(COM1, (uint8_t)c);
}

void serial_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            put_raw('\r');
        put_raw(s[i]);
    }
}
