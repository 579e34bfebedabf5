/*
 * smp_kmalloc_selftests.c: kmalloc on every CPU at once.
 *
 * What a user of kmalloc on an SMP kernel relies on, checked here:
 *   smp_kmalloc_all_classes  all CPUs allocate and free in every size
 *                            class at once; every object keeps its fill
 *                            pattern (no two CPUs were given one object);
 *   smp_kmalloc_handoff      objects allocated on one CPU are freed on
 *                            another, in both directions, small and large;
 *   smp_kmalloc_magazines    CPUs that only free overflow their magazines
 *                            into the transfer cache; CPUs that only
 *                            allocate take the batches back out; every
 *                            object keeps its pattern, accounting exact;
 *   smp_kmalloc_stress       stress=<ops per CPU>: random sizes 8 B..1 MiB,
 *                            patterns verified, cross-CPU handoffs; then,
 *                            all caches flushed: per class the allocations
 *                            and frees kmalloc_stats counted equal the ones
 *                            made here, nothing is live, every span is back
 *                            in the mheap, and after kmalloc_trim the frame
 *                            allocator has its frames back (within a bound).
 *                            Prints the per-CPU speed report and the lock
 *                            contention counters.
 *   smp_irq_while_mcentral_locked  a timer interrupt that needs an
 *                            mcentral lock this CPU holds is deferred to
 *                            the unlock and then completes (no deadlock);
 *   smp_released_page_selftest (named only) after free + trim, another CPU
 *                            that had the page in its TLB faults on it with
 *                            the released-page diagnosis.
 *
 * Interrupt-context allocation: while each of these runs, the LAPIC timer
 * (raised from 1 to 10 kHz on every CPU, less on many CPUs: see
 * test_timer_hz) calls irq_alloc_tick, which kmallocs and kfrees
 * itself: varying sizes, patterns checked, and objects swapped through a
 * shared slot so interrupts also free what other CPUs allocated. That is
 * what proves the irq-off protection of the mcache and the irq-off locks
 * complete: an interrupt landing inside kmalloc on its own CPU would
 * otherwise corrupt the mcache or deadlock on an mcentral lock.
 *
 * Data: each CPU owns its struct cpu_state slot (test code) and its
 * struct irq_state slot (its own timer interrupt only), so neither needs
 * a lock; cross-CPU traffic goes through single-producer/single-consumer
 * rings (release on publish, acquire on take) and one atomic exchange slot.
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
#include "../mm/pmm/pmm.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/paging.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"

/* ---- fill patterns ---- */

