/*
 * kmemleak_selftests.c: ktests of the leak detector in the kernel
 * (arch/x86_64/kmemleak.c, stopworld.c, mm/mgcmark.c). Each checks what
 * a scan relies on or what a user reads from it:
 *
 *   kmemleak_stop_world     stop_world parks every other online CPU, busy
 *                           or idle: none of them runs while stopped, each
 *                           published a stack pointer inside its stack and
 *                           below the frames it was running, parked CPUs
 *                           still answer a TLB shootdown, and all of them
 *                           run again after start_world
 * Named only (boot case kmem_kmemleak in tests/boot/kmem.cases):
 *   kmemleak_planted        kmemleak=on: exactly the planted leaks are
 *                           reported (a small object, a large one and a
 *                           two-object cycle), each with the planting
 *                           function as its site and a backtrace from
 *                           there; one more, whose allocating function's
 *                           caller a kmalloc_leak_suppress pattern names,
 *                           is counted as suppressed; an object kept only by
 *                           a static and one kept only by a local on
 *                           another CPU's stack are not; then it frees
 *                           them all, so the run's final scan finds none
 *   kmemleak_irq_alloc      kmemleak=on: 20 scans while every CPU
 *                           allocates, frees and passes objects from its
 *                           timer interrupt: no leak reported, every scan
 *                           completes
 *   kmemleak_stop_timeout   a CPU with interrupts off longer than the
 *                           stop's bound: the scan gives up with a clear
 *                           line, the CPUs that parked run again, the
 *                           laggard's late IPI is harmless, and the next
 *                           scan works
 *
 * The planted test keeps the addresses of its objects XORed with a mask:
 * a conservative scan cannot see a hidden pointer (README, "Finding
 * leaks"), which is how the test can free its leaks afterwards without
 * keeping them alive.
 */
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "kstring.h"
#include "printk.h"
#include "smp_kmalloc_testutil.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"
#include "../kernel/ksyms.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/kmemleak.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"
#include "../arch/x86_64/stopworld.h"
#include "../arch/x86_64/tlb.h"

/* ---- stop_world: parked means parked ---- */

static struct {
    uint32_t go_home;            /* atomic: the APs may return */
    uint32_t spinning;           /* atomic: APs in their loop */
    uint64_t frame[MAX_CPUS];    /* each AP's work frame (written before spinning++) */
    uint64_t loops[MAX_CPUS];    /* atomic: each AP's iterations */
    uint64_t before[MAX_CPUS];   /* CPU 0 only: loops when the world stopped */
    uint64_t served[MAX_CPUS];   /* CPU 0 only: tlb_served then */
    struct ktest *t;
} sw;

static uint64_t stack_lo(unsigned c) { return smp_stack_top(c) - smp_stack_size(); }

/* With the world stopped: every other CPU parked, with its RSP in its
 * stack and (busy) below the frame it was running. */
static void check_parked(struct ktest *t, unsigned n, int busy)
{
    for (unsigned c = 1; c < n; c++) {
        uint64_t sp = 0;
        if (stop_world_parked_rsp(c, &sp) != 0) {
            ktest_fail(t, "cpu %u is not parked", c);
            continue;
        }
        if (sp < stack_lo(c) || sp >= smp_stack_top(c))
            ktest_fail(t, "cpu %u parked with RSP 0x%lx outside its stack 0x%lx-0x%lx", c, sp,
                       stack_lo(c), smp_stack_top(c));
        if (busy && sp >= sw.frame[c])
            ktest_fail(t, "cpu %u's RSP 0x%lx is not below its work frame 0x%lx", c, sp, sw.frame[c]);
    }
}

