/*
 * cpu.h: every inline-assembly instruction the loader and kernel use.
 *
 * Callers (gdt.c, idt.c, console, spinlocks, the loader's jump) see only
 * typed static inline functions; keeping the asm here means one place to
 * audit clobbers and memory barriers. Nothing here allocates or locks.
 */
#ifndef ARCH_X86_64_CPU_H
#define ARCH_X86_64_CPU_H

#include <stdint.h>

#define MSR_EFER        0xc0000080u
#define EFER_NXE        (1ull << 11)
#define CR0_WP          (1ull << 16)
#define RFLAGS_IF       (1ull << 9)

/* ---- interrupts and idling ---- */
static inline void cpu_cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void cpu_sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cpu_hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline void cpu_pause(void) { __asm__ volatile("pause" ::: "memory"); }

static inline uint64_t cpu_read_rflags(void)
{
    uint64_t f;
    __asm__ volatile("pushfq; popq %0" : "=r"(f) :: "memory");
    return f;
}

/* Disable interrupts and return the previous RFLAGS for irq_restore. */
static inline uint64_t irq_save(void)
{
    uint64_t f;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(f) :: "memory");
    return f;
}

static inline void irq_restore(uint64_t flags)
{
    if (flags & RFLAGS_IF)
        cpu_sti();
}

/* Stop this CPU for good (interrupts off, so hlt never returns). */
static inline __attribute__((noreturn)) void cpu_halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
}

/* ---- port I/O ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* ---- model-specific registers, CPUID, TSC ---- */
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

/* CPUID 0x80000001 EDX bit 20: the execute-disable (NX) bit exists. */
static inline int cpu_has_nx(void)
{
    uint32_t a, b, c, d;
    cpuid(0x80000000u, 0, &a, &b, &c, &d);
    if (a < 0x80000001u)
        return 0;
    cpuid(0x80000001u, 0, &a, &b, &c, &d);
    return (d >> 20) & 1;
}

/* CPUID 01H ECX bit 21: the local APIC has the x2APIC mode (MSR access,
 * 32-bit APIC ids). */
static inline int cpu_has_x2apic(void)
{
    uint32_t a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    return (c >> 21) & 1;
}

/* Writes to x2APIC MSRs are not serializing: an IPI could overtake the
 * stores that announce its request. MFENCE orders earlier stores before
 * the WRMSR, LFENCE keeps the WRMSR from starting before that (Intel SDM
 * vol. 3, 11.12.3; the sequence Linux uses for x2APIC ICR writes). */
static inline void cpu_fence_before_wrmsr(void) { __asm__ volatile("mfence; lfence" ::: "memory"); }

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* ---- control registers and the TLB ---- */
static inline uint64_t read_cr0(void) { uint64_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline void write_cr0(uint64_t v) { __asm__ volatile("mov %0, %%cr0" :: "r"(v) : "memory"); }
static inline uint64_t read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" :: "r"(v) : "memory"); }
static inline uint64_t read_cr4(void) { uint64_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" :: "r"(va) : "memory"); }

/* ---- descriptor tables ---- */
struct __attribute__((packed)) desc_ptr {
    uint16_t limit;
    uint64_t base;
};

static inline void lgdt(const struct desc_ptr *p) { __asm__ volatile("lgdt %0" :: "m"(*p) : "memory"); }
static inline void lidt(const struct desc_ptr *p) { __asm__ volatile("lidt %0" :: "m"(*p) : "memory"); }
static inline void ltr(uint16_t sel) { __asm__ volatile("ltr %0" :: "rm"(sel) : "memory"); }
static inline void sgdt(struct desc_ptr *p) { __asm__ volatile("sgdt %0" : "=m"(*p)); }
static inline void sidt(struct desc_ptr *p) { __asm__ volatile("sidt %0" : "=m"(*p)); }
static inline uint16_t str(void) { uint16_t s; __asm__ volatile("str %0" : "=r"(s)); return s; }

/*
 * Load new segment selectors after lgdt: data segments directly, CS by a
 * far return (the only way to reload CS in long mode without a far jump
 * through memory).
 */
static inline void load_segments(uint16_t cs, uint16_t ds)
{
    __asm__ volatile(
        "mov %1, %%ds\n\t"
        "mov %1, %%es\n\t"
        "mov %1, %%ss\n\t"
        "xor %%eax, %%eax\n\t"
        "mov %%ax, %%fs\n\t"
        "mov %%ax, %%gs\n\t"
        "pushq %q0\n\t"
        "leaq 1f(%%rip), %%rax\n\t"
        "pushq %%rax\n\t"
        "lretq\n"
        "1:"
        :: "r"((uint64_t)cs), "r"(ds) : "rax", "memory");
}

/* Current frame pointer, for backtraces (kernel built with frame pointers). */
static inline uint64_t read_rbp(void) { uint64_t v; __asm__ volatile("mov %%rbp, %0" : "=r"(v)); return v; }
/* Current stack pointer: the lowest live byte of this CPU's stack, for
 * the leak scan's stack roots (stopworld.c, kmemleak.c). */
static inline uint64_t read_rsp(void) { uint64_t v; __asm__ volatile("mov %%rsp, %0" : "=r"(v)); return v; }

/*
 * The loader's last act: switch to the kernel's page tables and jump to
 * the kernel entry with the boot-info physical address in RDI (SysV first
 * argument). Runs from identity-mapped loader code, which the new tables
 * also identity-map, so the instruction after the CR3 write still fetches.
 * The kernel's entry sets its own stack and clears RBP; nothing here may
 * touch a register the compiler could have picked for cr3 or entry.
 */
static inline __attribute__((noreturn)) void cpu_enter_kernel(uint64_t cr3, uint64_t entry, uint64_t arg)
{
    __asm__ volatile(
        "cli\n\t"
        "mov %0, %%cr3\n\t"
        "jmp *%1"
        :: "r"(cr3), "r"(entry), "D"(arg) : "memory");
    __builtin_unreachable();
}


/* ---- SMP: per-CPU data through GS, CR4, idling with wake-up ---- */
#define MSR_APIC_BASE   0x0000001bu
#define MSR_GS_BASE     0xc0000101u
#define CR4_PGE         (1ull << 7)

static inline void write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" :: "r"(v) : "memory"); }

/*
 * Loads at a fixed offset from the GS base (the running CPU's struct
 * percpu). Volatile: without it the compiler may hoist the load above the
 * wrmsr that sets the GS base (the asm has no visible input to order by).
 */
static inline uint32_t gs_load32(unsigned long off)
{
    uint32_t v;
    __asm__ volatile("movl %%gs:%c1, %0" : "=r"(v) : "i"(off));
    return v;
}

static inline uint64_t gs_load64(unsigned long off)
{
    uint64_t v;
    __asm__ volatile("movq %%gs:%c1, %0" : "=r"(v) : "i"(off));
    return v;
}

/* Store at a fixed offset from the GS base; "memory" orders it against
 * the caller's other accesses the same way a plain store would be. */
static inline void gs_store64(unsigned long off, uint64_t v)
{
    __asm__ volatile("movq %0, %%gs:%c1" :: "r"(v), "i"(off) : "memory");
}

/*
 * Enable interrupts and halt in one step: STI's one-instruction interrupt
 * shadow means an interrupt already pending is taken after HLT starts, so
 * a wake-up sent between the caller's last check and here is not lost.
 */
static inline void cpu_sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

#endif
