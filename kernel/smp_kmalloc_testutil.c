/*
 * smp_kmalloc_testutil.c: the SMP heap self-tests' shared machinery (see
 * smp_kmalloc_testutil.h). Interrupt-context allocation: while a test
 * runs, the LAPIC timer (raised to 10 kHz per CPU, less on many CPUs: see
 * test_timer_hz) calls irq_alloc_tick, which kmallocs and kfrees itself,
 * sizes varying, patterns checked, objects swapped through a shared slot
 * so interrupts also free what other CPUs allocated: an interrupt landing
 * inside kmalloc on its own CPU would otherwise corrupt the mcache or
 * deadlock on an mcentral lock. Each CPU owns its struct irq_state slot
 * (its own timer interrupt only), so none needs a lock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
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

#include "smp_kmalloc_testutil.h"

/* ---- fill patterns ---- */


/*
 * Objects up to 4 KiB are filled completely; larger ones at the first and
 * last 256 bytes and one word in every 4 KiB page, which catches overlap
 * with any other object at a fraction of the cost (large fills would
 * otherwise dominate the run under emulation).
 */
#define FULL_FILL_MAX 4096

void smk_fill(void *p, size_t size, uint64_t seed)
{
    uint64_t *w = p;
    size_t words = size / 8;
    if (size <= FULL_FILL_MAX) {
        for (size_t i = 0; i < words; i++)
            w[i] = pat(seed, i);
    } else {
        for (size_t i = 0; i < 32; i++) {
            w[i] = pat(seed, i);
            w[words - 1 - i] = pat(seed, words - 1 - i);
        }
        for (size_t i = 512; i < words; i += 512)
            w[i] = pat(seed, i);
    }
    uint8_t *b = p;
    for (size_t i = words * 8; i < size; i++)
        b[i] = (uint8_t)(seed + i);
}

/* 0 if p still holds smk_fill(p, size, seed). */
int smk_check(const void *p, size_t size, uint64_t seed)
{
    const uint64_t *w = p;
    size_t words = size / 8;
    if (size <= FULL_FILL_MAX) {
        for (size_t i = 0; i < words; i++)
            if (w[i] != pat(seed, i))
                return -1;
    } else {
        for (size_t i = 0; i < 32; i++)
            if (w[i] != pat(seed, i) || w[words - 1 - i] != pat(seed, words - 1 - i))
                return -1;
        for (size_t i = 512; i < words; i += 512)
            if (w[i] != pat(seed, i))
                return -1;
    }
    const uint8_t *b = p;
    for (size_t i = words * 8; i < size; i++)
        if (b[i] != (uint8_t)(seed + i))
            return -1;
    return 0;
}

/* ---- accounting: allocations made during a test, per class ---- */


void smk_count_alloc(struct counts *c, size_t size)
{
    if (size <= KMALLOC_MAX_SMALL)
        c->allocs[size_to_class(size)]++;
    else
        c->large++;
}

/* Test code of CPU i writes smk_test_counts[i]; its timer interrupt writes
 * smk_irq_counts[i]. Separate, because the interrupt can land inside an
 * increment of the test code's counter. */
struct counts smk_test_counts[MAX_CPUS], smk_irq_counts[MAX_CPUS];

/* First failure seen on any CPU (reported by the test on CPU 0). */
char smk_fail_msg[160];
int smk_fail_flag;

__attribute__((format(printf, 1, 2))) void smk_record_failure(const char *fmt, ...);
void smk_record_failure(const char *fmt, ...)
{
    if (__atomic_exchange_n(&smk_fail_flag, 1, __ATOMIC_ACQ_REL))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintk(smk_fail_msg, sizeof(smk_fail_msg), fmt, ap);
    va_end(ap);
}

/* ---- interrupt-context allocation: the timer hook ---- */

#define IRQ_SLOTS 8
struct irq_state {
    void *p[IRQ_SLOTS];
    uint32_t size[IRQ_SLOTS];
    uint64_t seed[IRQ_SLOTS];
    uint64_t rng;
    uint64_t allocs;
} __attribute__((aligned(64)));
static struct irq_state irq_state[MAX_CPUS];

/* Shared slot: an interrupt on one CPU drops an object here and frees
 * whatever another CPU's interrupt left, so interrupts free remote objects.
 * The object carries everything needed to check it: it is filled over its
 * whole ksize() with a seed derived from its address. */
