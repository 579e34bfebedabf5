/*
 * scale_selftests.c: ktests for running on many CPUs. Each
 * checks something a kernel on a big machine relies on:
 *
 *   acpi_madt_x2apic          the MADT parser takes type 9 (x2APIC)
 *                             entries with 32-bit ids next to type 0 ones,
 *                             skips disabled CPUs, and counts what it must
 *                             drop beyond MAX_CPUS (what "MADT lists N"
 *                             reports), on synthetic tables
 *   smp_nmi_ping              an NMI request reaches every other online CPU
 *                             and is answered (the path the panic stop and
 *                             the TLB stall report use)
 *   tlb_gather_batches        a multi-megabyte release costs one shootdown
 *                             round; a release with interrupts off waits
 *                             for nobody, keeps its frames gathered (and
 *                             counted) and the next release with
 *                             interrupts on gives them back, in one round
 * Named only (boot cases in tests/boot/scale.cases):
 *   smp_parked_cpu_untouched  with smp_park_last: after every kind of IPI
 *                             and NMI the kernel sends (run-all wake-ups,
 *                             shootdowns, NMI pings), the parked CPU has
 *                             received nothing; then one IPI and one NMI
 *                             sent to it on purpose arrive (the counter
 *                             works)
 *   tlb_slow_cpu_waited       a CPU with interrupts off for 3 s holds up
 *                             a shootdown, which waits instead of
 *                             panicking (the old fixed limit was 2 s)
 *   tlb_stall_selftest        a CPU with interrupts off for good: the
 *                             shootdown reports it after TLB_STALL_MS
 *                             with its RIP and backtrace, then panics
 */
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "kstring.h"
#include "mem.h"
#include "printk.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"
#include "pmm/pmm.h"
#include "../mm/sys.h"
#include "../arch/x86_64/acpi.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/paging.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"
#include "../arch/x86_64/tlb.h"

/* ---- MADT with x2APIC entries (synthetic tables) ---- */

static uint8_t madt_buf[44 + 300 * 16];

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Header + local APIC address; returns the offset of the first entry. */
static size_t madt_begin(void)
{
    memset(madt_buf, 0, sizeof(madt_buf));
    memcpy(madt_buf, "APIC", 4);
    put32(madt_buf + 36, 0xfee00000u);
    return 44;
}

static size_t add_lapic(size_t off, uint8_t id, int enabled)
{
    uint8_t *e = madt_buf + off;
    e[0] = 0;
    e[1] = 8;
    e[2] = id;  /* ACPI processor uid */
    e[3] = id;
    put32(e + 4, enabled ? 1u : 0u);
    return off + 8;
}

static size_t add_x2apic(size_t off, uint32_t id, int enabled)
{
    uint8_t *e = madt_buf + off;
    e[0] = 9;
    e[1] = 16;
    put32(e + 4, id);
    put32(e + 8, enabled ? 1u : 0u);
    put32(e + 12, id);  /* uid */
    return off + 16;
}

static void madt_end(size_t len)
{
    put32(madt_buf + 4, (uint32_t)len);
    uint8_t sum = 0;
    madt_buf[9] = 0;
    for (size_t i = 0; i < len; i++)
        sum += madt_buf[i];
    madt_buf[9] = (uint8_t)(0 - sum);
}

