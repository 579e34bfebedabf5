/*
 * kmalloc_frames_selftests.c: the heap against the memory under it, at
 * boot on the real port: the layers agree on every frame, krealloc moves
 * pages by page tables, trim gives frames back, a commit that runs out of
 * frames leaves nothing behind, heap pages are W+NX and page faults in the
 * arena are diagnosed:
 *
 *   kmalloc_frames_agree     the core's committed bytes == the port's data
 *                            frames; the frame allocator's used frames ==
 *                            data + page-table frames
 *   kmalloc_realloc_moves_pages  a big krealloc that cannot grow in place
 *                            moves page-table entries; contents intact,
 *                            frames accounted
 *   kmalloc_trim_returns     free everything + kmalloc_trim gives the frames
 *                            back to the frame allocator
 *   kmalloc_commit_atomic    frames running out at every step of a commit
 *                            that needs new page tables: -1, nothing left
 *                            mapped, no frame lost; kmalloc returns NULL
 *   paging_remap_flushes_tlb unmap + map to another frame shows the new
 *                            frame at once; the tables go back
 *   kmalloc_fault_diagnosis  heap pages are W+NX; the page-fault diagnosis
 *                            for released, never-committed and foreign
 *                            addresses
 * Named only (boot cases in tests/boot/kmem.cases):
 *   released_page_selftest, heap_nx_selftest
 *                            end in the fault they name (kfree misuse:
 *                            kmalloc_misuse_selftests.c)
 */
#include <stddef.h>
#include <stdint.h>

#include "kmalloc_testutil.h"
#include "ktest.h"
#include "mem.h"
#include "printk.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"
#include "pmm/pmm.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/apic.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/paging.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/tlb.h"

KTEST(kmalloc_frames_agree)
{
    kt_expect_layers_agree(t, "at start");
    size_t n = 0;
    for (; n < 2000; n++) {
        kt_ptrs[n] = kmalloc(16 + (n * 97) % 20000, 0);
        KTEST_ASSERT(t, kt_ptrs[n] != NULL);
    }
    void *big = kmalloc(12 << 20, 0);
    KTEST_ASSERT(t, big != NULL);
    kt_expect_layers_agree(t, "with 2000 small + 12 MiB live");
    for (size_t i = 0; i < n; i += 2)
        kfree(kt_ptrs[i]);
    kfree(big);
    kt_expect_layers_agree(t, "after freeing half");
    for (size_t i = 1; i < n; i += 2)
        kfree(kt_ptrs[i]);
    kt_heap_quiesce();
    kt_expect_layers_agree(t, "after trim");
}

/* krealloc of a big object that cannot grow in place (its neighbour is
 * live) moves page-table entries, not bytes: the contents arrive, the
 * port counts the moved pages, the old pages are released, and the
 * layers still agree frame for frame. */
KTEST(kmalloc_realloc_moves_pages)
{
    kt_heap_quiesce();
    enum { OLD = 512 << 10, NEW = 2 << 20 };
    uint8_t *a = kmalloc(OLD, 0), *b = kmalloc(64 << 10, 0);
    KTEST_ASSERT(t, a != NULL && b != NULL);
    for (size_t i = 0; i < OLD; i += 64)
        a[i] = kt_pattern(i, 7);
    struct kmem_port_stats p0, p1;
    kmem_port_stats(&p0);
    uint8_t *c = krealloc(a, NEW, 0);
    KTEST_ASSERT(t, c != NULL);
    kmem_port_stats(&p1);
    printk("kmalloc_realloc_moves_pages: %s, %lu pages moved by page tables\n",
           b == a + OLD ? "neighbour right behind" : "neighbour elsewhere",
           p1.moved_pages - p0.moved_pages);
    if (b == a + OLD) { /* first fit put b right after a: a had to move */
        KTEST_EXPECT(t, c != a);
        KTEST_EXPECT_EQ(t, p1.moved_pages - p0.moved_pages, (uint64_t)OLD / PAGE_SIZE_4K);
    }
    for (size_t i = 0; i < OLD; i += 64)
        if (c[i] != kt_pattern(i, 7)) {
            ktest_fail(t, "byte %lu lost in the move", (uint64_t)i);
            break;
        }
    c[NEW - 1] = 1; /* the grown part is mapped */
    kt_expect_layers_agree(t, "after a moving krealloc");
    kfree(b);
    kfree(c);
    kt_heap_quiesce();
    kt_expect_layers_agree(t, "after trim");
}

