/*
 * smp_kmalloc_stress_selftests.c: kmalloc under random load on every CPU,
 * and the SMP fault cases (shared machinery: smp_kmalloc_testutil.c):
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

/* ---- random stress ---- */

static uint64_t stress_ops = 20000; /* per CPU; stress=<n> */
static int parse_stress(const char *v) { return cmdline_uint(v, 0, 1000000000ull, &stress_ops); }
KPARAM(stress, parse_stress);

#define STRESS_SLOTS 256
#define FAST_PAIRS   20000
#define FAST_BATCH   200
struct stress_cpu {
    void *p[STRESS_SLOTS];
    uint32_t size[STRESS_SLOTS];
    uint64_t seed[STRESS_SLOTS];
    uint64_t cycles;      /* TSC cycles of the whole run on this CPU */
    uint64_t fast_cycles; /* TSC cycles of the cheapest FAST_BATCH kmalloc(64)+kfree */
    uint64_t handed;      /* objects handed to the next CPU */
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
    struct counts *cn = &smk_test_counts[cpu];
    struct ring *out = &smk_rings[cpu], *in = &smk_rings[(cpu + n - 1) % n];
    uint64_t seed = 0xfeedfacecafebeefull ^ ((uint64_t)cpu << 32);
    struct handoff h;
    uint64_t t0 = rdtsc();
    for (uint64_t op = 0; op < stress_ops; op++) {
        uint64_t r = rng(&seed);
        unsigned k = r % STRESS_SLOTS;
        r >>= 8;
        if (s->p[k]) {
            if (smk_check(s->p[k], s->size[k], s->seed[k]))
                smk_record_failure("stress cpu %u: object %p (%u B) lost its pattern", cpu, s->p[k],
                                   s->size[k]);
            /* one in four goes to the next CPU to be freed there */
            if (n > 1 && r % 4 == 0 && smk_ring_put(out, s->p[k], s->size[k], s->seed[k])) {
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
                smk_record_failure("stress cpu %u: kmalloc(%lu) returned NULL", cpu, size);
                break;
            }
            smk_count_alloc(cn, size);
            s->p[k] = p;
            s->size[k] = (uint32_t)size;
            s->seed[k] = rng(&seed);
            smk_fill(p, size, s->seed[k]);
        }
        if ((op & 7) == 0)
            while (smk_ring_take(in, &h))
                smk_free_received(cpu, &h);
        cn->ops++;
    }
    for (unsigned k = 0; k < STRESS_SLOTS; k++) {
        if (s->p[k]) {
            if (smk_check(s->p[k], s->size[k], s->seed[k]))
                smk_record_failure("stress cpu %u: object %p lost its pattern", cpu, s->p[k]);
            kfree(s->p[k]);
            cn->frees++;
            s->p[k] = NULL;
        }
    }
    __atomic_fetch_add(&smk_producers_done, 1, __ATOMIC_RELEASE);
    smk_drain_until_all_done(cpu, n);
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
            fast_sink = p; /* keep the pair: the compiler may not drop it */
            kfree(p);
        }
        uint64_t d = rdtsc() - f0;
        if (d < best)
            best = d;
    }
    s->fast_cycles = best;
    smk_count_alloc(cn, 64);
    cn->frees++;
    for (unsigned i = 0; i < FAST_PAIRS; i++)
        smk_count_alloc(cn, 64);
    cn->frees += FAST_PAIRS;
}

/* Per-class mcentral spins at the start of the stress, for the report's
 * most contended classes. */
static uint64_t class_spins0[KMALLOC_NUM_CLASSES];