static void busy_until_home(unsigned cpu, void *arg)
{
    (void)arg;
    unsigned n = smp_cpus_online();
    if (cpu != 0) {
        sw.frame[cpu] = (uint64_t)(uintptr_t)__builtin_frame_address(0);
        __atomic_add_fetch(&sw.spinning, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&sw.go_home, __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&sw.loops[cpu], sw.loops[cpu] + 1, __ATOMIC_RELAXED);
            cpu_pause();
        }
        return;
    }
    struct ktest *t = sw.t;
    while (__atomic_load_n(&sw.spinning, __ATOMIC_ACQUIRE) != n - 1)
        cpu_pause();
    if (stop_world() != 0) {
        ktest_fail(t, "stop_world failed with every CPU taking interrupts");
        __atomic_store_n(&sw.go_home, 1, __ATOMIC_RELEASE);
        return;
    }
    check_parked(t, n, 1);
    for (unsigned c = 1; c < n; c++) {
        sw.before[c] = __atomic_load_n(&sw.loops[c], __ATOMIC_RELAXED);
        sw.served[c] = __atomic_load_n(&percpu_area[c].tlb_served, __ATOMIC_RELAXED);
    }
    tsc_delay_us(20000);  /* time for a CPU that was not stopped to loop */
    tlb_shootdown(KERNEL_VIRT_BASE, PAGE_SIZE_4K);  /* returns only once all acked */
    for (unsigned c = 1; c < n; c++) {
        if (__atomic_load_n(&sw.loops[c], __ATOMIC_RELAXED) != sw.before[c])
            ktest_fail(t, "cpu %u ran while the world was stopped", c);
        if (__atomic_load_n(&percpu_area[c].tlb_served, __ATOMIC_RELAXED) == sw.served[c])
            ktest_fail(t, "parked cpu %u did not serve the shootdown", c);
    }
    start_world();
    KTEST_EXPECT_EQ(t, stop_world_last_parked(), n - 1);
    __atomic_store_n(&sw.go_home, 1, __ATOMIC_RELEASE);  /* smp_run_all returns once they all ran on */
}

/* With the heap's background steps kept out: an idle CPU's step may be
 * meshing (mm/mmesh.c), which stops the world itself, and a second
 * stop_world fails at once while one is in progress. */
static void stop_world_test(struct ktest *t);

KTEST(kmemleak_stop_world)
{
    mheap_bg_exclude(true);
    stop_world_test(t);
    mheap_bg_exclude(false);
}

static void stop_world_test(struct ktest *t)
{
    unsigned n = smp_cpus_online();
    memset(&sw, 0, sizeof sw);
    sw.t = t;
    smp_run_all(busy_until_home, NULL);
    /* Again with the other CPUs idle in hlt (tickless): the IPI wakes them. */
    KTEST_ASSERT(t, stop_world() == 0);
    check_parked(t, n, 0);
    start_world();
    KTEST_EXPECT_EQ(t, stop_world_last_parked(), n - 1);
    printk("kmemleak_stop_world: %u other CPU(s) parked busy and idle; pause %lu us\n", n - 1,
           stop_world_last_pause_tsc() / tsc_per_us());
}

/* ---- planted leaks ---- */

#define HIDE 0x5a5a5a5a5a5a5a5aull  /* XOR: a hidden pointer, invisible to the scan */
#define SMALL_SIZE 64
#define LARGE_SIZE (80 << 10) /* above the 64 KiB class: a large object */

struct node {
    struct node *other;
    uint64_t pad[3];
};  /* 32 bytes: its own size class */

static uint64_t hidden_small, hidden_large, hidden_a, hidden_b, hidden_kept, hidden_stack;
static void *kept_by_static;      /* the only pointer to its object */
static unsigned stack_cpu;        /* the CPU whose stack keeps an object */
static uint32_t stack_ready;      /* atomic: that object is allocated */
static uint32_t stack_done;       /* atomic: the scan is over */

static __attribute__((noinline)) void plant_small_leak(void)
{
    char *p = kzalloc(SMALL_SIZE, 0);
    if (p != NULL)
        p[0] = 1;
    hidden_small = (uint64_t)(uintptr_t)p ^ HIDE;
}