KTEST(kmalloc_trim_returns)
{
    kt_heap_quiesce();
    struct frames_snap s0;
    kt_snap(&s0);
    size_t n = 0;
    for (; n < 3000; n++) {
        kt_ptrs[n] = kmalloc(n % 3 ? 24 + n * 13 % 4000 : 60000, 0);
        KTEST_ASSERT(t, kt_ptrs[n] != NULL);
        *(volatile uint8_t *)kt_ptrs[n] = 1;
    }
    uint64_t used = s0.pmm_free - kt_pmm_free_frames();
    /* ~60 KiB x 1000 + ~2 KiB x 2000 of objects: at least 60 MiB of frames */
    if (used < (60ull << 20) / PAGE_SIZE_4K)
        ktest_fail(t, "allocating ~64 MiB took only %lu frames", used);
    for (size_t i = 0; i < n; i++)
        kfree(kt_ptrs[i]);
    kt_heap_quiesce();
    struct kmalloc_stats ks;
    kmalloc_stats(&ks);
    KTEST_EXPECT_EQ(t, ks.heap_free, 0);
    KTEST_EXPECT_EQ(t, ks.heap_inuse, 0);
    KTEST_EXPECT(t, kt_heap_valid() == 1);
    kt_expect_only_meta_stays(t, "trim", &s0, used);
}

/* The port straight: commits that need new page tables, with the frame
 * supply cut after k frames for every k until one succeeds. It counts
 * frames exactly, so no release step may run meanwhile (the wrapper
 * below keeps them out). */
