/*
 * x86.h: every piece of inline assembly of the kit kernel (the port's own
 * interrupt and lock code is in its sys_arch.h, mm/generic/sys_arch.h).
 * Port I/O for the serial line, the PIC, the PIT and QEMU's exit device;
 * the interrupt flag; CR2 and TLB invalidation for the page tables; string
 * instructions for memset/memcpy.
 */
#ifndef KIT_X86_H
#define KIT_X86_H

#include <stddef.h>
#include <stdint.h>

#define RFLAGS_IF 0x200ul

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline unsigned long read_rflags(void)
{
	unsigned long f;
	__asm__ volatile("pushfq\n\tpopq %0" : "=r"(f));
	return f;
}

/* The kernel's own interrupt-off sections (frame allocator, page tables):
 * they may be entered from the timer interrupt through kmalloc. */
static inline unsigned long irq_off(void)
{
	unsigned long f = read_rflags();
	__asm__ volatile("cli" : : : "memory");
	return f;
}

static inline void irq_restore(unsigned long f)
{
	if (f & RFLAGS_IF)
		__asm__ volatile("sti" : : : "memory");
}

static inline void irq_enable(void)
{
	__asm__ volatile("sti" : : : "memory");
}

_Noreturn static inline void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

static inline uint64_t read_cr2(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}

static inline void invlpg(uintptr_t va)
{
	__asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

static inline void rep_stosb(void *d, uint8_t c, size_t n)
{
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
}

static inline void rep_movsb(void *d, const void *s, size_t n)
{
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

/* The same from the last byte down (direction flag set for the copy
 * only), for an overlapping move to a higher address. */
static inline void rep_movsb_down(void *d, const void *s, size_t n)
{
	if (n == 0)
		return;
	d = (char *)d + n - 1;
	s = (const char *)s + n - 1;
	__asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

static inline void lidt(const struct idt_ptr *p)
{
	__asm__ volatile("lidt %0" : : "m"(*p));
}

#endif /* KIT_X86_H */
