/*
 * kmalloc_selftests.c: the heap, proven at boot on the real port (frames +
 * page tables) rather than the host's mmap. Each test states what a kernel
 * user relies on:
 *
 *   kmalloc_classes          every size class: size, alignment, ksize, fill
 *                            patterns intact across neighbours, stats
 *   kmalloc_large            large objects up to ~3/4 of free memory
 *   kmalloc_api              krealloc, kmemalign, ksize, kzalloc, kcalloc
 *   kmalloc_frames_agree     the core's committed bytes == the port's data
 *                            frames; the frame allocator's used frames ==
 *                            data + page-table frames
 *   kmalloc_realloc_moves_pages  a big krealloc that cannot grow in place
 *                            moves page-table entries; contents intact,
 *                            frames accounted
 *   kmalloc_trim_returns     free everything + kmalloc_trim gives the frames
 *                            back to the frame allocator
 *   kmalloc_random           30000 random kmalloc/krealloc/kmemalign/kfree
 *                            with patterns checked, trims in between
 *   kmalloc_commit_atomic    frames running out at every step of a commit
 *                            that needs new page tables: -1, nothing left
 *                            mapped, no frame lost; kmalloc returns NULL
 *   arena_size_syntax        what arena= accepts and rejects
 *   paging_remap_flushes_tlb unmap + map to another frame shows the new
 *                            frame at once; the tables go back
 *   kmalloc_fault_diagnosis  heap pages are W+NX; the page-fault diagnosis
 *                            for released, never-committed and foreign
 *                            addresses
 * Named only (boot cases in tests/boot.mk):
 *   kmalloc_oom              MEM=128M: small and large allocations until
 *                            NULL, free, again; never a panic
 *   released_page_selftest, heap_nx_selftest
 *                            end in the fault they name (kfree misuse:
 *                            kmalloc_misuse_selftests.c)
 */
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "mem.h"
#include "printk.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"
#include "../mm/pmm/pmm.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/paging.h"

static int contains(const char *s, const char *sub)
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
#define NPTR 4096
static void *ptrs[NPTR];

static uint8_t pattern(uintptr_t i, uintptr_t salt)
{
    return (uint8_t)((i * 131u + salt * 7u + 0x5a) ^ (salt >> 3));
}

static void fill(void *p, size_t n, uintptr_t salt)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = pattern(i, salt);
}

/* Index of the first byte that differs from the pattern, or n. */
static size_t check_fill(const void *p, size_t n, uintptr_t salt)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern(i, salt))
            return i;
    return n;
}

static uint64_t pmm_free_frames(void)
{
    struct pmm_stats st;
    mem_pmm_stats(&st);
    return st.free_frames;
}

/* Frames as the two layers see them, to compare before and after. */
struct frames_snap {
    uint64_t pmm_free;   /* frame allocator's free frames */
    uint64_t meta;       /* heap metadata frames (never shrink) */
    uint64_t tables;     /* page-table frames */
};

