/*
 * kmesh_selftests.c: meshing in the kernel (mm/mmesh.c through the
 * port's hooks, arch/x86_64/mesh.c). A fragmentation pattern is built on
 * the bootstrap CPU: 256 B objects (32 to an 8 KiB span) fill whole
 * spans, and span j keeps only the slots s with s % 4 == j % 4, so up to
 * four spans fit on one span's frames. kmalloc_mesh then merges them;
 * kmalloc_stats, the port's counters and the frame allocator say how much.
 *
 *   kmesh_fragmented   every survivor keeps its contents after the mesh
 *                      and takes new writes through its own address
 *                      without touching another's; new objects land on
 *                      free slots only; the frame allocator's free count
 *                      rises by the frames meshing gave back (the port's
 *                      count exactly); the layers agree; then everything
 *                      is freed and trimmed: every alias is unmapped, and
 *                      every frame comes back once (a frame freed twice
 *                      panics in the frame allocator)
 *   kmesh_smp          the bootstrap CPU meshes in a loop while the other
 *                      CPUs build sparse spans, rewrite and check their
 *                      objects in them, and free into them; the timer
 *                      interrupt allocates on every CPU meanwhile
 * Named only (boot cases in tests/boot/kmem.cases):
 *   kmesh_leak_scan    kmemleak=on: a scan of a heap with aliases reports
 *                      no survivor, and exactly the two it can no longer
 *                      reach once their pointers are hidden, one in an
 *                      alias span and one in its dst
 *   mesh_double_free_{alias,dst}_selftest, mesh_interior_free_{alias,dst}_selftest
 *                      misuse through either half of a meshed pair:
 *                      "kmalloc: double free: 0x..." (the object flushed
 *                      back to its span between the frees) and
 *                      "kmalloc: invalid free: 0x..." (8 bytes in); each
 *                      prints the pointer it expects in the panic line
 */
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "kmalloc_testutil.h"
#include "smp_kmalloc_testutil.h"
#include "printk.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"
#include "../arch/x86_64/mesh.h"
#include "../arch/x86_64/smp.h"

#define MOBJ   256
#define MPER   32 /* objects of a 256 B span (mm/sizeclasses.h) */
#define MSPANS 64
#define SPAN_B 8192

/* The survivors of build_frag, in kt_ptrs[0..nsurv). */
static unsigned nsurv;

static uintptr_t span_base_of(const void *p) { return (uintptr_t)p & ~(uintptr_t)(SPAN_B - 1); }

/* Fill MSPANS spans of 256 B objects, keep slot % 4 == span % 4 in the
 * spans that are wholly ours, free the rest; the spans go back to their
 * mcentral uncached. Returns the number of spans built. */
static unsigned build_frag(struct ktest *t)
{
    static void *all[MSPANS * MPER];
    unsigned n = MSPANS * MPER, spans = 0;
    nsurv = 0;
    for (unsigned i = 0; i < n; i++) {
        all[i] = kmalloc(MOBJ, 0);
        if (all[i] == NULL) {
            ktest_fail(t, "kmalloc(%u) returned NULL", MOBJ);
            n = i;
            break;
        }
    }
    /* objects come from a span in slot order: a run of MPER objects on
     * one span base starting at slot 0 is a whole span of ours */
    for (unsigned i = 0; i < n;) {
        uintptr_t b = span_base_of(all[i]);
        unsigned k = 0;
        while (i + k < n && span_base_of(all[i + k]) == b)
            k++;
        int whole = k == MPER && (uintptr_t)all[i] == b;
        for (unsigned j = 0; j < k; j++) {
            unsigned slot = (unsigned)(((uintptr_t)all[i + j] - b) / MOBJ);
            if (whole && slot % 4 == spans % 4 && nsurv < KT_NPTR) {
                kt_ptrs[nsurv++] = all[i + j];
                kt_fill(all[i + j], MOBJ, (uintptr_t)all[i + j]);
            } else {
                kfree(all[i + j]);
            }
        }
        spans += whole;
        i += k;
    }
    kmalloc_flush_cpu();
    /* only kt_ptrs may point at survivors (the leak scan counts on it) */
    for (unsigned i = 0; i < MSPANS * MPER; i++)
        all[i] = NULL;
    for (unsigned i = nsurv; i < KT_NPTR; i++)
        kt_ptrs[i] = NULL;
    return spans;
}