static void lock_totals(uint64_t *heap_acq, uint64_t *heap_spin, uint64_t *cen_acq,
                        uint64_t *cen_spin)
{
    *heap_acq = __atomic_load_n(&mheap_.lock.acquisitions, __ATOMIC_RELAXED);
    *heap_spin = __atomic_load_n(&mheap_.lock.spins, __ATOMIC_RELAXED);
    *cen_acq = *cen_spin = 0;
    uint64_t now[KMALLOC_NUM_CLASSES] = { 0 };
    for (unsigned sc = 0; sc < KMALLOC_SPANCLASSES; sc++) { /* both halves of a class */
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
    memset(smk_rings, 0, sizeof(smk_rings));
    memset(stress, 0, sizeof(stress));
    smk_producers_done = 0;
    smk_begin(&before);
    mem_pmm_stats(&pmm0);
    uint64_t ha0, hs0, ca0, cs0, ha1, hs1, ca1, cs1;
    memset(class_spins0, 0, sizeof(class_spins0));
    lock_totals(&ha0, &hs0, &ca0, &cs0); /* class_spins0 = spins now */
    static uint64_t ticks0[MAX_CPUS];
    for (unsigned c = 0; c < n; c++)
        ticks0[c] = __atomic_load_n(&percpu_area[c].timer_ticks, __ATOMIC_RELAXED);

    printk("smp_kmalloc_stress: %lu operations per CPU on %u CPUs, sizes 8 B..1 MiB, "
           "timer interrupts at %u Hz allocating\n",
           stress_ops, n, lapic_timer_hz());
    smp_run_all(stress_run, NULL);
    lock_totals(&ha1, &hs1, &ca1, &cs1); /* class_spins0 = spins during the run */
    uint64_t irq_allocs = smk_irq_alloc_stop();
    smk_heap_quiesce_all();
    if (__atomic_load_n(&smk_fail_flag, __ATOMIC_ACQUIRE))
        ktest_fail(t, "%s", smk_fail_msg);
    smk_check_accounting(t, &before);
    KTEST_EXPECT(t, kt_heap_valid() == 1);

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
        ktest_fail(t,
                   "frame allocator has %ld fewer free frames after the stress and kmalloc_trim "
                   "(%lu before, %lu after), %ld of them new heap metadata; bound 256 besides",
                   kept, pmm0.free_frames, pmm1.free_frames, meta);

    printk(
        "smp_kmalloc_stress: report (TSC cycles under QEMU TCG emulation, not hardware numbers)\n");
    printk(
        "  cpu        ops  handed-on   interrupts  cycles/op  fast path: kmalloc+kfree(64) cycles/pair "
        "(best batch of %u)\n",
        FAST_BATCH);
    if (mheap_.track_sites) /* kmemleak=on: every allocation records its caller */
        printk("  (kmemleak=on: allocation sites are recorded, so these are the slow paths; "
               "kmemleak=off measures the fast path)\n");
    for (unsigned c = 0; c < n; c++) {
        uint64_t ops = smk_test_counts[c].ops;
        printk("  %3u %10lu %10lu %12lu %10lu %10lu\n", c, ops, stress[c].handed,
               __atomic_load_n(&percpu_area[c].timer_ticks, __ATOMIC_RELAXED) - ticks0[c],
               ops ? stress[c].cycles / ops : 0, stress[c].fast_cycles / FAST_BATCH);
    }
    printk("  allocations in timer interrupts: %lu\n", irq_allocs);
    printk("  locks during the run: mheap %lu acquisitions, %lu spins; mcentral (all classes) "
           "%lu acquisitions, %lu spins\n",
           ha1 - ha0, hs1 - hs0, ca1 - ca0, cs1 - cs0);
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
        len += snprintk(line + len, sizeof(line) - len, " class %u (%lu B) %lu", top,
                        class_size(top), class_spins0[top]);
        class_spins0[top] = 0;
    }
    printk("%s\n", line);
    printk("  frame allocator: %lu free frames before, %lu after kmalloc_trim\n", pmm0.free_frames,
           pmm1.free_frames);
}

/* ---- a released page faults on every CPU (TLB shootdown) ---- */

static volatile uint8_t *released_probe;

static void touch_probe(unsigned cpu, void *arg)
{
    (void)arg;
    (void)cpu;
    (void)released_probe[8192]; /* load the translation into this CPU's TLB */
}