static void snap(struct frames_snap *s)
{
    struct kmalloc_stats ks;
    struct kmem_port_stats ps;
    kmalloc_stats(&ks);
    kmem_port_stats(&ps);
    s->pmm_free = pmm_free_frames();
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
static void expect_only_meta_stays(struct ktest *t, const char *what,
                                   const struct frames_snap *a, uint64_t peak)
{
    struct frames_snap b;
    snap(&b);
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
static void heap_quiesce(void)
{
    kmalloc_flush_cpu();
    kmalloc_trim();
}

/* Index of the class whose objects are `usable` bytes, 0 if none. */
static unsigned class_of(const struct kmalloc_stats *st, size_t usable)
{
    for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++)
        if (st->cls[c].size == usable)
            return c;
    return 0;
}

KTEST(kmalloc_classes)
{
    struct kmalloc_stats before, after;
    kmalloc_flush_cpu();
    kmalloc_stats(&before);
    for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++) {
        size_t size = before.cls[c].size;
        KTEST_ASSERT(t, size > 0 && size <= KMALLOC_MAX_SMALL);
        /* enough objects to need a second span for most classes */
        size_t n = (256 * 1024) / size;
        if (n < 8)
            n = 8;
        if (n > NPTR)
            n = NPTR;
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
            ptrs[i] = kmalloc(size, 0);
            if (!ptrs[i]) {
                ktest_fail(t, "class %u (%lu B): kmalloc #%lu returned NULL", c, size, i);
                n = i;
                break;
            }
            uintptr_t a = (uintptr_t)ptrs[i];
            if (a < KMALLOC_ARENA_BASE || a >= KMALLOC_ARENA_BASE + KMALLOC_ARENA_SIZE)
                ktest_fail(t, "class %u: 0x%lx outside the arena window", c, a);
            /* kmalloc.h: 16-byte alignment from 16 bytes up, natural
             * alignment for powers of two up to 8 KiB. */
            if (size >= 16 && (a & 15))
                ktest_fail(t, "%lu-byte object 0x%lx not 16-byte aligned", size, a);
            if ((size & (size - 1)) == 0 && size <= 8192 && (a & (size - 1)))
                ktest_fail(t, "%lu-byte object 0x%lx not aligned to its size", size, a);
            /* The request is served by one class (Go's table, except that
             * 17..24-byte requests skip the 24-byte class for alignment). */
            if (i == 0)
                usable = ksize(ptrs[i]);
            if (ksize(ptrs[i]) != usable || usable < size)
                ktest_fail(t, "%lu-byte request: ksize %lu (first object: %lu)", size,
                           ksize(ptrs[i]), usable);
            fill(ptrs[i], size, i * 67 + c);
        }
        unsigned sc = class_of(&before, usable);
        KTEST_ASSERT(t, sc != 0);
        /* Every object still holds its own pattern: no overlap. */
        for (size_t i = 0; i < n; i++) {
            size_t bad = check_fill(ptrs[i], size, i * 67 + c);
            if (bad != size)
                ktest_fail(t, "class %u: object %lu (0x%lx) corrupted at byte %lu", c, i,
                           (uint64_t)(uintptr_t)ptrs[i], bad);
        }
        /* A request one byte above the previous class lands in the same one. */
        size_t prev = c > 1 ? before.cls[c - 1].size : 0;
        void *q = kmalloc(prev + 1, 0);
        KTEST_EXPECT(t, q != NULL && ksize(q) == usable);
        kfree(q);
        for (size_t i = 0; i < n; i++)
            kfree(ptrs[i]);
        /* counters are folded in at sweep/flush time (mm/mstats.c) */
        kmalloc_flush_cpu();
        kmalloc_stats(&after);
        KTEST_EXPECT_EQ(t, after.cls[sc].allocs - before.cls[sc].allocs, n + 1);
        KTEST_EXPECT_EQ(t, after.cls[sc].frees - before.cls[sc].frees, n + 1);
        KTEST_EXPECT_EQ(t, after.cls[sc].live, 0);
        before = after;
    }
    heap_quiesce();
    KTEST_EXPECT(t, mheap_valid() == 1); /* 1: valid (mm/mstats.c) */
}

