/*
 * kmalloc_selftests.c: the heap's API, proven at boot on the real port
 * (frames + page tables) rather than the host's mmap. Each test states
 * what a kernel user relies on (the heap against the frames and page
 * tables under it: kmalloc_frames_selftests.c):
 *
 *   kmalloc_classes          every size class: size, alignment, ksize, fill
 *                            patterns intact across neighbours, stats
 *   kmalloc_large            large objects up to ~3/4 of free memory
 *   kmalloc_api              krealloc, kmemalign, ksize, kzalloc, kcalloc
 *   kmalloc_random           30000 random kmalloc/krealloc/kmemalign/kfree
 *                            with patterns checked, trims in between
 *   arena_size_syntax        what arena= accepts and rejects
 * Named only (boot cases in tests/boot/kmem.cases):
 *   kmalloc_oom              MEM=128M: small and large allocations until
 *                            NULL, free, again; never a panic
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


static void classes_geometry(struct ktest *t)
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
        if (n > KT_NPTR)
            n = KT_NPTR;
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
            kt_ptrs[i] = kmalloc(size, 0);
            if (!kt_ptrs[i]) {
                ktest_fail(t, "class %u (%lu B): kmalloc #%lu returned NULL", c, size, i);
                n = i;
                break;
            }
            uintptr_t a = (uintptr_t)kt_ptrs[i];
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
                usable = ksize(kt_ptrs[i]);
            if (ksize(kt_ptrs[i]) != usable || usable < size)
                ktest_fail(t, "%lu-byte request: ksize %lu (first object: %lu)", size,
                           ksize(kt_ptrs[i]), usable);
            kt_fill(kt_ptrs[i], size, i * 67 + c);
        }
        unsigned sc = kt_class_of(&before, usable);
        KTEST_ASSERT(t, sc != 0);
        /* Every object still holds its own pattern: no overlap. */
        for (size_t i = 0; i < n; i++) {
            size_t bad = kt_check_fill(kt_ptrs[i], size, i * 67 + c);
            if (bad != size)
                ktest_fail(t, "class %u: object %lu (0x%lx) corrupted at byte %lu", c, i,
                           (uint64_t)(uintptr_t)kt_ptrs[i], bad);
        }
        /* A request one byte above the previous class lands in the same one. */
        size_t prev = c > 1 ? before.cls[c - 1].size : 0;
        void *q = kmalloc(prev + 1, 0);
        KTEST_EXPECT(t, q != NULL && ksize(q) == usable);
        kfree(q);
        for (size_t i = 0; i < n; i++)
            kfree(kt_ptrs[i]);
        /* counters are folded in at sweep/flush time (mm/mstats.c) */
        kmalloc_flush_cpu();
        kmalloc_stats(&after);
        KTEST_EXPECT_EQ(t, after.cls[sc].allocs - before.cls[sc].allocs, n + 1);
        KTEST_EXPECT_EQ(t, after.cls[sc].frees - before.cls[sc].frees, n + 1);
        KTEST_EXPECT_EQ(t, after.cls[sc].live, 0);
        before = after;
    }
    kt_heap_quiesce();
    KTEST_EXPECT(t, kt_heap_valid() == 1); /* 1: valid (mm/mvalid.c) */
}

/* Class geometry: a guarded sample's ksize is its request, not its
 * class's size (mm/mkfence.c), so sampling pauses while it is checked. */
KTEST(kmalloc_classes)
{
    unsigned kf = sys_config.kfence_ms;
    kmalloc_kfence_set(0);
    classes_geometry(t);
    kmalloc_kfence_set(kf);
}

KTEST(kmalloc_large)
{
    uint64_t free_bytes = kt_pmm_free_frames() * PAGE_SIZE_4K;
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
    kt_heap_quiesce();
}

KTEST(kmalloc_api)
{
    /* krealloc keeps the contents while it moves through classes and into
     * a large span and back. */
    const size_t steps[] = { 8, 100, 5000, 40000, 300000, 70, 1 };
    uint8_t *p = krealloc(NULL, 4, 0); /* NULL: acts as kmalloc */
    KTEST_ASSERT(t, p != NULL);
    kt_fill(p, 4, 99);
    size_t have = 4;
    for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        uint8_t *q = krealloc(p, steps[i], 0);
        KTEST_ASSERT(t, q != NULL);
        size_t keep = have < steps[i] ? have : steps[i];
        KTEST_EXPECT_EQ(t, kt_check_fill(q, keep, 99), keep);
        KTEST_EXPECT(t, ksize(q) >= steps[i]);
        kt_fill(q, steps[i], 99);
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
            kt_fill(a, n, align);
            KTEST_EXPECT_EQ(t, kt_check_fill(a, n, align), n);
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
 * byte): under TCG a full kt_fill of every large object would dominate the
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
        b[i] = kt_pattern(i, salt);
    b[n - 1] = kt_pattern(n - 1, salt);
}