static inline uint64_t rng(uint64_t *s)
{
    uint64_t x = *s;  /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static inline uint64_t pat(uint64_t seed, size_t i) { return seed ^ (i * 0x9e3779b97f4a7c15ull); }

/*
 * Objects up to 4 KiB are filled completely; larger ones at the first and
 * last 256 bytes and one word in every 4 KiB page, which catches overlap
 * with any other object at a fraction of the cost (large fills would
 * otherwise dominate the run under emulation).
 */
#define FULL_FILL_MAX 4096

static void fill(void *p, size_t size, uint64_t seed)
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

/* 0 if p still holds fill(p, size, seed). */
static int check(const void *p, size_t size, uint64_t seed)
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

struct counts {
    uint64_t allocs[KMALLOC_NUM_CLASSES];  /* small objects, by size class */
    uint64_t large;                        /* large objects */
    uint64_t frees;                        /* everything freed (any class) */
    uint64_t ops;
};

static void count_alloc(struct counts *c, size_t size)
{
    if (size <= KMALLOC_MAX_SMALL)
        c->allocs[size_to_class(size)]++;
    else
        c->large++;
}

/* Test code of CPU i writes test_counts[i]; its timer interrupt writes
 * irq_counts[i]. Separate, because the interrupt can land inside an
 * increment of the test code's counter. */
static struct counts test_counts[MAX_CPUS], irq_counts[MAX_CPUS];

/* First failure seen on any CPU (reported by the test on CPU 0). */
static char fail_msg[160];
static int fail_flag;

__attribute__((format(printf, 1, 2))) static void record_failure(const char *fmt, ...);
static void record_failure(const char *fmt, ...)
{
    if (__atomic_exchange_n(&fail_flag, 1, __ATOMIC_ACQ_REL))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintk(fail_msg, sizeof(fail_msg), fmt, ap);
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
static void *irq_swap_slot;  /* atomic */
static inline uint64_t swap_seed(const void *p) { return (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull; }

static void irq_free(unsigned cpu, void *p, size_t size, uint64_t seed)
{
    if (check(p, size, seed))
        record_failure("timer interrupt on cpu %u: object %p (%lu B) lost its pattern", cpu, p, size);
    kfree(p);
    irq_counts[cpu].frees++;
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
        record_failure("timer interrupt on cpu %u: kmalloc(%lu) returned NULL", cpu, size);
        return;
    }
    count_alloc(&irq_counts[cpu], size);
    s->allocs++;
    uint64_t seed = r ^ cpu;
    if ((r >> 40) % 4 == 0) {
        /* hand it to whichever CPU's interrupt comes next */
        fill(p, ksize(p), swap_seed(p));
        void *old = __atomic_exchange_n(&irq_swap_slot, p, __ATOMIC_ACQ_REL);
        if (old)
            irq_free(cpu, old, ksize(old), swap_seed(old));
        return;
    }
    fill(p, size, seed);
    s->p[k] = p;
    s->size[k] = (uint32_t)size;
    s->seed[k] = seed;
}

static void irq_drain_cpu(unsigned cpu, void *arg)
{
    (void)arg;
    uint64_t f = irq_save();  /* our own timer must not run in between */
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
#define TEST_TIMER_HZ 10000
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

static void irq_alloc_start(void)
{
    smp_run_all(set_rate, (void *)(uintptr_t)test_timer_hz());
    for (unsigned c = 0; c < MAX_CPUS; c++) {
        irq_state[c].rng = 0x9e3779b97f4a7c15ull * (c + 1);
        memset(&irq_counts[c], 0, sizeof(irq_counts[c]));
    }
    __atomic_store_n(&irq_swap_slot, NULL, __ATOMIC_RELEASE);
    apic_set_tick_hook(irq_alloc_tick);
}

/* Stop the hook and free everything it still holds; returns the number
 * of objects the interrupts allocated. */
static uint64_t irq_alloc_stop(void)
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

static void flush_cpu(unsigned cpu, void *arg)
{
    (void)cpu; (void)arg;
    kmalloc_flush_cpu();
}

static void heap_quiesce_all(void)
{
    smp_run_all(flush_cpu, NULL);
    kmalloc_trim();
}

/* Snapshot the statistics, then start the interrupt allocations: every
 * allocation after the snapshot is one the test counts. */
static void begin(struct kmalloc_stats *before)
{
    fail_flag = 0;
    fail_msg[0] = 0;
    for (unsigned c = 0; c < MAX_CPUS; c++)
        memset(&test_counts[c], 0, sizeof(test_counts[c]));
    heap_quiesce_all();
    kmalloc_stats(before);
    irq_alloc_start();
}

static void end(struct ktest *t)
{
    irq_alloc_stop();
    heap_quiesce_all();
    if (__atomic_load_n(&fail_flag, __ATOMIC_ACQUIRE))
        ktest_fail(t, "%s", fail_msg);
}

/* ---- every size class on every CPU ---- */

#define PER_CLASS 24

static void all_classes(unsigned cpu, void *arg)
{
    (void)arg;
    static void *objs[MAX_CPUS][PER_CLASS];
    struct counts *cn = &test_counts[cpu];
    /* Three rounds of PER_CLASS objects; above 64 CPUs one round of a
     * third of them, where under emulation a round cost minutes (255
     * CPUs: 410,000 objects through one host thread, and a boot on a
     * loaded host ran past make test-scale's 30 minutes). */
    int many = smp_cpus_online() > 64;
    unsigned rounds = many ? 1 : 3, per = many ? PER_CLASS / 3 : PER_CLASS;
    for (unsigned round = 0; round < rounds; round++) {
        for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++) {
            size_t size = class_size(c);
            for (unsigned i = 0; i < per; i++) {
                objs[cpu][i] = kmalloc(size, 0);
                if (!objs[cpu][i]) {
                    record_failure("cpu %u: kmalloc(%lu) returned NULL", cpu, size);
                    return;
                }
                count_alloc(cn, size);
                fill(objs[cpu][i], size, ((uint64_t)cpu << 48) | ((uint64_t)c << 32) | i);
            }
            for (unsigned i = 0; i < per; i++) {
                if (check(objs[cpu][i], size, ((uint64_t)cpu << 48) | ((uint64_t)c << 32) | i))
                    record_failure("cpu %u: class %u object %p overwritten (shared with another CPU?)",
                                   cpu, c, objs[cpu][i]);
                kfree(objs[cpu][i]);
                cn->frees++;
            }
        }
    }
}

/* Compare kmalloc_stats deltas with what the test and the interrupts did. */
static void check_accounting(struct ktest *t, const struct kmalloc_stats *before)
{
    struct kmalloc_stats after;
    kmalloc_stats(&after);
    unsigned n = smp_cpus_online();
    for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++) {
        uint64_t want = 0;
        for (unsigned i = 0; i < n; i++)
            want += test_counts[i].allocs[c] + irq_counts[i].allocs[c];
        uint64_t got = after.cls[c].allocs - before->cls[c].allocs;
        uint64_t freed = after.cls[c].frees - before->cls[c].frees;
        if (got != want || freed != want)
            ktest_fail(t, "class %u: kmalloc_stats counted %lu allocs, %lu frees; the test made %lu of each",
                       c, got, freed, want);
        if (after.cls[c].live != after.cls[c].allocs - after.cls[c].frees || after.cls[c].live != 0)
            ktest_fail(t, "class %u: %lu live objects after everything was freed", c, after.cls[c].live);
        if (after.cls[c].spans != 0)
            ktest_fail(t, "class %u: %lu spans still in use after every cache was flushed", c, after.cls[c].spans);
    }
    uint64_t large = 0;
    for (unsigned i = 0; i < n; i++)
        large += test_counts[i].large + irq_counts[i].large;
    KTEST_EXPECT_EQ(t, after.large_allocs - before->large_allocs, large);
    KTEST_EXPECT_EQ(t, after.large_frees - before->large_frees, large);
    KTEST_EXPECT_EQ(t, after.large_live, 0);
    KTEST_EXPECT_EQ(t, after.heap_inuse, 0);
    KTEST_EXPECT_EQ(t, after.heap_free, 0);  /* trimmed */
}

KTEST(smp_kmalloc_all_classes)
{
    struct kmalloc_stats before;
    begin(&before);
    smp_run_all(all_classes, NULL);
    end(t);
    check_accounting(t, &before);
    KTEST_EXPECT(t, mheap_valid() == 1);
}

/* ---- cross-CPU handoff rings ---- */

#define RING 64
struct handoff { void *p; uint32_t size; uint32_t pad; uint64_t seed; };
struct ring {
    uint32_t head;  /* atomic: written by the producer (release) */
    uint32_t tail;  /* atomic: written by the consumer (release) */
    struct handoff slot[RING];
} __attribute__((aligned(64)));
/* ring[i]: produced by CPU i, consumed by CPU (i + 1) % n */
static struct ring rings[MAX_CPUS];

static int ring_put(struct ring *r, void *p, size_t size, uint64_t seed)
{
    uint32_t h = r->head, tl = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    if (h - tl == RING)
        return 0;
    r->slot[h % RING] = (struct handoff){ p, (uint32_t)size, 0, seed };
    __atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE);  /* publishes the object and its fill */
    return 1;
}