/* Survivors that lost their fill (salt: their address ^ mix). */
static unsigned check_survivors(uintptr_t mix)
{
    unsigned bad = 0;
    for (unsigned i = 0; i < nsurv; i++)
        if (kt_check_fill(kt_ptrs[i], MOBJ, (uintptr_t)kt_ptrs[i] ^ mix) != MOBJ)
            bad++;
    return bad;
}

/* Free every survivor (through whichever address it has), then let
 * every cache and free page go back. */
static void free_survivors(void)
{
    for (unsigned i = 0; i < nsurv; i++)
        kfree(kt_ptrs[i]);
    nsurv = 0;
    kt_heap_quiesce();
}

static unsigned aliases_among_survivors(void)
{
    unsigned a = 0;
    for (unsigned i = 0; i < nsurv; i++)
        a += spanOf((uintptr_t)kt_ptrs[i])->mesh_dst != NULL;
    return a;
}

KTEST(kmesh_fragmented)
{
    struct frames_snap snap0;
    struct kmalloc_stats sq, s0, s1, s2;
    struct kmem_mesh_stats m0, m1, m2;
    /* a first pass grows the metadata these spans need (span records,
     * with kmemleak=on the site words), so the frames counted after the
     * free are the heap's own */
    build_frag(t);
    free_survivors();
    kt_snap(&snap0);
    kmalloc_stats(&sq);
    uint64_t free0 = kt_pmm_free_frames();
    unsigned spans = build_frag(t);
    KTEST_ASSERT(t, spans >= MSPANS / 2);
    uint64_t peak = free0 - kt_pmm_free_frames();

    kmalloc_stats(&s0);
    kmem_mesh_stats(&m0);
    uint64_t before = kt_pmm_free_frames();
    unsigned done = kmalloc_mesh();
    uint64_t after = kt_pmm_free_frames();
    kmalloc_stats(&s1);
    kmem_mesh_stats(&m1);
    /* the idle CPUs' paced work may mesh too: count by the statistics */
    uint64_t meshes = s1.mesh_count - s0.mesh_count;
    uint64_t given = m1.freed_frames - m0.freed_frames;
    unsigned aliases = aliases_among_survivors();
    printk("kmesh_fragmented: %u sparse spans of 256 B objects, %u meshed now (%lu in all), %u "
           "survivors on aliases; %lu frames given back, frame allocator free +%lu; pause mean "
           "%lu ns over these meshes, max %lu ns over the run\n",
           spans, done, meshes, aliases, given, after - before,
           meshes ? (s1.mesh_pause_sum_ns - s0.mesh_pause_sum_ns) / meshes : 0,
           s1.mesh_pause_max_ns);
    KTEST_EXPECT(t, meshes >= spans / 4);
    KTEST_EXPECT(t, aliases > 0);
    KTEST_EXPECT_EQ(t, given, meshes * (SPAN_B / 4096));
    KTEST_EXPECT(t, after - before >= given);
    KTEST_EXPECT_EQ(t, s1.mesh_failed, s0.mesh_failed);
    KTEST_EXPECT(t, s1.mesh_bytes >= s0.mesh_bytes + meshes * SPAN_B);
    /* the port's alias pages are the core's meshed bytes */
    KTEST_EXPECT_EQ(t, m1.aliased_pages - m1.unaliased_pages, s1.mesh_bytes / 4096);
    KTEST_EXPECT_EQ(t, check_survivors(0), 0);
    kt_expect_layers_agree(t, "after meshing");

    /* every survivor takes a new fill through its own address; two that
     * shared a slot of one frame would spoil each other's */
    for (unsigned i = 0; i < nsurv; i++)
        kt_fill(kt_ptrs[i], MOBJ, (uintptr_t)kt_ptrs[i] ^ 0x5a5a);
    KTEST_EXPECT_EQ(t, check_survivors(0x5a5a), 0);
    /* new objects only on slots nobody holds */
    static void *more[MSPANS * MPER / 2];
    unsigned nm = MSPANS * MPER / 2;
    for (unsigned i = 0; i < nm; i++) {
        more[i] = kmalloc(MOBJ, 0);
        KTEST_ASSERT(t, more[i] != NULL);
        kt_fill(more[i], MOBJ, (uintptr_t)more[i] ^ 0x77);
    }
    KTEST_EXPECT_EQ(t, check_survivors(0x5a5a), 0);
    for (unsigned i = 0; i < nm; i++) {
        KTEST_EXPECT_EQ(t, kt_check_fill(more[i], MOBJ, (uintptr_t)more[i] ^ 0x77), MOBJ);
        kfree(more[i]);
    }
    for (unsigned i = 0; i < nsurv; i++)
        KTEST_EXPECT_EQ(t, ksize(kt_ptrs[i]), MOBJ);
    KTEST_EXPECT(t, kt_heap_valid() == 1);

    /* all freed, through both addresses: the aliases are reaped and every
     * frame comes back once */
    free_survivors();
    kmalloc_stats(&s2);
    kmem_mesh_stats(&m2);
    printk(
        "kmesh_fragmented: all freed: %lu aliases left, %lu alias pages unmapped of %lu mapped\n",
        s2.mesh_spans, m2.unaliased_pages, m2.aliased_pages);
    /* earlier tests' aliases with live objects may stay, none of ours */
    KTEST_EXPECT(t, s2.mesh_spans <= sq.mesh_spans);
    KTEST_EXPECT_EQ(t, m2.aliased_pages - m2.unaliased_pages, s2.mesh_bytes / 4096);
    kt_expect_only_meta_stays(t, "meshed heap freed", &snap0, peak);
    kt_expect_layers_agree(t, "meshed heap freed");
    KTEST_EXPECT(t, kt_heap_valid() == 1);
}