static void commit_atomic(struct ktest *t)
{
    struct kmem_port_stats ps;
    kmem_port_stats(&ps);
    /* Highest 1 GiB boundary in the arena that the heap has not grown to:
     * [G - 8 KiB, G + 8 KiB) needs a new PT below G and a new PD + PT above. */
    /* One GiB lower still, so the top GiB of the arena stays never-touched
     * for kmalloc_fault_diagnosis. */
    uintptr_t top = mheap_.arena_end - (4 << 20);
    uintptr_t g = (top & ~((uintptr_t)PAGE_SIZE_1G - 1)) - PAGE_SIZE_1G;
    KTEST_ASSERT(t, g - (8 << 10) > __atomic_load_n(&mheap_.arena_used, __ATOMIC_RELAXED));
    uint8_t *p = (uint8_t *)(g - (8 << 10));
    const size_t len = 16 << 10;
    /* A PDPT, once made, stays (paging.c); make sure the one covering p
     * exists, through a page in another GiB under the same PML4 entry, so
     * the counts below see only what a failed commit must give back. */
    uintptr_t warm = g - 5 * PAGE_SIZE_1G; /* clear of paging_remap_flushes_tlb's GiB */
    KTEST_ASSERT(t, PML4_INDEX(warm) == PML4_INDEX((uintptr_t)p));
    KTEST_ASSERT(t, warm > __atomic_load_n(&mheap_.arena_used, __ATOMIC_RELAXED));
    KTEST_ASSERT(t, sys_commit((void *)warm, PAGE_SIZE_4K) == 0);
    sys_release((void *)warm, PAGE_SIZE_4K);
    kmem_port_stats(&ps);
    struct pmm_stats st0, st;
    mem_pmm_stats(&st0);
    int k;
    for (k = 0; k < 16; k++) {
        mem_fail_frames_after(k);
        int r = sys_commit(p, len);
        mem_fail_frames_after(-1);
        if (r == 0)
            break;
        struct kmem_port_stats now;
        kmem_port_stats(&now);
        mem_pmm_stats(&st);
        if (st.used_frames != st0.used_frames || now.table_frames != ps.table_frames ||
            now.data_frames != ps.data_frames)
            ktest_fail(t, "failed commit with %d frames left frames behind (pmm used %lu -> %lu, tables %lu -> %lu)",
                       k, st0.used_frames, st.used_frames, ps.table_frames, now.table_frames);
        for (size_t off = 0; off < len; off += 4096) {
            uint64_t leaf;
            /* and the diagnosis still says never committed */
            if (paging_probe((uintptr_t)p + off, &leaf) != PAGING_NEVER)
                ktest_fail(t, "failed commit with %d frames left +0x%lx mapped or marked", k, off);
        }
    }
    /* Success took 4 data frames plus the tables it had to create; there
     * must have been some, or the test did not exercise table failures. */
    struct kmem_port_stats after;
    kmem_port_stats(&after);
    KTEST_EXPECT(t, k > 4 && k < 16);
    KTEST_EXPECT_EQ(t, after.table_frames - ps.table_frames, (uint64_t)(k - 4));
    KTEST_EXPECT_EQ(t, after.data_frames - ps.data_frames, 4);
    if (k < 16) {
        for (size_t i = 0; i < len; i++)
            if (p[i] != 0) {
                ktest_fail(t, "committed memory not zero at +%lu", i);
                break;
            }
        kt_fill(p, len, 3);
        KTEST_EXPECT_EQ(t, kt_check_fill(p, len, 3), len);
        sys_release(p, len);
        kmem_port_stats(&ps);
        mem_pmm_stats(&st);
        KTEST_EXPECT_EQ(t, st.used_frames, st0.used_frames);
        uint64_t leaf;
        KTEST_EXPECT(t, paging_probe((uintptr_t)p, &leaf) == PAGING_RELEASED_VA);
        KTEST_EXPECT(t, paging_probe((uintptr_t)p + len - 1, &leaf) == PAGING_RELEASED_VA);
        /* A recommit that fails half way leaves the pages released. */
        for (int j = 1; j < k; j++) {
            mem_fail_frames_after(j);
            int r = sys_commit(p, len);
            mem_fail_frames_after(-1);
            KTEST_EXPECT_EQ(t, r, -1);
            KTEST_EXPECT(t, paging_probe((uintptr_t)p, &leaf) == PAGING_RELEASED_VA);
            KTEST_EXPECT(t, paging_probe((uintptr_t)p + len - 1, &leaf) == PAGING_RELEASED_VA);
        }
        mem_pmm_stats(&st);
        KTEST_EXPECT_EQ(t, st.used_frames, st0.used_frames);
        /* Released then committed again: zero again, not the old data
         * (the frames may well be the same ones). */
        KTEST_ASSERT(t, sys_commit(p, len) == 0);
        size_t nz = 0;
        for (size_t i = 0; i < len; i++)
            nz += p[i] != 0;
        KTEST_EXPECT_EQ(t, nz, 0);
        sys_release(p, len);
        mem_pmm_stats(&st);
        KTEST_EXPECT_EQ(t, st.used_frames, st0.used_frames);
    }

    /* Through kmalloc: no frame to be had means NULL, and it serves again. */
    kt_heap_quiesce();
    mem_fail_frames_after(0);
    void *q = kmalloc(8 << 20, 0);
    mem_fail_frames_after(-1);
    KTEST_EXPECT(t, q == NULL);
    kfree(q);
    q = kmalloc(8 << 20, 0);
    KTEST_EXPECT(t, q != NULL);
    kfree(q);
    kt_heap_quiesce();
    kt_expect_layers_agree(t, "after refused commits");
}

KTEST(kmalloc_commit_atomic)
{
    mheap_bg_exclude(true);
    commit_atomic(t);
    mheap_bg_exclude(false);
}

/* paging.c straight, at an arena address the heap never reaches: a page
 * unmapped and mapped again to another frame must show the new frame at
 * once (invlpg did its job), and the tables it needed go back. */