static int ring_take(struct ring *r, struct handoff *out)
{
    uint32_t tl = r->tail;
    if (__atomic_load_n(&r->head, __ATOMIC_ACQUIRE) == tl)
        return 0;
    *out = r->slot[tl % RING];
    __atomic_store_n(&r->tail, tl + 1, __ATOMIC_RELEASE);
    return 1;
}

static void free_received(unsigned cpu, const struct handoff *h)
{
    if (check(h->p, h->size, h->seed))
        record_failure("cpu %u: object %p (%u B) from another CPU lost its pattern", cpu, h->p, h->size);
    kfree(h->p);
    test_counts[cpu].frees++;
}

static unsigned producers_done;  /* atomic */

/* Drain what CPU cpu receives until every producer is done and it is empty. */
static void drain_until_all_done(unsigned cpu, unsigned n)
{
    struct ring *in = &rings[(cpu + n - 1) % n];
    struct handoff h;
    for (;;) {
        int all = __atomic_load_n(&producers_done, __ATOMIC_ACQUIRE) == n;
        while (ring_take(in, &h))
            free_received(cpu, &h);
        if (all)
            break;
        cpu_pause();
    }
}

static const size_t handoff_sizes[] = { 8, 16, 48, 128, 512, 1024, 4096, 8192, 32768, 65536, 262144 };
/* 600 objects per CPU, fewer above 16 CPUs (9600 in all, at least 100
 * each): under emulation every hand-off waits for the next vCPU's turn. */
