/*
 * smp_kmalloc_selftests.c: kmalloc on every CPU at once, objects moving
 * between CPUs (the stress and the fault cases: smp_kmalloc_stress_selftests.c;
 * the shared machinery, interrupt-context allocation included:
 * smp_kmalloc_testutil.c). What a user of kmalloc on an SMP kernel relies
 * on, checked here:
 *   smp_kmalloc_all_classes  all CPUs allocate and free in every size
 *                            class at once; every object keeps its fill
 *                            pattern (no two CPUs were given one object);
 *   smp_kmalloc_handoff      objects allocated on one CPU are freed on
 *                            another, in both directions, small and large;
 *   smp_kmalloc_magazines    CPUs that only free overflow their magazines
 *                            into the transfer cache; CPUs that only
 *                            allocate take the batches back out; every
 *                            object keeps its pattern, accounting exact;
 *   smp_idle_cpus_not_waited an idle CPU (timer stopped, no safe point)
 *                            tells the heap so: kmalloc_trim does not wait
 *                            for it, and it empties its caches for the
 *                            trim it missed as soon as it works again.
 * Each runs with the timer interrupt allocating on every CPU too, and
 * ends with kmalloc_stats agreeing with what was done, nothing live.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "kmalloc_testutil.h"
#include "smp_kmalloc_testutil.h"
#include "cmdline.h"
#include "kstring.h"
#include "mem.h"
#include "panic.h"
#include "printk.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"
#include "../mm/msize.h"
#include "pmm/pmm.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/paging.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"

/* ---- every size class on every CPU ---- */

#define PER_CLASS 24

static void all_classes(unsigned cpu, void *arg)
{
    (void)arg;
    static void *objs[MAX_CPUS][PER_CLASS];
    struct counts *cn = &smk_test_counts[cpu];
    /* Three rounds of PER_CLASS objects; above 64 CPUs one round of a
     * third of them, and above 128 CPUs every fourth class (each class
     * still on about 64 CPUs at once). Under emulation every span a CPU
     * needs goes through mheap.lock, and at 255 CPUs each ticket handed to
     * a waiting vCPU costs a round of vCPU switches: the qemu monitor
     * showed 242 of 255 vCPUs waiting for mheap.lock, and a full round of
     * every class ran past 15 minutes. Each CPU starts at its own class,
     * so they do not all queue on one class's locks. */
    unsigned n = smp_cpus_online();
    int many = n > 64;
    unsigned rounds = many ? 1 : 3, per = many ? PER_CLASS / 3 : PER_CLASS;
    unsigned step = n > 128 ? 4 : 1;
    for (unsigned round = 0; round < rounds; round++) {
        for (unsigned k = 0; k < KMALLOC_NUM_CLASSES - 1; k += step) {
            unsigned c = 1 + (k + cpu) % (KMALLOC_NUM_CLASSES - 1);
            size_t size = class_size(c);
            for (unsigned i = 0; i < per; i++) {
                objs[cpu][i] = kmalloc(size, 0);
                if (!objs[cpu][i]) {
                    smk_record_failure("cpu %u: kmalloc(%lu) returned NULL", cpu, size);
                    return;
                }
                smk_count_alloc(cn, size);
                smk_fill(objs[cpu][i], size, ((uint64_t)cpu << 48) | ((uint64_t)c << 32) | i);
            }
            for (unsigned i = 0; i < per; i++) {
                if (smk_check(objs[cpu][i], size, ((uint64_t)cpu << 48) | ((uint64_t)c << 32) | i))
                    smk_record_failure(
                        "cpu %u: class %u object %p overwritten (shared with another CPU?)", cpu, c,
                        objs[cpu][i]);
                kfree(objs[cpu][i]);
                cn->frees++;
            }
        }
    }
}


KTEST(smp_kmalloc_all_classes)
{
    struct kmalloc_stats before;
    smk_begin(&before);
    smp_run_all(all_classes, NULL);
    smk_end(t);
    smk_check_accounting(t, &before);
    KTEST_EXPECT(t, kt_heap_valid() == 1);
}

static const size_t handoff_sizes[] = { 8, 16, 48, 128, 512, 1024, 4096, 8192, 32768, 65536, 262144 };
/* 600 objects per CPU, fewer above 16 CPUs (9600 in all, at least 100
 * each): under emulation every hand-off waits for the next vCPU's turn. */
#define HANDOFFS_PER_CPU 600
#define HANDOFFS_TOTAL 9600
#define HANDOFFS_PER_CPU_MIN 100
static unsigned handoffs_per_cpu(void)
{
    return ktest_share(HANDOFFS_TOTAL, smp_cpus_online(), HANDOFFS_PER_CPU_MIN, HANDOFFS_PER_CPU);
}

static void handoff(unsigned cpu, void *arg)
{
    (void)arg;
    unsigned n = smp_cpus_online();
    uint64_t seed = 0x1234567ull * (cpu + 1);
    unsigned k = handoffs_per_cpu();
    for (unsigned i = 0; i < k; i++) {
        size_t size = handoff_sizes[i % (sizeof(handoff_sizes) / sizeof(handoff_sizes[0]))];
        if (!smk_produce(cpu, size, &seed))
            break;
        smk_consume(cpu); /* both directions: what this CPU receives goes at once */
    }
    __atomic_fetch_add(&smk_producers_done, 1, __ATOMIC_RELEASE);
    smk_drain_until_all_done(cpu, n);
}

