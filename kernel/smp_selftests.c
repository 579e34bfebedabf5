/*
 * smp_selftests.c: ktests of SMP bring-up that need no allocator. Each
 * asserts something later code relies on when it runs on several CPUs:
 * the MADT parser rejects corrupt tables, every CPU has a unique GS-based
 * id matching its APIC id, the kernel spinlock makes concurrent updates
 * exact, the timer ticks (and calls its hook) on every CPU, and concurrent
 * TLB shootdowns are each acknowledged by every other CPU without
 * deadlock, even with interrupts off, and every AP runs on a mapped stack
 * with an unmapped guard below it. They run with SMP=1 too (trivially on
 * one CPU). Named-only: smp_panic_selftest (a panic on an AP stops the
 * others and still ends QEMU with the panic status) and
 * smp_stack_overflow_selftest (an AP overflowing its stack stops on the
 * guard with a double-fault report).
 */
#include "ktest.h"
#include "cmdline.h"
#include "bootinfo_check.h"
#include "kstring.h"
#include "panic.h"
#include "printk.h"
#include "spinlock.h"
#include "../arch/x86_64/acpi.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"
#include "../arch/x86_64/tlb.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/vm.h"

/* ---- ACPI: the parser accepts the firmware's MADT and rejects bad copies ---- */

static uint8_t madt_copy[4096];

static void fix_checksum(uint8_t *t, uint32_t len)
{
    struct acpi_sdt_header *h = (struct acpi_sdt_header *)t;
    h->checksum = 0;
    uint8_t sum = 0;
    for (uint32_t i = 0; i < len; i++)
        sum += t[i];
    h->checksum = (uint8_t)(0 - sum);
}

KTEST(acpi_madt_corrupt_rejected)
{
    const struct acpi_sdt_header *m;
    uint64_t len;
    const char *err = acpi_find_madt(boot_info->rsdp_phys, boot_info->direct_map_size, &m, &len);
    KTEST_ASSERT(t, err == NULL);
    KTEST_ASSERT(t, len >= 44 && len <= sizeof(madt_copy));
    static struct acpi_madt_info info;

    memcpy(madt_copy, m, len);
    KTEST_EXPECT(t, acpi_parse_madt(madt_copy, len, &info) == NULL);
    KTEST_EXPECT(t, info.ncpus >= smp_cpus_online());
    KTEST_EXPECT(t, info.lapic_phys == 0xfee00000ull);

    madt_copy[len - 1] ^= 0x40;  /* one flipped bit in the last entry */
    const char *why = acpi_parse_madt(madt_copy, len, &info);
    KTEST_EXPECT_STR(t, why ? why : "accepted", "MADT checksum mismatch");

    memcpy(madt_copy, m, len);  /* a length field beyond what we may read */
    why = acpi_parse_madt(madt_copy, len - 1, &info);
    KTEST_EXPECT_STR(t, why ? why : "accepted", "MADT length field invalid");

    memcpy(madt_copy, m, len);  /* zero-length first entry, checksum made valid */
    madt_copy[44 + 1] = 0;
    fix_checksum(madt_copy, (uint32_t)len);
    why = acpi_parse_madt(madt_copy, len, &info);
    KTEST_EXPECT_STR(t, why ? why : "accepted", "MADT entry length invalid");

    memcpy(madt_copy, m, len);  /* wrong signature */
    madt_copy[0] = 'X';
    why = acpi_parse_madt(madt_copy, len, &info);
    KTEST_EXPECT_STR(t, why ? why : "accepted", "MADT signature wrong");

    /* The whole chain rejects an RSDP address outside physical memory. */
    why = acpi_find_madt(boot_info->direct_map_size - 8, boot_info->direct_map_size, &m, &len);
    KTEST_EXPECT_STR(t, why ? why : "accepted", "RSDP address outside physical memory");
}

/* ---- identity: GS-based ids are unique and match the APIC ---- */

static struct { uint32_t gs_id, lapic, percpu_apic; uint64_t self; } seen_id[MAX_CPUS];

static void record_id(unsigned cpu, void *arg)
{
    (void)arg;
    uint64_t f = irq_save();
    seen_id[cpu].gs_id = this_cpu_id();
    seen_id[cpu].lapic = lapic_id();
    seen_id[cpu].percpu_apic = this_cpu()->apic_id;
    seen_id[cpu].self = (uint64_t)(uintptr_t)this_cpu();
    irq_restore(f);
}

KTEST(smp_percpu_ids)
{
    unsigned n = smp_cpus_online();
    KTEST_ASSERT(t, n >= 1 && n <= MAX_CPUS);
    KTEST_EXPECT_EQ(t, n + smp_cpus_failed() + (smp_parked_cpu() >= 0), smp_cpus_tried());
    memset(seen_id, 0xff, sizeof(seen_id));
    smp_run_all(record_id, NULL);
    for (unsigned c = 0; c < n; c++) {
        KTEST_EXPECT_EQ(t, seen_id[c].gs_id, c);
        KTEST_EXPECT_EQ(t, seen_id[c].lapic, seen_id[c].percpu_apic);
        KTEST_EXPECT_EQ(t, seen_id[c].self, (uint64_t)(uintptr_t)&percpu_area[c]);
        for (unsigned d = 0; d < c; d++)
            if (seen_id[d].lapic == seen_id[c].lapic)
                ktest_fail(t, "cpus %u and %u report the same APIC id %u", d, c, seen_id[c].lapic);
    }
}

