/*
 * pmm_bench.c: how fast the frame allocator is on the host (make
 * bench-pmm). Each line is one workload on a freshly built allocator,
 * in nanoseconds per operation (one pmm_alloc or one pmm_free), best of
 * five runs so that noise from the other jobs on the machine counts less.
 * The numbers are for comparing versions of kernel/pmm/ on one machine; the
 * correctness suites never look at time.
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "pmm/pmm.h"
#include "../lib/mono_time.h"
#include "../lib/xorshift.h"

#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

static unsigned char *arena;
static uint64_t span;
static uint64_t *held;

static const struct pmm_region map256[] = {
    {0, 0xa0000, PMM_USABLE, 0},
    {1 * MiB, 255 * MiB, PMM_USABLE, 0},
    {2 * MiB, 2 * MiB, PMM_KERNEL, 0},
    {16 * MiB, 8 * MiB, PMM_RECLAIMABLE, 0},
};

static void fresh(struct pmm *p)
{
    if (pmm_init(p, map256, 4, (uint64_t)(uintptr_t)arena, NULL) != PMM_OK)
        abort();
}

static uint64_t rng = 88172645463325252ull;

/* Returns operations done; the time is measured by the caller. */
static uint64_t w_pairs(struct pmm *p)
{
    uint64_t a;
    for (int i = 0; i < 1000000; i++) {
        if (pmm_alloc(p, 1, 1, &a) || pmm_free(p, a, 1))
            abort();
    }
    return 2000000;
}

static uint64_t w_drain(struct pmm *p)
{
    uint64_t n = 0, a;
    while (pmm_alloc(p, 1, 1, &a) == PMM_OK)
        held[n++] = a;
    for (uint64_t i = 0; i < n; i++)
        if (pmm_free(p, held[(i * 7919) % n], 1)) /* scattered order: merges at every level */
            abort();
    return 2 * n;
}

static uint64_t w_2mib(struct pmm *p)
{
    uint64_t n = 0, a;
    for (int r = 0; r < 2000; r++) {
        uint64_t k = 0;
        while (pmm_alloc(p, 512, 512, &a) == PMM_OK)
            held[k++] = a;
        for (uint64_t i = 0; i < k; i++)
            if (pmm_free(p, held[i], 512))
                abort();
        n += 2 * k;
    }
    return n;
}

static uint64_t w_mixed(struct pmm *p)
{
    static uint64_t phys[4096], cnt[4096];
    uint64_t live = 0, ops = 0;
    for (int i = 0; i < 1000000; i++) {
        if (live < 4096 && (live == 0 || xorshift64(&rng) % 2)) {
            uint64_t n = 1 + xorshift64(&rng) % 8, a;
            if (pmm_alloc(p, n, 1, &a) == PMM_OK) {
                phys[live] = a;
                cnt[live++] = n;
            }
        } else {
            uint64_t j = xorshift64(&rng) % live;
            if (pmm_free(p, phys[j], cnt[j]))
                abort();
            phys[j] = phys[--live];
            cnt[j] = cnt[live];
        }
        ops++;
    }
    while (live) {
        live--;
        if (pmm_free(p, phys[live], cnt[live]))
            abort();
    }
    return ops;
}

static void bench(const char *name, uint64_t (*w)(struct pmm *))
{
    double best = 1e300;
    uint64_t ops = 0;
    for (int r = 0; r < 5; r++) {
        struct pmm p;
        fresh(&p);
        double t0 = mono_seconds();
        ops = w(&p);
        double t = (mono_seconds() - t0) * 1e9;
        if (pmm_validate(&p) != 0)
            abort();
        if (t / (double)ops < best)
            best = t / (double)ops;
    }
    printf("  %-44s %8.1f ns/op  (%llu ops)\n", name, best, (unsigned long long)ops);
}

static void bench_init(const char *name, const struct pmm_region *rg, size_t n)
{
    double best = 1e300;
    struct pmm p;
    for (int r = 0; r < 5; r++) {
        double t0 = mono_seconds();
        if (pmm_init(&p, rg, n, (uint64_t)(uintptr_t)arena, NULL) != PMM_OK)
            abort();
        double t = (mono_seconds() - t0) * 1e9;
        if (t < best)
            best = t;
    }
    struct pmm_stats st;
    pmm_stats(&p, &st);
    printf("  %-44s %8.2f ms      (%llu frames)\n", name, best / 1e6, (unsigned long long)st.managed_frames);
}

int main(void)
{
    span = 8 * GiB;
    arena = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    held = malloc(sizeof *held * (256 * MiB / 4096));
    if (arena == MAP_FAILED || !held)
        return 1;
    printf("pmm_bench (not a correctness test; best of 5):\n");
    const struct pmm_region pc[] = {
        {0x1000, 0x9e000, PMM_USABLE, 0},
        {1 * MiB, 3 * GiB - 1 * MiB, PMM_USABLE, 0},
        {3 * GiB, 1 * GiB, PMM_RESERVED, 0},
        {4 * GiB, 4 * GiB, PMM_USABLE, 0},
    };
    bench_init("pmm_init, 256 MiB map", map256, 4);
    bench_init("pmm_init, 7 GiB map", pc, 4);
    bench("1 frame alloc+free, same frame", w_pairs);
    bench("drain 1-frame allocs, free scattered", w_drain);
    bench("2 MiB aligned blocks, drain and free", w_2mib);
    bench("random 1..8 frames, up to 4096 live", w_mixed);
    return 0;
}