KTEST(kmalloc_large)
{
    uint64_t free_bytes = pmm_free_frames() * PAGE_SIZE_4K;
    /* "a few hundred MiB" when the machine has them; 3/4 of what is free
     * otherwise (page tables and metadata need the rest). */
    size_t biggest = (size_t)(free_bytes / 4 * 3) & ~(size_t)((1 << 20) - 1);
    if (biggest > ((size_t)384 << 20))
        biggest = (size_t)384 << 20;
    KTEST_ASSERT(t, biggest >= ((size_t)32 << 20));
    printk("kmalloc_large: objects up to %lu MiB (%lu MiB free)\n", biggest >> 20, free_bytes >> 20);
    const size_t sizes[] = { 32769, 40000, 65536, 1 << 20, (1 << 20) + 1, 5 << 20,
                             16 << 20, 64 << 20, biggest };
    for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        uint8_t *p = kmalloc(n, 0);
        if (!p) {
            ktest_fail(t, "kmalloc(%lu) returned NULL with %lu MiB free", n, free_bytes >> 20);
            continue;
        }
        KTEST_EXPECT(t, ksize(p) >= n);
        KTEST_EXPECT_EQ(t, (uintptr_t)p & 8191, 0); /* large objects are span-aligned */
        /* One stamp per 4 KiB page, plus both ends: every page is backed. */
        for (size_t off = 0; off < n; off += 4096)
            *(uint64_t *)(p + (off & ~(size_t)7)) = off ^ k;
        p[n - 1] = (uint8_t)k;
        for (size_t off = 0; off < n; off += 4096) {
            if (*(uint64_t *)(p + (off & ~(size_t)7)) != (off ^ k)) {
                ktest_fail(t, "kmalloc(%lu): page at +0x%lx lost its stamp", n, off);
                break;
            }
        }
        KTEST_EXPECT_EQ(t, p[n - 1], (uint8_t)k);
        kfree(p);
    }
    heap_quiesce();
}

KTEST(kmalloc_api)
{
    /* krealloc keeps the contents while it moves through classes and into
     * a large span and back. */
    const size_t steps[] = { 8, 100, 5000, 40000, 300000, 70, 1 };
    uint8_t *p = krealloc(NULL, 4, 0); /* NULL: acts as kmalloc */
    KTEST_ASSERT(t, p != NULL);
    fill(p, 4, 99);
    size_t have = 4;
    for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        uint8_t *q = krealloc(p, steps[i], 0);
        KTEST_ASSERT(t, q != NULL);
        size_t keep = have < steps[i] ? have : steps[i];
        KTEST_EXPECT_EQ(t, check_fill(q, keep, 99), keep);
        KTEST_EXPECT(t, ksize(q) >= steps[i]);
        fill(q, steps[i], 99);
        p = q;
        have = steps[i];
    }
    /* size 0 keeps the object */
    KTEST_EXPECT(t, krealloc(p, 0, 0) == p);
    /* growing within the class stays in place */
    size_t cls = ksize(p);
    KTEST_EXPECT(t, krealloc(p, cls, 0) == p);
    kfree(p);
    KTEST_EXPECT_EQ(t, ksize(NULL), 0);
    kfree(NULL);

    /* kmemalign: every power of two up to 64 KiB, odd sizes. */
    for (size_t align = 1; align <= 65536; align <<= 1) {
        for (size_t n = 1; n < 100000; n = n * 7 + 3) {
            uint8_t *a = kmemalign(align, n, 0);
            if (!a) {
                ktest_fail(t, "kmemalign(%lu, %lu) returned NULL", align, n);
                continue;
            }
            if ((uintptr_t)a & (align - 1))
                ktest_fail(t, "kmemalign(%lu, %lu) = 0x%lx misaligned", align, n,
                           (uint64_t)(uintptr_t)a);
            KTEST_EXPECT(t, ksize(a) >= n);
            fill(a, n, align);
            KTEST_EXPECT_EQ(t, check_fill(a, n, align), n);
            kfree(a);
        }
    }
    KTEST_EXPECT(t, kmemalign(48, 64, 0) == NULL);
    KTEST_EXPECT(t, kmemalign(0, 64, 0) == NULL);

    /* kzalloc: zero even where a dirty object was just freed. */
    for (size_t n = 8; n <= 262144; n *= 4) {
        uint8_t *d = kmalloc(n, 0);
        KTEST_ASSERT(t, d != NULL);
        for (size_t i = 0; i < n; i++)
            d[i] = 0xa5;
        kfree(d);
        uint8_t *z = kzalloc(n, 0);
        KTEST_ASSERT(t, z != NULL);
        size_t usable = ksize(z), nz = 0;
        for (size_t i = 0; i < usable; i++)
            nz += z[i] != 0;
        if (nz)
            ktest_fail(t, "kzalloc(%lu): %lu non-zero bytes", n, nz);
        kfree(z);
    }
    uint64_t *c = kcalloc(1000, 8, 0);
    KTEST_ASSERT(t, c != NULL);
    uint64_t orv = 0;
    for (int i = 0; i < 1000; i++)
        orv |= c[i];
    KTEST_EXPECT_EQ(t, orv, 0);
    kfree(c);
    KTEST_EXPECT(t, kcalloc((size_t)1 << 33, (size_t)1 << 33, 0) == NULL);
    KTEST_EXPECT(t, kmalloc((size_t)-1 / 2, 0) == NULL);   /* larger than the arena */
}