/* ---- meshing while other CPUs work in the meshed spans ---- */

#define SM_ROUNDS 12
#define SM_BATCH  (MPER * 4)

static struct {
    uint32_t workers_built; /* atomic: workers through their rounds */
    uint32_t final_done;    /* atomic: CPU 0 meshed after they all were */
    uint64_t meshes;        /* CPU 0 only */
    uint64_t passes;        /* CPU 0 only */
    uint64_t on_meshed;     /* CPU 0 only: kept objects in meshed spans
                               after the final mesh */
} sm;

/* What a worker keeps: three rounds' survivors. Written by its CPU only. */
struct sm_keep {
    void *p[3][SM_BATCH];
    uint64_t seed[3][SM_BATCH];
    unsigned n[3];
    uint64_t rng;
};
static struct sm_keep sm_keep[MAX_CPUS];

/* The slots a worker keeps: in span j (heap page j) the quarter j % 4,
 * whichever CPU or round allocated the span, so every span the workers
 * leave sparse holds one quarter and spans of different quarters mesh. */
static int sm_keeper(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return (a % SPAN_B) / MOBJ % 4 == (a / SPAN_B) % 4;
}

/* Rewrite and check every object a worker keeps. */
static void sm_rewrite(unsigned cpu, struct sm_keep *k)
{
    for (unsigned s = 0; s < 3; s++)
        for (unsigned i = 0; i < k->n[s]; i++) {
            void *p = k->p[s][i];
            if (smk_check(p, MOBJ, k->seed[s][i]))
                smk_record_failure("kmesh_smp: cpu %u: object %p lost its fill", cpu, p);
            k->seed[s][i] = rng(&k->rng);
            smk_fill(p, MOBJ, k->seed[s][i]);
        }
}