KTEST(acpi_madt_x2apic)
{
    static struct acpi_madt_info info;
    size_t off = madt_begin();
    off = add_lapic(off, 0, 1);
    off = add_lapic(off, 1, 1);
    off = add_lapic(off, 2, 0);           /* disabled: not a CPU to start */
    off = add_x2apic(off, 255, 1);        /* first id xAPIC cannot address */
    off = add_x2apic(off, 70000, 1);
    off = add_x2apic(off, 70001, 0);
    madt_end(off);
    const char *err = acpi_parse_madt(madt_buf, off, &info);
    KTEST_ASSERT(t, err == NULL);
    KTEST_EXPECT_EQ(t, info.listed, 4);
    KTEST_EXPECT_EQ(t, info.ncpus, 4);
    KTEST_EXPECT_EQ(t, info.n_lapic, 2);
    KTEST_EXPECT_EQ(t, info.n_x2apic, 2);
    KTEST_EXPECT_EQ(t, info.dropped, 0);
    KTEST_EXPECT_EQ(t, info.max_id, 70000);
    KTEST_EXPECT_EQ(t, info.apic_id[0], 0);
    KTEST_EXPECT_EQ(t, info.apic_id[1], 1);
    KTEST_EXPECT_EQ(t, info.apic_id[2], 255);
    KTEST_EXPECT_EQ(t, info.apic_id[3], 70000);

    /* 300 CPUs: the first MAX_CPUS recorded, the rest counted as dropped. */
    off = madt_begin();
    for (uint32_t i = 0; i < 300; i++)
        off = add_x2apic(off, i * 2, 1);
    madt_end(off);
    err = acpi_parse_madt(madt_buf, off, &info);
    KTEST_ASSERT(t, err == NULL);
    KTEST_EXPECT_EQ(t, info.listed, 300);
    KTEST_EXPECT_EQ(t, info.ncpus, MAX_CPUS);
    KTEST_EXPECT_EQ(t, info.dropped, 300 - MAX_CPUS);
    KTEST_EXPECT_EQ(t, info.apic_id[MAX_CPUS - 1], (MAX_CPUS - 1) * 2);
    KTEST_EXPECT_EQ(t, info.max_id, 598);

    /* One id in both kinds of entry is one CPU listed twice. */
    off = madt_begin();
    off = add_lapic(off, 7, 1);
    off = add_x2apic(off, 7, 1);
    madt_end(off);
    err = acpi_parse_madt(madt_buf, off, &info);
    KTEST_EXPECT_STR(t, err ? err : "accepted", "MADT lists one APIC id twice");

    /* A type 9 entry cut short is rejected before its fields are read. */
    off = madt_begin();
    off = add_x2apic(off, 3, 1);
    madt_buf[off - 16 + 1] = 12;
    madt_end(off - 4);
    err = acpi_parse_madt(madt_buf, off - 4, &info);
    KTEST_EXPECT_STR(t, err ? err : "accepted", "MADT x2APIC entry too short");
}

/* ---- NMI requests reach every online CPU ---- */

/* Wait (bounded, liveness only) until every other online CPU answered
 * a ping sent after `before` was taken. */
static unsigned wait_pings(const uint64_t *before, unsigned n)
{
    unsigned me = this_cpu_id(), missing;
    uint64_t end = tsc_deadline_us(rdtsc(), 5000000);
    do {
        missing = 0;
        for (unsigned c = 0; c < n; c++)
            if (c != me && __atomic_load_n(&percpu_area[c].nmi_pings, __ATOMIC_ACQUIRE) <= before[c])
                missing++;
        cpu_pause();
    } while (missing && rdtsc() < end);
    return missing;
}

static uint64_t ping0[MAX_CPUS];

KTEST(smp_nmi_ping)
{
    unsigned n = smp_cpus_online();
    for (unsigned c = 0; c < n; c++)
        ping0[c] = __atomic_load_n(&percpu_area[c].nmi_pings, __ATOMIC_RELAXED);
    smp_ping_others();
    unsigned missing = wait_pings(ping0, n);
    if (missing)
        ktest_fail(t, "%u of %u other CPUs did not answer an NMI ping within 5 s", missing, n - 1);
    KTEST_EXPECT_EQ(t, percpu_area[this_cpu_id()].nmi_pings, ping0[this_cpu_id()]);
}

/* ---- a parked CPU receives nothing ---- */

static void nothing(unsigned cpu, void *arg)
{
    (void)cpu; (void)arg;
}

