/*
 * kmalloc_misuse_selftests.c: bad frees that must stop the kernel with one
 * line "kmalloc: <fault>: <pointer>", wherever the freed object sits.
 * Each is a named test, run by its own boot case (tests/boot/kmem.cases), which
 * checks the panic line, the backtrace through kfree and the test's own
 * frame. Since a freed object goes into the freeing CPU's magazine and
 * from there to a shared transfer cache, its span, or (large objects) a
 * CPU's cache of freed spans, each place gets a case:
 *
 *   double_free_selftest          in this CPU's magazine
 *   double_free_other_cpu_selftest  in another CPU's magazine (CPU 1 freed
 *                                 it; the BSP frees it again)
 *   double_free_transfer_selftest in the class's transfer cache (pushed
 *                                 there by the frees after it)
 *   double_free_flushed_selftest  back in its span after kmalloc_flush_cpu
 *   double_free_trimmed_selftest  after kmalloc_trim emptied every cache
 *   double_free_large_selftest    a large object in this CPU's large cache
 *   invalid_free_selftest         an interior pointer
 *   misaligned_free_selftest      a pointer one byte into an object
 *   foreign_free_selftest         kernel data, not the heap
 *   trimmed_chunk_free_selftest   a large object freed, then its chunk's
 *                                 page maps given back by kmalloc_trim
 *                                 (they read as zero: "invalid free", as
 *                                 the record that told a double free
 *                                 apart is gone), below a chunk in use
 * A neighbour keeps each span in use, so the fault is about the object
 * and not about a span that went back to the heap.
 */
#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "printk.h"
#include "../mm/kmalloc.h"
#include "../arch/x86_64/smp.h"

static void *victim; /* the object the test frees twice */

static void must_not_return(struct ktest *t, const char *what)
{
    ktest_fail(t, "kfree of 0x%lx (%s) returned", (uint64_t)(uintptr_t)victim, what);
}

/* Free a `size`-byte object, let `between` (if any) move it on, and free
 * it again: must panic "kmalloc: double free: 0x...". A neighbour allocated
 * first keeps the span in use. Not inlined, so the backtrace runs through
 * here into the test's own frame. */
static __attribute__((noinline)) void free_twice(struct ktest *t, size_t size,
                                                 void (*between)(void), const char *where)
{
    void *keep = kmalloc(size, 0);
    victim = kmalloc(size, 0);
    KTEST_ASSERT(t, keep != NULL && victim != NULL);
    kfree(victim);
    if (between != NULL)
        between();
    kfree(victim);
    must_not_return(t, where);
}

KTEST_NAMED(double_free_selftest)
{
    free_twice(t, 64, NULL, "in this CPU's magazine");
    must_not_return(t, "in this CPU's magazine"); /* keeps this frame in the backtrace */
}

static void free_on_cpu1(unsigned cpu, void *arg)
{
    if (cpu == 1)
        kfree(arg);
}

KTEST_NAMED(double_free_other_cpu_selftest)
{
    KTEST_ASSERT(t, smp_cpus_online() >= 2);
    void *keep = kmalloc(64, 0);
    victim = kmalloc(64, 0);
    KTEST_ASSERT(t, keep != NULL && victim != NULL);
    smp_run_all(free_on_cpu1, victim); /* now in CPU 1's magazine */
    kfree(victim);
    must_not_return(t, "in CPU 1's magazine");
}

/* 64-byte objects: magazines hold 128 and spill their oldest 64 to the
 * transfer cache (mm/internal.h: MAG_BYTES, MAG_MAX); freeing 200 more
 * after the victim pushes it out of this CPU's magazine. */
KTEST_NAMED(double_free_transfer_selftest)
{
    static void *more[200];
    void *keep = kmalloc(64, 0);
    victim = kmalloc(64, 0);
    KTEST_ASSERT(t, keep != NULL && victim != NULL);
    for (int i = 0; i < 200; i++) {
        more[i] = kmalloc(64, 0);
        KTEST_ASSERT(t, more[i] != NULL);
    }
    kfree(victim);
    for (int i = 0; i < 200; i++)
        kfree(more[i]);
    kfree(victim);
    must_not_return(t, "in the transfer cache");
}

KTEST_NAMED(double_free_flushed_selftest)
{
    free_twice(t, 64, kmalloc_flush_cpu, "back in its span after a flush");
    must_not_return(t, "back in its span after a flush");
}

KTEST_NAMED(double_free_trimmed_selftest)
{
    free_twice(t, 64, kmalloc_trim, "after kmalloc_trim");
    must_not_return(t, "after kmalloc_trim");
}

KTEST_NAMED(double_free_large_selftest)
{
    /* the first kfree puts it in this CPU's large cache */
    free_twice(t, 100000, NULL, "a large object in this CPU's large cache");
    must_not_return(t, "a large object in this CPU's large cache");
}

KTEST_NAMED(invalid_free_selftest)
{
    uint8_t *p = kmalloc(64, 0);
    KTEST_ASSERT(t, p != NULL);
    victim = p + 16;
    kfree(victim); /* must panic: "kmalloc: invalid free: 0x..." */
    must_not_return(t, "an interior pointer");
}

KTEST_NAMED(misaligned_free_selftest)
{
    uint8_t *p = kmalloc(1000, 0);
    KTEST_ASSERT(t, p != NULL);
    victim = p + 1;
    kfree(victim);
    must_not_return(t, "a misaligned pointer");
}

static uint64_t not_the_heap[4];

KTEST_NAMED(foreign_free_selftest)
{
    victim = &not_the_heap[1];
    kfree(victim);
    must_not_return(t, "kernel data");
}

/* 24 objects of 1 MiB fill six 4 MiB chunks; all but the last are freed
 * and the trim gives back the page maps of the chunks left empty. */
KTEST_NAMED(trimmed_chunk_free_selftest)
{
    enum { N = 24 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = kmalloc(1 << 20, 0);
        KTEST_ASSERT(t, p[i] != NULL);
    }
    for (int i = 0; i < N - 1; i++)
        kfree(p[i]);
    kmalloc_trim();
    victim = p[N / 2];
    kfree(victim); /* must panic: "kmalloc: invalid free: 0x..." */
    must_not_return(t, "in a chunk whose page maps trim gave back");
}