static void sm_free_round(unsigned cpu, struct sm_keep *k, unsigned s)
{
    for (unsigned i = 0; i < k->n[s]; i++) {
        if (smk_check(k->p[s][i], MOBJ, k->seed[s][i]))
            smk_record_failure("kmesh_smp: cpu %u: object %p lost its fill before its free", cpu,
                               k->p[s][i]);
        kfree(k->p[s][i]);
        /* no stale pointer in bss: a later test's objects may take this
         * address, and the leak scan would count this word as a root
         * (kmesh_leak_scan once missed 7 of 8 hidden objects so) */
        k->p[s][i] = NULL;
        smk_test_counts[cpu].frees++;
    }
    k->n[s] = 0;
}

/* A worker: each round frees the survivors of three rounds ago (into
 * spans that may be meshed by now, through either address), allocates
 * SM_BATCH objects, keeps the ones sm_keeper picks, flushes its caches
 * so the sparse spans become candidates, and rewrites everything it
 * keeps while CPU 0 meshes. */
static void sm_worker(unsigned cpu)
{
    struct sm_keep *k = &sm_keep[cpu];
    struct counts *cn = &smk_test_counts[cpu];
    void *batch[SM_BATCH];
    k->rng = 0x1234567ull * (cpu + 1);
    k->n[0] = k->n[1] = k->n[2] = 0;
    for (unsigned round = 0; round < SM_ROUNDS; round++) {
        unsigned s = round % 3;
        sm_free_round(cpu, k, s);
        for (unsigned i = 0; i < SM_BATCH; i++) {
            batch[i] = kmalloc(MOBJ, 0);
            if (batch[i] == NULL) {
                smk_record_failure("kmesh_smp: cpu %u: kmalloc returned NULL", cpu);
                __atomic_fetch_add(&sm.workers_built, 1, __ATOMIC_RELEASE); /* CPU 0 goes on */
                return;
            }
            smk_count_alloc(cn, MOBJ);
        }
        for (unsigned i = 0; i < SM_BATCH; i++) {
            if (sm_keeper(batch[i])) {
                k->p[s][k->n[s]] = batch[i];
                k->seed[s][k->n[s]] = rng(&k->rng);
                smk_fill(batch[i], MOBJ, k->seed[s][k->n[s]]);
                k->n[s]++;
            } else {
                kfree(batch[i]);
                cn->frees++;
            }
        }
        kmalloc_flush_cpu();
        for (unsigned pass = 0; pass < 4; pass++)
            sm_rewrite(cpu, k);
    }
    /* what is left stays for CPU 0's final mesh, written all the while,
     * then freed into the meshed spans */
    __atomic_fetch_add(&sm.workers_built, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&sm.final_done, __ATOMIC_ACQUIRE))
        sm_rewrite(cpu, k);
    sm_rewrite(cpu, k);
    for (unsigned s = 0; s < 3; s++)
        sm_free_round(cpu, k, s);
}

static void sm_work(unsigned cpu, void *arg)
{
    unsigned n = (unsigned)(uintptr_t)arg;
    if (cpu != 0) {
        sm_worker(cpu);
        return;
    }
    while (__atomic_load_n(&sm.workers_built, __ATOMIC_ACQUIRE) < n - 1) {
        sm.meshes += kmalloc_mesh();
        sm.passes++;
    }
    sm.meshes += kmalloc_mesh();
    /* the workers' pointers hold still now (they only rewrite contents;
     * their counts were published by workers_built) */
    for (unsigned c = 1; c < n; c++)
        for (unsigned s = 0; s < 3; s++)
            for (unsigned i = 0; i < sm_keep[c].n[s]; i++) {
                struct mspan *sp = spanOf((uintptr_t)sm_keep[c].p[s][i]);
                sm.on_meshed += sp->mesh_dst != NULL || sp->nalias != 0;
            }
    __atomic_store_n(&sm.final_done, 1, __ATOMIC_RELEASE);
}