static size_t check_obj(const void *p, size_t n, uintptr_t salt)
{
    const uint8_t *b = p;
    size_t st = stride_for(n);
    for (size_t i = 0; i < n; i += st)
        if (b[i] != kt_pattern(i, salt))
            return i;
    return b[n - 1] == kt_pattern(n - 1, salt) ? n : n - 1;
}

KTEST(kmalloc_random)
{
    enum { SLOTS = 1024, OPS = 30000 };
    static size_t len[SLOTS];
    rng_state = 0x9e3779b97f4a7c15ull;
    for (unsigned i = 0; i < SLOTS; i++)
        kt_ptrs[i] = NULL;
    struct frames_snap s0;
    kt_heap_quiesce();
    kt_snap(&s0);
    uint64_t peak = 0;
    for (unsigned op = 0; op < OPS; op++) {
        unsigned i = (unsigned)(rng() % SLOTS);
        if (kt_ptrs[i]) {
            size_t bad = check_obj(kt_ptrs[i], len[i], i + len[i]);
            if (bad != len[i]) {
                ktest_fail(t, "op %u: object 0x%lx (%lu B) corrupted at byte %lu", op,
                           (uint64_t)(uintptr_t)kt_ptrs[i], len[i], bad);
                return;
            }
            if (rng() % 4 == 0) {
                size_t n = 1 + rng() % 3000;
                void *q = krealloc(kt_ptrs[i], n, 0);
                KTEST_ASSERT(t, q != NULL);
                /* the kept prefix moved intact */
                size_t keep = n < len[i] ? n : len[i], st = stride_for(len[i]);
                for (size_t b = 0; b < keep; b += st)
                    if (((uint8_t *)q)[b] != kt_pattern(b, i + len[i])) {
                        ktest_fail(t, "op %u: krealloc %lu -> %lu lost byte %lu", op, len[i], n, b);
                        return;
                    }
                kt_ptrs[i] = q;
                len[i] = n;
                fill_obj(q, n, i + n);
            } else {
                kfree(kt_ptrs[i]);
                kt_ptrs[i] = NULL;
            }
            continue;
        }
        uint64_t r = rng();
        size_t n = r % 16 == 0 ? 32769 + r % (1 << 20)   /* large */
                 : r % 4 == 0 ? 1 + r % 32768          /* any class */
                 : 1 + r % 512;                         /* the busy small classes */
        void *p = r % 8 == 1 ? kmemalign((size_t)1 << (r >> 60 & 15), n, 0) : kmalloc(n, 0);
        KTEST_ASSERT(t, p != NULL);
        kt_ptrs[i] = p;
        len[i] = n;
        fill_obj(p, n, i + n);
        if (op % 5000 == 4999) {
            uint64_t used = s0.pmm_free - kt_pmm_free_frames();
            peak = used > peak ? used : peak;
            kmalloc_trim();
            kt_expect_layers_agree(t, "during random ops, after a trim");
        }
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        if (kt_ptrs[i]) {
            KTEST_EXPECT_EQ(t, check_obj(kt_ptrs[i], len[i], i + len[i]), len[i]);
            kfree(kt_ptrs[i]);
        }
    }
    kt_heap_quiesce();
    KTEST_EXPECT(t, kt_heap_valid() == 1);
    kt_expect_only_meta_stays(t, "random ops", &s0, peak);
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
    kt_heap_quiesce();
    struct frames_snap s0;
    kt_snap(&s0);
    uint64_t n1, n2;
    void *h = fill_heap(sizes, nsizes, &n1);
    uint64_t free_full = kt_pmm_free_frames();
    free_chain(h);
    h = fill_heap(sizes, nsizes, &n2);
    free_chain(h);
    kt_heap_quiesce();
    printk("kmalloc_oom: %s: %lu objects until NULL (%lu frames left), %lu after freeing them\n",
           what, n1, free_full, n2);
    if (n1 == 0 || n2 < n1 - n1 / 10)
        ktest_fail(t, "%s: %lu objects, then only %lu after freeing them", what, n1, n2);
    /* out of memory means the frames really ran out (a 1 MiB object
     * needs 256 frames at once) */
    if (free_full > s0.pmm_free / 20)
        ktest_fail(t, "%s: kmalloc returned NULL with %lu of %lu frames still free", what,
                   free_full, s0.pmm_free);
    KTEST_EXPECT(t, kt_heap_valid() == 1);
    kt_expect_only_meta_stays(t, what, &s0, s0.pmm_free - free_full);
}

KTEST_NAMED(kmalloc_oom)
{
    static const size_t small[] = { 24, 256, 1000, 4096, 20000 };
    static const size_t large[] = { 1 << 20 };
    oom_round(t, "small objects", small, 5);
    oom_round(t, "1 MiB objects", large, 1);
    kt_expect_layers_agree(t, "after the OOM rounds");
}