static __attribute__((noinline)) void plant_large_leak(void)
{
    char *p = kzalloc(LARGE_SIZE, 0);
    if (p != NULL)
        p[LARGE_SIZE - 1] = 1;
    hidden_large = (uint64_t)(uintptr_t)p ^ HIDE;
}

/* The cycle's nodes are the kernel's typed objects: a cache of their
 * own (mm/kmalloc.h), so the scan sees typed cache objects as it sees
 * kmalloc's, their allocation site included. */
static struct kmem_cache *node_cache;

static __attribute__((noinline)) void plant_cycle_leak(void)
{
    if (node_cache == NULL)
        node_cache = kmem_cache_create("kmemleak_node", sizeof(struct node), 0, 0, NULL);
    struct node *a = node_cache ? kmem_cache_alloc(node_cache, KM_ZERO) : NULL,
                *b = node_cache ? kmem_cache_alloc(node_cache, KM_ZERO) : NULL;
    if (a != NULL && b != NULL) {
        a->other = b;
        b->other = a;
    }
    hidden_a = (uint64_t)(uintptr_t)a ^ HIDE;
    hidden_b = (uint64_t)(uintptr_t)b ^ HIDE;
}

/* A known leak, silenced by a suppression naming not its allocating
 * function but the one that called it (kmalloc_leak_suppress matches
 * every frame of the backtrace). */
#define SUPPRESSED_SIZE 96
static uint64_t hidden_suppressed;

static __attribute__((noinline)) void plant_suppressed_leak(void)
{
    hidden_suppressed = (uint64_t)(uintptr_t)kzalloc(SUPPRESSED_SIZE, 0) ^ HIDE;
    __asm__ volatile("" ::: "memory"); /* no tail call: keep the frame */
}