KTEST(paging_remap_flushes_tlb)
{
    /* Its own GiB (markers are per GiB once tables go): below the GiBs
     * kmalloc_commit_atomic and kmalloc_fault_diagnosis use. */
    uintptr_t va = ((mheap_.arena_end - (4 << 20)) & ~((uintptr_t)PAGE_SIZE_1G - 1)) -
                   4 * PAGE_SIZE_1G + 5 * PAGE_SIZE_4K;
    KTEST_ASSERT(t, va > __atomic_load_n(&mheap_.arena_used, __ATOMIC_RELAXED));
    uint64_t tables0 = paging_table_frames(), fa, fb, leaf;
    KTEST_ASSERT(t, mem_frame_alloc(&fa) == 0);
    KTEST_ASSERT(t, mem_frame_alloc(&fb) == 0);
    volatile uint64_t *a = PHYS_TO_VIRT(fa), *b = PHYS_TO_VIRT(fb), *v = (uint64_t *)va;
    a[0] = 0xaaaaaaaaaaaaaaaaull;
    b[0] = 0xbbbbbbbbbbbbbbbbull;

    KTEST_ASSERT(t, paging_map(va, fa, PAGING_HEAP_FLAGS) == 0);
    KTEST_EXPECT(t, paging_table_frames() > tables0);
    KTEST_EXPECT_EQ(t, v[0], 0xaaaaaaaaaaaaaaaaull); /* now in this CPU's TLB */
    v[1] = 42;
    KTEST_EXPECT_EQ(t, a[1], 42);                   /* same frame via the direct map */

    uint64_t data[PAGING_BATCH], tabs[2];
    unsigned nt;
    KTEST_EXPECT_EQ(t, paging_unmap_batch(va, 1, 1, data, tabs, &nt), 1);
    KTEST_EXPECT_EQ(t, data[0], fa);
    KTEST_EXPECT(t, paging_probe(va, &leaf) == PAGING_RELEASED_VA);
    for (unsigned i = 0; i < nt; i++)
        mem_frame_free(tabs[i]);
    /* PT and PD went back; a PDPT created for this test stays (paging.c) */
    uint64_t tables1 = paging_table_frames();
    KTEST_EXPECT(t, tables1 == tables0 || tables1 == tables0 + 1);

    KTEST_ASSERT(t, paging_map(va, fb, PAGING_HEAP_FLAGS) == 0);
    KTEST_EXPECT_EQ(t, v[0], 0xbbbbbbbbbbbbbbbbull); /* a stale TLB entry would read 0xaa.. */
    KTEST_EXPECT_EQ(t, paging_unmap_batch(va, 1, 1, data, tabs, &nt), 1);
    KTEST_EXPECT_EQ(t, data[0], fb);
    for (unsigned i = 0; i < nt; i++)
        mem_frame_free(tabs[i]);
    KTEST_EXPECT_EQ(t, paging_table_frames(), tables1);
    mem_frame_free(fa);
    mem_frame_free(fb);
}

KTEST(kmalloc_fault_diagnosis)
{
    kt_heap_quiesce();
    uint8_t *p = kmalloc(4 << 20, 0);
    KTEST_ASSERT(t, p != NULL);
    p[0] = 1;
    /* Heap pages are kernel data: present, writable, never executable,
     * not user-accessible. */
    uint64_t pte;
    KTEST_ASSERT(t, paging_probe((uintptr_t)p, &pte) == PAGING_MAPPED);
    KTEST_EXPECT(t, (pte & (PTE_P | PTE_W | PTE_NX | PTE_U | PTE_PS)) == (PTE_P | PTE_W | PTE_NX));
    const char *d = mem_pf_diagnose((uintptr_t)p + 4096, 0x2);
    KTEST_EXPECT(t, d != NULL && kt_contains(d, "protection fault of committed heap page"));
    kfree(p);
    kt_heap_quiesce();
    uint64_t leaf;
    KTEST_ASSERT(t, paging_probe((uintptr_t)p, &leaf) == PAGING_RELEASED_VA);
    d = mem_pf_diagnose((uintptr_t)p + 4096, 0x2);
    KTEST_EXPECT(t, d != NULL && kt_contains(d, "kmalloc arena: access to released page 0x"));
    /* Far above anything the heap grew into: never committed. */
    d = mem_pf_diagnose(mheap_.arena_end - 4096, 0);
    KTEST_EXPECT(t, d != NULL && kt_contains(d, "access to never-committed page"));
    d = mem_pf_diagnose(KMALLOC_ARENA_BASE + KMALLOC_ARENA_SIZE - 4096, 0);
    KTEST_EXPECT(t, d != NULL && kt_contains(d, "outside the region the heap reserved"));
    KTEST_EXPECT(t, mem_pf_diagnose(UNMAPPED_PROBE_ADDR, 0) == NULL);
}

