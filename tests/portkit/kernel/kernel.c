/*
 * kernel.c: the kit kernel, a minimal multiboot2 kernel written apart from
 * the project's own (nothing from kernel/, arch/ or mm/ beyond the
 * library's public headers), to show that libkmalloc.a works in someone
 * else's kernel. One CPU, no %gs, its own frame allocator and page tables.
 *
 * kmain: serial console -> frames from GRUB's memory map -> the heap
 * window's PML4 slot -> IDT, PIC and PIT (the timer allocates too) ->
 * selftest.c, which ends the run through the port's sys_fault.
 */
#include <stdarg.h>

#include "kernel.h"
#include "x86.h"

#define COM1 0x3f8

/* ---- console: COM1, 115200 8N1 ---- */

static void serial_init(void)
{
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x80);
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);
	outb(COM1 + 2, 0xc7);
}

static void putc_serial(char c)
{
	if (c == '\n')
		putc_serial('\r');
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (uint8_t)c);
}

static void put_num(unsigned long v, unsigned base)
{
	char buf[24];
	int n = 0;
	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v != 0);
	while (n > 0)
		putc_serial(buf[--n]);
}

/* %s %c %d %u %x %p, with l and z for long and size_t. Interrupts stay
 * off while printing so that lines from the timer never interleave. */
void kprintf(const char *fmt, ...)
{
	unsigned long f = irq_off();
	va_list ap;
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc_serial(*fmt);
			continue;
		}
		int is_long = 0;
		while (fmt[1] == 'l' || fmt[1] == 'z') {
			is_long = 1;
			fmt++;
		}
		switch (*++fmt) {
		case 's':
			for (const char *s = va_arg(ap, const char *); *s; s++)
				putc_serial(*s);
			break;
		case 'c':
			putc_serial((char)va_arg(ap, int));
			break;
		case 'd': {
			long v = is_long ? va_arg(ap, long) : va_arg(ap, int);
			if (v < 0)
				putc_serial('-');
			put_num(v < 0 ? -(unsigned long)v : (unsigned long)v, 10);
			break;
		}
		case 'u':
		case 'x':
			put_num(is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), *fmt == 'u' ? 10 : 16);
			break;
		case 'p':
			putc_serial('0');
			putc_serial('x');
			put_num((uintptr_t)va_arg(ap, void *), 16);
			break;
		default:
			putc_serial('%');
			putc_serial(*fmt);
		}
	}
	va_end(ap);
	irq_restore(f);
}

void kernel_exit(enum kexit code)
{
	irq_off();
	outb(0xf4, (uint8_t)code); /* QEMU's isa-debug-exit */
	halt_forever();
}

/* The library calls these three (nm -u libkmalloc.a); the compiler may
 * too. Plain C loops here could be turned back into calls to themselves. */
void *memset(void *d, int c, size_t n)
{
	rep_stosb(d, (uint8_t)c, n);
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	rep_movsb(d, s, n);
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	if ((uintptr_t)d - (uintptr_t)s >= n)
		rep_movsb(d, s, n); /* d below s, or no overlap */
	else
		rep_movsb_down(d, s, n);
	return d;
}

/* ---- the old allocator (kernel.h): bump, never frees ---- */

void *kmalloc(size_t n)
{
	static _Alignas(16) unsigned char pool[64 * 1024];
	static size_t used;
	n = (n + 15) & ~(size_t)15;
	if (n > sizeof(pool) - used)
		return NULL;
	used += n;
	return pool + used - n;
}

/* ---- frames: a stack of free 4 KiB frames linked through themselves ---- */

extern char _kernel_start[], _kernel_end[];
size_t frames_total, frames_free;

/* A stack of free frames of one size, linked through their first word;
 * frames_free counts 4 KiB frames (a 2 MiB frame is 512). */
struct frame_stack {
	uintptr_t head;
	size_t bytes;
};
static struct frame_stack small_frames = { 0, PAGE }, huge_frames = { 0, HUGE };

/* pre: interrupts off, or boot (one CPU, nothing else running). */
static void stack_push(struct frame_stack *st, uintptr_t pa)
{
	*(uintptr_t *)pa = st->head;
	st->head = pa;
	frames_free += st->bytes / PAGE;
}

static uintptr_t stack_pop(struct frame_stack *st)
{
	unsigned long f = irq_off();
	uintptr_t pa = st->head;
	if (pa != 0) {
		st->head = *(uintptr_t *)pa;
		frames_free -= st->bytes / PAGE;
	}
	irq_restore(f);
	return pa;
}