#define HANDOFFS_PER_CPU 600
#define HANDOFFS_TOTAL 9600
#define HANDOFFS_PER_CPU_MIN 100
static unsigned handoffs_per_cpu(void)
{
    unsigned k = HANDOFFS_TOTAL / smp_cpus_online();
    return k > HANDOFFS_PER_CPU ? HANDOFFS_PER_CPU : k < HANDOFFS_PER_CPU_MIN ? HANDOFFS_PER_CPU_MIN : k;
}

static void handoff(unsigned cpu, void *arg)
{
    (void)arg;
    unsigned n = smp_cpus_online();
    struct ring *out = &rings[cpu], *in = &rings[(cpu + n - 1) % n];
    uint64_t seed = 0x1234567ull * (cpu + 1);
    struct handoff h;
    unsigned k = handoffs_per_cpu();
    for (unsigned i = 0; i < k; i++) {
        size_t size = handoff_sizes[i % (sizeof(handoff_sizes) / sizeof(handoff_sizes[0]))];
        void *p = kmalloc(size, 0);
        if (!p) {
            record_failure("cpu %u: kmalloc(%lu) returned NULL", cpu, size);
            break;
        }
        count_alloc(&test_counts[cpu], size);
        uint64_t s = rng(&seed);
        fill(p, size, s);
        while (!ring_put(out, p, size, s)) {
            while (ring_take(in, &h))  /* make room downstream by consuming upstream */
                free_received(cpu, &h);
            cpu_pause();
        }
        while (ring_take(in, &h))
            free_received(cpu, &h);
    }
    __atomic_fetch_add(&producers_done, 1, __ATOMIC_RELEASE);
    drain_until_all_done(cpu, n);
}

KTEST(smp_kmalloc_handoff)
{
    struct kmalloc_stats before;
    memset(rings, 0, sizeof(rings));
    producers_done = 0;
    begin(&before);
    smp_run_all(handoff, NULL);
    end(t);
    check_accounting(t, &before);
    uint64_t freed = 0;
    for (unsigned c = 0; c < smp_cpus_online(); c++)
        freed += test_counts[c].frees;
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
    struct ring *out = &rings[cpu], *in = &rings[(cpu + n - 1) % n];
    uint64_t seed = 0x9e3779b9ull * (cpu + 1);
    struct handoff h;
    for (unsigned i = 0; cpu % 2 == 0 && i < MAG_OBJS; i++) {
        void *p = kmalloc(MAG_SIZE, 0);
        if (!p) {
            record_failure("cpu %u: kmalloc(%u) returned NULL", cpu, MAG_SIZE);
            break;
        }
        count_alloc(&test_counts[cpu], MAG_SIZE);
        uint64_t s = rng(&seed);
        fill(p, MAG_SIZE, s);
        while (!ring_put(out, p, MAG_SIZE, s)) {
            while (ring_take(in, &h))
                free_received(cpu, &h);
            cpu_pause();
        }
    }
    __atomic_fetch_add(&producers_done, 1, __ATOMIC_RELEASE);
    drain_until_all_done(cpu, n);
}