/* ---- named: faults that must stop the kernel (kfree misuse: see
 * kmalloc_misuse_selftests.c) ---- */

KTEST_NAMED(released_page_selftest)
{
    kt_heap_quiesce();
    volatile uint8_t *p = kmalloc(4 << 20, 0);
    KTEST_ASSERT(t, p != NULL);
    p[8192] = 1;
    kfree((void *)p);
    kt_heap_quiesce();
    uint64_t leaf;
    KTEST_ASSERT(t, paging_probe((uintptr_t)p + 8192, &leaf) == PAGING_RELEASED_VA);
    printk("released_page_selftest: touching 0x%lx after free + trim\n",
           (uint64_t)(uintptr_t)(p + 8192));
    (void)p[8192]; /* must fault: "kmalloc arena: access to released page" */
    ktest_fail(t, "reading released page 0x%lx did not fault", (uint64_t)(uintptr_t)(p + 8192));
}

KTEST_NAMED(heap_nx_selftest)
{
    uint8_t *p = kmalloc(64, 0);
    KTEST_ASSERT(t, p != NULL);
    p[0] = 0xc3; /* ret: harmless if the heap were executable */
    printk("heap_nx_selftest: calling heap address 0x%lx\n", (uint64_t)(uintptr_t)p);
    void (*fn)(void) = (void (*)(void))(uintptr_t)p;
    fn(); /* must fault: "instruction fetch of committed heap page" */
    ktest_fail(t, "executing heap memory at 0x%lx did not fault", (uint64_t)(uintptr_t)p);
}

/* Memory comes back by itself (mm/mscavenge.c with the TSC clock): after
 * ~64 MiB are allocated and freed, with no kmalloc_trim, the timer
 * ticks' safe points age this CPU's caches and the shared ones and
 * release the free pages; within 2 s of ticks the frame allocator's free
 * count is back within 1% of its value before. Not in the default run
 * (it waits about 1.5 s): the kmem_idle_release boot case runs it. */
KTEST_NAMED(kmalloc_idle_release)
{
    kt_heap_quiesce();
    uint64_t before = kt_pmm_free_frames();
    size_t n = 0;
    for (; n < 3000; n++) {
        kt_ptrs[n] = kmalloc(n % 3 ? 24 + n * 13 % 4000 : 60000, 0);
        KTEST_ASSERT(t, kt_ptrs[n] != NULL);
        *(volatile uint8_t *)kt_ptrs[n] = 1;
    }
    uint64_t used = before - kt_pmm_free_frames();
    for (size_t i = 0; i < n; i++)
        kfree(kt_ptrs[i]);
    struct percpu *p = this_cpu();
    uint64_t t0 = __atomic_load_n(&p->timer_ticks, __ATOMIC_RELAXED), ticks = 0;
    uint64_t slack = before / 100, now = kt_pmm_free_frames();
    while (now + slack < before && ticks < 2 * LAPIC_TIMER_HZ) {
        cpu_sti_hlt(); /* the next tick: its safe point steps */
        if (tlb_gather_count())
            tlb_gather_flush(); /* what the tick released, interrupts off */
        ticks = __atomic_load_n(&p->timer_ticks, __ATOMIC_RELAXED) - t0;
        now = kt_pmm_free_frames();
    }
    printk("kmalloc_idle_release: %lu frames used, %lu of them back after %lu ticks (no trim); "
           "free %lu, before %lu\n",
           used, used - (before > now ? before - now : 0), ticks, now, before);
    KTEST_EXPECT(t, now + slack >= before);
    KTEST_EXPECT(t, kt_heap_valid() == 1);
}
