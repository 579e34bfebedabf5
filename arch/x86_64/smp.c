/*
 * smp.c: AP start-up, the per-CPU idle loop, cross-CPU work dispatch, the
 * interrupt dispatcher for the APIC vectors and panic-time stop (see
 * smp.h).
 *
 * Happens-before edges:
 *  - BSP fills the trampoline block, the shared APIC/TSC calibration and
 *    the IDT, then sends INIT-SIPI (after a full fence): the AP's first
 *    instruction happens after all of it.
 *  - AP finishes its setup and prints, then stores percpu.online = 1
 *    (RELEASE); the BSP's ACQUIRE load of it precedes publishing
 *    n_online = idx + 1 (RELEASE); smp_cpus_online() loads it ACQUIRE, so
 *    whoever sees CPU i counted also sees CPU i's per-CPU area filled.
 *  - smp_run_all: fn/arg stores, then gen++ (RELEASE) -> AP loads gen
 *    (ACQUIRE) and reads fn/arg; AP's work, then done++ (RELEASE) -> BSP's
 *    ACQUIRE load of done == n-1: all CPUs' work is visible to the caller.
 *  - NMI requests: the requester ORs a bit into the target's nmi_request
 *    (SEQ_CST) before the NMI; the handler exchanges it with 0, answers,
 *    and publishes with a RELEASE store (nmi_pings or nmi_state_seq).
 *
 * Every IPI and NMI goes to one online CPU at a time: CPUs the MADT
 * lists but the kernel did not start, or parked, never receive one. They
 * sit in the firmware's parking loop, in memory the kernel reclaimed and
 * may reuse; the old all-but-self wake-ups and panic NMIs reached them
 * too, and an NMI there runs whatever the firmware's IDT points at by
 * then (a reset was suspected; not reproduced in our runs).
 */
#include <stddef.h>
#include "smp.h"
#include "acpi.h"
#include "stopworld.h"
#include "apic.h"
#include "cpu.h"
#include "gdt.h"
#include "idt.h"
#include "memlayout.h"
#include "percpu.h"
#include "../../mm/kmalloc.h"
#include "tlb.h"
#include "paging.h"
#include "vm.h"
#include "../../boot/bootinfo.h"
#include "../../kernel/cmdline.h"
#include "../../kernel/kstring.h"
#include "../../kernel/panic.h"
#include "../../kernel/printk.h"

/*
 * AP kernel stacks live in the KSTACK window (memlayout.h), one slot per
 * CPU index: AP_STACK_GUARD bytes never mapped, then AP_STACK_SIZE bytes
 * of stack (writable, NX). The stack's frames are those of ap_stack_mem in
 * .bss, mapped a second time in the window, and only that alias is used:
 * frames from the frame allocator would break the heap tests' exact
 * comparison of the frame allocator's used frames with the heap port's. An AP that
 * overflows its stack faults on the guard (and, since the #PF frame cannot
 * be pushed there either, double-faults onto its IST stack, which prints
 * the report) instead of running silently into its neighbour. The BSP
 * keeps the boot stack from entry.S, which has its own guard page.
 *
 *   KSTACK_WINDOW_BASE + i * AP_STACK_SLOT
 *   | guard (unmapped) 16 KiB | stack 16 KiB, grows down from the top |
 */
#define AP_STACK_SIZE       (16 * 1024)
#define AP_STACK_GUARD      (16 * 1024)
#define AP_STACK_SLOT       (AP_STACK_SIZE + AP_STACK_GUARD)
#define AP_START_TIMEOUT_MS 1000
static uint8_t ap_stack_mem[MAX_CPUS][AP_STACK_SIZE] __attribute__((aligned(4096)));
_Static_assert((uint64_t)MAX_CPUS * AP_STACK_SLOT <= KSTACK_WINDOW_SIZE, "AP stacks fit the KSTACK window");