static __attribute__((noinline)) void plant_suppressed_caller(void)
{
    plant_suppressed_leak();
    __asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void keep_static_ref(void)
{
    kept_by_static = kzalloc(48, 0);
    hidden_kept = (uint64_t)(uintptr_t)kept_by_static ^ HIDE;
}

/* What the scan reported (its callback runs with the world stopped;
 * kmemleak_scan_print prints the leaks after). */
#define MAXREP 16
static struct {
    unsigned n;
    uint64_t obj[MAXREP], size[MAXREP], site[MAXREP], bt0[MAXREP];
    unsigned nbt[MAXREP];
} rep;

static void collect(const void *obj, size_t size, uintptr_t site, void *arg)
{
    (void)arg;
    if (rep.n < MAXREP) {
        rep.obj[rep.n] = (uint64_t)(uintptr_t)obj;
        rep.size[rep.n] = size;
        rep.site[rep.n] = site;
        uintptr_t pcs[8];
        rep.nbt[rep.n] = kmalloc_leak_backtrace(obj, pcs, 8);
        rep.bt0[rep.n] = rep.nbt[rep.n] != 0 ? pcs[0] : 0;
    }
    rep.n++;
}

/* Zero the stack below the caller: the planting functions' dead frames
 * there hold their objects' addresses, which the scan's own frames
 * would otherwise inherit in slots they never write. */
static __attribute__((noinline)) void scrub_stack_below(void)
{
    volatile char pad[8192];
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = 0;
}

/* How often obj was reported, and (once) whether as size with a site in
 * the function named fn. */
static void expect_reported(struct ktest *t, const char *what, uint64_t hidden, uint64_t size,
                            const char *fn)
{
    uint64_t obj = hidden ^ HIDE;
    unsigned seen = 0;
    for (unsigned i = 0; i < rep.n && i < MAXREP; i++) {
        if (rep.obj[i] != obj)
            continue;
        seen++;
        const char *name = ksym_lookup(rep.site[i], NULL);
        if (rep.size[i] != size)
            ktest_fail(t, "%s reported with size %lu, expected %lu", what, rep.size[i], size);
        if (name == NULL || strcmp(name, fn) != 0)
            ktest_fail(t, "%s reported as allocated at %s, expected %s", what, name ? name : "?", fn);
        if (rep.nbt[i] < 2 || rep.bt0[i] != rep.site[i])
            ktest_fail(t, "%s: backtrace of %u frames, first 0x%lx (site 0x%lx)", what, rep.nbt[i],
                       rep.bt0[i], rep.site[i]);
    }
    if (seen != 1)
        ktest_fail(t, "%s (0x%lx) reported %u times, expected once", what, obj, seen);
}

static void expect_not_reported(struct ktest *t, const char *what, uint64_t hidden)
{
    for (unsigned i = 0; i < rep.n && i < MAXREP; i++)
        if (rep.obj[i] == (hidden ^ HIDE))
            ktest_fail(t, "%s was reported although it is reachable", what);
}

static void scan_and_check(struct ktest *t)
{
    plant_small_leak();
    plant_large_leak();
    plant_cycle_leak();
    keep_static_ref();
    static int suppress_once;
    if (!suppress_once++)
        KTEST_EXPECT_EQ(t, kmalloc_leak_suppress("plant_suppressed_caller"), 0);
    plant_suppressed_caller();
    KTEST_ASSERT(t, hidden_small != HIDE && hidden_large != HIDE && hidden_a != HIDE &&
                        hidden_b != HIDE && kept_by_static != NULL && hidden_suppressed != HIDE);
    scrub_stack_below();
    memset(&rep, 0, sizeof rep);
    struct kmalloc_leaks l;
    uint64_t n = kmemleak_scan_print(&l, collect, NULL);
    KTEST_ASSERT(t, n != KMALLOC_LEAK_NO_SCAN);
    kmemleak_print_summary(&l);
    KTEST_EXPECT_EQ(t, n, 4);
    KTEST_EXPECT_EQ(t, rep.n, 4);
    KTEST_EXPECT_EQ(t, l.leak_bytes, SMALL_SIZE + LARGE_SIZE + 2 * sizeof(struct node));
    KTEST_EXPECT_EQ(t, l.suppressed, 1);
    KTEST_EXPECT_EQ(t, l.suppressed_bytes, SUPPRESSED_SIZE);
    expect_not_reported(t, "the suppressed leak", hidden_suppressed);
    expect_reported(t, "the small leak", hidden_small, SMALL_SIZE, "plant_small_leak");
    expect_reported(t, "the large leak", hidden_large, LARGE_SIZE, "plant_large_leak");
    expect_reported(t, "the cycle's first object", hidden_a, sizeof(struct node), "plant_cycle_leak");
    expect_reported(t, "the cycle's second object", hidden_b, sizeof(struct node), "plant_cycle_leak");
    expect_not_reported(t, "the object kept by a static", hidden_kept);
    expect_not_reported(t, "the object kept on a CPU's stack", hidden_stack);
    if (!t->failed)
        printk("kmemleak_planted: exactly the 4 planted objects reported (small, large, a 2-object "
               "cycle); not the one a static keeps, nor the one on cpu %u's stack\n", stack_cpu);
    kfree((void *)(uintptr_t)(hidden_small ^ HIDE));
    kfree((void *)(uintptr_t)(hidden_large ^ HIDE));
    kmem_cache_free(node_cache, (void *)(uintptr_t)(hidden_a ^ HIDE));
    kmem_cache_free(node_cache, (void *)(uintptr_t)(hidden_b ^ HIDE));
    KTEST_EXPECT_EQ(t, kmem_cache_destroy(node_cache), 0);
    node_cache = NULL;
    kfree(kept_by_static);
    kept_by_static = NULL;
    kfree((void *)(uintptr_t)(hidden_suppressed ^ HIDE));
    memset(&rep, 0, sizeof rep);  /* raw addresses: they would keep leaks alive */
}

/* On stack_cpu: allocate, keep the object only in a local, wait for the
 * scan. Everyone else but CPU 0 returns at once. */
static void hold_on_ap_stack(unsigned cpu, void *arg)
{
    struct ktest *t = arg;
    if (cpu == stack_cpu) {
        void *volatile local = kzalloc(40, 0);
        hidden_stack = (uint64_t)(uintptr_t)local ^ HIDE;
        __atomic_store_n(&stack_ready, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&stack_done, __ATOMIC_ACQUIRE))
            cpu_pause();
        kfree(local);
        return;
    }
    if (cpu != 0)
        return;
    while (!__atomic_load_n(&stack_ready, __ATOMIC_ACQUIRE))
        cpu_pause();
    scan_and_check(t);
    __atomic_store_n(&stack_done, 1, __ATOMIC_RELEASE);
}

