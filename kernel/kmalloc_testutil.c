/*
 * kmalloc_testutil.c: what the kernel's heap self-tests share: fill
 * patterns, the scratch pointer array, snapshots of the frames the heap
 * and its port hold, and the checks that the layers agree (core committed
 * bytes, port frames, frame allocator). Used by kmalloc_selftests.c and
 * kmalloc_frames_selftests.c; the tests run one at a time.
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
#include "../arch/x86_64/paging.h"

int kt_contains(const char *s, const char *sub)
{
    for (; *s; s++) {
        size_t i = 0;
        while (sub[i] && s[i] == sub[i])
            i++;
        if (!sub[i])
            return 1;
    }
    return 0;
}

/* Scratch pointer array for the tests (they run one at a time). */
void *kt_ptrs[KT_NPTR];

uint8_t kt_pattern(uintptr_t i, uintptr_t salt)
{
    return (uint8_t)((i * 131u + salt * 7u + 0x5a) ^ (salt >> 3));
}

void kt_fill(void *p, size_t n, uintptr_t salt)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = kt_pattern(i, salt);
}

/* Index of the first byte that differs from the pattern, or n. */
size_t kt_check_fill(const void *p, size_t n, uintptr_t salt)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != kt_pattern(i, salt))
            return i;
    return n;
}

uint64_t kt_pmm_free_frames(void)
{
    struct pmm_stats st;
    mem_pmm_stats(&st);
    return st.free_frames;
}

/* The layers are read one after the other: a release step in between
 * (a timer tick's kmalloc_safepoint, mm/mscavenge.c) would count pages
 * in one and not the other, so steps wait while we read. */
void kt_snap(struct frames_snap *s)
{
    struct kmalloc_stats ks;
    struct kmem_port_stats ps;
    mheap_bg_exclude(true);
    kmalloc_stats(&ks);
    kmem_port_stats(&ps);
    s->pmm_free = kt_pmm_free_frames();
    mheap_bg_exclude(false);
    s->meta = ks.meta_sys / PAGE_SIZE_4K;
    s->tables = ps.table_frames;
}

/* The core's separately committed metadata arrays (struct mheap: m_spans,
 * m_chunks, m_sum[PA_MAX_LEVELS], m_fix, m_fixblk, m_caches). */
#define META_AREAS (5 + PA_MAX_LEVELS)

/* After free + trim, only what the heap keeps by design may be missing
 * from the frame allocator: metadata it grew (page map, span records,
 * bitmaps; fixalloc never shrinks) and page tables above released
 * ranges. `peak` is the most frames the run held; the metadata must stay
 * a small fraction of it. */
void kt_expect_only_meta_stays(struct ktest *t, const char *what,
                                   const struct frames_snap *a, uint64_t peak)
{
    struct frames_snap b;
    kt_snap(&b);
    /* Signed: trim may also give metadata back, so any delta can be < 0. */
    int64_t missing = (int64_t)a->pmm_free - (int64_t)b.pmm_free;
    int64_t meta = (int64_t)b.meta - (int64_t)a->meta;
    int64_t tables = (int64_t)b.tables - (int64_t)a->tables;
    if (missing != meta + tables)
        ktest_fail(t, "%s: %ld frames missing after free + trim, but metadata changed by %ld and page tables by %ld",
                   what, missing, meta, tables);
    if (meta > 0 && (uint64_t)meta * 64 > peak)
        ktest_fail(t, "%s: heap metadata grew by %ld frames for a %lu-frame peak", what, meta, peak);
    /* The tables that stay map the metadata that stays: one PT per 2 MiB
     * of it, plus a PT and a PD at the ends of each separately committed
     * metadata area (page map, page-allocator bitmaps and summaries,
     * fixalloc area and block table, mcaches: META_AREAS). Derived from the metadata
     * size, not a constant: at MEM=16G the heap keeps 17 MiB of metadata
     * and rightly 16 table frames. */
    int64_t table_bound = (int64_t)(b.meta / 512) + 2 * META_AREAS;
    if (tables > table_bound)
        ktest_fail(t, "%s: %ld page-table frames stayed after trim (bound %ld for %lu metadata frames)",
                   what, tables, table_bound, b.meta);
}

/* Everything cached goes back and every free page to the frame allocator. */
void kt_heap_quiesce(void)
{
    kmalloc_flush_cpu();
    kmalloc_trim();
}

/* Index of the class whose objects are `usable` bytes, 0 if none. */
unsigned kt_class_of(const struct kmalloc_stats *st, size_t usable)
{
    for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++)
        if (st->cls[c].size == usable)
            return c;
    return 0;
}

/* committed (core) == data frames (port); used (pmm) == data + tables +
 * frames the CPUs still hold for a TLB shootdown (arch/x86_64/tlb.h). */
void kt_expect_layers_agree(struct ktest *t, const char *when)
{
    struct kmalloc_stats ks;
    struct kmem_port_stats ps;
    struct pmm_stats st;
    mheap_bg_exclude(true); /* as in kt_snap */
    kmalloc_stats(&ks);
    kmem_port_stats(&ps);
    mem_pmm_stats(&st);
    mheap_bg_exclude(false);
    if (ks.committed != ps.data_frames * PAGE_SIZE_4K)
        ktest_fail(t, "%s: kmalloc committed %lu B, port maps %lu frames (%lu B)", when,
                   ks.committed, ps.data_frames, (uint64_t)(ps.data_frames * PAGE_SIZE_4K));
    if (st.used_frames != ps.data_frames + ps.table_frames + ps.gathered_frames + ps.zero_frames)
        ktest_fail(
            t, "%s: pmm used %lu frames, port holds %lu data + %lu table + %lu gathered + %lu zero",
            when, st.used_frames, ps.data_frames, ps.table_frames, ps.gathered_frames,
            ps.zero_frames);
    /* One PT per 2 MiB touched plus PDs/PDPTs: a few per scattered range. */
    if (ps.table_frames > ps.data_frames / 256 + 48)
        ktest_fail(t, "%s: %lu page-table frames for %lu data frames", when,
                   ps.table_frames, ps.data_frames);
}

int kt_heap_valid(void)
{
    mheap_bg_exclude(true);
    int v = mheap_valid();
    mheap_bg_exclude(false);
    return v;
}