static void *irq_swap_slot; /* atomic */
static inline uint64_t swap_seed(const void *p)
{
    return (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
}

static void irq_free(unsigned cpu, void *p, size_t size, uint64_t seed)
{
    if (smk_check(p, size, seed))
        smk_record_failure("timer interrupt on cpu %u: object %p (%lu B) lost its pattern", cpu, p,
                           size);
    kfree(p);
    smk_irq_counts[cpu].frees++;
}

static void irq_alloc_tick(unsigned cpu)
{
    struct irq_state *s = &irq_state[cpu];
    uint64_t r = rng(&s->rng);
    unsigned k = r % IRQ_SLOTS;
    if (s->p[k]) {
        irq_free(cpu, s->p[k], s->size[k], s->seed[k]);
        s->p[k] = NULL;
        return;
    }
    /* 8 B .. 4 KiB mostly, one in 16 up to 64 KiB (a large object) */
    size_t size = (r >> 8) % 16 == 0 ? 4096 + (r >> 16) % (60 * 1024) : 8 + (r >> 16) % 4089;
    void *p = kmalloc(size, 0);
    if (!p) {
        smk_record_failure("timer interrupt on cpu %u: kmalloc(%lu) returned NULL", cpu, size);
        return;
    }
    smk_count_alloc(&smk_irq_counts[cpu], size);
    s->allocs++;
    uint64_t seed = r ^ cpu;
    if ((r >> 40) % 4 == 0) {
        /* hand it to whichever CPU's interrupt comes next */
        smk_fill(p, ksize(p), swap_seed(p));
        void *old = __atomic_exchange_n(&irq_swap_slot, p, __ATOMIC_ACQ_REL);
        if (old)
            irq_free(cpu, old, ksize(old), swap_seed(old));
        return;
    }
    smk_fill(p, size, seed);
    s->p[k] = p;
    s->size[k] = (uint32_t)size;
    s->seed[k] = seed;
}

static void irq_drain_cpu(unsigned cpu, void *arg)
{
    (void)arg;
    uint64_t f = irq_save(); /* our own timer must not run in between */
    struct irq_state *s = &irq_state[cpu];
    for (unsigned k = 0; k < IRQ_SLOTS; k++) {
        if (s->p[k]) {
            irq_free(cpu, s->p[k], s->size[k], s->seed[k]);
            s->p[k] = NULL;
        }
    }
    irq_restore(f);
}

/*
 * The tests' tick rate: 10 kHz per CPU, but at most TEST_TIMER_TOTAL_HZ
 * over all CPUs together (never below the normal rate). Under QEMU every
 * vCPU's timer is an event on one host thread whose cost grows with the
 * number of vCPUs: 128 vCPUs at 10 kHz (1.28 million timer events a
 * second) kept QEMU's main loop firing timers forever, and the guest
 * stopped at the stress banner. What the tests need is interrupts landing
 * inside kmalloc on every CPU, which a few kHz per CPU still gives.
 */
#define TEST_TIMER_HZ       10000
#define TEST_TIMER_TOTAL_HZ 160000

/* ... and, like the normal rate (apic.h), at most 1.5 x its n^2 budget. */
#define TEST_TIMER_BUDGET (LAPIC_TIMER_BUDGET * 3 / 2)

static uint32_t test_timer_hz(void)
{
    uint64_t n = smp_cpus_online();
    uint32_t hz = TEST_TIMER_TOTAL_HZ / (uint32_t)n;
    if (hz > TEST_TIMER_BUDGET / (n * n))
        hz = (uint32_t)(TEST_TIMER_BUDGET / (n * n));
    if (hz > TEST_TIMER_HZ)
        hz = TEST_TIMER_HZ;
    return hz < lapic_timer_base_hz() ? lapic_timer_base_hz() : hz;
}

static void set_rate(unsigned cpu, void *arg)
{
    (void)cpu;
    lapic_timer_set_hz((uint32_t)(uintptr_t)arg);
}

void smk_irq_alloc_start(void)
{
    smp_run_all(set_rate, (void *)(uintptr_t)test_timer_hz());
    for (unsigned c = 0; c < MAX_CPUS; c++) {
        irq_state[c].rng = 0x9e3779b97f4a7c15ull * (c + 1);
        memset(&smk_irq_counts[c], 0, sizeof(smk_irq_counts[c]));
    }
    __atomic_store_n(&irq_swap_slot, NULL, __ATOMIC_RELEASE);
    apic_set_tick_hook(irq_alloc_tick);
}

/* Stop the hook and free everything it still holds; returns the number
 * of objects the interrupts allocated. */
uint64_t smk_irq_alloc_stop(void)
{
    apic_set_tick_hook(NULL);
    smp_run_all(set_rate, (void *)(uintptr_t)lapic_timer_base_hz());
    /* a hook already running on another CPU finishes within its tick;
     * smp_run_all below waits for every CPU to pass through task context */
    smp_run_all(irq_drain_cpu, NULL);
    void *old = __atomic_exchange_n(&irq_swap_slot, NULL, __ATOMIC_ACQ_REL);
    if (old) {
        uint64_t f = irq_save();
        irq_free(this_cpu_id(), old, ksize(old), swap_seed(old));
        irq_restore(f);
    }
    uint64_t n = 0;
    for (unsigned c = 0; c < smp_cpus_online(); c++)
        n += irq_state[c].allocs;
    return n;
}

/* ---- quiescing the heap on every CPU ---- */

static void smk_flush_cpu(unsigned cpu, void *arg)
{
    (void)cpu;
    (void)arg;
    kmalloc_flush_cpu();
}

void smk_heap_quiesce_all(void)
{
    smp_run_all(smk_flush_cpu, NULL);
    kmalloc_trim();
}

/* Snapshot the statistics, then start the interrupt allocations: every
 * allocation after the snapshot is one the test counts. */
void smk_begin(struct kmalloc_stats *before)
{
    smk_fail_flag = 0;
    smk_fail_msg[0] = 0;
    for (unsigned c = 0; c < MAX_CPUS; c++)
        memset(&smk_test_counts[c], 0, sizeof(smk_test_counts[c]));
    smk_heap_quiesce_all();
    kmalloc_stats(before);
    smk_irq_alloc_start();
}

void smk_end(struct ktest *t)
{
    smk_irq_alloc_stop();
    smk_heap_quiesce_all();
    if (__atomic_load_n(&smk_fail_flag, __ATOMIC_ACQUIRE))
        ktest_fail(t, "%s", smk_fail_msg);
}


/* Compare kmalloc_stats deltas with what the test and the interrupts did. */
void smk_check_accounting(struct ktest *t, const struct kmalloc_stats *before)
{
    struct kmalloc_stats after;
    kmalloc_stats(&after);
    unsigned n = smp_cpus_online();
    for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++) {
        uint64_t want = 0;
        for (unsigned i = 0; i < n; i++)
            want += smk_test_counts[i].allocs[c] + smk_irq_counts[i].allocs[c];
        uint64_t got = after.cls[c].allocs - before->cls[c].allocs;
        uint64_t freed = after.cls[c].frees - before->cls[c].frees;
        if (got != want || freed != want)
            ktest_fail(
                t,
                "class %u: kmalloc_stats counted %lu allocs, %lu frees; the test made %lu of each",
                c, got, freed, want);
        if (after.cls[c].live != after.cls[c].allocs - after.cls[c].frees || after.cls[c].live != 0)
            ktest_fail(t, "class %u: %lu live objects after everything was freed", c,
                       after.cls[c].live);
        if (after.cls[c].spans != 0)
            ktest_fail(t, "class %u: %lu spans still in use after every cache was flushed", c,
                       after.cls[c].spans);
    }
    uint64_t large = 0;
    for (unsigned i = 0; i < n; i++)
        large += smk_test_counts[i].large + smk_irq_counts[i].large;
    KTEST_EXPECT_EQ(t, after.large_allocs - before->large_allocs, large);
    KTEST_EXPECT_EQ(t, after.large_frees - before->large_frees, large);
    KTEST_EXPECT_EQ(t, after.large_live, 0);
    KTEST_EXPECT_EQ(t, after.heap_inuse, 0);
    KTEST_EXPECT_EQ(t, after.heap_free, 0); /* trimmed */
}

