/*
 * apic.c: local APIC, TSC/LAPIC timer calibration, IPIs and the timer
 * interrupt (see apic.h).
 *
 * Two register interfaces: xAPIC (MMIO through the direct map, 8-bit APIC
 * ids, the ICR's delivery-status bit to wait on) and x2APIC (MSRs 0x800 +
 * offset/16, 32-bit ids, a 64-bit ICR that needs no wait). The bootstrap
 * CPU picks one before any AP starts (apic_use_x2apic); every CPU then
 * programs its own APIC the same way in lapic_init_cpu.
 *
 * IPIs are always sent to one destination APIC id: there is no broadcast
 * here. An all-but-self shorthand also reaches CPUs the kernel never
 * started (still in the firmware's parking loop, in memory the kernel
 * has reclaimed and may have reused) or parked on purpose; an NMI there
 * runs whatever the firmware's IDT now points at. Callers loop over the
 * online CPUs instead (smp.c).
 *
 * Shared state is written once on the bootstrap CPU before any AP starts
 * (lapic_base, x2apic, tsc_us, timer_per_ms) and only read afterwards; APs see it
 * because the BSP's release store that publishes the trampoline (smp.c)
 * happens before the AP runs. tick_hook is an atomic pointer (release on
 * set, acquire in the handler), so a hook's own setup is visible before
 * any CPU calls it.
 */
#include <stddef.h>
#include "apic.h"
#include "cpu.h"
#include "memlayout.h"
#include "percpu.h"
#include "../../kernel/panic.h"
#include "../../mm/kmalloc.h"

/* xAPIC register offsets (Intel SDM vol. 3, table 11-1) */
#define LAPIC_ID        0x020
#define LAPIC_TPR       0x080
#define LAPIC_EOI       0x0b0
#define LAPIC_SVR       0x0f0
#define LAPIC_ESR       0x280
#define LAPIC_ICR_LO    0x300
#define LAPIC_ICR_HI    0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERR   0x370
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0

#define SVR_ENABLE      (1u << 8)
#define LVT_MASKED      (1u << 16)
#define LVT_PERIODIC    (1u << 17)
#define ICR_PENDING     (1u << 12)
#define ICR_ASSERT      (1u << 14)
#define ICR_INIT        (5u << 8)
#define ICR_STARTUP     (6u << 8)
#define ICR_NMI         (4u << 8)
#define APIC_BASE_ENABLE (1ull << 11)
#define APIC_BASE_X2APIC (1ull << 10)
#define MSR_X2APIC_BASE 0x800u   /* + xAPIC offset / 16 (Intel SDM vol. 3, table 11-6) */
#define XAPIC_MAX_ID    254u     /* 0xff is the xAPIC broadcast id */

#define PIT_HZ          1193182u
#define ICR_WAIT_US     100000u   /* an IPI that has not left in 100 ms never will */

static volatile uint32_t *lapic_base;
static int x2apic;               /* set once by the BSP before APs start */
static uint64_t tsc_us;
static uint32_t timer_per_ms;
static tick_hook_fn tick_hook;
static uint32_t timer_hz = LAPIC_TIMER_HZ;  /* atomic; see lapic_timer_set_hz */
static uint32_t base_hz = LAPIC_TIMER_HZ;   /* atomic; the normal rate */

static inline uint32_t lapic_read(uint32_t reg)
{
    if (x2apic)
        return (uint32_t)rdmsr(MSR_X2APIC_BASE + reg / 16);
    return lapic_base[reg / 4];
}

static inline void lapic_write(uint32_t reg, uint32_t v)
{
    if (x2apic)
        wrmsr(MSR_X2APIC_BASE + reg / 16, v);
    else
        lapic_base[reg / 4] = v;
}

uint64_t tsc_calibrate(void)
{
    /* PIT channel 2 in mode 0 counts down once; port 0x61 bit 5 goes high at 0. */
    uint32_t count = PIT_HZ / 100;  /* 10 ms */
    uint8_t gate = inb(0x61);
    outb(0x61, gate & ~0x03);        /* gate low, speaker off */
    outb(0x43, 0xb0);                /* channel 2, lo/hi byte, mode 0, binary */
    outb(0x42, count & 0xff);
    outb(0x42, count >> 8);
    outb(0x61, (gate & ~0x02) | 0x01);  /* gate high: counting starts */
    uint64_t t0 = rdtsc();
    uint64_t spins = 0;
    while (!(inb(0x61) & 0x20)) {
        if (++spins > 100000000ull)
            break;  /* no PIT: fall back below */
    }
    uint64_t t1 = rdtsc();
    outb(0x61, gate);
    tsc_us = (t1 - t0) / 10000;
    if (tsc_us == 0)
        tsc_us = 1000;  /* a guess (1 GHz) is better than dividing by zero */
    return tsc_us;
}