KTEST_NAMED(smp_parked_cpu_untouched)
{
    int pk = smp_parked_cpu();
    KTEST_ASSERT(t, pk > 0);
    struct percpu *p = &percpu_area[pk];
    KTEST_ASSERT(t, __atomic_load_n(&p->parked, __ATOMIC_ACQUIRE) == 1);
    KTEST_EXPECT_EQ(t, p->online, 0);
    KTEST_EXPECT_EQ(t, (unsigned)pk, smp_cpus_online());  /* just past the online ones */
    unsigned n = smp_cpus_online();

    /* Everything the kernel sends to other CPUs, several times over. */
    for (int round = 0; round < 4; round++) {
        smp_run_all(nothing, NULL);
        tlb_shootdown(KERNEL_VIRT_BASE, PAGE_SIZE_4K);
        for (unsigned c = 0; c < n; c++)
            ping0[c] = __atomic_load_n(&percpu_area[c].nmi_pings, __ATOMIC_RELAXED);
        smp_ping_others();
        KTEST_EXPECT_EQ(t, wait_pings(ping0, n), 0);
    }
    tsc_delay_us(20000);  /* anything in flight has landed */
    uint64_t irqs = __atomic_load_n(&p->parked_irqs, __ATOMIC_RELAXED);
    uint64_t nmis = __atomic_load_n(&p->parked_nmis, __ATOMIC_RELAXED);
    if (irqs || nmis)
        ktest_fail(t, "parked cpu %d received %lu interrupt(s) and %lu NMI(s) (last vector 0x%x)", pk, irqs,
                   nmis, __atomic_load_n(&p->parked_vector, __ATOMIC_RELAXED));

    /* The detector itself: an IPI and an NMI sent to it on purpose arrive. */
    lapic_send_ipi(p->apic_id, VEC_WAKE);
    lapic_send_nmi(p->apic_id);
    uint64_t end = tsc_deadline_us(rdtsc(), 5000000);
    while ((__atomic_load_n(&p->parked_irqs, __ATOMIC_RELAXED) != irqs + 1 ||
            __atomic_load_n(&p->parked_nmis, __ATOMIC_RELAXED) != nmis + 1) && rdtsc() < end)
        cpu_pause();
    KTEST_EXPECT_EQ(t, __atomic_load_n(&p->parked_irqs, __ATOMIC_RELAXED), irqs + 1);
    KTEST_EXPECT_EQ(t, __atomic_load_n(&p->parked_nmis, __ATOMIC_RELAXED), nmis + 1);
    printk("smp_parked_cpu_untouched: parked cpu %d received %lu IPI(s) and %lu NMI(s) from the kernel's "
           "own traffic; the test's direct IPI and NMI arrived\n", pk, irqs, nmis);
}

/* ---- the frame gather batches shootdowns ---- */

static uint64_t requests_here(void)
{
    return __atomic_load_n(&this_cpu()->tlb_requests, __ATOMIC_RELAXED);
}

static uint64_t used_frames(void)
{
    struct pmm_stats st;
    mem_pmm_stats(&st);
    return st.used_frames;
}

