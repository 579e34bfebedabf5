/*
 * kmem_cache_selftests.c: typed caches (mm/kmalloc.h's kmem_cache_*) in
 * the kernel, where their objects move between CPUs and interrupts:
 *   kmem_cache_basic        a cache of nodes with a constructor: exact
 *                           size and alignment, constructed objects, the
 *                           counters, destroy giving everything back;
 *   kmem_cache_smp          one cache used from every CPU at once and
 *                           from the timer interrupt on every CPU, objects
 *                           freed on other CPUs than allocated them; then
 *                           nothing live, destroy returns 0, heap valid;
 *   kmem_cache_destroy_live destroy with three live objects prints them
 *                           and returns -1, the cache still serving;
 *   kmem_cache_wrong_cache_selftest (named, its own boot case) an object
 *                           of one cache freed to another must panic
 *                           "kmalloc: wrong cache: 0x..." after the line
 *                           naming both caches.
 * The nodes these tests pass around are the kernel's typed objects in
 * the sense the issue means: one type, one cache, constructed once.
 */
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "printk.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/smp.h"

/* A node as a kernel keeps them (a list element with an owner). */
struct knode {
    uint64_t magic; /* KNODE_MAGIC while constructed, and on free */
    struct knode *next;
    uint32_t cpu; /* who allocated it */
    uint32_t seq;
    uint64_t stamp; /* magic ^ address ^ seq, checked on free */
};
#define KNODE_MAGIC 0x6b6e6f6465000001ull

static uint64_t ctor_calls; /* atomic */

static void knode_ctor(void *p)
{
    struct knode *n = p;
    n->magic = KNODE_MAGIC;
    n->next = NULL;
    __atomic_add_fetch(&ctor_calls, 1, __ATOMIC_RELAXED);
}

static void knode_fill(struct knode *n, unsigned cpu, uint32_t seq)
{
    n->cpu = cpu;
    n->seq = seq;
    n->stamp = KNODE_MAGIC ^ (uint64_t)(uintptr_t)n ^ seq;
}

static int knode_ok(const struct knode *n)
{
    return n->magic == KNODE_MAGIC && n->stamp == (KNODE_MAGIC ^ (uint64_t)(uintptr_t)n ^ n->seq);
}

KTEST(kmem_cache_basic)
{
    __atomic_store_n(&ctor_calls, 0, __ATOMIC_RELAXED);
    struct kmem_cache *c =
        kmem_cache_create("knode", sizeof(struct knode), 0, KMC_HWALIGN, knode_ctor);
    KTEST_ASSERT(t, c != NULL);
    enum { N = 300 };
    static struct knode *n[N];
    for (unsigned i = 0; i < N; i++) {
        n[i] = kmem_cache_alloc(c, 0);
        KTEST_ASSERT(t, n[i] != NULL);
        KTEST_EXPECT(t, n[i]->magic == KNODE_MAGIC && n[i]->next == NULL);
        KTEST_EXPECT_EQ(t, (uintptr_t)n[i] % 64, 0);
        KTEST_EXPECT_EQ(t, ksize(n[i]), 64);
        knode_fill(n[i], this_cpu_id(), i);
    }
    struct kmem_cache_stats st;
    kmem_cache_stats(c, &st);
    KTEST_EXPECT_EQ(t, st.objperslab, 128);
    KTEST_EXPECT_EQ(t, st.active_objs, N);
    KTEST_EXPECT_EQ(t, st.slabs, 3);
    KTEST_EXPECT_EQ(t, __atomic_load_n(&ctor_calls, __ATOMIC_RELAXED), 3 * 128);
    for (unsigned i = 0; i < N; i++) {
        KTEST_EXPECT(t, knode_ok(n[i]));
        kmem_cache_free(c, n[i]);
    }
    KTEST_EXPECT_EQ(t, kmem_cache_destroy(c), 0);
    KTEST_EXPECT(t, mheap_valid() == 1);
}

/* ---- every CPU and the timer interrupt ---- */

