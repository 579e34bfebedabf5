/*
 * idt.h: exception vectors 0..31 and what happens on one.
 *
 * isr.S pushes a struct regs and calls exception_dispatch (idt.c), which
 * prints the vector name, error code, RIP and (for #PF) CR2 plus the
 * registered diagnosis, a register dump and a symbolised backtrace, then
 * panics. No exception is recoverable yet. The IDT is one shared table;
 * each CPU loads it with idt_load_cpu(cpu).
 */
#ifndef ARCH_X86_64_IDT_H
#define ARCH_X86_64_IDT_H

#include <stdint.h>

/* Saved by isr.S, lowest address first. */
struct regs {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;  /* pushed by the CPU */
};

/* Fill the IDT (once, on the bootstrap CPU). */
void idt_init(void);
/* Install an interrupt gate (SMP: timer, IPIs, NMI); before APs start. */
void idt_set_gate(unsigned vector, uint64_t handler, unsigned ist);
/* Load it on CPU `cpu` (each CPU, after gdt_init_cpu). */
void idt_load_cpu(unsigned cpu);

/*
 * Page-fault diagnosis seam. The #PF handler calls the hook, if set,
 * before anything else; a non-NULL return is printed as
 * "page fault: <diagnosis>" (e.g. the heap's "kmalloc arena: access to
 * released page 0x..."). The hook runs with interrupts off inside the
 * fault: it must not allocate, lock or fault; it may return a static buffer.
 */
typedef const char *(*pf_diag_fn)(uint64_t addr, uint64_t error, const struct regs *r);
/* Install fn; returns the previous hook so a new one can chain to it for
 * addresses it does not own. */
pf_diag_fn idt_set_pf_hook(pf_diag_fn fn);

/* Print r as a register dump (used by the exception path). */
void regs_dump(const struct regs *r);

#endif