uint64_t tsc_per_us(void) { return tsc_us; }

void tsc_delay_us(uint64_t us)
{
    uint64_t end = tsc_deadline_us(rdtsc(), us);
    while (rdtsc() < end)
        cpu_pause();
}

int lapic_ready(void) { return lapic_base != 0 || x2apic; }
/* xAPIC keeps the id in bits 31:24 of the ID register; x2APIC's is 32 bits. */
uint32_t lapic_id(void) { return x2apic ? lapic_read(LAPIC_ID) : lapic_read(LAPIC_ID) >> 24; }
int lapic_x2apic(void) { return x2apic; }
uint32_t lapic_max_id(void) { return x2apic ? 0xffffffffu : XAPIC_MAX_ID; }

const char *apic_use_x2apic(int want)
{
    uint64_t msr = rdmsr(MSR_APIC_BASE);
    /* Firmware that handed over in x2APIC mode must be followed: going
     * back to xAPIC means disabling the APIC first (Intel SDM 11.12.5). */
    if (msr & APIC_BASE_X2APIC) {
        x2apic = 1;
        return want ? NULL : "the firmware left the APIC in x2APIC mode";
    }
    if (!want)
        return NULL;
    if (!cpu_has_x2apic())
        return "this CPU has no x2APIC (CPUID 01H ECX bit 21)";
    x2apic = 1;
    return NULL;
}
uint32_t lapic_timer_per_ms(void) { return timer_per_ms; }

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

void lapic_init_cpu(uint64_t lapic_phys)
{
    if (!lapic_base)
        lapic_base = PHYS_TO_VIRT(lapic_phys);
    /* The firmware may leave the APIC globally disabled on APs. x2APIC
     * is entered from xAPIC-enabled (EN, then EN|EXTD; SDM 11.12.5). */
    uint64_t msr = rdmsr(MSR_APIC_BASE);
    if (!(msr & APIC_BASE_ENABLE)) {
        msr |= APIC_BASE_ENABLE;
        wrmsr(MSR_APIC_BASE, msr);
    }
    if (x2apic && !(msr & APIC_BASE_X2APIC))
        wrmsr(MSR_APIC_BASE, msr | APIC_BASE_X2APIC);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
    lapic_write(LAPIC_LVT_LINT1, LVT_MASKED);
    lapic_write(LAPIC_LVT_ERR, LVT_MASKED);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
    lapic_write(LAPIC_SVR, SVR_ENABLE | VEC_SPURIOUS);
    lapic_write(LAPIC_ESR, 0);
    lapic_eoi();  /* drop anything the firmware left in service */
}

void lapic_timer_start(void)
{
    lapic_write(LAPIC_TIMER_DIV, 0x3);  /* divide by 16 */
    if (!timer_per_ms) {
        lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
        lapic_write(LAPIC_TIMER_INIT, 0xffffffffu);
        tsc_delay_us(10000);
        uint32_t elapsed = 0xffffffffu - lapic_read(LAPIC_TIMER_CUR);
        lapic_write(LAPIC_TIMER_INIT, 0);
        timer_per_ms = elapsed / 10;
        if (timer_per_ms == 0)
            panic("apic: LAPIC timer did not count during calibration (%u ticks in 10 ms)", elapsed);
    }
    uint32_t per_tick = (uint32_t)((uint64_t)timer_per_ms * 1000 / __atomic_load_n(&timer_hz, __ATOMIC_RELAXED));
    lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | VEC_TIMER);
    lapic_write(LAPIC_TIMER_INIT, per_tick ? per_tick : 1);
    this_cpu()->timer_on = 1;
}

void lapic_timer_stop(void)
{
    lapic_write(LAPIC_TIMER_INIT, 0);  /* a zero initial count stops it */
    this_cpu()->timer_on = 0;
}

void lapic_timer_set_hz(uint32_t hz)
{
    uint32_t base = __atomic_load_n(&base_hz, __ATOMIC_RELAXED);
    if (hz < base)
        hz = base;
    __atomic_store_n(&timer_hz, hz, __ATOMIC_RELAXED);
    lapic_timer_start();
}

uint32_t lapic_timer_base_hz(void) { return __atomic_load_n(&base_hz, __ATOMIC_RELAXED); }