static struct kmem_cache *smp_cache;
#define IRQ_KEEP 8
static struct {
    struct knode *keep[IRQ_KEEP];
    uint64_t rng, allocs;
} __attribute__((aligned(64))) irq_nodes[MAX_CPUS];
static struct knode *irq_swap; /* atomic: a node for another CPU's tick to free */
static int smp_bad;            /* atomic: a node lost its fill */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void node_free(struct knode *n)
{
    if (!knode_ok(n))
        __atomic_store_n(&smp_bad, 1, __ATOMIC_RELAXED);
    kmem_cache_free(smp_cache, n);
}

static void tick(unsigned cpu)
{
    uint64_t r = xorshift(&irq_nodes[cpu].rng);
    unsigned k = r % IRQ_KEEP;
    struct knode **slot = &irq_nodes[cpu].keep[k];
    if (*slot != NULL) {
        node_free(*slot);
        *slot = NULL;
        return;
    }
    struct knode *n = kmem_cache_alloc(smp_cache, 0);
    if (n == NULL)
        return;
    knode_fill(n, cpu, (uint32_t)r);
    /* atomic: smp_work on this CPU waits for it */
    __atomic_store_n(&irq_nodes[cpu].allocs, irq_nodes[cpu].allocs + 1, __ATOMIC_RELAXED);
    if ((r >> 32) % 2 == 0) { /* for whichever CPU ticks next */
        struct knode *old = __atomic_exchange_n(&irq_swap, n, __ATOMIC_ACQ_REL);
        if (old != NULL)
            node_free(old);
        return;
    }
    *slot = n;
}

static void tick_drain(unsigned cpu, void *arg)
{
    (void)arg;
    uint64_t f = irq_save();
    for (unsigned k = 0; k < IRQ_KEEP; k++)
        if (irq_nodes[cpu].keep[k] != NULL) {
            node_free(irq_nodes[cpu].keep[k]);
            irq_nodes[cpu].keep[k] = NULL;
        }
    irq_restore(f);
    /* this CPU's caches of the class go back too: an idle CPU answers no
     * drain, and destroy could otherwise not reclaim the class (its spans
     * stayed in use to the end of make run) */
    kmalloc_flush_cpu();
}

static void set_hz(unsigned cpu, void *arg)
{
    (void)cpu;
    lapic_timer_set_hz((uint32_t)(uintptr_t)arg);
}

/* Each CPU builds a list, then frees the list of the CPU before it. */
#define SMP_NODES 2000
static struct knode *lists[MAX_CPUS];
static unsigned arrived; /* atomic: barrier arrivals, only ever growing */

/* Barrier number b (0, 1, ...): every CPU passes it together. */
static void barrier(unsigned b, unsigned ncpu)
{
    __atomic_add_fetch(&arrived, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&arrived, __ATOMIC_ACQUIRE) < (b + 1) * ncpu)
        cpu_pause();
}

static void smp_work(unsigned cpu, void *arg)
{
    (void)arg;
    unsigned ncpu = smp_cpus_online();
    for (unsigned round = 0; round < 3; round++) {
        uint64_t irq0 = __atomic_load_n(&irq_nodes[cpu].allocs, __ATOMIC_RELAXED);
        struct knode *head = NULL;
        for (uint32_t i = 0; i < SMP_NODES; i++) {
            struct knode *n = kmem_cache_alloc(smp_cache, 0);
            if (n == NULL || n->magic != KNODE_MAGIC || n->next != NULL) {
                __atomic_store_n(&smp_bad, 1, __ATOMIC_RELAXED);
                break;
            }
            knode_fill(n, cpu, i);
            n->next = head;
            head = n;
        }
        /* A tick of this CPU allocates from the cache while the list is
         * live (and other CPUs may still build theirs): on a loaded host
         * QEMU can run the whole loop between two ticks, so the round
         * waits for one (liveness, not speed: 5 s bound, as
         * lapic_timer_every_cpu). */
        uint64_t end = tsc_deadline_us(rdtsc(), 5000000);
        while (__atomic_load_n(&irq_nodes[cpu].allocs, __ATOMIC_RELAXED) == irq0 && rdtsc() < end)
            cpu_pause();
        __atomic_store_n(&lists[cpu], head, __ATOMIC_RELEASE);
        barrier(2 * round, ncpu);
        struct knode *n =
            __atomic_exchange_n(&lists[(cpu + ncpu - 1) % ncpu], NULL, __ATOMIC_ACQ_REL);
        while (n != NULL) {
            struct knode *next = n->next;
            n->next = NULL; /* back in its constructed state */
            node_free(n);
            n = next;
        }
        barrier(2 * round + 1, ncpu);
    }
}

