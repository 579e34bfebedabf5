/*
 * kfence_selftests.c: guarded sampling in the kernel (mm/mkfence.c, the
 * port's guard hook in arch/x86_64/sys.c, the #PF hook in kernel/mem.c).
 *
 *   kfence_every_cpu     a forced sample on every CPU is a usable object in
 *                        the pool, and its free gives its page back
 *   kfence_timer         samples taken and freed inside the timer
 *                        interrupt, on every CPU
 *   kfence_pool_full     more live samples than the pool holds: sampling
 *                        pauses (skipped), allocation goes on, the pool
 *                        serves again once objects are freed
 * Named only, each its own boot case (tests/boot/kmem.cases) that must end in a
 * panic with kfence's report or kfree's fault line:
 *   kfence_overflow_selftest   64 B objects written one byte past the end
 *   kfence_underflow_selftest  64 B objects read one byte before the start
 *   kfence_uaf_read_selftest   64 B objects read after their free
 *   kfence_uaf_write_selftest  64 B objects written after their free
 *   kfence_double_free_selftest, kfence_invalid_free_selftest
 *                              a forced sample freed twice, or at +8
 * The loops run with kfence=10 on the command line until a sample stops
 * them (the timeout of the boot case bounds them).
 */
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "printk.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/smp.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"

static unsigned sampled_on[MAX_CPUS]; /* written by that CPU, read after */
static unsigned bad_on[MAX_CPUS];

static void sample_here(unsigned cpu, void *arg)
{
    (void)arg;
    if (kfence_sample_next() != 0)
        return;
    unsigned char *p = kmalloc(64, 0);
    if (p == NULL || !kfence_owns((uintptr_t)p) || ksize(p) != 64) {
        bad_on[cpu]++;
        kfree(p);
        return;
    }
    for (int i = 0; i < 64; i++)
        p[i] = (unsigned char)(cpu + i);
    for (int i = 0; i < 64; i++)
        if (p[i] != (unsigned char)(cpu + i))
            bad_on[cpu]++;
    kfree(p);
    sampled_on[cpu]++;
}

KTEST(kfence_every_cpu)
{
    struct kmalloc_stats a, b;
    kmalloc_stats(&a);
    for (unsigned c = 0; c < MAX_CPUS; c++)
        sampled_on[c] = bad_on[c] = 0;
    smp_run_all(sample_here, NULL);
    kmalloc_stats(&b);
    unsigned n = smp_cpus_online(), ok = 0;
    for (unsigned c = 0; c < n; c++) {
        KTEST_EXPECT(t, bad_on[c] == 0);
        ok += sampled_on[c] != 0;
    }
    /* another CPU's check may take a forced sample first: most, not all */
    KTEST_EXPECT(t, ok >= 1);
    KTEST_EXPECT(t, b.kfence_allocs - a.kfence_allocs >= ok);
    printk("kfence_every_cpu: %u of %u CPUs took a sample; %lu samples, %lu freed in all\n", ok, n,
           b.kfence_allocs, b.kfence_frees);
}

/* ---- from the timer interrupt ---- */

static unsigned irq_sampled[MAX_CPUS]; /* that CPU's interrupts */
static int irq_on;                     /* atomic */

static void kfence_tick(unsigned cpu)
{
    if (!__atomic_load_n(&irq_on, __ATOMIC_ACQUIRE) || cpu >= MAX_CPUS)
        return;
    sample_here(cpu, NULL); /* counts in sampled_on */
    irq_sampled[cpu] = sampled_on[cpu];
}

static void spin_until_sampled(unsigned cpu, void *arg)
{
    uint64_t until = tsc_deadline_us(rdtsc(), (uint64_t)(uintptr_t)arg);
    while (__atomic_load_n(&irq_sampled[cpu], __ATOMIC_RELAXED) < 3 && rdtsc() < until)
        cpu_pause(); /* interrupts on: the timer keeps ticking here */
}