KTEST(smp_kmalloc_magazines)
{
    struct kmalloc_stats before;
    struct transfer *tc = &mheap_.transfer[spanclass_make(size_to_class(MAG_SIZE), 0)].t;
    uint64_t puts = __atomic_load_n(&tc->puts, __ATOMIC_RELAXED);
    uint64_t takes = __atomic_load_n(&tc->takes, __ATOMIC_RELAXED);
    memset(rings, 0, sizeof(rings));
    producers_done = 0;
    begin(&before);
    smp_run_all(magazines, NULL);
    puts = __atomic_load_n(&tc->puts, __ATOMIC_RELAXED) - puts;
    takes = __atomic_load_n(&tc->takes, __ATOMIC_RELAXED) - takes;
    end(t);
    check_accounting(t, &before);
    unsigned n = smp_cpus_online();
    uint64_t freed = 0;
    for (unsigned c = 0; c < n; c++)
        freed += test_counts[c].frees;
    KTEST_EXPECT_EQ(t, freed, (uint64_t)MAG_OBJS * ((n + 1) / 2));
    printk("smp_kmalloc_magazines: %lu objects freed across CPUs; transfer cache: %lu batches in, "
           "%lu out\n", freed, puts, takes);
    if (n >= 2) {
        KTEST_EXPECT(t, puts > 0);   /* freeing CPUs' magazines overflowed */
        KTEST_EXPECT(t, takes > 0);  /* allocating CPUs took batches back */
    }
}

/* ---- random stress ---- */

static uint64_t stress_ops = 20000;  /* per CPU; stress=<n> */
static int parse_stress(const char *v)
{
    uint64_t x = 0;
    if (!v || !*v)
        return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || x > 1000000000ull)
            return -1;
        x = x * 10 + (uint64_t)(*v - '0');
    }
    stress_ops = x;
    return 0;
}
KPARAM(stress, parse_stress);

#define STRESS_SLOTS 256
#define FAST_PAIRS 20000
#define FAST_BATCH 200
struct stress_cpu {
    void *p[STRESS_SLOTS];
    uint32_t size[STRESS_SLOTS];
    uint64_t seed[STRESS_SLOTS];
    uint64_t cycles;        /* TSC cycles of the whole run on this CPU */
    uint64_t fast_cycles;   /* TSC cycles of the cheapest FAST_BATCH kmalloc(64)+kfree */
    uint64_t handed;        /* objects handed to the next CPU */
} __attribute__((aligned(64)));
static struct stress_cpu stress[MAX_CPUS];
static void *volatile fast_sink;

/* 8 B .. 1 KiB mostly, then up to 32 KiB, rarely up to 1 MiB. */
static size_t stress_size(uint64_t r)
{
    unsigned pick = r % 1000;
    r >>= 10;
    if (pick < 900)
        return 8 + r % 1017;
    if (pick < 995)
        return 1024 + r % (31 * 1024 + 1);
    return 32768 + r % (1024 * 1024 - 32768 + 1);
}