KTEST(kmesh_smp)
{
    unsigned n = smp_cpus_online();
    if (n < 2) {
        printk("kmesh_smp: one CPU, nothing to mesh against\n");
        return;
    }
    struct kmalloc_stats before, after;
    sm.workers_built = sm.final_done = 0;
    sm.meshes = sm.passes = sm.on_meshed = 0;
    smk_begin(&before);
    smp_run_all(sm_work, (void *)(uintptr_t)n);
    smk_end(t);
    smk_check_accounting(t, &before);
    kmalloc_stats(&after);
    printk("kmesh_smp: %u CPUs, %lu meshes in %lu passes while %u CPUs worked in the spans "
           "(%lu in all, %lu refused); %lu objects freed from meshed spans at the end; pause max "
           "%lu ns\n",
           n, sm.meshes, sm.passes, n - 1, after.mesh_count - before.mesh_count,
           after.mesh_failed - before.mesh_failed, sm.on_meshed, after.mesh_pause_max_ns);
    KTEST_EXPECT(t, after.mesh_count > before.mesh_count);
    KTEST_EXPECT(t, sm.on_meshed > 0);
    struct kmem_mesh_stats m;
    kmem_mesh_stats(&m);
    KTEST_EXPECT(t, after.mesh_spans <= before.mesh_spans);
    KTEST_EXPECT_EQ(t, m.aliased_pages - m.unaliased_pages, after.mesh_bytes / 4096);
    KTEST_EXPECT(t, kt_heap_valid() == 1);
    kt_expect_layers_agree(t, "after kmesh_smp");
}

/* ---- the leak detector on a meshed heap (kmemleak=on) ---- */

#define HIDE 0x5555aaaa5555aaaaull

/* Survivors hidden on aliases ([0]) and on dsts ([1]), XORed with HIDE:
 * a pointer kept in plain sight (even in this test's frame) would keep
 * them alive. Several of each, none at a span's base (a conservative
 * scan also reads the registers every CPU was stopped with, and a CPU
 * that meshed last may still hold a span's base). */
#define NHIDE 8
static uint64_t hidden[2][NHIDE];
static int hidden_at[2][NHIDE];
static unsigned nhidden[2];

struct found {
    unsigned hits[2];
    unsigned others;
};

static void on_leak(const void *obj, size_t size, uintptr_t site, void *arg)
{
    (void)size;
    (void)site;
    struct found *f = arg;
    for (int k = 0; k < 2; k++)
        for (unsigned i = 0; i < nhidden[k]; i++)
            if (((uint64_t)(uintptr_t)obj ^ HIDE) == hidden[k][i]) {
                f->hits[k]++;
                return;
            }
    f->others++;
}

/* Index of the first survivor on an alias (want_alias) or on a dst, or
 * -1. */
static int pick_survivor(int want_alias)
{
    for (unsigned i = 0; i < nsurv; i++) {
        struct mspan *s = spanOf((uintptr_t)kt_ptrs[i]);
        if (want_alias ? s->mesh_dst != NULL : s->nalias != 0)
            return (int)i;
    }
    return -1;
}

/* Hide up to NHIDE survivors of each kind, none at its span's base. */
static __attribute__((noinline)) void hide_some(void)
{
    nhidden[0] = nhidden[1] = 0;
    for (unsigned i = 0; i < nsurv; i++) {
        struct mspan *s = spanOf((uintptr_t)kt_ptrs[i]);
        int k = s->mesh_dst != NULL ? 0 : s->nalias != 0 ? 1 : -1;
        if (k < 0 || nhidden[k] == NHIDE || (uintptr_t)kt_ptrs[i] == s->base)
            continue;
        hidden_at[k][nhidden[k]] = (int)i;
        hidden[k][nhidden[k]++] = (uint64_t)(uintptr_t)kt_ptrs[i] ^ HIDE;
        kt_ptrs[i] = NULL;
    }
}