/* Trampoline parameter block at offset 8 (trampoline.S, P_*). */
struct __attribute__((packed)) tramp_params {
    uint16_t gdt_limit;
    uint32_t gdt_base;
    uint16_t pad;
    uint32_t cr3;
    uint32_t efer;
    uint64_t stack;
    uint64_t entry;
    uint64_t kcr3;
    uint64_t cpu;
    uint32_t cr4;
    uint32_t pad2;
    uint64_t gdt[4];
};
_Static_assert(offsetof(struct tramp_params, cr3) == 16 - 8, "P_CR3");
_Static_assert(offsetof(struct tramp_params, stack) == 24 - 8, "P_STACK");
_Static_assert(offsetof(struct tramp_params, cpu) == 48 - 8, "P_CPU");
_Static_assert(offsetof(struct tramp_params, cr4) == 56 - 8, "P_CR4");
_Static_assert(offsetof(struct tramp_params, gdt) == 64 - 8, "P_GDT");
_Static_assert(sizeof(struct tramp_params) == 96 - 8, "parameter block size");

extern const char smp_trampoline_start[], smp_trampoline_end[];
extern const char smp_ap_entry64[];
extern const char irq_stub_0x40[], irq_stub_0x41[], irq_stub_0x50[], irq_stub_0xff[], irq_nmi[];
extern const char irq_stub_0x60[];

int smp_stop_requested;  /* read by irq.S's NMI stub */

/* Temporary tables for the AP's switch to long mode: identity-map the low
 * 2 MiB (the trampoline runs there) and share the kernel's upper half. */
static uint64_t tramp_pml4[512] __attribute__((aligned(4096)));
static uint64_t tramp_pdpt[512] __attribute__((aligned(4096)));
static uint64_t tramp_pd[512] __attribute__((aligned(4096)));

static unsigned n_online = 1;  /* atomic; the BSP counts from the start */
static unsigned n_failed;
static unsigned n_tried = 1;
static int parked_idx = -1;    /* written by the BSP before the AP starts */
static struct acpi_madt_info madt;

static struct {
    smp_work_fn fn;
    void *arg;
    uint32_t gen;   /* atomic: bumped to hand out new work */
    uint32_t done;  /* atomic: CPUs other than the caller that finished */
} work;

/* smp_fake_cpu=<apic id>: pretend the MADT lists a CPU with this APIC id,
 * which no CPU answers; tests the "did not start" path. */
static int fake_apic_id = -1;
static int parse_fake(const char *v)
{
    uint64_t x;
    if (cmdline_uint(v, 0, 254, &x) != 0)
        return -1;
    fake_apic_id = (int)x;
    return 0;
}
KPARAM(smp_fake_cpu, parse_fake);

/* smp_bad_madt: parse a copy of the MADT with one byte flipped, to test
 * that broken tables leave the kernel running on one CPU. */
static int bad_madt;
static uint8_t madt_copy[4096];
static int parse_bad_madt(const char *v) { return cmdline_flag(v, &bad_madt); }
KPARAM(smp_bad_madt, parse_bad_madt);

/* smp_park_last: start the last CPU the MADT lists but park it: it never
 * counts as online, takes no timer, and counts every interrupt and NMI
 * that reaches it (tests: no IPI may reach a CPU that is not online). */
static int park_last;
static int parse_park_last(const char *v) { return cmdline_flag(v, &park_last); }
KPARAM(smp_park_last, parse_park_last);

/* maxcpus=N: bring up at most N CPUs (the BSP included, parked one not);
 * the rest stay in the firmware's parking loop, as CPUs beyond MAX_CPUS
 * do. Tests use it to check that nothing is ever sent to them. */
static unsigned max_cpus_opt = MAX_CPUS;
static int parse_maxcpus(const char *v)
{
    uint64_t x;
    if (cmdline_uint(v, 1, MAX_CPUS, &x) != 0)
        return -1;
    max_cpus_opt = (unsigned)x;
    return 0;
}
KPARAM(maxcpus, parse_maxcpus);

/* x2apic=on|off: use the x2APIC MSR interface when the CPU has it (on,
 * the default) or stay with xAPIC. */
static int want_x2apic = 1;
static int parse_x2apic(const char *v) { return cmdline_onoff(v, &want_x2apic); }
KPARAM(x2apic, parse_x2apic);