static void read_released(unsigned cpu, void *arg)
{
    (void)arg;
    if (cpu != smp_cpus_online() - 1)
        return;
    printk(
        "smp_released_page_selftest: cpu %u reads released 0x%lx; the released-page fault must follow\n",
        cpu, (uint64_t)(uintptr_t)(released_probe + 8192));
    uint8_t v = released_probe[8192];
    smk_record_failure("cpu %u read 0x%x from released page %p without faulting (stale TLB entry)",
                       cpu, v, (void *)(released_probe + 8192));
}

KTEST_NAMED(smp_released_page_selftest)
{
    KTEST_ASSERT(t, smp_cpus_online() > 1);
    smk_heap_quiesce_all();
    released_probe = kmalloc(4 << 20, 0);
    KTEST_ASSERT(t, released_probe != NULL);
    released_probe[8192] = 0x5a;
    smp_run_all(touch_probe, NULL); /* every CPU now caches the translation */
    kfree((void *)released_probe);
    smk_heap_quiesce_all(); /* kmalloc_trim: unmap, shoot down, free the frames */
    uint64_t leaf;
    KTEST_ASSERT(t, paging_probe((uintptr_t)released_probe + 8192, &leaf) == PAGING_RELEASED_VA);
    smk_fail_flag = 0;
    smp_run_all(read_released, NULL);
    if (smk_fail_flag)
        ktest_fail(t, "%s", smk_fail_msg);
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
static int lock_hook_armed; /* atomic: the test wants one hook run */
static int lock_hook_done;  /* atomic: the hook ran to the end */

static void lock_hook(unsigned cpu)
{
    if (cpu != 0 || !__atomic_load_n(&lock_hook_armed, __ATOMIC_ACQUIRE))
        return;
    kmalloc_flush_cpu(); /* uncaches every span: takes the mcentral locks */
    void *p = kmalloc(class_size(LOCKED_CLASS), 0);
    if (!p)
        smk_record_failure("timer interrupt: kmalloc(%lu) returned NULL", class_size(LOCKED_CLASS));
    kfree(p);
    __atomic_store_n(&lock_hook_armed, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&lock_hook_done, 1, __ATOMIC_RELEASE);
}

KTEST(smp_irq_while_mcentral_locked)
{
    smk_fail_flag = 0;
    struct mcentral *c = &mheap_.central[spanclass_make(LOCKED_CLASS, 0)].c;
    void *warm = kmalloc(class_size(LOCKED_CLASS), 0); /* the heap is up and the class has a span */
    kfree(warm);
    lock_hook_done = 0;
    apic_set_tick_hook(lock_hook);
    /* interrupts are on here: only sys_lock can turn them off */
    KTEST_ASSERT(t, cpu_read_rflags() & RFLAGS_IF);
    __atomic_store_n(&lock_hook_armed, 1, __ATOMIC_RELEASE);
    sys_lock(&c->lock);
    uint64_t ticks = __atomic_load_n(&this_cpu()->timer_ticks, __ATOMIC_RELAXED);
    uint64_t rflags = cpu_read_rflags();
    tsc_delay_us(20000); /* about 20 timer periods pass while we hold it */
    uint64_t ticks_held = __atomic_load_n(&this_cpu()->timer_ticks, __ATOMIC_RELAXED) - ticks;
    sys_unlock(&c->lock);
    uint64_t end = tsc_deadline_us(rdtsc(), 5000000);
    while (!__atomic_load_n(&lock_hook_done, __ATOMIC_ACQUIRE) && rdtsc() < end)
        cpu_pause();
    apic_set_tick_hook(NULL);
    KTEST_EXPECT_EQ(t, rflags & RFLAGS_IF, 0); /* the lock holder runs with interrupts off */
    KTEST_EXPECT_EQ(t, ticks_held, 0);         /* so no tick was taken while it was held */
    if (!__atomic_load_n(&lock_hook_done, __ATOMIC_ACQUIRE))
        ktest_fail(t, "the deferred timer tick did not complete its allocation within 5 s");
    if (smk_fail_flag)
        ktest_fail(t, "%s", smk_fail_msg);
}