static void stack_free(struct frame_stack *st, uintptr_t pa)
{
	memset((void *)pa, 0x5a, st->bytes); /* frames come back dirty */
	unsigned long f = irq_off();
	stack_push(st, pa);
	irq_restore(f);
}

uintptr_t frame_alloc(void) { return stack_pop(&small_frames); }
void frame_free(uintptr_t pa) { stack_free(&small_frames, pa); }
/* 2 MiB frames (KIT_HUGE) */
uintptr_t huge_frame_alloc(void) { return stack_pop(&huge_frames); }
void huge_frame_free(uintptr_t pa) { stack_free(&huge_frames, pa); }

struct mb2_tag {
	uint32_t type, size;
};

struct mb2_mmap_entry {
	uint64_t addr, len;
	uint32_t type, reserved;
};

/* Every available frame from 1 MiB to the end of the identity map, except
 * the kernel image and the boot information itself. */
static void frames_init(uintptr_t mbi)
{
	uint32_t mbi_size = *(uint32_t *)mbi;
	for (uintptr_t t = mbi + 8; t < mbi + mbi_size;) {
		const struct mb2_tag *tag = (const struct mb2_tag *)t;
		if (tag->type == 0)
			break;
		if (tag->type == 6) { /* memory map */
			uint32_t esize = *(const uint32_t *)(t + 8);
			for (uintptr_t e = t + 16; e + esize <= t + tag->size; e += esize) {
				const struct mb2_mmap_entry *m = (const struct mb2_mmap_entry *)e;
				if (m->type != 1)
					continue;
				uintptr_t lo = (m->addr + PAGE - 1) & ~(PAGE - 1);
				for (uintptr_t pa = lo; pa + PAGE <= m->addr + m->len && pa < (1ul << 30); pa += PAGE) {
#ifdef KIT_HUGE
					/* whole 2 MiB frames from 8 MiB up (below stays for
					 * the kernel and the page tables) */
					if (pa >= (8ul << 20) && pa % HUGE == 0 &&
					    pa + HUGE <= m->addr + m->len &&
					    pa + HUGE <= (1ul << 30)) {
						stack_push(&huge_frames, pa);
						pa += HUGE - PAGE;
						continue;
					}
#endif
					if (pa < (1ul << 20) ||
					    (pa + PAGE > (uintptr_t)_kernel_start && pa < (uintptr_t)_kernel_end) ||
					    (pa + PAGE > mbi && pa < mbi + mbi_size))
						continue;
					stack_push(&small_frames, pa);
				}
			}
		}
		t += (tag->size + 7) & ~7u;
	}
	frames_total = frames_free;
}

/* ---- page tables: 4 KiB pages in the heap window ---- */

#define PTE_P 0x1ul
#define PTE_W 0x2ul
#define PTE_ADDR 0x000ffffffffff000ul

extern uint64_t pml4[512];
size_t pt_frames;

#define PTE_PS 0x80ul /* in a page-directory entry: a 2 MiB page */

/* The entry that maps va at the level whose pages are 1 << leaf_shift
 * bytes (12: a page-table entry, 21: a page-directory entry); missing
 * tables above it are made (zeroed: frames come back dirty) if create,
 * else NULL. pre: interrupts off. */
static uint64_t *walk(uintptr_t va, int leaf_shift, int create)
{
	uint64_t *table = pml4;
	for (int shift = 39; shift > leaf_shift; shift -= 9) {
		uint64_t *e = &table[(va >> shift) & 511];
		if (!(*e & PTE_P)) {
			uintptr_t pa = create ? frame_alloc() : 0;
			if (pa == 0)
				return NULL;
			memset((void *)pa, 0, PAGE);
			pt_frames++;
			*e = pa | PTE_P | PTE_W;
		}
		table = (uint64_t *)(*e & PTE_ADDR);
	}
	return &table[(va >> leaf_shift) & 511];
}

static int map_leaf(uintptr_t va, uintptr_t pa, int leaf_shift, uint64_t flags)
{
	unsigned long f = irq_off();
	uint64_t *e = walk(va, leaf_shift, 1);
	if (e != NULL)
		*e = pa | PTE_P | PTE_W | flags;
	irq_restore(f);
	return e != NULL ? 0 : -1;
}

/* Clears the entry and returns the frame it mapped; a va not mapped at
 * that level ends the run (the port unmapped what it never mapped). */