KTEST_NAMED(kmemleak_planted)
{
    if (!kmemleak_enabled()) {
        ktest_fail(t, "needs kmemleak=on on the command line (allocation sites)");
        return;
    }
    stack_ready = stack_done = 0;
    if (smp_cpus_online() > 1) {
        stack_cpu = smp_cpus_online() - 1;
        smp_run_all(hold_on_ap_stack, t);
        return;
    }
    stack_cpu = 0;  /* one CPU: a local of this frame, above the scan's */
    void *volatile local = kzalloc(40, 0);
    hidden_stack = (uint64_t)(uintptr_t)local ^ HIDE;
    scan_and_check(t);
    kfree(local);
}

/* ---- a CPU that will not stop ---- */

static uint32_t irqs_off_now;  /* atomic: the laggard has interrupts off */

static void laggard_and_scanner(unsigned cpu, void *arg)
{
    struct ktest *t = arg;
    unsigned last = smp_cpus_online() - 1;
    if (cpu == last) {
        uint64_t f = irq_save();
        __atomic_store_n(&irqs_off_now, 1, __ATOMIC_RELEASE);
        tsc_delay_us(4000 * 1000ull);  /* 4x STOP_WORLD_QUIET_MS: room for a slow host */
        irq_restore(f);  /* the stop's IPI arrives now, long called off */
        return;
    }
    if (cpu != 0)
        return;
    while (!__atomic_load_n(&irqs_off_now, __ATOMIC_ACQUIRE))
        cpu_pause();
    struct kmalloc_leaks l;
    memset(&l, 0xff, sizeof l);
    memset(&rep, 0, sizeof rep);
    uint64_t n = kmalloc_leak_scan(&l, collect, NULL);
    KTEST_EXPECT_EQ(t, n, KMALLOC_LEAK_NO_SCAN);
    KTEST_EXPECT_EQ(t, l.scanned_bytes, 0);
    KTEST_EXPECT_EQ(t, l.leaks, 0);
    KTEST_EXPECT_EQ(t, rep.n, 0);
}

static uint32_t ran[MAX_CPUS];

static void mark_ran(unsigned cpu, void *arg)
{
    (void)arg;
    __atomic_store_n(&ran[cpu], 1, __ATOMIC_RELAXED);
}

KTEST_NAMED(kmemleak_stop_timeout)
{
    unsigned n = smp_cpus_online();
    KTEST_ASSERT(t, n > 1);
    irqs_off_now = 0;
    smp_run_all(laggard_and_scanner, t);
    /* Every CPU, the released ones and the laggard, runs work again. */
    memset(ran, 0, sizeof ran);
    smp_run_all(mark_ran, NULL);
    for (unsigned c = 0; c < n; c++)
        if (!ran[c])
            ktest_fail(t, "cpu %u did not run after the failed stop", c);
    struct kmalloc_leaks l;
    memset(&rep, 0, sizeof rep);
    KTEST_EXPECT(t, kmalloc_leak_scan(&l, collect, NULL) != KMALLOC_LEAK_NO_SCAN);
    KTEST_EXPECT_EQ(t, stop_world_last_parked(), n - 1);
    printk("kmemleak_stop_timeout: the scan gave up on cpu %u, the next one parked all %u other CPU(s)\n",
           n - 1, n - 1);
}