/* committed (core) == data frames (port); used (pmm) == data + tables +
 * frames the CPUs still hold for a TLB shootdown (arch/x86_64/tlb.h). */
static void expect_layers_agree(struct ktest *t, const char *when)
{
    struct kmalloc_stats ks;
    struct kmem_port_stats ps;
    struct pmm_stats st;
    kmalloc_stats(&ks);
    kmem_port_stats(&ps);
    mem_pmm_stats(&st);
    if (ks.committed != ps.data_frames * PAGE_SIZE_4K)
        ktest_fail(t, "%s: kmalloc committed %lu B, port maps %lu frames (%lu B)", when,
                   ks.committed, ps.data_frames, (uint64_t)(ps.data_frames * PAGE_SIZE_4K));
    if (st.used_frames != ps.data_frames + ps.table_frames + ps.gathered_frames)
        ktest_fail(t, "%s: pmm used %lu frames, port holds %lu data + %lu table + %lu gathered", when,
                   st.used_frames, ps.data_frames, ps.table_frames, ps.gathered_frames);
    /* One PT per 2 MiB touched plus PDs/PDPTs: a few per scattered range. */
    if (ps.table_frames > ps.data_frames / 256 + 48)
        ktest_fail(t, "%s: %lu page-table frames for %lu data frames", when,
                   ps.table_frames, ps.data_frames);
}

KTEST(kmalloc_frames_agree)
{
    expect_layers_agree(t, "at start");
    size_t n = 0;
    for (; n < 2000; n++) {
        ptrs[n] = kmalloc(16 + (n * 97) % 20000, 0);
        KTEST_ASSERT(t, ptrs[n] != NULL);
    }
    void *big = kmalloc(12 << 20, 0);
    KTEST_ASSERT(t, big != NULL);
    expect_layers_agree(t, "with 2000 small + 12 MiB live");
    for (size_t i = 0; i < n; i += 2)
        kfree(ptrs[i]);
    kfree(big);
    expect_layers_agree(t, "after freeing half");
    for (size_t i = 1; i < n; i += 2)
        kfree(ptrs[i]);
    heap_quiesce();
    expect_layers_agree(t, "after trim");
}

/* krealloc of a big object that cannot grow in place (its neighbour is
 * live) moves page-table entries, not bytes: the contents arrive, the
 * port counts the moved pages, the old pages are released, and the
 * layers still agree frame for frame. */
KTEST(kmalloc_realloc_moves_pages)
{
    heap_quiesce();
    enum { OLD = 512 << 10, NEW = 2 << 20 };
    uint8_t *a = kmalloc(OLD, 0), *b = kmalloc(64 << 10, 0);
    KTEST_ASSERT(t, a != NULL && b != NULL);
    for (size_t i = 0; i < OLD; i += 64)
        a[i] = pattern(i, 7);
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
        if (c[i] != pattern(i, 7)) {
            ktest_fail(t, "byte %lu lost in the move", (uint64_t)i);
            break;
        }
    c[NEW - 1] = 1; /* the grown part is mapped */
    expect_layers_agree(t, "after a moving krealloc");
    kfree(b);
    kfree(c);
    heap_quiesce();
    expect_layers_agree(t, "after trim");
}