/* ---- the kernel spinlock: concurrent increments are exact ---- */

/*
 * lock_rounds=<n> per CPU. The default is small because `make test`'s
 * generic boot cases run QEMU with a thread per vCPU, where a ticket-lock
 * handoff costs a host scheduling delay; the SMP matrix runs 100000.
 */
static unsigned lock_rounds = 10000;
static int parse_lock_rounds(const char *v)
{
    uint64_t x;
    if (cmdline_uint(v, 0, 100000000u, &x) != 0)
        return -1;
    lock_rounds = (unsigned)x;
    return 0;
}
KPARAM(lock_rounds, parse_lock_rounds);

static spinlock_t count_lock = SPINLOCK_INIT;
static volatile uint64_t locked_count;  /* plain read-modify-write: only the lock makes it exact */

static void count_under_lock(unsigned cpu, void *arg)
{
    (void)cpu; (void)arg;
    for (unsigned i = 0; i < lock_rounds; i++) {
        uint64_t f = spin_lock_irqsave(&count_lock);
        locked_count = locked_count + 1;
        spin_unlock_irqrestore(&count_lock, f);
    }
}

KTEST(smp_spinlock_exact_count)
{
    locked_count = 0;
    smp_run_all(count_under_lock, NULL);
    KTEST_EXPECT_EQ(t, locked_count, (uint64_t)lock_rounds * smp_cpus_online());
}

/* ---- the LAPIC timer ticks and calls its hook on every CPU ---- */

/* Every CPU that has work: idle APs stop their timer (smp.c), so each
 * CPU waits for its ticks inside smp_run_all, interrupts on. */
static uint64_t hook_seen[MAX_CPUS], tick_start[MAX_CPUS];
static void count_hook(unsigned cpu) { __atomic_fetch_add(&hook_seen[cpu], 1, __ATOMIC_RELAXED); }

static void wait_ticks(unsigned cpu, void *arg)
{
    (void)arg;
    /* Liveness, not speed: 20 ticks each, with a generous 5 s bound. */
    uint64_t end = tsc_deadline_us(rdtsc(), 5000000);
    while ((__atomic_load_n(&percpu_area[cpu].timer_ticks, __ATOMIC_RELAXED) - tick_start[cpu] < 20 ||
            __atomic_load_n(&hook_seen[cpu], __ATOMIC_RELAXED) < 20) && rdtsc() < end)
        cpu_pause();
}

KTEST(lapic_timer_every_cpu)
{
    unsigned n = smp_cpus_online();
    for (unsigned c = 0; c < n; c++) {
        tick_start[c] = __atomic_load_n(&percpu_area[c].timer_ticks, __ATOMIC_RELAXED);
        hook_seen[c] = 0;
    }
    apic_set_tick_hook(count_hook);
    smp_run_all(wait_ticks, NULL);
    apic_set_tick_hook(NULL);
    for (unsigned c = 0; c < n; c++) {
        uint64_t ticks = __atomic_load_n(&percpu_area[c].timer_ticks, __ATOMIC_RELAXED) - tick_start[c];
        if (ticks < 20 || hook_seen[c] < 20)
            ktest_fail(t, "cpu %u: %lu timer ticks, %lu hook calls within 5 s (want >= 20 each)",
                       c, ticks, hook_seen[c]);
    }
}

/* ---- TLB shootdown: every request acknowledged by every other CPU ---- */

/* 300 rounds per CPU on a few CPUs; fewer on many, since each round
 * costs every other CPU an interrupt (n * (n - 1) per round of rounds). */
#define SHOOTS_PER_CPU_MAX 300
#define SHOOTS_TOTAL 1200
#define SHOOTS_PER_CPU_MIN 4
static unsigned shoots_per_cpu(void)
{
    return ktest_share(SHOOTS_TOTAL, smp_cpus_online(), SHOOTS_PER_CPU_MIN, SHOOTS_PER_CPU_MAX);
}
static uint8_t shoot_target[2 * 4096] __attribute__((aligned(4096)));

static void shoot_many(unsigned cpu, void *arg)
{
    (void)arg;
    unsigned k = shoots_per_cpu();
    for (unsigned i = 0; i < k; i++) {
        /* half with interrupts off: acks then come only from tlb_service
         * polling, the path that keeps two initiators from deadlocking */
        uint64_t f = (i & 1) ? irq_save() : 0;
        tlb_shootdown((uint64_t)(uintptr_t)shoot_target + ((i + cpu) & 1) * 4096, 4096);
        if (i & 1)
            irq_restore(f);
    }
}