static void stress_run(unsigned cpu, void *arg)
{
    (void)arg;
    unsigned n = smp_cpus_online();
    struct stress_cpu *s = &stress[cpu];
    struct counts *cn = &test_counts[cpu];
    struct ring *out = &rings[cpu], *in = &rings[(cpu + n - 1) % n];
    uint64_t seed = 0xfeedfacecafebeefull ^ ((uint64_t)cpu << 32);
    struct handoff h;
    uint64_t t0 = rdtsc();
    for (uint64_t op = 0; op < stress_ops; op++) {
        uint64_t r = rng(&seed);
        unsigned k = r % STRESS_SLOTS;
        r >>= 8;
        if (s->p[k]) {
            if (check(s->p[k], s->size[k], s->seed[k]))
                record_failure("stress cpu %u: object %p (%u B) lost its pattern", cpu, s->p[k], s->size[k]);
            /* one in four goes to the next CPU to be freed there */
            if (n > 1 && r % 4 == 0 && ring_put(out, s->p[k], s->size[k], s->seed[k])) {
                s->handed++;
            } else {
                kfree(s->p[k]);
                cn->frees++;
            }
            s->p[k] = NULL;
        } else {
            size_t size = stress_size(r);
            void *p = kmalloc(size, 0);
            if (!p) {
                record_failure("stress cpu %u: kmalloc(%lu) returned NULL", cpu, size);
                break;
            }
            count_alloc(cn, size);
            s->p[k] = p;
            s->size[k] = (uint32_t)size;
            s->seed[k] = rng(&seed);
            fill(p, size, s->seed[k]);
        }
        if ((op & 7) == 0)
            while (ring_take(in, &h))
                free_received(cpu, &h);
        cn->ops++;
    }
    for (unsigned k = 0; k < STRESS_SLOTS; k++) {
        if (s->p[k]) {
            if (check(s->p[k], s->size[k], s->seed[k]))
                record_failure("stress cpu %u: object %p lost its pattern", cpu, s->p[k]);
            kfree(s->p[k]);
            cn->frees++;
            s->p[k] = NULL;
        }
    }
    __atomic_fetch_add(&producers_done, 1, __ATOMIC_RELEASE);
    drain_until_all_done(cpu, n);
    s->cycles = rdtsc() - t0;

    /* Fast path cost: a warm mcache, one class, alloc then free, in
     * batches; the cheapest batch is reported. Under QEMU the TSC runs on
     * while this vCPU waits for the host (or, with one TCG thread, for the
     * other vCPUs), so the whole-run average says more about scheduling;
     * the minimum approaches the cost of the code itself. */
    void *warm = kmalloc(64, 0);
    kfree(warm);
    uint64_t best = ~0ull;
    for (unsigned b = 0; b < FAST_PAIRS / FAST_BATCH; b++) {
        uint64_t f0 = rdtsc();
        for (unsigned i = 0; i < FAST_BATCH; i++) {
            void *p = kmalloc(64, 0);
            fast_sink = p;  /* keep the pair: the compiler may not drop it */
            kfree(p);
        }
        uint64_t d = rdtsc() - f0;
        if (d < best)
            best = d;
    }
    s->fast_cycles = best;
    count_alloc(cn, 64);
    cn->frees++;
    for (unsigned i = 0; i < FAST_PAIRS; i++)
        count_alloc(cn, 64);
    cn->frees += FAST_PAIRS;
}

/* Per-class mcentral spins at the start of the stress, for the report's
 * most contended classes. */
static uint64_t class_spins0[KMALLOC_NUM_CLASSES];

static void lock_totals(uint64_t *heap_acq, uint64_t *heap_spin, uint64_t *cen_acq, uint64_t *cen_spin)
{
    *heap_acq = __atomic_load_n(&mheap_.lock.acquisitions, __ATOMIC_RELAXED);
    *heap_spin = __atomic_load_n(&mheap_.lock.spins, __ATOMIC_RELAXED);
    *cen_acq = *cen_spin = 0;
    uint64_t now[KMALLOC_NUM_CLASSES] = { 0 };
    for (unsigned sc = 0; sc < NUM_SPANCLASSES; sc++) {  /* both halves of a class */
        uint64_t spins = __atomic_load_n(&mheap_.central[sc].c.lock.spins, __ATOMIC_RELAXED);
        now[spanclass_size(sc)] += spins;
        *cen_acq += __atomic_load_n(&mheap_.central[sc].c.lock.acquisitions, __ATOMIC_RELAXED);
        *cen_spin += spins;
    }
    for (unsigned c = 0; c < KMALLOC_NUM_CLASSES; c++)
        class_spins0[c] = now[c] - class_spins0[c];
}