KTEST(kfence_timer)
{
    for (unsigned c = 0; c < MAX_CPUS; c++)
        sampled_on[c] = bad_on[c] = irq_sampled[c] = 0;
    __atomic_store_n(&irq_on, 1, __ATOMIC_RELEASE);
    apic_set_tick_hook(kfence_tick);
    smp_run_all(spin_until_sampled, (void *)(uintptr_t)3000000);
    apic_set_tick_hook(NULL);
    __atomic_store_n(&irq_on, 0, __ATOMIC_RELEASE);
    unsigned n = smp_cpus_online(), all = 0;
    for (unsigned c = 0; c < n; c++) {
        KTEST_EXPECT(t, bad_on[c] == 0);
        all += irq_sampled[c] != 0;
    }
    KTEST_EXPECT(t, all == n);
    printk("kfence_timer: samples taken and freed in the timer interrupt on %u of %u CPUs\n", all,
           n);
}

/* ---- the pool running full ---- */

KTEST(kfence_pool_full)
{
    enum { N = 300 };
    static void *live[N];
    struct kmalloc_stats a, b;
    kmalloc_stats(&a);
    unsigned sampled = 0;
    for (int i = 0; i < N; i++) {
        kfence_sample_next();
        live[i] = kmalloc(32, 0);
        KTEST_ASSERT(t, live[i] != NULL);
        *(volatile unsigned *)live[i] = (unsigned)i;
        sampled += kfence_owns((uintptr_t)live[i]);
    }
    kmalloc_stats(&b);
    KTEST_EXPECT(t, sampled <= 255 && sampled >= 200);
    KTEST_EXPECT(t, b.kfence_skipped > a.kfence_skipped);
    for (int i = 0; i < N; i++) {
        KTEST_EXPECT(t, *(volatile unsigned *)live[i] == (unsigned)i);
        kfree(live[i]);
    }
    kfence_sample_next();
    void *p = kmalloc(32, 0);
    KTEST_EXPECT(t, p != NULL && kfence_owns((uintptr_t)p));
    kfree(p);
    printk("kfence_pool_full: %u of %d live objects sampled, %lu samples skipped meanwhile\n",
           sampled, N, b.kfence_skipped - a.kfence_skipped);
}

/* ---- the boot cases' loops (named only: each ends in a panic) ---- */

static volatile char sink;

static __attribute__((noinline)) void overflow_loop(void)
{
    for (;;) {
        volatile char *p = kmalloc(64, 0);
        p[64] = 1;
        kfree((void *)p);
    }
}

static __attribute__((noinline)) void underflow_loop(void)
{
    volatile char *pad = kmalloc(64, 0); /* kept: p[-1] stays in the heap */
    (void)pad;
    for (;;) {
        volatile char *p = kmalloc(64, 0);
        sink = p[-1];
        kfree((void *)p);
    }
}

static __attribute__((noinline)) void uaf_loop(int write)
{
    for (;;) {
        volatile char *p = kmalloc(64, 0);
        kfree((void *)p);
        if (write)
            p[1] = 1;
        else
            sink = p[1];
    }
}

KTEST_NAMED(kfence_overflow_selftest)
{
    overflow_loop();
    ktest_fail(t, "returned");
}

KTEST_NAMED(kfence_underflow_selftest)
{
    underflow_loop();
    ktest_fail(t, "returned");
}

KTEST_NAMED(kfence_uaf_read_selftest)
{
    uaf_loop(0);
    ktest_fail(t, "returned");
}

KTEST_NAMED(kfence_uaf_write_selftest)
{
    uaf_loop(1);
    ktest_fail(t, "returned");
}

static void *victim;

KTEST_NAMED(kfence_double_free_selftest)
{
    KTEST_ASSERT(t, kfence_sample_next() == 0);
    victim = kmalloc(64, 0);
    KTEST_ASSERT(t, victim != NULL && kfence_owns((uintptr_t)victim));
    kfree(victim);
    kfree(victim);
    ktest_fail(t, "kfree of 0x%lx returned", (uint64_t)(uintptr_t)victim);
}

KTEST_NAMED(kfence_invalid_free_selftest)
{
    KTEST_ASSERT(t, kfence_sample_next() == 0);
    victim = kmalloc(64, 0);
    KTEST_ASSERT(t, victim != NULL && kfence_owns((uintptr_t)victim));
    kfree((char *)victim + 8);
    ktest_fail(t, "kfree of 0x%lx returned", (uint64_t)(uintptr_t)victim + 8);
}