KTEST(tlb_gather_batches)
{
    /* A GiB of the arena no other test or the heap uses (see
     * kmalloc_commit_atomic and paging_remap_flushes_tlb for theirs). */
    uintptr_t top = (mheap_.arena_end - (4 << 20)) & ~((uintptr_t)PAGE_SIZE_1G - 1);
    uintptr_t va = top - 8 * PAGE_SIZE_1G;
    KTEST_ASSERT(t, va > __atomic_load_n(&mheap_.arena_used, __ATOMIC_RELAXED));
    const size_t big = 8 << 20;  /* 2048 pages: 4 page tables' worth */
    struct kmem_port_stats ps0, ps;
    KTEST_ASSERT(t, tlb_gather_count() == 0);
    kmem_port_stats(&ps0);
    uint64_t used0 = used_frames();

    /* With interrupts on: one round for the whole range, frames back. */
    KTEST_ASSERT(t, sys_commit((void *)va, big) == 0);
    uint64_t r0 = requests_here();
    sys_release((void *)va, big);
    uint64_t rounds = requests_here() - r0;
    KTEST_EXPECT_EQ(t, rounds, smp_cpus_online() > 1 ? 1 : 0);
    KTEST_EXPECT_EQ(t, tlb_gather_count(), 0);
    KTEST_EXPECT_EQ(t, used_frames(), used0 + (paging_table_frames() - ps0.table_frames));

    /* With interrupts off: no round at all, the frames stay gathered and
     * counted; the pmm sees them used. */
    KTEST_ASSERT(t, sys_commit((void *)va, 2 * PAGE_SIZE_4K) == 0);
    KTEST_ASSERT(t, sys_commit((void *)(va + big), PAGE_SIZE_4K) == 0);
    r0 = requests_here();
    uint64_t f = irq_save();
    sys_release((void *)va, 2 * PAGE_SIZE_4K);
    uint64_t held = tlb_gather_count();
    kmem_port_stats(&ps);
    irq_restore(f);
    KTEST_EXPECT_EQ(t, requests_here() - r0, 0);
    KTEST_EXPECT(t, held >= 2);
    KTEST_EXPECT_EQ(t, ps.gathered_frames, held);
    KTEST_EXPECT_EQ(t, ps.data_frames, ps0.data_frames + 1);
    uint64_t leaf;
    KTEST_EXPECT(t, paging_probe(va, &leaf) == PAGING_RELEASED_VA);

    /* The next release with interrupts on takes them along: one round. */
    r0 = requests_here();
    sys_release((void *)(va + big), PAGE_SIZE_4K);
    KTEST_EXPECT_EQ(t, requests_here() - r0, smp_cpus_online() > 1 ? 1 : 0);
    KTEST_EXPECT_EQ(t, tlb_gather_count(), 0);
    kmem_port_stats(&ps);
    KTEST_EXPECT_EQ(t, ps.data_frames, ps0.data_frames);
    KTEST_EXPECT_EQ(t, used_frames(), used0 + (paging_table_frames() - ps0.table_frames));
}

/* ---- a slow CPU is waited for; a stuck one is reported ---- */

static volatile int hold_irqs_off_ms;  /* set by the test before smp_run_all */

/* On the last CPU: interrupts off for hold_irqs_off_ms (forever if < 0),
 * not serving TLB requests; the others return at once. */
static void __attribute__((noinline)) stall_spin(unsigned cpu, void *arg)
{
    (void)arg;
    if (cpu != smp_cpus_online() - 1 || cpu == 0)
        return;
    uint64_t f = irq_save();
    if (hold_irqs_off_ms < 0) {
        printk("tlb_stall_selftest: cpu %u spins with interrupts off for good\n", cpu);
        for (;;)
            cpu_pause();
    }
    tsc_delay_us((uint64_t)hold_irqs_off_ms * 1000);
    irq_restore(f);
}

struct shoot_arg { uint64_t rounds; };

/* CPU 0 shoots down while the last CPU holds interrupts off. */
static void shoot_while_stalled(unsigned cpu, void *arg)
{
    if (cpu == 0) {
        tsc_delay_us(100000);  /* let the last CPU turn interrupts off first */
        tlb_shootdown(KERNEL_VIRT_BASE, PAGE_SIZE_4K);
        ((struct shoot_arg *)arg)->rounds++;
        return;
    }
    stall_spin(cpu, NULL);
}

KTEST_NAMED(tlb_slow_cpu_waited)
{
    KTEST_ASSERT(t, smp_cpus_online() > 1);
    struct shoot_arg a = { 0 };
    hold_irqs_off_ms = 3000;
    uint64_t t0 = rdtsc();
    smp_run_all(shoot_while_stalled, &a);
    uint64_t ms = (rdtsc() - t0) / tsc_per_us() / 1000;
    KTEST_EXPECT_EQ(t, a.rounds, 1);
    printk("tlb_slow_cpu_waited: the shootdown waited for cpu %u (interrupts off for %d ms); %lu ms in all\n",
           smp_cpus_online() - 1, hold_irqs_off_ms, ms);
}

KTEST_NAMED(tlb_stall_selftest)
{
    KTEST_ASSERT(t, smp_cpus_online() > 1);
    struct shoot_arg a = { 0 };
    hold_irqs_off_ms = -1;
    smp_run_all(shoot_while_stalled, &a);  /* must end in the stall panic */
    ktest_fail(t, "a shootdown returned although cpu %u never took an interrupt", smp_cpus_online() - 1);
}