KTEST(tlb_shootdown_concurrent)
{
    unsigned n = smp_cpus_online();
    static uint64_t req0[MAX_CPUS], served0[MAX_CPUS], lazy0[MAX_CPUS];
    for (unsigned c = 0; c < n; c++) {
        req0[c] = __atomic_load_n(&percpu_area[c].tlb_requests, __ATOMIC_RELAXED);
        served0[c] = __atomic_load_n(&percpu_area[c].tlb_served, __ATOMIC_RELAXED);
        lazy0[c] = __atomic_load_n(&percpu_area[c].tlb_lazy_skips, __ATOMIC_RELAXED);
    }
    smp_run_all(shoot_many, NULL);
    uint64_t total = 0;
    for (unsigned c = 0; c < n; c++)
        total += __atomic_load_n(&percpu_area[c].tlb_requests, __ATOMIC_RELAXED) - req0[c];
    KTEST_EXPECT_EQ(t, total, n > 1 ? (uint64_t)shoots_per_cpu() * n : 0);
    for (unsigned c = 0; c < n; c++) {
        uint64_t own = __atomic_load_n(&percpu_area[c].tlb_requests, __ATOMIC_RELAXED) - req0[c];
        uint64_t served = __atomic_load_n(&percpu_area[c].tlb_served, __ATOMIC_RELAXED) - served0[c];
        uint64_t lazy = __atomic_load_n(&percpu_area[c].tlb_lazy_skips, __ATOMIC_RELAXED) - lazy0[c];
        /* every other CPU's request was either flushed here or skipped
         * this CPU while it idled lazily (and flushed everything after) */
        if (served + lazy != total - own)
            ktest_fail(t, "cpu %u flushed for %lu remote requests and was skipped idle by %lu, expected %lu in all",
                       c, served, lazy, total - own);
    }
}

/* ---- a panic on an AP stops the machine with the panic status ---- */

static void panic_on_last(unsigned cpu, void *arg)
{
    (void)arg;
    if (cpu == smp_cpus_online() - 1 && cpu != 0)
        panic("smp_panic_selftest: deliberate panic on cpu %u", cpu);
    for (;;)  /* the others keep running until the NMI stops them */
        cpu_pause();
}

KTEST_NAMED(smp_panic_selftest)
{
    KTEST_ASSERT(t, smp_cpus_online() > 1);
    smp_run_all(panic_on_last, NULL);
    ktest_fail(t, "smp_run_all returned although cpu %u panicked", smp_cpus_online() - 1);
}

/* ---- AP stacks: mapped, guarded, and in use ---- */

static uint64_t seen_sp[MAX_CPUS];

static void record_sp(unsigned cpu, void *arg)
{
    (void)arg;
    volatile uint64_t here = 0;
    seen_sp[cpu] = (uint64_t)(uintptr_t)&here;
}

KTEST(smp_stacks_guarded)
{
    unsigned n = smp_cpus_online();
    smp_run_all(record_sp, NULL);
    for (unsigned c = 1; c < n; c++) {
        uint64_t top = smp_stack_top(c), lo = top - smp_stack_size(), ps = 0;
        KTEST_EXPECT_EQ(t, percpu_area[c].stack_top, top);
        if (seen_sp[c] < lo || seen_sp[c] >= top)
            ktest_fail(t, "cpu %u runs on 0x%lx, outside its stack 0x%lx-0x%lx", c, seen_sp[c], lo, top);
        for (uint64_t va = lo; va < top; va += 4096) {
            uint64_t e = vm_lookup(va, &ps);
            if (!(e & PTE_P) || !(e & PTE_W) || !(e & PTE_NX) || ps != 4096)
                ktest_fail(t, "cpu %u stack page 0x%lx: entry 0x%lx (want present, writable, NX, 4 KiB)", c, va, e);
        }
        for (uint64_t va = lo - 4096; va >= lo - 4 * 4096; va -= 4096)
            if (vm_lookup(va, NULL) != 0)
                ktest_fail(t, "cpu %u guard page 0x%lx is mapped", c, va);
    }
}

/* A CPU that overflows its stack stops on the guard instead of silently
 * writing its neighbour's memory. Ends in a double fault (the #PF frame
 * cannot be pushed on the guard either), reported from the IST stack. */
static unsigned __attribute__((noinline)) recurse(unsigned depth)
{
    volatile uint8_t pad[512];
    pad[depth % 512] = (uint8_t)depth;
    if (depth > 100000000u)  /* never: 512 B a frame exhausts 16 KiB quickly */
        return pad[0];
    return recurse(depth + 1) + pad[depth % 512];
}

static void overflow_on_last(unsigned cpu, void *arg)
{
    (void)arg;
    if (cpu != smp_cpus_online() - 1 || cpu == 0)
        return;
    printk("smp_stack_overflow_selftest: cpu %u recursing; a fault on its guard below 0x%lx must follow\n",
           cpu, smp_stack_top(cpu) - smp_stack_size());
    unsigned r = recurse(0);
    printk("smp_stack_overflow_selftest: recursion returned %u\n", r);
}

KTEST_NAMED(smp_stack_overflow_selftest)
{
    KTEST_ASSERT(t, smp_cpus_online() > 1);
    smp_run_all(overflow_on_last, NULL);
    ktest_fail(t, "cpu %u overflowed its stack without faulting", smp_cpus_online() - 1);
}