KTEST(smp_kmalloc_stress)
{
    unsigned n = smp_cpus_online();
    struct kmalloc_stats before;
    struct pmm_stats pmm0, pmm1;
    memset(rings, 0, sizeof(rings));
    memset(stress, 0, sizeof(stress));
    producers_done = 0;
    begin(&before);
    mem_pmm_stats(&pmm0);
    uint64_t ha0, hs0, ca0, cs0, ha1, hs1, ca1, cs1;
    memset(class_spins0, 0, sizeof(class_spins0));
    lock_totals(&ha0, &hs0, &ca0, &cs0);  /* class_spins0 = spins now */
    static uint64_t ticks0[MAX_CPUS];
    for (unsigned c = 0; c < n; c++)
        ticks0[c] = __atomic_load_n(&percpu_area[c].timer_ticks, __ATOMIC_RELAXED);

    printk("smp_kmalloc_stress: %lu operations per CPU on %u CPUs, sizes 8 B..1 MiB, "
           "timer interrupts at %u Hz allocating\n", stress_ops, n, lapic_timer_hz());
    smp_run_all(stress_run, NULL);
    lock_totals(&ha1, &hs1, &ca1, &cs1);  /* class_spins0 = spins during the run */
    uint64_t irq_allocs = irq_alloc_stop();
    heap_quiesce_all();
    if (__atomic_load_n(&fail_flag, __ATOMIC_ACQUIRE))
        ktest_fail(t, "%s", fail_msg);
    check_accounting(t, &before);
    KTEST_EXPECT(t, mheap_valid() == 1);

    /* The frames come back: what the heap still holds after trim is
     * metadata that never shrinks (each CPU's magazines are carved on its
     * first use of a class, so it grows with the CPU count: at 64 CPUs
     * the run kept 770 frames, over a fixed bound of 256) and page tables
     * (bounded). */
    mem_pmm_stats(&pmm1);
    struct kmalloc_stats after;
    kmalloc_stats(&after);
    int64_t kept = (int64_t)pmm0.free_frames - (int64_t)pmm1.free_frames;
    int64_t meta = ((int64_t)after.meta_sys - (int64_t)before.meta_sys) / PAGE_SIZE_4K;
    if (kept - meta > 256)
        ktest_fail(t, "frame allocator has %ld fewer free frames after the stress and kmalloc_trim "
                   "(%lu before, %lu after), %ld of them new heap metadata; bound 256 besides",
                   kept, pmm0.free_frames, pmm1.free_frames, meta);

    printk("smp_kmalloc_stress: report (TSC cycles under QEMU TCG emulation, not hardware numbers)\n");
    printk("  cpu        ops  handed-on   interrupts  cycles/op  fast path: kmalloc+kfree(64) cycles/pair "
           "(best batch of %u)\n", FAST_BATCH);
    if (mheap_.track_sites)  /* kmemleak=on: every allocation records its caller */
        printk("  (kmemleak=on: allocation sites are recorded, so these are the slow paths; "
               "kmemleak=off measures the fast path)\n");
    for (unsigned c = 0; c < n; c++) {
        uint64_t ops = test_counts[c].ops;
        printk("  %3u %10lu %10lu %12lu %10lu %10lu\n", c, ops, stress[c].handed,
               __atomic_load_n(&percpu_area[c].timer_ticks, __ATOMIC_RELAXED) - ticks0[c],
               ops ? stress[c].cycles / ops : 0, stress[c].fast_cycles / FAST_BATCH);
    }
    printk("  allocations in timer interrupts: %lu\n", irq_allocs);
    printk("  locks during the run: mheap %lu acquisitions, %lu spins; mcentral (all classes) "
           "%lu acquisitions, %lu spins\n", ha1 - ha0, hs1 - hs0, ca1 - ca0, cs1 - cs0);
    char line[160];
    size_t len = snprintk(line, sizeof(line), "  most contended mcentral locks (spins):");
    for (unsigned k = 0; k < 3 && len < sizeof(line); k++) {
        unsigned top = 0;
        for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++)
            if (class_spins0[c] > class_spins0[top])
                top = c;
        if (!class_spins0[top]) {
            if (k == 0)
                len += snprintk(line + len, sizeof(line) - len, " none");
            break;
        }
        len += snprintk(line + len, sizeof(line) - len, " class %u (%lu B) %lu", top, class_size(top),
                        class_spins0[top]);
        class_spins0[top] = 0;
    }
    printk("%s\n", line);
    printk("  frame allocator: %lu free frames before, %lu after kmalloc_trim\n",
           pmm0.free_frames, pmm1.free_frames);
}

/* ---- a released page faults on every CPU (TLB shootdown) ---- */

static volatile uint8_t *released_probe;

static void touch_probe(unsigned cpu, void *arg)
{
    (void)arg;
    (void)cpu;
    (void)released_probe[8192];  /* load the translation into this CPU's TLB */
}

static void read_released(unsigned cpu, void *arg)
{
    (void)arg;
    if (cpu != smp_cpus_online() - 1)
        return;
    printk("smp_released_page_selftest: cpu %u reads released 0x%lx; the released-page fault must follow\n",
           cpu, (uint64_t)(uintptr_t)(released_probe + 8192));
    uint8_t v = released_probe[8192];
    record_failure("cpu %u read 0x%x from released page %p without faulting (stale TLB entry)",
                   cpu, v, (void *)(released_probe + 8192));
}

