/*
 * smp_kmalloc_testutil.h: what the SMP heap self-tests share
 * (smp_kmalloc_testutil.c): fill patterns, per-CPU accounting of what a
 * test allocated, the first failure any CPU saw, allocation from the
 * timer interrupt while a test runs, quiescing every CPU's caches, and the
 * single-producer/single-consumer rings that hand objects between CPUs.
 * Used by smp_kmalloc_selftests.c and smp_kmalloc_stress_selftests.c.
 */
#ifndef KERNEL_SMP_KMALLOC_TESTUTIL_H
#define KERNEL_SMP_KMALLOC_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "../mm/kmalloc.h"
#include "../arch/x86_64/percpu.h"

static inline uint64_t rng(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static inline uint64_t pat(uint64_t seed, size_t i) { return seed ^ (i * 0x9e3779b97f4a7c15ull); }

/* Fill p (objects over 4 KiB sparsely); 0 if p still holds that fill. */
void smk_fill(void *p, size_t size, uint64_t seed);
int smk_check(const void *p, size_t size, uint64_t seed);

/* ---- accounting: allocations made during a test, per class ---- */
struct counts {
    uint64_t allocs[KMALLOC_NUM_CLASSES]; /* small objects, by size class */
    uint64_t large;                       /* large objects */
    uint64_t frees;                       /* everything freed (any class) */
    uint64_t ops;
};
void smk_count_alloc(struct counts *c, size_t size);
/* Test code of CPU i writes smk_test_counts[i]; its timer interrupt
 * writes smk_irq_counts[i]. */
extern struct counts smk_test_counts[MAX_CPUS], smk_irq_counts[MAX_CPUS];

/* The first failure seen on any CPU (reported by the test on CPU 0). */
extern char smk_fail_msg[160];
extern int smk_fail_flag; /* atomic */
__attribute__((format(printf, 1, 2))) void smk_record_failure(const char *fmt, ...);

/* Timer-interrupt allocation while a test runs; stop returns how many
 * objects the interrupts allocated. */
void smk_irq_alloc_start(void);
uint64_t smk_irq_alloc_stop(void);
/* Every CPU flushes its caches, then kmalloc_trim. */
void smk_heap_quiesce_all(void);
/* Snapshot the stats and start interrupt allocation; stop it, quiesce,
 * and fail the test with the first recorded failure. */
void smk_begin(struct kmalloc_stats *before);
void smk_end(struct ktest *t);
/* kmalloc_stats deltas against what the test and the interrupts did. */
void smk_check_accounting(struct ktest *t, const struct kmalloc_stats *before);

/* ---- cross-CPU handoff rings ---- */
#define RING 64
struct handoff {
    void *p;
    uint32_t size;
    uint32_t pad;
    uint64_t seed;
};
struct ring {
    uint32_t head; /* atomic: written by the producer (release) */
    uint32_t tail; /* atomic: written by the consumer (release) */
    struct handoff slot[RING];
} __attribute__((aligned(64)));
/* ring[i]: produced by CPU i, consumed by CPU (i + 1) % n */
extern struct ring smk_rings[MAX_CPUS];
extern unsigned smk_producers_done; /* atomic */
int smk_ring_put(struct ring *r, void *p, size_t size, uint64_t seed);
int smk_ring_take(struct ring *r, struct handoff *out);
void smk_free_received(unsigned cpu, const struct handoff *h);
/* Allocate a size-byte object, fill it from *seed and hand it to the
 * next CPU, consuming what this CPU receives while its ring is full; 0
 * (recorded) if kmalloc failed. Consume: free what cpu received so far. */
int smk_produce(unsigned cpu, size_t size, uint64_t *seed);
void smk_consume(unsigned cpu);
/* Drain what cpu receives until every producer is done and it is empty. */
void smk_drain_until_all_done(unsigned cpu, unsigned n);

#endif