/* ---- cross-CPU handoff rings ---- */

/* ring[i]: produced by CPU i, consumed by CPU (i + 1) % n */
struct ring smk_rings[MAX_CPUS];

int smk_ring_put(struct ring *r, void *p, size_t size, uint64_t seed)
{
    uint32_t h = r->head, tl = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    if (h - tl == RING)
        return 0;
    r->slot[h % RING] = (struct handoff){ p, (uint32_t)size, 0, seed };
    __atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE); /* publishes the object and its fill */
    return 1;
}

int smk_ring_take(struct ring *r, struct handoff *out)
{
    uint32_t tl = r->tail;
    if (__atomic_load_n(&r->head, __ATOMIC_ACQUIRE) == tl)
        return 0;
    *out = r->slot[tl % RING];
    __atomic_store_n(&r->tail, tl + 1, __ATOMIC_RELEASE);
    return 1;
}

void smk_free_received(unsigned cpu, const struct handoff *h)
{
    if (smk_check(h->p, h->size, h->seed))
        smk_record_failure("cpu %u: object %p (%u B) from another CPU lost its pattern", cpu, h->p,
                           h->size);
    kfree(h->p);
    smk_test_counts[cpu].frees++;
}

unsigned smk_producers_done; /* atomic */

/* Drain what CPU cpu receives until every producer is done and it is empty. */
void smk_drain_until_all_done(unsigned cpu, unsigned n)
{
    struct ring *in = &smk_rings[(cpu + n - 1) % n];
    struct handoff h;
    for (;;) {
        int all = __atomic_load_n(&smk_producers_done, __ATOMIC_ACQUIRE) == n;
        while (smk_ring_take(in, &h))
            smk_free_received(cpu, &h);
        if (all)
            break;
        cpu_pause();
    }
}

/* Free everything cpu has received so far. */
void smk_consume(unsigned cpu)
{
    unsigned n = smp_cpus_online();
    struct handoff h;
    while (smk_ring_take(&smk_rings[(cpu + n - 1) % n], &h))
        smk_free_received(cpu, &h);
}

int smk_produce(unsigned cpu, size_t size, uint64_t *seed)
{
    void *p = kmalloc(size, 0);
    if (!p) {
        smk_record_failure("cpu %u: kmalloc(%lu) returned NULL", cpu, size);
        return 0;
    }
    smk_count_alloc(&smk_test_counts[cpu], size);
    uint64_t s = rng(seed);
    smk_fill(p, size, s);
    while (!smk_ring_put(&smk_rings[cpu], p, size, s)) {
        smk_consume(cpu); /* make room downstream by consuming upstream */
        cpu_pause();
    }
    return 1;
}