KTEST_NAMED(smp_released_page_selftest)
{
    KTEST_ASSERT(t, smp_cpus_online() > 1);
    heap_quiesce_all();
    released_probe = kmalloc(4 << 20, 0);
    KTEST_ASSERT(t, released_probe != NULL);
    released_probe[8192] = 0x5a;
    smp_run_all(touch_probe, NULL);  /* every CPU now caches the translation */
    kfree((void *)released_probe);
    heap_quiesce_all();  /* kmalloc_trim: unmap, shoot down, free the frames */
    uint64_t leaf;
    KTEST_ASSERT(t, paging_probe((uintptr_t)released_probe + 8192, &leaf) == PAGING_RELEASED_VA);
    fail_flag = 0;
    smp_run_all(read_released, NULL);
    if (fail_flag)
        ktest_fail(t, "%s", fail_msg);
}

/* ---- an interrupt while this CPU holds an mcentral lock ---- */

/*
 * The timer hook below flushes this CPU's mcache and allocates from class
 * LOCKED_CLASS: both need that class's mcentral lock. The test takes the
 * lock itself and holds it across several timer periods. Because the
 * heap's locks keep interrupts off while held, the tick waits until the
 * unlock and then completes; if they did not, the hook would spin forever
 * on a lock its own CPU holds (the boot would hang and time out).
 */
#define LOCKED_CLASS 5
static int lock_hook_armed;   /* atomic: the test wants one hook run */
static int lock_hook_done;    /* atomic: the hook ran to the end */

static void lock_hook(unsigned cpu)
{
    if (cpu != 0 || !__atomic_load_n(&lock_hook_armed, __ATOMIC_ACQUIRE))
        return;
    kmalloc_flush_cpu();  /* uncaches every span: takes the mcentral locks */
    void *p = kmalloc(class_size(LOCKED_CLASS), 0);
    if (!p)
        record_failure("timer interrupt: kmalloc(%lu) returned NULL", class_size(LOCKED_CLASS));
    kfree(p);
    __atomic_store_n(&lock_hook_armed, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&lock_hook_done, 1, __ATOMIC_RELEASE);
}

KTEST(smp_irq_while_mcentral_locked)
{
    fail_flag = 0;
    struct mcentral *c = &mheap_.central[spanclass_make(LOCKED_CLASS, 0)].c;
    void *warm = kmalloc(class_size(LOCKED_CLASS), 0);  /* the heap is up and the class has a span */
    kfree(warm);
    lock_hook_done = 0;
    apic_set_tick_hook(lock_hook);
    /* interrupts are on here: only sys_lock can turn them off */
    KTEST_ASSERT(t, cpu_read_rflags() & RFLAGS_IF);
    __atomic_store_n(&lock_hook_armed, 1, __ATOMIC_RELEASE);
    sys_lock(&c->lock);
    uint64_t ticks = __atomic_load_n(&this_cpu()->timer_ticks, __ATOMIC_RELAXED);
    uint64_t rflags = cpu_read_rflags();
    tsc_delay_us(20000);  /* about 20 timer periods pass while we hold it */
    uint64_t ticks_held = __atomic_load_n(&this_cpu()->timer_ticks, __ATOMIC_RELAXED) - ticks;
    sys_unlock(&c->lock);
    uint64_t end = tsc_deadline_us(rdtsc(), 5000000);
    while (!__atomic_load_n(&lock_hook_done, __ATOMIC_ACQUIRE) && rdtsc() < end)
        cpu_pause();
    apic_set_tick_hook(NULL);
    KTEST_EXPECT_EQ(t, rflags & RFLAGS_IF, 0);  /* the lock holder runs with interrupts off */
    KTEST_EXPECT_EQ(t, ticks_held, 0);           /* so no tick was taken while it was held */
    if (!__atomic_load_n(&lock_hook_done, __ATOMIC_ACQUIRE))
        ktest_fail(t, "the deferred timer tick did not complete its allocation within 5 s");
    if (fail_flag)
        ktest_fail(t, "%s", fail_msg);
}