unsigned smp_cpus_online(void) { return __atomic_load_n(&n_online, __ATOMIC_ACQUIRE); }
unsigned smp_cpus_failed(void) { return n_failed; }
unsigned smp_cpus_tried(void) { return n_tried; }
int smp_parked_cpu(void) { return parked_idx; }

void smp_stop_others(void)
{
    __atomic_store_n(&smp_stop_requested, 1, __ATOMIC_SEQ_CST);
    unsigned n = __atomic_load_n(&n_online, __ATOMIC_ACQUIRE);
    if (n <= 1 || !lapic_ready())
        return;
    unsigned me = this_cpu_id();
    for (unsigned c = 0; c < n; c++)
        if (c != me)
            lapic_send_nmi_panic(percpu_area[c].apic_id);
}

void smp_nmi_request(unsigned cpu, uint32_t req)
{
    struct percpu *p = &percpu_area[cpu];
    __atomic_fetch_or(&p->nmi_request, req, __ATOMIC_SEQ_CST);
    lapic_send_nmi(p->apic_id);
}

void smp_ping_others(void)
{
    unsigned n = smp_cpus_online(), me = this_cpu_id();
    for (unsigned c = 0; c < n; c++)
        if (c != me)
            smp_nmi_request(c, NMI_REQ_PING);
}

void apic_timer_tick(void);
void irq_dispatch(struct regs *r);  /* from irq.S only */
void irq_dispatch(struct regs *r)
{
    struct percpu *p = this_cpu();
    __atomic_store_n(&p->irq_count, p->irq_count + 1, __ATOMIC_RELAXED);
    tlb_leave_lazy();  /* an idle AP may hold stale translations (tlb.c) */
    if (__atomic_load_n(&p->parked, __ATOMIC_RELAXED)) {
        /* A parked CPU only counts what reached it (smp_park_last). */
        __atomic_store_n(&p->parked_irqs, p->parked_irqs + 1, __ATOMIC_RELAXED);
        __atomic_store_n(&p->parked_vector, (uint32_t)r->vector, __ATOMIC_RELAXED);
        if (r->vector != VEC_SPURIOUS)
            lapic_eoi();
        return;
    }
    switch (r->vector) {
    case VEC_TIMER:
        apic_timer_tick();
        break;
    case VEC_TLB:
        tlb_service();
        lapic_eoi();
        break;
    case VEC_WAKE:
        lapic_eoi();
        break;
    case VEC_STOP_WORLD:
        lapic_eoi();
        stop_world_park();  /* returns when the world restarts */
        break;
    case VEC_SPURIOUS:
        break;  /* a spurious interrupt is not in service: no EOI */
    default:
        panic("irq: unexpected vector %lu on cpu %u", r->vector, this_cpu_id());
    }
}

/* NMIs that are not a stop (irq.S). Runs on the NMI IST stack with
 * interrupts off; touches only this CPU's percpu. */
void exception_dispatch(struct regs *r);
void nmi_dispatch(struct regs *r);  /* from irq.S only */
void nmi_dispatch(struct regs *r)
{
    struct percpu *p = this_cpu();
    if (__atomic_load_n(&p->parked, __ATOMIC_RELAXED)) {
        __atomic_store_n(&p->parked_nmis, p->parked_nmis + 1, __ATOMIC_RELAXED);
        __atomic_store_n(&p->parked_vector, 2, __ATOMIC_RELAXED);
        return;
    }
    uint32_t req = __atomic_exchange_n(&p->nmi_request, 0, __ATOMIC_ACQUIRE);
    if (req & NMI_REQ_STATE) {
        p->nmi_rip = r->rip;
        p->nmi_rsp = r->rsp;
        p->nmi_rbp = r->rbp;
        p->nmi_rflags = r->rflags;
        __atomic_store_n(&p->nmi_state_seq, p->nmi_state_seq + 1, __ATOMIC_RELEASE);
    }
    if (req & NMI_REQ_PING)
        __atomic_store_n(&p->nmi_pings, p->nmi_pings + 1, __ATOMIC_RELEASE);
    if (!req)
        exception_dispatch(r);  /* an NMI nobody asked for: report it */
}

