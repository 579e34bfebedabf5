/*
 * apic.h: the local APIC (xAPIC, memory-mapped through the direct map),
 * the time base derived from it, and the interrupt vectors SMP uses.
 *
 * Time: tsc_calibrate() measures the TSC against PIT channel 2 once, on
 * the bootstrap CPU; every delay and timeout in smp.c/tlb.c is then a TSC
 * deadline (tsc_deadline_us / tsc_expired). The LAPIC timer is calibrated
 * against the TSC (same bus clock on every CPU, so once) and runs periodic
 * at LAPIC_TIMER_HZ on each CPU; its handler counts ticks in struct percpu
 * and calls the registered per-tick hook (apic_set_tick_hook), the seam
 * through which the SMP self-tests allocate in interrupt context.
 *
 * xAPIC or x2APIC: x2APIC (MSR interface, 32-bit ids) when the CPU has
 * it, unless x2apic=off; it is required for APIC ids above 254. QEMU 7.2's
 * TCG has no x2APIC (and refuses -smp above 255), so under emulation the
 * xAPIC path is the one that runs; KVM guests and real machines with
 * x2APIC take the MSR path.
 *
 * IPIs name one destination APIC id; there is deliberately no broadcast
 * (apic.c says why).
 */
#ifndef ARCH_X86_64_APIC_H
#define ARCH_X86_64_APIC_H

#include <stdint.h>

/* Vectors above the exceptions; the priority class (vector >> 4) orders them. */
#define VEC_TIMER     0x40
#define VEC_WAKE      0x41    /* no-op IPI: wakes a CPU idling in hlt */
#define VEC_TLB       0x50    /* TLB shootdown request (tlb.c) */
#define VEC_STOP_WORLD 0x60   /* park until the world restarts (stopworld.c) */
#define VEC_SPURIOUS  0xff

#define LAPIC_TIMER_HZ 1000
/*
 * On many CPUs the normal rate comes down (lapic_timer_rate_for): at most
 * LAPIC_TIMER_BUDGET / n^2 Hz per CPU, never below LAPIC_TIMER_MIN_HZ.
 * Why n^2: under QEMU every vCPU's timer is an event on the one main-loop
 * thread, and each event's cost grows with the vCPU count (it kicks the
 * round-robin vCPU thread); 255 busy vCPUs at 1 kHz kept that thread
 * firing timers with the vCPU thread starved for the big lock (gdb: main
 * thread in qemu_clock_run_all_timers / rr_kick_vcpu_thread). 16e6 keeps
 * 1 kHz up to 126 CPUs and gives 246 Hz at 255; a kernel needs no more.
 */
#define LAPIC_TIMER_BUDGET 16000000ull
#define LAPIC_TIMER_MIN_HZ 100

/* Measure TSC ticks per microsecond (PIT channel 2, 10 ms). Returns it. */
uint64_t tsc_calibrate(void);
uint64_t tsc_per_us(void);
static inline uint64_t tsc_deadline_us(uint64_t now, uint64_t us);
void tsc_delay_us(uint64_t us);

/* Bootstrap CPU, before lapic_init_cpu: use x2APIC if want and the CPU
 * has it (or if the firmware already switched to it). Returns NULL, or
 * why the choice could not be honoured (the other mode is then used). */
const char *apic_use_x2apic(int want);
int lapic_x2apic(void);
/* Largest APIC id the chosen interface can send an IPI to. */
uint32_t lapic_max_id(void);

/* Map the LAPIC (phys from the MADT) and enable it on the running CPU:
 * spurious vector, TPR 0, LINT/error LVTs masked. First call: bootstrap CPU. */
void lapic_init_cpu(uint64_t lapic_phys);
int lapic_ready(void);
uint32_t lapic_id(void);
void lapic_eoi(void);

/* Calibrate (first call only) and start the periodic timer on this CPU. */
void lapic_timer_start(void);
/* Stop it (an idle AP: smp.c's idle loop restarts it for work). */
void lapic_timer_stop(void);
/* The normal rate for a machine with ncpus CPUs (above), and setting it
 * (smp_init, once every CPU is up; restarts this CPU's timer, the others
 * take it at their next lapic_timer_start). */
uint32_t lapic_timer_rate_for(unsigned ncpus);
void lapic_timer_set_base_hz(uint32_t hz);
uint32_t lapic_timer_base_hz(void);
/* Change the tick rate (never below the normal rate) and restart the timer
 * on the running CPU; the other CPUs pick the rate up when they call it
 * too (smp_run_all). The SMP kmalloc tests run at 10 kHz for more
 * interrupt-context allocations per test. */
void lapic_timer_set_hz(uint32_t hz);
uint32_t lapic_timer_hz(void);
/* Ticks per millisecond of the LAPIC timer at divide-by-16 (report). */
uint32_t lapic_timer_per_ms(void);

/* Interprocessor interrupts to one local APIC id. Each waits (bounded)
 * until the previous IPI left the ICR (xAPIC). */
void lapic_send_init(uint32_t dest);
void lapic_send_sipi(uint32_t dest, uint8_t page);
void lapic_send_ipi(uint32_t dest, uint8_t vector);
void lapic_send_nmi(uint32_t dest);
/* Panic path: never panics itself, gives up on a stuck ICR. */
void lapic_send_nmi_panic(uint32_t dest);

/*
 * Per-tick hook: called from the timer interrupt on every CPU, interrupts
 * off, after the tick count is incremented. NULL disables it. The hook may
 * take irq-off spinlocks and allocate (that is the point); it must not
 * wait for another CPU.
 */
typedef void (*tick_hook_fn)(unsigned cpu);
void apic_set_tick_hook(tick_hook_fn fn);

static inline uint64_t tsc_deadline_us(uint64_t now, uint64_t us)
{
    return now + us * tsc_per_us();
}

#endif
