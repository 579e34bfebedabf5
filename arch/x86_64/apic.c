/*
 * apic.c: local APIC, TSC/LAPIC timer calibration, IPIs and the timer
 * interrupt (see apic.h).
 *
 * Shared state is written once on the bootstrap CPU before any AP starts
 * (lapic_base, tsc_us, timer_per_ms) and only read afterwards; APs see it
 * because the BSP's release store that publishes the trampoline (smp.c)
 * happens before the AP runs. tick_hook is an atomic pointer (release on
 * set, acquire in the handler), so a hook's own setup is visible before
 * any CPU calls it.
 */
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
#define ICR_ALL_BUT_SELF (3u << 18)
#define APIC_BASE_ENABLE (1ull << 11)

#define PIT_HZ          1193182u
#define ICR_WAIT_US     100000u   /* an IPI that has not left in 100 ms never will */

static volatile uint32_t *lapic_base;
static uint64_t tsc_us;
static uint32_t timer_per_ms;
static tick_hook_fn tick_hook;
static uint32_t timer_hz = LAPIC_TIMER_HZ;  /* atomic; see lapic_timer_set_hz */

static inline uint32_t lapic_read(uint32_t reg) { return lapic_base[reg / 4]; }
static inline void lapic_write(uint32_t reg, uint32_t v) { lapic_base[reg / 4] = v; }

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

int lapic_ready(void) { return lapic_base != 0; }
uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }
uint32_t lapic_timer_per_ms(void) { return timer_per_ms; }

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

void lapic_init_cpu(uint64_t lapic_phys)
{
    if (!lapic_base)
        lapic_base = PHYS_TO_VIRT(lapic_phys);
    /* The firmware may leave the APIC globally disabled on APs. */
    uint64_t msr = rdmsr(MSR_APIC_BASE);
    if (!(msr & APIC_BASE_ENABLE))
        wrmsr(MSR_APIC_BASE, msr | APIC_BASE_ENABLE);
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
}

void lapic_timer_set_hz(uint32_t hz)
{
    if (hz < LAPIC_TIMER_HZ)
        hz = LAPIC_TIMER_HZ;
    __atomic_store_n(&timer_hz, hz, __ATOMIC_RELAXED);
    lapic_timer_start();
}

uint32_t lapic_timer_hz(void) { return __atomic_load_n(&timer_hz, __ATOMIC_RELAXED); }

static void icr_wait(void)
{
    uint64_t end = tsc_deadline_us(rdtsc(), ICR_WAIT_US);
    while (lapic_read(LAPIC_ICR_LO) & ICR_PENDING) {
        if (rdtsc() > end)
            panic("apic: IPI still pending in the ICR after %u us (local APIC id %u)",
                  ICR_WAIT_US, lapic_id());
        cpu_pause();
    }
}

/* The ICR is two registers: writing the low half sends. Interrupts off so
 * an interrupt handler's IPI cannot land between the two writes. */
static void icr_send(uint32_t dest, uint32_t lo)
{
    uint64_t f = irq_save();
    icr_wait();
    lapic_write(LAPIC_ICR_HI, dest << 24);
    lapic_write(LAPIC_ICR_LO, lo);
    icr_wait();
    irq_restore(f);
}

void lapic_send_init(uint32_t dest) { icr_send(dest, ICR_INIT | ICR_ASSERT); }
void lapic_send_sipi(uint32_t dest, uint8_t page) { icr_send(dest, ICR_STARTUP | ICR_ASSERT | page); }
void lapic_send_ipi(uint32_t dest, uint8_t vector) { icr_send(dest, ICR_ASSERT | vector); }
void lapic_send_ipi_others(uint8_t vector) { icr_send(0, ICR_ALL_BUT_SELF | ICR_ASSERT | vector); }

/* Panic path: no bounded wait that could itself panic, just a few tries. */
void lapic_send_nmi_others(void)
{
    if (!lapic_base)
        return;
    for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); i++)
        cpu_pause();
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_NMI);
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
     * interrupts off, so a tick never lands inside it. */
    kmalloc_safepoint();
    tick_hook_fn fn = __atomic_load_n(&tick_hook, __ATOMIC_ACQUIRE);
    if (fn) {
        __atomic_store_n(&p->hook_calls, p->hook_calls + 1, __ATOMIC_RELAXED);
        fn(p->cpu);
    }
    lapic_eoi();
}