/*
 * An AP idles tickless: its timer runs only while it has work. Under
 * QEMU every tick of every idle vCPU is a wake-up the one emulation
 * thread pays for: with 128 vCPUs idling at 1 kHz the bootstrap CPU's
 * single-CPU tests ran 20-40 times slower than with 4. An idle CPU still
 * takes every IPI at once (interrupts on in hlt), so shootdowns and
 * wake-ups are answered as before.
 */
static void idle_loop(unsigned cpu) __attribute__((noreturn));
static void idle_loop(unsigned cpu)
{
    uint32_t seen = __atomic_load_n(&work.gen, __ATOMIC_ACQUIRE);
    lapic_timer_stop();
    /* No timer, no kmalloc_safepoint: drains must not wait for us. */
    kmalloc_cpu_idle();
    for (;;) {
        /* Frames a timer-interrupt kfree left for a shootdown (tlb.h):
         * give them back now that interrupts are on. */
        if (tlb_gather_count())
            tlb_gather_flush();
        /* The heap's idle path: a release step that came due while we
         * worked, done with interrupts on so its shootdown completes
         * here (one clock read when none is due). */
        kmalloc_background();
        cpu_cli();
        uint32_t g = __atomic_load_n(&work.gen, __ATOMIC_ACQUIRE);
        if (g != seen) {
            seen = g;
            lapic_timer_start();
            kmalloc_safepoint(); /* answer drains again from now on */
            cpu_sti();
            work.fn(cpu, work.arg);
            if (tlb_gather_count())
                tlb_gather_flush();
            cpu_cli();
            lapic_timer_stop();
            kmalloc_cpu_idle();
            cpu_sti();
            __atomic_fetch_add(&work.done, 1, __ATOMIC_RELEASE);
            continue;
        }
        tlb_enter_lazy();  /* shootdowns skip us until our next interrupt */
        cpu_sti_hlt();     /* VEC_WAKE or the last tick bring us back */
        /* An interrupt left lazy mode already; an NMI (which returns
         * here after hlt) did not. */
        cpu_cli();
        tlb_leave_lazy();
        cpu_sti();
    }
}

void smp_ap_main(uint64_t cpu);  /* from trampoline.S only */
void smp_ap_main(uint64_t cpu)
{
    gdt_init_cpu(cpu);
    idt_load_cpu(cpu);
    lapic_init_cpu(madt.lapic_phys);
    percpu_init_cpu(cpu, lapic_id());
    vm_enable_protection();
    struct percpu *p = this_cpu();
    p->stack_top = smp_stack_top(cpu);
    if ((int)cpu == parked_idx) {
        /* APIC enabled (so an IPI aimed here would arrive and be counted),
         * no timer, interrupts on, never online. */
        printk("cpu %lu parked (APIC id %u): not online; it counts any interrupt that reaches it\n",
               cpu, p->apic_id);
        __atomic_store_n(&p->parked, 1, __ATOMIC_RELEASE);
        for (;;)
            cpu_sti_hlt();
    }
    lapic_timer_start();
    printk("cpu %lu online (APIC id %u)\n", cpu, p->apic_id);
    __atomic_store_n(&p->online, 1, __ATOMIC_RELEASE);
    idle_loop(cpu);
}

void smp_run_all(smp_work_fn fn, void *arg)
{
    unsigned n = smp_cpus_online();
    work.fn = fn;
    work.arg = arg;
    __atomic_store_n(&work.done, 0, __ATOMIC_RELAXED);
    __atomic_fetch_add(&work.gen, 1, __ATOMIC_RELEASE);
    unsigned me = this_cpu_id();
    for (unsigned c = 0; c < n; c++)
        if (c != me)
            lapic_send_ipi(percpu_area[c].apic_id, VEC_WAKE);
    fn(me, arg);
    if (tlb_gather_count())
        tlb_gather_flush();
    while (__atomic_load_n(&work.done, __ATOMIC_ACQUIRE) != n - 1)
        cpu_pause();
}