uint32_t lapic_timer_rate_for(unsigned ncpus)
{
    uint64_t n = ncpus ? ncpus : 1;
    uint64_t hz = LAPIC_TIMER_BUDGET / (n * n);
    return hz > LAPIC_TIMER_HZ ? LAPIC_TIMER_HZ : hz < LAPIC_TIMER_MIN_HZ ? LAPIC_TIMER_MIN_HZ : (uint32_t)hz;
}

void lapic_timer_set_base_hz(uint32_t hz)
{
    __atomic_store_n(&base_hz, hz, __ATOMIC_RELAXED);
    __atomic_store_n(&timer_hz, hz, __ATOMIC_RELAXED);
    lapic_timer_start();
}

uint32_t lapic_timer_hz(void) { return __atomic_load_n(&timer_hz, __ATOMIC_RELAXED); }

static void icr_wait(void)
{
    if (x2apic)
        return;  /* the x2APIC ICR has no delivery-status bit to wait on */
    uint64_t end = tsc_deadline_us(rdtsc(), ICR_WAIT_US);
    while (lapic_read(LAPIC_ICR_LO) & ICR_PENDING) {
        if (rdtsc() > end)
            panic("apic: IPI still pending in the ICR after %u us (local APIC id %u)",
                  ICR_WAIT_US, lapic_id());
        cpu_pause();
    }
}

/* Write the ICR: the destination, then the low half, which sends. */
static void icr_write(uint32_t dest, uint32_t lo)
{
    if (x2apic) {
        cpu_fence_before_wrmsr();
        wrmsr(MSR_X2APIC_BASE + LAPIC_ICR_LO / 16, (uint64_t)dest << 32 | lo);
    } else {
        lapic_write(LAPIC_ICR_HI, dest << 24);
        lapic_write(LAPIC_ICR_LO, lo);
    }
}

/* Interrupts off so an interrupt handler's IPI cannot land between the
 * two xAPIC writes. A destination the interface cannot name is a caller
 * bug (smp.c never starts such a CPU). */
static void icr_send(uint32_t dest, uint32_t lo)
{
    if (dest > lapic_max_id())
        panic("apic: IPI to APIC id %u, beyond what xAPIC can address (%u)", dest, XAPIC_MAX_ID);
    uint64_t f = irq_save();
    icr_wait();
    icr_write(dest, lo);
    icr_wait();
    irq_restore(f);
}

void lapic_send_init(uint32_t dest) { icr_send(dest, ICR_INIT | ICR_ASSERT); }
void lapic_send_sipi(uint32_t dest, uint8_t page) { icr_send(dest, ICR_STARTUP | ICR_ASSERT | page); }
void lapic_send_ipi(uint32_t dest, uint8_t vector) { icr_send(dest, ICR_ASSERT | vector); }
void lapic_send_nmi(uint32_t dest) { icr_send(dest, ICR_ASSERT | ICR_NMI); }

/* Panic path: no bounded wait that could itself panic, just a few tries. */
void lapic_send_nmi_panic(uint32_t dest)
{
    if (!lapic_ready() || dest > lapic_max_id())
        return;
    for (int i = 0; !x2apic && i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); i++)
        cpu_pause();
    icr_write(dest, ICR_ASSERT | ICR_NMI);
}

void apic_set_tick_hook(tick_hook_fn fn)
{
    __atomic_store_n(&tick_hook, fn, __ATOMIC_RELEASE);
}

/* Timer interrupt body, from irq_dispatch (smp.c) with interrupts off. */
void apic_timer_tick(void);
void apic_timer_tick(void)
{
    struct percpu *p = this_cpu();
    __atomic_store_n(&p->timer_ticks, p->timer_ticks + 1, __ATOMIC_RELAXED);
    /* The heap's safe point: if a trim or an allocation that ran out of
     * memory asked every CPU to empty its object caches, this one does
     * it now (one load when nothing was asked). The allocator runs with
     * interrupts off, so a tick never lands inside it. Not on a tick that
     * was pending when an idle CPU stopped its timer: that CPU has told
     * the heap it reaches no safe point (kmalloc_cpu_idle), and a safe
     * point now would make drains wait for it again. */
    if (p->timer_on)
        kmalloc_safepoint();
    tick_hook_fn fn = __atomic_load_n(&tick_hook, __ATOMIC_ACQUIRE);
    if (fn) {
        __atomic_store_n(&p->hook_calls, p->hook_calls + 1, __ATOMIC_RELAXED);
        fn(p->cpu);
    }
    lapic_eoi();
}
