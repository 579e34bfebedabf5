/*
 * gdt.c: per-CPU GDT and TSS (see gdt.h). Each CPU owns one slot of the
 * static arrays below, written only by that CPU during its own start-up,
 * so no lock is needed.
 */
#include "gdt.h"
#include "cpu.h"
#include "percpu.h"

struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};

/* null, kernel code, kernel data, TSS (a 16-byte system descriptor) */
#define GDT_ENTRIES 5

static uint64_t gdt[MAX_CPUS][GDT_ENTRIES] __attribute__((aligned(16)));
static struct tss64 tss[MAX_CPUS] __attribute__((aligned(16)));
/* IST stacks: the double fault and NMI stacks, per CPU. */
static uint8_t ist_stack[MAX_CPUS][2][IST_STACK_SIZE] __attribute__((aligned(16)));

uint64_t gdt_ist_top(unsigned cpu, unsigned ist)
{
    return (uint64_t)(uintptr_t)&ist_stack[cpu][ist - 1][IST_STACK_SIZE];
}

void gdt_ist_area(uint64_t *start, uint64_t *end)
{
    *start = (uint64_t)(uintptr_t)ist_stack;
    *end = *start + sizeof(ist_stack);
}

void gdt_init_cpu(unsigned cpu)
{
    uint64_t *g = gdt[cpu];
    struct tss64 *t = &tss[cpu];

    g[0] = 0;
    g[1] = 0x00af9a000000ffffull; /* code: present, DPL0, exec/read, L=1 */
    g[2] = 0x00cf92000000ffffull; /* data: present, DPL0, read/write */

    t->iomap_base = sizeof(*t);   /* no I/O permission bitmap */
    t->ist[IST_DOUBLE_FAULT - 1] = gdt_ist_top(cpu, IST_DOUBLE_FAULT);
    t->ist[IST_NMI - 1] = gdt_ist_top(cpu, IST_NMI);

    uint64_t base = (uint64_t)(uintptr_t)t, limit = sizeof(*t) - 1;
    g[3] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) /* present, 64-bit TSS available */
         | (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    g[4] = base >> 32;

    struct desc_ptr p = { .limit = sizeof(gdt[cpu]) - 1, .base = (uint64_t)(uintptr_t)g };
    lgdt(&p);
    load_segments(GDT_KERNEL_CS, GDT_KERNEL_DS);
    ltr(GDT_TSS);
}