static uint64_t kernel_va_to_phys(const void *va)
{
    uint64_t ps = 0, a = (uint64_t)(uintptr_t)va;
    uint64_t e = vm_lookup(a, &ps);
    if (!e)
        return 0;
    return ((e & PTE_ADDR_MASK) & ~(ps - 1)) | (a & (ps - 1));
}

/* Prepare the trampoline frame; returns NULL or why SMP is impossible. */
static const char *trampoline_setup(uint64_t tramp_phys)
{
    if (!tramp_phys)
        return "the loader found no frame below 1 MiB for the trampoline";
    if (tramp_phys & 0xfff || tramp_phys >= 0x100000)
        return "trampoline frame not a page below 1 MiB";
    uint64_t pml4 = kernel_va_to_phys(tramp_pml4), pdpt = kernel_va_to_phys(tramp_pdpt),
             pd = kernel_va_to_phys(tramp_pd);
    if (!pml4 || pml4 >= 0x100000000ull || pdpt >= 0x100000000ull || pd >= 0x100000000ull)
        return "kernel image above 4 GiB: 32-bit CR3 cannot reach the temporary tables";

    const uint64_t *kpml4 = PHYS_TO_VIRT(read_cr3() & PTE_ADDR_MASK);
    for (int i = 256; i < 512; i++)
        tramp_pml4[i] = kpml4[i];
    tramp_pml4[0] = pdpt | PTE_P | PTE_W;
    tramp_pdpt[0] = pd | PTE_P | PTE_W;
    tramp_pd[0] = 0 | PTE_P | PTE_W | PTE_PS;

    uint64_t size = (uint64_t)(smp_trampoline_end - smp_trampoline_start);
    if (size > 3072)
        return "trampoline code larger than its frame leaves room for";
    uint8_t *dst = PHYS_TO_VIRT(tramp_phys);
    memcpy(dst, smp_trampoline_start, size);
    struct tramp_params *tp = (struct tramp_params *)(dst + 8);
    tp->gdt[0] = 0;
    tp->gdt[1] = 0x00cf9a000000ffffull;  /* 32-bit code, flat */
    tp->gdt[2] = 0x00cf92000000ffffull;  /* data, flat */
    tp->gdt[3] = 0x00af9a000000ffffull;  /* 64-bit code */
    tp->gdt_limit = sizeof(tp->gdt) - 1;
    tp->gdt_base = (uint32_t)(tramp_phys + 8 + offsetof(struct tramp_params, gdt));
    tp->cr3 = (uint32_t)pml4;
    tp->cr4 = (1u << 5) | (uint32_t)(read_cr4() & CR4_PGE);  /* PAE (+PGE as on the BSP) */
    tp->efer = (1u << 8) | (uint32_t)(rdmsr(MSR_EFER) & EFER_NXE);  /* LME (+NXE) */
    tp->entry = (uint64_t)(uintptr_t)smp_ap_entry64;
    tp->kcr3 = read_cr3();
    return NULL;
}

uint64_t smp_stack_top(unsigned cpu)
{
    return KSTACK_WINDOW_BASE + (uint64_t)cpu * AP_STACK_SLOT + AP_STACK_SLOT;
}

uint64_t smp_stack_size(void) { return AP_STACK_SIZE; }

void smp_stack_area(uint64_t *start, uint64_t *end)
{
    *start = (uint64_t)(uintptr_t)ap_stack_mem;
    *end = *start + sizeof(ap_stack_mem);
}

/* Map CPU idx's stack (not its guard). Returns NULL or why it failed; a
 * failure leaves the pages mapped so far in place, unused (boot only). */
static const char *ap_stack_map(unsigned idx)
{
    uint64_t top = smp_stack_top(idx);
    const uint8_t *mem = ap_stack_mem[idx];
    for (uint64_t off = 0; off < AP_STACK_SIZE; off += PAGE_SIZE_4K) {
        uint64_t phys = kernel_va_to_phys(mem + off);
        if (!phys)
            return "its stack memory in .bss is not mapped";
        if (paging_map(top - AP_STACK_SIZE + off, phys, PTE_W | PTE_NX) != 0)
            return "no frame for a page table of its stack";
    }
    return NULL;
}