KTEST(kmalloc_trim_returns)
{
    heap_quiesce();
    struct frames_snap s0;
    snap(&s0);
    size_t n = 0;
    for (; n < 3000; n++) {
        ptrs[n] = kmalloc(n % 3 ? 24 + n * 13 % 4000 : 60000, 0);
        KTEST_ASSERT(t, ptrs[n] != NULL);
        *(volatile uint8_t *)ptrs[n] = 1;
    }
    uint64_t used = s0.pmm_free - pmm_free_frames();
    /* ~60 KiB x 1000 + ~2 KiB x 2000 of objects: at least 60 MiB of frames */
    if (used < (60ull << 20) / PAGE_SIZE_4K)
        ktest_fail(t, "allocating ~64 MiB took only %lu frames", used);
    for (size_t i = 0; i < n; i++)
        kfree(ptrs[i]);
    heap_quiesce();
    struct kmalloc_stats ks;
    kmalloc_stats(&ks);
    KTEST_EXPECT_EQ(t, ks.heap_free, 0);
    KTEST_EXPECT_EQ(t, ks.heap_inuse, 0);
    KTEST_EXPECT(t, mheap_valid() == 1);
    expect_only_meta_stays(t, "trim", &s0, used);
}

/* The port straight: commits that need new page tables, with the frame
 * supply cut after k frames for every k until one succeeds. */
KTEST(kmalloc_commit_atomic)
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
        fill(p, len, 3);
        KTEST_EXPECT_EQ(t, check_fill(p, len, 3), len);
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
    heap_quiesce();
    mem_fail_frames_after(0);
    void *q = kmalloc(8 << 20, 0);
    mem_fail_frames_after(-1);
    KTEST_EXPECT(t, q == NULL);
    kfree(q);
    q = kmalloc(8 << 20, 0);
    KTEST_EXPECT(t, q != NULL);
    kfree(q);
    heap_quiesce();
    expect_layers_agree(t, "after refused commits");
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
    heap_quiesce();
    uint8_t *p = kmalloc(4 << 20, 0);
    KTEST_ASSERT(t, p != NULL);
    p[0] = 1;
    /* Heap pages are kernel data: present, writable, never executable,
     * not user-accessible. */
    uint64_t pte;
    KTEST_ASSERT(t, paging_probe((uintptr_t)p, &pte) == PAGING_MAPPED);
    KTEST_EXPECT(t, (pte & (PTE_P | PTE_W | PTE_NX | PTE_U | PTE_PS)) == (PTE_P | PTE_W | PTE_NX));
    const char *d = mem_pf_diagnose((uintptr_t)p + 4096, 0x2);
    KTEST_EXPECT(t, d != NULL && contains(d, "protection fault of committed heap page"));
    kfree(p);
    heap_quiesce();
    uint64_t leaf;
    KTEST_ASSERT(t, paging_probe((uintptr_t)p, &leaf) == PAGING_RELEASED_VA);
    d = mem_pf_diagnose((uintptr_t)p + 4096, 0x2);
    KTEST_EXPECT(t, d != NULL && contains(d, "kmalloc arena: access to released page 0x"));
    /* Far above anything the heap grew into: never committed. */
    d = mem_pf_diagnose(mheap_.arena_end - 4096, 0);
    KTEST_EXPECT(t, d != NULL && contains(d, "access to never-committed page"));
    d = mem_pf_diagnose(KMALLOC_ARENA_BASE + KMALLOC_ARENA_SIZE - 4096, 0);
    KTEST_EXPECT(t, d != NULL && contains(d, "outside the region the heap reserved"));
    KTEST_EXPECT(t, mem_pf_diagnose(UNMAPPED_PROBE_ADDR, 0) == NULL);
}

/* Random mix of sizes (small, large, aligned, resized) with every live
 * object carrying its own pattern; trims now and then so pages go
 * through release and commit again underneath live objects. */
