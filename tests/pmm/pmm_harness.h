/*
 * pmm_harness.h: what the frame allocator's Check suites share.
 *
 * A test builds a struct pmm on a synthetic memory map. "Physical memory"
 * is one large MAP_NORESERVE mapping: physical address a lives at
 * arena + a, so the dmap_offset handed to pmm_init is the arena's address,
 * and only the frames the allocator or the test touch cost real memory.
 * The log callback captures lines so tests can assert on the messages.
 * An oracle answers from the map alone, independently of kernel/pmm/, whether a
 * frame may ever be handed out.
 */
#ifndef PMM_HARNESS_H
#define PMM_HARNESS_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "pmm/pmm.h"
#include "../lib/check_runner.h" /* check_suite: each file's suite from a table */

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define FRAME PMM_FRAME_SIZE

/* Map [0, span) of synthetic physical memory; returns the dmap offset. */
uint64_t arena_map(uint64_t span);
void arena_unmap(void);
/* Host pointer to a synthetic physical address. */
void *phys_ptr(uint64_t phys);

/* Log capture: pmm's callback, reset, and substring search. */
void cap_log(const char *line);
void log_reset(void);
int log_has(const char *needle);
int log_count(void);
const char *log_last(void);

/* Build p from rg (maps span bytes of arena); fails the test on error. */
void build(struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t span);
/* The same, then p's stats into *st: where most map tests start. */
void build_stats(struct pmm *p, const struct pmm_region *rg, size_t n, uint64_t span,
                 struct pmm_stats *st);

/* From the map alone: may the frame at phys ever be handed out? It must be
 * wholly covered by usable entries (or reclaimable ones once reclaimed)
 * and touched by no entry of any other type, and it is not frame 0. */
int oracle_allocatable(const struct pmm_region *rg, size_t n, uint64_t phys, int reclaimed);

/* Physical address of section i's metadata array (it lives in the
 * direct map, like everything pmm writes). */
uint64_t meta_phys(const struct pmm *p, uint32_t i);

/* Is phys one of the frames holding p's own metadata? */
int is_metadata_frame(const struct pmm *p, uint64_t phys);

/* Shadow of allocated frames, one byte per frame of the arena. */
struct shadow {
    unsigned char *used;
    uint64_t nframes;
    uint64_t count;
};
void shadow_init(struct shadow *sh, uint64_t span);
void shadow_free(struct shadow *sh);
/* Check a fresh allocation frame by frame (oracle, not metadata, not
 * already allocated) and mark it; fails the test otherwise. */
void shadow_take(struct shadow *sh, const struct pmm *p, const struct pmm_region *rg, size_t n,
                 uint64_t phys, uint64_t nframes, int reclaimed);
void shadow_give(struct shadow *sh, uint64_t phys, uint64_t nframes);
/* Allocate single frames until pmm_alloc fails, each one checked and
 * marked by shadow_take: sh->count grows by how many there were. */
void shadow_exhaust(struct shadow *sh, struct pmm *p, const struct pmm_region *rg, size_t n,
                    int reclaimed);
/* pmm_free every frame the shadow holds, one at a time (each free must
 * succeed), and unmark it. */
void shadow_give_all(struct shadow *sh, struct pmm *p);

/* p's free blocks per order are exactly want's: a table worked out by
 * hand, or the stats from before a sequence that gave everything back
 * (coalescing is complete). */
void expect_blocks(const struct pmm *p, const uint64_t want[PMM_MAX_ORDER + 1]);

/* Every invariant holds (pmm_validate finds nothing). */
#define ck_valid(p) ck_assert_msg(pmm_validate(p) == 0, "pmm_validate: %s", log_last())

/* Suites, one per file (check_suite where one test case holds them all). */
Suite *pmm_map_suite(void);
Suite *pmm_table_suite(void);
Suite *pmm_randmap_suite(void);
Suite *pmm_alloc_suite(void);
Suite *pmm_misuse_suite(void);
Suite *pmm_stress_suite(void);

#endif
