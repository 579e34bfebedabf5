/*
 * pmm_harness.c: the synthetic physical memory, log capture, map oracle
 * and allocation shadow the frame allocator's suites share (see
 * pmm_harness.h for how they fit together).
 */
#define _DEFAULT_SOURCE
#include "pmm_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static unsigned char *arena;
static uint64_t arena_span;

uint64_t arena_map(uint64_t span)
{
    void *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ck_assert_msg(m != MAP_FAILED, "mmap of %llu bytes of synthetic physical memory failed",
                  (unsigned long long)span);
    arena = m;
    arena_span = span;
    return (uint64_t)(uintptr_t)arena;
}

void arena_unmap(void)
{
    if (arena)
        munmap(arena, arena_span);
    arena = NULL;
}

void *phys_ptr(uint64_t phys)
{
    ck_assert_msg(phys < arena_span, "physical address 0x%llx outside the arena", (unsigned long long)phys);
    return arena + phys;
}

#define LOG_LINES 256
static char lines[LOG_LINES][200];
static int nlines;

void cap_log(const char *line)
{
    if (getenv("PMM_VERBOSE"))
        printf("%s\n", line);
    if (nlines == LOG_LINES) {
        memmove(lines[0], lines[1], sizeof lines - sizeof lines[0]);
        nlines--;
    }
    snprintf(lines[nlines++], sizeof lines[0], "%s", line);
}

void log_reset(void) { nlines = 0; }

int log_has(const char *needle)
{
    for (int i = 0; i < nlines; i++)
        if (strstr(lines[i], needle))
            return 1;
    return 0;
}

int log_count(void) { return nlines; }

const char *log_last(void) { return nlines ? lines[nlines - 1] : "(no log line)"; }

void build(struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t span)
{
    uint64_t dmap = arena_map(span);
    log_reset();
    ck_assert_int_eq(pmm_init(p, rg, n, dmap, cap_log), PMM_OK);
    ck_valid(p);
}

void expect_blocks(const struct pmm *p, const uint64_t want[PMM_MAX_ORDER + 1])
{
    struct pmm_stats st;
    pmm_stats(p, &st);
    for (int k = 0; k <= PMM_MAX_ORDER; k++)
        ck_assert_msg(st.free_blocks[k] == want[k], "order %d: %llu free blocks, want %llu", k,
                      (unsigned long long)st.free_blocks[k], (unsigned long long)want[k]);
}

void build_stats(struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t span,
                 struct pmm_stats *st)
{
    build(p, rg, n, span);
    pmm_stats(p, st);
}

static int allocatable_type(uint32_t t, int reclaimed)
{
    return t == PMM_USABLE || (reclaimed && t == PMM_RECLAIMABLE);
}

int oracle_allocatable(const struct pmm_region *rg, size_t n, uint64_t phys, int reclaimed)
{
    uint64_t a = phys, b = phys + FRAME;
    if (phys == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t s = rg[i].base, e = rg[i].base + rg[i].length;
        if (rg[i].length && !allocatable_type(rg[i].type, reclaimed) && s < b && e > a)
            return 0;
    }
    /* Walk the union of allocatable entries across [a, b). */
    uint64_t cur = a;
    while (cur < b) {
        uint64_t best = cur;
        for (size_t i = 0; i < n; i++) {
            uint64_t s = rg[i].base, e = rg[i].base + rg[i].length;
            if (allocatable_type(rg[i].type, reclaimed) && s <= cur && e > best)
                best = e;
        }
        if (best == cur)
            return 0;
        cur = best;
    }
    return 1;
}

uint64_t meta_phys(const struct pmm *p, uint32_t i)
{
    return (uint64_t)(uintptr_t)p->section[i].meta - p->dmap_offset;
}

int is_metadata_frame(const struct pmm *p, uint64_t phys)
{
    for (uint32_t i = 0; i < p->nsections; i++) {
        uint64_t m = meta_phys(p, i);
        uint64_t bytes = (p->section[i].npfn + FRAME - 1) / FRAME * FRAME;
        if (phys >= m && phys < m + bytes)
            return 1;
    }
    return 0;
}

void shadow_init(struct shadow *sh, uint64_t span)
{
    sh->nframes = span / FRAME;
    sh->used = calloc(sh->nframes, 1);
    sh->count = 0;
    ck_assert_ptr_nonnull(sh->used);
}

void shadow_free(struct shadow *sh)
{
    free(sh->used);
    sh->used = NULL;
}

void shadow_take(struct shadow *sh, const struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t phys,
                 uint64_t nframes, int reclaimed)
{
    ck_assert_msg(phys % FRAME == 0, "allocation 0x%llx not frame aligned", (unsigned long long)phys);
    for (uint64_t f = 0; f < nframes; f++) {
        uint64_t a = phys + f * FRAME;
        ck_assert_msg(a / FRAME < sh->nframes, "frame 0x%llx outside the map", (unsigned long long)a);
        ck_assert_msg(oracle_allocatable(rg, n, a, reclaimed), "frame 0x%llx is not free memory in the map",
                      (unsigned long long)a);
        ck_assert_msg(!is_metadata_frame(p, a), "frame 0x%llx holds pmm metadata", (unsigned long long)a);
        ck_assert_msg(!sh->used[a / FRAME], "frame 0x%llx handed out twice", (unsigned long long)a);
        sh->used[a / FRAME] = 1;
    }
    sh->count += nframes;
}

void shadow_give(struct shadow *sh, uint64_t phys, uint64_t nframes)
{
    for (uint64_t f = 0; f < nframes; f++) {
        ck_assert(sh->used[phys / FRAME + f]);
        sh->used[phys / FRAME + f] = 0;
    }
    sh->count -= nframes;
}

void shadow_exhaust(struct shadow *sh, struct pmm *p, const struct pmm_region *rg, size_t n,
                    int reclaimed)
{
    uint64_t a;
    while (pmm_alloc(p, 1, 1, &a) == PMM_OK)
        shadow_take(sh, p, rg, n, a, 1, reclaimed);
}

void shadow_give_all(struct shadow *sh, struct pmm *p)
{
    for (uint64_t f = 0; f < sh->nframes; f++)
        if (sh->used[f]) {
            ck_assert_int_eq(pmm_free(p, f * FRAME, 1), PMM_OK);
            shadow_give(sh, f * FRAME, 1);
        }
}