static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Objects above 64 KiB get their pattern every 61st byte (plus the last
 * byte): under TCG a full fill of every large object would dominate the
 * boot; any object of 61 bytes or more lying inside it still collides
 * with a patterned byte. */
static size_t stride_for(size_t n)
{
    return n > 65536 ? 61 : 1;
}

static void fill_obj(void *p, size_t n, uintptr_t salt)
{
    uint8_t *b = p;
    size_t st = stride_for(n);
    for (size_t i = 0; i < n; i += st)
        b[i] = pattern(i, salt);
    b[n - 1] = pattern(n - 1, salt);
}

static size_t check_obj(const void *p, size_t n, uintptr_t salt)
{
    const uint8_t *b = p;
    size_t st = stride_for(n);
    for (size_t i = 0; i < n; i += st)
        if (b[i] != pattern(i, salt))
            return i;
    return b[n - 1] == pattern(n - 1, salt) ? n : n - 1;
}

KTEST(kmalloc_random)
{
    enum { SLOTS = 1024, OPS = 30000 };
    static size_t len[SLOTS];
    rng_state = 0x9e3779b97f4a7c15ull;
    for (unsigned i = 0; i < SLOTS; i++)
        ptrs[i] = NULL;
    struct frames_snap s0;
    heap_quiesce();
    snap(&s0);
    uint64_t peak = 0;
    for (unsigned op = 0; op < OPS; op++) {
        unsigned i = (unsigned)(rng() % SLOTS);
        if (ptrs[i]) {
            size_t bad = check_obj(ptrs[i], len[i], i + len[i]);
            if (bad != len[i]) {
                ktest_fail(t, "op %u: object 0x%lx (%lu B) corrupted at byte %lu", op,
                           (uint64_t)(uintptr_t)ptrs[i], len[i], bad);
                return;
            }
            if (rng() % 4 == 0) {
                size_t n = 1 + rng() % 3000;
                void *q = krealloc(ptrs[i], n, 0);
                KTEST_ASSERT(t, q != NULL);
                /* the kept prefix moved intact */
                size_t keep = n < len[i] ? n : len[i], st = stride_for(len[i]);
                for (size_t b = 0; b < keep; b += st)
                    if (((uint8_t *)q)[b] != pattern(b, i + len[i])) {
                        ktest_fail(t, "op %u: krealloc %lu -> %lu lost byte %lu", op, len[i], n, b);
                        return;
                    }
                ptrs[i] = q;
                len[i] = n;
                fill_obj(q, n, i + n);
            } else {
                kfree(ptrs[i]);
                ptrs[i] = NULL;
            }
            continue;
        }
        uint64_t r = rng();
        size_t n = r % 16 == 0 ? 32769 + r % (1 << 20)   /* large */
                 : r % 4 == 0 ? 1 + r % 32768          /* any class */
                 : 1 + r % 512;                         /* the busy small classes */
        void *p = r % 8 == 1 ? kmemalign((size_t)1 << (r >> 60 & 15), n, 0) : kmalloc(n, 0);
        KTEST_ASSERT(t, p != NULL);
        ptrs[i] = p;
        len[i] = n;
        fill_obj(p, n, i + n);
        if (op % 5000 == 4999) {
            uint64_t used = s0.pmm_free - pmm_free_frames();
            peak = used > peak ? used : peak;
            kmalloc_trim();
            expect_layers_agree(t, "during random ops, after a trim");
        }
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        if (ptrs[i]) {
            KTEST_EXPECT_EQ(t, check_obj(ptrs[i], len[i], i + len[i]), len[i]);
            kfree(ptrs[i]);
        }
    }
    heap_quiesce();
    KTEST_EXPECT(t, mheap_valid() == 1);
    expect_only_meta_stays(t, "random ops", &s0, peak);
}