/* ---- a scan while the other CPUs allocate from their timer ticks ----
 * Every CPU's timer interrupt allocates, frees and hands objects to other
 * CPUs (smp_kmalloc_testutil.c; what they keep is in .bss); CPU 0 scans
 * again and again meanwhile. The scan keeps interrupts off on its own CPU
 * and the parked CPUs take no interrupt, so nothing changes the heap
 * under the walk: no false report, no fault, every scan completes. */
#define IRQ_SCANS 20

KTEST_NAMED(kmemleak_irq_alloc)
{
    if (!kmemleak_enabled()) {
        ktest_fail(t, "needs kmemleak=on on the command line (allocation sites)");
        return;
    }
    KTEST_ASSERT(t, smp_cpus_online() > 1);
    smk_irq_alloc_start();
    uint64_t leaks = 0, marked = 0;
    unsigned scans = 0;
    for (unsigned i = 0; i < IRQ_SCANS; i++) {
        tsc_delay_us(20 * 1000); /* the ticks run meanwhile, here too */
        scrub_stack_below();
        memset(&rep, 0, sizeof rep);
        struct kmalloc_leaks l;
        uint64_t n = kmemleak_scan_print(&l, collect, NULL);
        if (n == KMALLOC_LEAK_NO_SCAN) {
            ktest_fail(t, "scan %u could not stop the other CPUs", i);
            continue;
        }
        scans++;
        leaks += n;
        marked += l.marked;
    }
    uint64_t allocs = smk_irq_alloc_stop();
    memset(&rep, 0, sizeof rep);
    if (__atomic_load_n(&smk_fail_flag, __ATOMIC_ACQUIRE))
        ktest_fail(t, "%s", smk_fail_msg);
    KTEST_EXPECT_EQ(t, leaks, 0);
    KTEST_EXPECT(t, allocs > 0);
    printk("kmemleak_irq_alloc: %u scans while %u CPU(s) allocated from their timer interrupts "
           "(%lu objects, %lu reached in all): %lu leaks\n",
           scans, smp_cpus_online(), allocs, marked, leaks);
}

/* The backtrace hook under mm_backtrace (mm/mstack.c): a report's
 * backtrace starts at the allocation site and goes on through its
 * callers. bt_site_taker plays a kmalloc entry point. */
static uintptr_t bt_ret_into_outer;

static __attribute__((noinline)) unsigned bt_site_taker(uintptr_t *pcs, unsigned max,
                                                        uintptr_t *site)
{
    *site = (uintptr_t)__builtin_return_address(0);
    unsigned n = mm_backtrace(pcs, max, *site);
    __asm__ volatile("" ::: "memory"); /* no tail call: keep the frame */
    return n;
}

static __attribute__((noinline)) unsigned bt_middle(uintptr_t *pcs, unsigned max, uintptr_t *site)
{
    bt_ret_into_outer = (uintptr_t)__builtin_return_address(0);
    unsigned n = bt_site_taker(pcs, max, site);
    __asm__ volatile("" ::: "memory");
    return n;
}

KTEST(kmemleak_backtrace_from_site)
{
    uintptr_t pcs[MM_BACKTRACE_MAX], site = 0;
    unsigned n = bt_middle(pcs, 8, &site);
    KTEST_ASSERT(t, n >= 3); /* the site, this test, ktest's runner */
    KTEST_EXPECT_EQ(t, pcs[0], site);
    KTEST_EXPECT_EQ(t, pcs[1], bt_ret_into_outer);
    KTEST_EXPECT_EQ(t, bt_middle(pcs, 2, &site), 2);
}