/* INIT-SIPI-SIPI (Intel SDM vol. 3, 8.4.4.1): 10 ms after INIT, 200 us
 * between the SIPIs, then wait for the AP's online flag. */
static int start_ap(uint64_t tramp_phys, unsigned idx, uint32_t apic_id)
{
    struct tramp_params *tp = (struct tramp_params *)((uint8_t *)PHYS_TO_VIRT(tramp_phys) + 8);
    tp->stack = smp_stack_top(idx);
    tp->cpu = idx;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);

    struct percpu *p = &percpu_area[idx];
    uint32_t *up = (int)idx == parked_idx ? &p->parked : &p->online;
    lapic_send_init(apic_id);
    tsc_delay_us(10000);
    for (int i = 0; i < 2 && !__atomic_load_n(up, __ATOMIC_ACQUIRE); i++) {
        lapic_send_sipi(apic_id, (uint8_t)(tramp_phys >> 12));
        tsc_delay_us(200);
    }
    uint64_t end = tsc_deadline_us(rdtsc(), AP_START_TIMEOUT_MS * 1000ull);
    while (!__atomic_load_n(up, __ATOMIC_ACQUIRE)) {
        if (rdtsc() > end)
            return 0;
        cpu_pause();
    }
    return 1;
}

/* Find and parse the MADT into madt (smp_bad_madt: a corrupted copy);
 * without one, one CPU at the architectural APIC base. Returns the error
 * or NULL. */
static const char *read_madt(const struct boot_info *bi)
{
    const struct acpi_sdt_header *m = NULL;
    uint64_t mlen = 0;
    const char *err = acpi_find_madt(bi->rsdp_phys, bi->direct_map_size, &m, &mlen);
    if (!err && bad_madt && mlen <= sizeof(madt_copy)) {
        printk("smp: smp_bad_madt: parsing a copy of the MADT with its last byte flipped\n");
        memcpy(madt_copy, m, mlen);
        madt_copy[mlen - 1] ^= 0xff;
        m = (const struct acpi_sdt_header *)madt_copy;
    }
    if (!err)
        err = acpi_parse_madt(m, mlen, &madt);
    if (err) {
        printk("smp: ACPI: %s; continuing on one CPU\n", err);
        madt.ncpus = 0;
        madt.lapic_phys = rdmsr(MSR_APIC_BASE) & 0xffffff000ull;
    }
    return err;
}

/* Start the CPUs the MADT lists besides the BSP, as maxcpus= and the
 * test options allow. Returns how many maxcpus= left in the firmware. */
static unsigned start_aps(const struct boot_info *bi, uint32_t bsp_apic, const char *xerr)
{
    unsigned left = 0, idx = 1, last = 0;
    for (unsigned i = 0; i < madt.ncpus; i++)
        if (madt.apic_id[i] != bsp_apic)
            last = i;
    for (unsigned i = 0; i < madt.ncpus && idx < MAX_CPUS; i++) {
        uint32_t id = madt.apic_id[i];
        if (id == bsp_apic)
            continue;
        if (smp_cpus_online() >= max_cpus_opt && !(park_last && i == last)) {
            left++;
            continue;
        }
        n_tried++;
        if (id > lapic_max_id()) {
            n_failed++;
            printk("smp: CPU with APIC id %u not started: ids above %u need x2APIC (%s)\n", id,
                   lapic_max_id(), xerr ? xerr : "x2apic=off");
            continue;
        }
        if (park_last && i == last)
            parked_idx = (int)idx;
        const char *serr = ap_stack_map(idx);
        if (serr) {
            n_failed++;
            printk("smp: CPU with APIC id %u not started: %s\n", id, serr);
            continue;
        }
        if (start_ap(bi->smp_trampoline_phys, idx, id)) {
            if ((int)idx != parked_idx)
                __atomic_store_n(&n_online, idx + 1, __ATOMIC_RELEASE);
            idx++;
        } else {
            if ((int)idx == parked_idx)
                parked_idx = -1;
            n_failed++;
            printk("smp: CPU with APIC id %u did not start (no answer to INIT-SIPI-SIPI "
                   "within %u ms); continuing without it\n",
                   id, AP_START_TIMEOUT_MS);
        }
    }
    return left;
}