KTEST(arena_size_syntax)
{
    static const struct { const char *in; int ok; uint64_t want; } rows[] = {
        { "64G", 1, 64ull << 30 },        { "512M", 1, 512ull << 20 },
        { "4k", 1, 4096 },                { "1T", 1, 1ull << 40 },
        { "8t", 1, 8ull << 40 },          { "123", 1, 123 },
        { "0", 1, 0 },                    { "18446744073709551615", 1, ~0ull },
        { "", 0, 0 },                     { "G", 0, 0 },
        { "12X", 0, 0 },                  { "64GB", 0, 0 },
        { " 64G", 0, 0 },                 { "-1G", 0, 0 },
        { "18446744073709551616", 0, 0 }, { "16777216T", 0, 0 },
    };
    for (unsigned i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t v = 0xdead;
        int r = mem_parse_size(rows[i].in, &v);
        if (rows[i].ok && (r != 0 || v != rows[i].want))
            ktest_fail(t, "'%s': got %d, 0x%lx; want 0x%lx", rows[i].in, r, v, rows[i].want);
        if (!rows[i].ok && r == 0)
            ktest_fail(t, "'%s' accepted as 0x%lx", rows[i].in, v);
    }
    uint64_t v;
    KTEST_EXPECT(t, mem_parse_size(NULL, &v) != 0);
}

/* ---- named: out of memory (boot case with MEM=128M) ---- */

/* Allocate objects of `size` (cycling through sizes[] if n > 1) until
 * kmalloc returns NULL, chaining them through their first word. */
static void *fill_heap(const size_t *sizes, unsigned nsizes, uint64_t *count)
{
    void *head = NULL;
    uint64_t c = 0;
    for (;;) {
        void **o = kmalloc(sizes[c % nsizes], 0);
        if (!o)
            break;
        *o = head;
        head = o;
        c++;
    }
    *count = c;
    return head;
}

static void free_chain(void *head)
{
    while (head) {
        void *next = *(void **)head;
        kfree(head);
        head = next;
    }
}

static void oom_round(struct ktest *t, const char *what, const size_t *sizes, unsigned nsizes)
{
    heap_quiesce();
    struct frames_snap s0;
    snap(&s0);
    uint64_t n1, n2;
    void *h = fill_heap(sizes, nsizes, &n1);
    uint64_t free_full = pmm_free_frames();
    free_chain(h);
    h = fill_heap(sizes, nsizes, &n2);
    free_chain(h);
    heap_quiesce();
    printk("kmalloc_oom: %s: %lu objects until NULL (%lu frames left), %lu after freeing them\n",
           what, n1, free_full, n2);
    if (n1 == 0 || n2 < n1 - n1 / 10)
        ktest_fail(t, "%s: %lu objects, then only %lu after freeing them", what, n1, n2);
    /* out of memory means the frames really ran out (a 1 MiB object
     * needs 256 frames at once) */
    if (free_full > s0.pmm_free / 20)
        ktest_fail(t, "%s: kmalloc returned NULL with %lu of %lu frames still free", what,
                   free_full, s0.pmm_free);
    KTEST_EXPECT(t, mheap_valid() == 1);
    expect_only_meta_stays(t, what, &s0, s0.pmm_free - free_full);
}

KTEST_NAMED(kmalloc_oom)
{
    static const size_t small[] = { 24, 256, 1000, 4096, 20000 };
    static const size_t large[] = { 1 << 20 };
    oom_round(t, "small objects", small, 5);
    oom_round(t, "1 MiB objects", large, 1);
    expect_layers_agree(t, "after the OOM rounds");
}

/* ---- named: faults that must stop the kernel (kfree misuse: see
 * kmalloc_misuse_selftests.c) ---- */

KTEST_NAMED(released_page_selftest)
{
    heap_quiesce();
    volatile uint8_t *p = kmalloc(4 << 20, 0);
    KTEST_ASSERT(t, p != NULL);
    p[8192] = 1;
    kfree((void *)p);
    heap_quiesce();
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
