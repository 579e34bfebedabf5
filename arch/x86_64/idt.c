/*
 * idt.c: the exception table and the path from a CPU exception to panic
 * (see idt.h). The IDT is written once by the bootstrap CPU before any
 * other CPU runs and is read-only afterwards, so it needs no lock.
 */
#include "idt.h"
#include "cpu.h"
#include "gdt.h"
#include "percpu.h"
#include "../../kernel/panic.h"
#include "../../kernel/printk.h"
#include "../../kernel/ksyms.h"

struct __attribute__((packed)) idt_gate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t off_mid;
    uint32_t off_hi;
    uint32_t zero;
};

extern const uint64_t isr_table[32];
extern const char boot_stack_guard[];  /* entry.S */
static struct idt_gate idt[256] __attribute__((aligned(16)));
static pf_diag_fn pf_hook;  /* written at init by the heap, read on #PF */

static const char *const vec_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check",
    "#MC machine check", "#XM SIMD error", "#VE virtualization", "#CP control protection",
    "reserved 22", "reserved 23", "reserved 24", "reserved 25", "reserved 26",
    "reserved 27", "#HV hypervisor injection", "#VC VMM communication", "#SX security", "reserved 31",
};

void idt_init(void)
{
    for (int v = 0; v < 32; v++) {
        uint64_t off = isr_table[v];
        idt[v] = (struct idt_gate){
            .off_lo = off & 0xffff,
            .sel = GDT_KERNEL_CS,
            .ist = v == 8 ? IST_DOUBLE_FAULT : v == 2 ? IST_NMI : 0,
            .type_attr = 0x8e,  /* present, DPL0, 64-bit interrupt gate */
            .off_mid = (off >> 16) & 0xffff,
            .off_hi = off >> 32,
        };
    }
}

/* SMP: device/IPI vectors and the NMI stop path; bootstrap CPU,
 * before any other CPU loads the table. */
void idt_set_gate(unsigned vector, uint64_t handler, unsigned ist)
{
    idt[vector & 255] = (struct idt_gate){
        .off_lo = handler & 0xffff,
        .sel = GDT_KERNEL_CS,
        .ist = ist,
        .type_attr = 0x8e,
        .off_mid = (handler >> 16) & 0xffff,
        .off_hi = handler >> 32,
    };
}

void idt_load_cpu(unsigned cpu)
{
    (void)cpu;  /* one shared table; the index keeps the per-CPU call shape */
    struct desc_ptr p = { .limit = sizeof(idt) - 1, .base = (uint64_t)(uintptr_t)idt };
    lidt(&p);
}

pf_diag_fn idt_set_pf_hook(pf_diag_fn fn)
{
    return __atomic_exchange_n(&pf_hook, fn, __ATOMIC_ACQ_REL);
}

void regs_dump(const struct regs *r)
{
    printk("  RIP %016lx  RSP %016lx  RFLAGS %016lx\n", r->rip, r->rsp, r->rflags);
    printk("  RAX %016lx  RBX %016lx  RCX %016lx\n", r->rax, r->rbx, r->rcx);
    printk("  RDX %016lx  RSI %016lx  RDI %016lx\n", r->rdx, r->rsi, r->rdi);
    printk("  RBP %016lx  R8  %016lx  R9  %016lx\n", r->rbp, r->r8, r->r9);
    printk("  R10 %016lx  R11 %016lx  R12 %016lx\n", r->r10, r->r11, r->r12);
    printk("  R13 %016lx  R14 %016lx  R15 %016lx\n", r->r13, r->r14, r->r15);
    printk("  CS %04lx SS %04lx  CR2 %016lx  CR3 %016lx\n", r->cs, r->ss, read_cr2(), read_cr3());
}

void exception_dispatch(struct regs *r);  /* called from isr.S only */

void exception_dispatch(struct regs *r)
{
    uint64_t cr2 = read_cr2();  /* before anything else can fault */
    const char *name = r->vector < 32 ? vec_names[r->vector] : "unknown vector";
    const char *diag = 0;
    pf_diag_fn hook = __atomic_load_n(&pf_hook, __ATOMIC_ACQUIRE);
    if (r->vector == 14 && hook)
        diag = hook(cr2, r->error, r);

    panic_enter();
    printk("\nEXCEPTION: %s (vector %lu), error code 0x%lx, at RIP 0x%016lx\n",
           name, r->vector, r->error, r->rip);
    if (r->vector == 14) {
        printk("page fault: address 0x%016lx: %s, %s access%s%s\n", cr2,
               (r->error & 1) ? "protection violation" : "page not present",
               (r->error & 16) ? "instruction fetch" : (r->error & 2) ? "write" : "read",
               (r->error & 4) ? ", user mode" : ", kernel mode",
               (r->error & 8) ? ", reserved bit set" : "");
        if (diag)
            printk("page fault: %s\n", diag);
    }
    /* A fault on the guard page cannot push its own frame: it arrives as
     * a double fault on the IST stack with CR2 still naming the guard. */
    uint64_t guard = (uint64_t)(uintptr_t)boot_stack_guard;
    if ((r->vector == 8 || r->vector == 14) && cr2 >= guard && cr2 < guard + 4096)
        printk("%s: CR2 0x%016lx is in the boot stack guard page: kernel stack overflow\n",
               r->vector == 8 ? "double fault" : "page fault", cr2);
    regs_dump(r);
    backtrace_print(r->rip, r->rbp);

    static char reason[96];  /* only the panicking CPU gets here */
    uint64_t off = 0;
    const char *fn = ksym_lookup(r->rip, &off);
    if (r->vector == 14)
        snprintk(reason, sizeof(reason), "%s at 0x%lx in %s+0x%lx", name, cr2, fn ? fn : "?", off);
    else
        snprintk(reason, sizeof(reason), "%s in %s+0x%lx", name, fn ? fn : "?", off);
    panic_finish(reason);
}