static uintptr_t unmap_leaf(uintptr_t va, int leaf_shift, uint64_t flags)
{
	unsigned long f = irq_off();
	uint64_t *e = walk(va, leaf_shift, 0);
	uintptr_t pa = 0;
	if (e != NULL && (*e & (PTE_P | flags)) == (PTE_P | flags))
		pa = (uintptr_t)(*e & PTE_ADDR);
	if (e != NULL)
		*e = 0;
	invlpg(va);
	irq_restore(f);
	if (pa == 0) {
		kprintf("unmap: %p is not mapped with %s pages\n", (void *)va,
		        leaf_shift == 21 ? "2 MiB" : "4 KiB");
		kernel_exit(KEXIT_FAIL);
	}
	return pa;
}

int map_page(uintptr_t va, uintptr_t pa) { return map_leaf(va, pa, 12, 0); }
uintptr_t unmap_page(uintptr_t va) { return unmap_leaf(va, 12, 0); }
int map_huge(uintptr_t va, uintptr_t pa) { return map_leaf(va, pa, 21, PTE_PS); }
uintptr_t unmap_huge(uintptr_t va) { return unmap_leaf(va, 21, PTE_PS); }

/* ---- interrupts: exceptions stop the run, IRQ 0 calls timer_hook ---- */

struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
};

extern const uint64_t isr_table[33];
static struct idt_gate idt[33];
void (*volatile timer_hook)(void);

void trap(struct trap_frame *f);
void trap(struct trap_frame *f)
{
	if (f->vector == 32) {
		if (timer_hook != NULL)
			timer_hook();
		outb(0x20, 0x20); /* EOI */
		return;
	}
	kprintf("trap: exception %lu at rip 0x%lx, error 0x%lx, cr2 0x%lx\n", f->vector, f->rip,
	        f->error, read_cr2());
	kernel_exit(KEXIT_TRAP);
}

static void interrupts_init(void)
{
	for (unsigned v = 0; v < 33; v++) {
		uint64_t a = isr_table[v];
		idt[v] = (struct idt_gate){ (uint16_t)a, 0x08, 0, 0x8e, (uint16_t)(a >> 16),
		                            (uint32_t)(a >> 32), 0 };
	}
	struct idt_ptr p = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
	lidt(&p);
	/* PIC: IRQs 0-15 at vectors 32-47, all masked until timer_start */
	static const uint8_t icw[][2] = { { 0x11, 0x11 }, { 32, 40 }, { 4, 2 }, { 1, 1 }, { 0xff, 0xff } };
	for (unsigned i = 0; i < 5; i++) {
		outb(i == 0 ? 0x20 : 0x21, icw[i][0]);
		outb(i == 0 ? 0xa0 : 0xa1, icw[i][1]);
	}
	/* PIT channel 0, rate generator, 1193182 Hz / 1193 = 1 kHz */
	outb(0x43, 0x34);
	outb(0x40, 1193 & 0xff);
	outb(0x40, 1193 >> 8);
	irq_enable(); /* nothing arrives until timer_start unmasks IRQ 0 */
}

void timer_start(void)
{
	outb(0x21, 0xfe);
}

void timer_stop(void)
{
	outb(0x21, 0xff);
}

/* ---- kmain ---- */

void kmain(uint32_t magic, uintptr_t mbi);
void kmain(uint32_t magic, uintptr_t mbi)
{
	serial_init();
	kprintf("kit: kernel at %p-%p, multiboot2 info at %p\n", (void *)_kernel_start,
	        (void *)_kernel_end, (void *)mbi);
	if (magic != 0x36d76289) {
		kprintf("kit: not booted by a multiboot2 loader (magic 0x%x)\n", magic);
		kernel_exit(KEXIT_FAIL);
	}
	frames_init(mbi);
	kprintf("kit: %zu free frames (%zu KiB)\n", frames_total, frames_total * PAGE / 1024);
#ifdef KIT_HUGE
	kprintf("kit: the heap window is mapped with 2 MiB pages only\n");
#endif
	/* The heap window's PML4 entry exists before anything is cloned from
	 * this address space (mm/sys.h: every address space must see the
	 * heap). This kernel has one address space, but the rule is the same. */
	uintptr_t pdpt = frame_alloc();
	memset((void *)pdpt, 0, PAGE);
	pml4[(ARENA_BASE >> 39) & 511] = pdpt | PTE_P | PTE_W;
	pt_frames++;
	interrupts_init();
	selftest();
	kernel_exit(KEXIT_DONE);
}