KTEST(kmem_cache_smp)
{
    smp_cache = kmem_cache_create("knode_smp", sizeof(struct knode), 0, 0, knode_ctor);
    KTEST_ASSERT(t, smp_cache != NULL);
    __atomic_store_n(&smp_bad, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&arrived, 0, __ATOMIC_RELAXED);
    for (unsigned c = 0; c < MAX_CPUS; c++) {
        irq_nodes[c].rng = 0x9e3779b97f4a7c15ull * (c + 1);
        irq_nodes[c].allocs = 0;
    }
    smp_run_all(set_hz, (void *)(uintptr_t)5000);
    apic_set_tick_hook(tick);
    smp_run_all(smp_work, NULL);
    apic_set_tick_hook(NULL);
    smp_run_all(set_hz, (void *)(uintptr_t)lapic_timer_base_hz());
    smp_run_all(tick_drain, NULL);
    struct knode *old = __atomic_exchange_n(&irq_swap, NULL, __ATOMIC_ACQ_REL);
    if (old != NULL)
        node_free(old);
    uint64_t irq_allocs = 0;
    for (unsigned c = 0; c < smp_cpus_online(); c++)
        irq_allocs += irq_nodes[c].allocs;
    printk("kmem_cache_smp: %u CPUs, %lu nodes from timer interrupts\n", smp_cpus_online(),
           irq_allocs);
    /* each CPU waited for one in each round */
    KTEST_EXPECT(t, irq_allocs >= 3 * smp_cpus_online());
    KTEST_EXPECT(t, __atomic_load_n(&smp_bad, __ATOMIC_RELAXED) == 0);
    struct kmem_cache_stats st;
    kmem_cache_stats(smp_cache, &st);
    KTEST_EXPECT_EQ(t, st.active_objs, 0);
    KTEST_EXPECT_EQ(t, st.allocs, st.frees);
    KTEST_EXPECT_EQ(t, kmem_cache_destroy(smp_cache), 0);
    KTEST_EXPECT(t, mheap_valid() == 1);
}

KTEST(kmem_cache_destroy_live)
{
    struct kmem_cache *c = kmem_cache_create("ktest_live", 200, 0, 0, NULL);
    KTEST_ASSERT(t, c != NULL);
    void *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = kmem_cache_alloc(c, 0);
    printk("kmem_cache_destroy_live: live 0x%lx 0x%lx 0x%lx\n", (uint64_t)(uintptr_t)p[0],
           (uint64_t)(uintptr_t)p[1], (uint64_t)(uintptr_t)p[2]);
    KTEST_EXPECT_EQ(t, kmem_cache_destroy(c), (uint64_t)-1);
    void *q = kmem_cache_alloc(c, 0); /* still serving */
    KTEST_EXPECT(t, q != NULL);
    kmem_cache_free(c, q);
    for (int i = 0; i < 3; i++)
        kmem_cache_free(c, p[i]);
    KTEST_EXPECT_EQ(t, kmem_cache_destroy(c), 0);
}

KTEST_NAMED(kmem_cache_wrong_cache_selftest)
{
    struct kmem_cache *inode = kmem_cache_create("inode", 200, 0, 0, NULL);
    struct kmem_cache *dentry = kmem_cache_create("dentry", 192, 0, 0, NULL);
    KTEST_ASSERT(t, inode != NULL && dentry != NULL);
    void *p = kmem_cache_alloc(inode, 0);
    printk("kmem_cache_wrong_cache_selftest: freeing 0x%lx to dentry\n", (uint64_t)(uintptr_t)p);
    kmem_cache_free(dentry, p);
    ktest_fail(t, "kmem_cache_free of 0x%lx to the wrong cache returned", (uint64_t)(uintptr_t)p);
}