KTEST(smp_kmalloc_handoff)
{
    struct kmalloc_stats before;
    memset(smk_rings, 0, sizeof(smk_rings));
    smk_producers_done = 0;
    smk_begin(&before);
    smp_run_all(handoff, NULL);
    smk_end(t);
    smk_check_accounting(t, &before);
    uint64_t freed = 0;
    for (unsigned c = 0; c < smp_cpus_online(); c++)
        freed += smk_test_counts[c].frees;
    KTEST_EXPECT_EQ(t, freed, (uint64_t)handoffs_per_cpu() * smp_cpus_online());
}

/* ---- magazines and transfer caches across CPUs ----
 * Even CPUs only allocate 64-byte objects, odd CPUs only free what the
 * CPU before them allocated: the freeing CPUs' magazines overflow into
 * the transfer cache, and the allocating CPUs, whose magazines stay
 * empty, take those batches back out (mm/mcache.c). */
#define MAG_OBJS 1200
#define MAG_SIZE 64

static void magazines(unsigned cpu, void *arg)
{
    (void)arg;
    unsigned n = smp_cpus_online();
    uint64_t seed = 0x9e3779b9ull * (cpu + 1);
    for (unsigned i = 0; cpu % 2 == 0 && i < MAG_OBJS; i++)
        if (!smk_produce(cpu, MAG_SIZE, &seed))
            break;
    __atomic_fetch_add(&smk_producers_done, 1, __ATOMIC_RELEASE);
    smk_drain_until_all_done(cpu, n);
}

KTEST(smp_kmalloc_magazines)
{
    struct kmalloc_stats before;
    struct transfer *tc = &mheap_.transfer[spanclass_make(size_to_class(MAG_SIZE), 0)].t;
    uint64_t puts = __atomic_load_n(&tc->puts, __ATOMIC_RELAXED);
    uint64_t takes = __atomic_load_n(&tc->takes, __ATOMIC_RELAXED);
    memset(smk_rings, 0, sizeof(smk_rings));
    smk_producers_done = 0;
    smk_begin(&before);
    smp_run_all(magazines, NULL);
    puts = __atomic_load_n(&tc->puts, __ATOMIC_RELAXED) - puts;
    takes = __atomic_load_n(&tc->takes, __ATOMIC_RELAXED) - takes;
    smk_end(t);
    smk_check_accounting(t, &before);
    unsigned n = smp_cpus_online();
    uint64_t freed = 0;
    for (unsigned c = 0; c < n; c++)
        freed += smk_test_counts[c].frees;
    KTEST_EXPECT_EQ(t, freed, (uint64_t)MAG_OBJS * ((n + 1) / 2));
    printk("smp_kmalloc_magazines: %lu objects freed across CPUs; transfer cache: %lu batches in, "
           "%lu out\n", freed, puts, takes);
    if (n >= 2) {
        KTEST_EXPECT(t, puts > 0);   /* freeing CPUs' magazines overflowed */
        KTEST_EXPECT(t, takes > 0);  /* allocating CPUs took batches back */
    }
}

/* ---- idle CPUs and drains ---- */

static uint32_t polls_in_work[MAX_CPUS];
static uint64_t seen_in_work[MAX_CPUS];

static void note_drain_state(unsigned cpu, void *arg)
{
    (void)arg;
    /* The first run finds the APs without an mcache (no test before this
     * one allocates there): the safe point at the start of the work came
     * before this CPU's first allocation, and it must answer drains all
     * the same. Interrupts stay off until the load, so no timer tick's
     * safe point can make up for a flag the first allocation lost. */
    uint64_t f = irq_save();
    kfree(kmalloc(64, 0)); /* every CPU has an mcache */
    struct mcache *c = mcache_at(cpu_slot(cpu));
    polls_in_work[cpu] = __atomic_load_n(&mm_cpu_polls[cpu_slot(cpu)], __ATOMIC_ACQUIRE);
    irq_restore(f);
    seen_in_work[cpu] = __atomic_load_n(&c->drain_seen, __ATOMIC_ACQUIRE);
}

KTEST(smp_idle_cpus_not_waited)
{
    unsigned n = smp_cpus_online();
    smp_run_all(note_drain_state, NULL);
    for (unsigned c = 1; c < n; c++) {
        KTEST_EXPECT_EQ(t, polls_in_work[c], 1); /* working: answers drains */
        /* back in the idle loop, timer stopped: drains do not wait */
        KTEST_EXPECT_EQ(t, __atomic_load_n(&mm_cpu_polls[cpu_slot(c)], __ATOMIC_ACQUIRE), 0);
    }
    kmalloc_trim(); /* asks every CPU to drain; the idle ones cannot now */
    uint64_t gen = __atomic_load_n(&mheap_.drain_gen, __ATOMIC_ACQUIRE);
    for (unsigned c = 1; c < n; c++)
        KTEST_EXPECT(t,
                     __atomic_load_n(&mcache_at(cpu_slot(c))->drain_seen, __ATOMIC_ACQUIRE) < gen);
    smp_run_all(note_drain_state, NULL);
    for (unsigned c = 1; c < n; c++)
        KTEST_EXPECT(t, seen_in_work[c] >= gen); /* drained on waking, before its work */
}