KTEST_NAMED(kmesh_leak_scan)
{
    kt_heap_quiesce();
    build_frag(t);
    KTEST_ASSERT(t, kmalloc_mesh() > 0);
    struct kmalloc_leaks lk;
    struct found f = { { 0, 0 }, 0 };
    kmalloc_leak_scan(&lk, on_leak, &f);
    printk("kmesh_leak_scan: %u survivors, %u on aliases: %lu leaks, %lu live objects reached\n",
           nsurv, aliases_among_survivors(), lk.leaks, lk.marked);
    KTEST_EXPECT_EQ(t, lk.leaks, 0);
    KTEST_EXPECT(t, lk.marked >= nsurv);
    hide_some();
    KTEST_ASSERT(t, nhidden[0] >= 4 && nhidden[1] >= 4);
    kmalloc_leak_scan(&lk, on_leak, &f);
    printk("kmesh_leak_scan: hid %u survivors on aliases and %u on dsts: %lu leaks (%u, %u of "
           "them; %u others)\n",
           nhidden[0], nhidden[1], lk.leaks, f.hits[0], f.hits[1], f.others);
    KTEST_EXPECT_EQ(t, f.others, 0);
    KTEST_EXPECT_EQ(t, lk.leaks, f.hits[0] + f.hits[1]);
    KTEST_EXPECT_EQ(t, f.hits[0], nhidden[0]);
    KTEST_EXPECT_EQ(t, f.hits[1], nhidden[1]);
    for (int k = 0; k < 2; k++)
        for (unsigned i = 0; i < nhidden[k]; i++)
            kt_ptrs[hidden_at[k][i]] = (void *)(uintptr_t)(hidden[k][i] ^ HIDE);
    free_survivors();
}

/* ---- misuse through either half of a meshed pair ---- */

static void *mesh_victim;

static __attribute__((noinline)) void *meshed_victim(struct ktest *t, int want_alias)
{
    kt_heap_quiesce();
    build_frag(t);
    if (kmalloc_mesh() == 0)
        return NULL;
    int i = pick_survivor(want_alias);
    return i < 0 ? NULL : kt_ptrs[i];
}

static __attribute__((noinline)) void mesh_free_twice(struct ktest *t, int want_alias)
{
    mesh_victim = meshed_victim(t, want_alias);
    KTEST_ASSERT(t, mesh_victim != NULL);
    printk("mesh_misuse: expect PANIC: kmalloc: double free: 0x%lx\n",
           (uint64_t)(uintptr_t)mesh_victim);
    kfree(mesh_victim);
    kmalloc_flush_cpu(); /* back to its span (an alias forwards it to dst) */
    kfree(mesh_victim);
    ktest_fail(t, "second kfree of %p returned", mesh_victim);
}

static __attribute__((noinline)) void mesh_free_inside(struct ktest *t, int want_alias)
{
    mesh_victim = meshed_victim(t, want_alias);
    KTEST_ASSERT(t, mesh_victim != NULL);
    printk("mesh_misuse: expect PANIC: kmalloc: invalid free: 0x%lx\n",
           (uint64_t)(uintptr_t)mesh_victim + 8);
    kfree((char *)mesh_victim + 8);
    ktest_fail(t, "kfree of %p + 8 returned", mesh_victim);
}

KTEST_NAMED(mesh_double_free_alias_selftest)
{
    mesh_free_twice(t, 1);
    ktest_fail(t, "returned"); /* keeps this frame in the backtrace */
}

KTEST_NAMED(mesh_double_free_dst_selftest)
{
    mesh_free_twice(t, 0);
    ktest_fail(t, "returned");
}

KTEST_NAMED(mesh_interior_free_alias_selftest)
{
    mesh_free_inside(t, 1);
    ktest_fail(t, "returned");
}

KTEST_NAMED(mesh_interior_free_dst_selftest)
{
    mesh_free_inside(t, 0);
    ktest_fail(t, "returned");
}