/* What the MADT says, and the CPUs it lists started (unless the
 * trampoline cannot be set up). Returns the CPUs maxcpus= left out. */
static unsigned report_and_start(const struct boot_info *bi, uint32_t bsp_apic, const char *xerr)
{
    printk(
        "smp: MADT lists %u enabled CPU(s) (%u local APIC, %u x2APIC entries, highest APIC id %u)\n",
        madt.listed, madt.n_lapic, madt.n_x2apic, madt.max_id);
    if (madt.dropped)
        printk("smp: this kernel starts at most %u CPUs (MAX_CPUS); %u listed CPU(s) ignored\n",
               MAX_CPUS, madt.dropped);
    if (fake_apic_id >= 0 && madt.ncpus < MAX_CPUS) {
        printk("smp: smp_fake_cpu: adding APIC id %d, which no CPU answers\n", fake_apic_id);
        madt.apic_id[madt.ncpus++] = (uint32_t)fake_apic_id;
    }
    const char *terr = madt.ncpus > 1 ? trampoline_setup(bi->smp_trampoline_phys) : NULL;
    if (terr) {
        printk("smp: cannot start other CPUs: %s; continuing on one CPU\n", terr);
        return 0;
    }
    return start_aps(bi, bsp_apic, xerr);
}

void smp_init(const struct boot_info *bi)
{
    idt_set_gate(VEC_TIMER, (uint64_t)(uintptr_t)irq_stub_0x40, 0);
    idt_set_gate(VEC_WAKE, (uint64_t)(uintptr_t)irq_stub_0x41, 0);
    idt_set_gate(VEC_TLB, (uint64_t)(uintptr_t)irq_stub_0x50, 0);
    idt_set_gate(VEC_STOP_WORLD, (uint64_t)(uintptr_t)irq_stub_0x60, 0);
    idt_set_gate(VEC_SPURIOUS, (uint64_t)(uintptr_t)irq_stub_0xff, 0);
    idt_set_gate(2, (uint64_t)(uintptr_t)irq_nmi, IST_NMI);

    uint64_t mhz = tsc_calibrate();
    printk("smp: TSC %lu MHz (measured against PIT channel 2)\n", mhz);
    const char *err = read_madt(bi);
    const char *xerr = apic_use_x2apic(want_x2apic);
    lapic_init_cpu(madt.lapic_phys);
    uint32_t bsp_apic = lapic_id();
    percpu_area[0].apic_id = bsp_apic;
    percpu_area[0].stack_top = 0;
    __atomic_store_n(&percpu_area[0].online, 1, __ATOMIC_RELEASE);
    lapic_timer_start();
    printk("smp: local APIC at phys 0x%lx (%s), BSP APIC id %u; timer %u kHz (%u LAPIC ticks/ms)\n",
           madt.lapic_phys, lapic_x2apic() ? "x2APIC, MSR interface" : "xAPIC, MMIO", bsp_apic,
           LAPIC_TIMER_HZ / 1000, lapic_timer_per_ms());
    if (xerr)
        printk("smp: %s x2APIC: %s\n", lapic_x2apic() ? "using" : "not using", xerr);
    unsigned left = err ? 0 : report_and_start(bi, bsp_apic, xerr);
    if (left)
        printk("smp: maxcpus=%u: %u CPU(s) left in the firmware, never started\n", max_cpus_opt, left);
    printk("cpus: %u online\n", smp_cpus_online());
    uint32_t hz = lapic_timer_rate_for(smp_cpus_online());
    if (hz != LAPIC_TIMER_HZ) {
        lapic_timer_set_base_hz(hz);
        printk("smp: timer at %u Hz per CPU on %u CPUs (emulators pay for every tick of every CPU)\n",
               hz, smp_cpus_online());
    }
    if (parked_idx >= 0)
        printk("smp: cpu %d (APIC id %u) is parked, not online (smp_park_last)\n", parked_idx,
               percpu_area[parked_idx].apic_id);
    cpu_sti();
}
