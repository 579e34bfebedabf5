/*
 * kmalloc_testutil.h: helpers the kernel's heap self-tests share
 * (kmalloc_testutil.c).
 */
#ifndef KERNEL_KMALLOC_TESTUTIL_H
#define KERNEL_KMALLOC_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ktest.h"
#include "../mm/kmalloc.h"

/* Scratch pointer array for the tests (they run one at a time). */
#define KT_NPTR 4096
extern void *kt_ptrs[KT_NPTR];

int kt_contains(const char *s, const char *sub);
/* Byte i of the pattern for salt; a pattern of n bytes; the index of its
 * first wrong byte, or n. */
uint8_t kt_pattern(uintptr_t i, uintptr_t salt);
void kt_fill(void *p, size_t n, uintptr_t salt);
size_t kt_check_fill(const void *p, size_t n, uintptr_t salt);
uint64_t kt_pmm_free_frames(void);

/* Frames as the two layers see them, to compare before and after. */
struct frames_snap {
    uint64_t pmm_free;   /* frame allocator's free frames */
    uint64_t meta;       /* heap metadata frames (never shrink) */
    uint64_t tables;     /* page-table frames */
};
void kt_snap(struct frames_snap *s);
/* After free + trim only metadata and page tables may stay (see .c). */
void kt_expect_only_meta_stays(struct ktest *t, const char *what,
                               const struct frames_snap *a, uint64_t peak);
/* Everything cached goes back and every free page to the frame allocator. */
void kt_heap_quiesce(void);
/* Index of the class whose objects are `usable` bytes, 0 if none. */
unsigned kt_class_of(const struct kmalloc_stats *st, size_t usable);
/* mheap_valid with background steps kept out: a release step of this
 * CPU's timer tick, or paced meshing in an idle CPU's loop (woken by any
 * IPI), between its walk and its counters would fail it. */
int kt_heap_valid(void);
/* committed (core) == data frames (port); used (pmm) == data + tables +
 * frames held for a TLB shootdown. */
void kt_expect_layers_agree(struct ktest *t, const char *when);

#endif
