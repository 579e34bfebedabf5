/*
 * mem.h: the kernel's memory, brought up in one call and reported at the
 * end of a run.
 *
 *   boot memory map --pmm_init--> frame allocator (kernel/pmm/, under
 *   pmm_lock) --mem_frame_alloc--> paging.c (page tables) and sys.c (heap
 *   frames) --> kmalloc (mm/, the arena at KMALLOC_ARENA_BASE).
 *
 * After mem_init, kernel code that needs dynamic memory calls kmalloc
 * (mm/kmalloc.h); frames are for page tables and the heap's port only.
 */
#ifndef KERNEL_MEM_H
#define KERNEL_MEM_H

#include <stdint.h>

struct boot_info;
struct pmm_stats;

/* Default heap arena (address space only; arena= on the command line). */
#define KMEM_ARENA_DEFAULT ((uint64_t)64 << 30)
/* Bounds for arena= are the core's (SYS_ARENA_MIN/MAX in mm/sys.h). With
 * the core's metadata (about 1/16 of the arena) the largest also fits the
 * 16 TiB window. */

/* arena= syntax: decimal digits with an optional K, M, G or T suffix (any
 * case), nothing else. Returns 0 and the byte count, or -1 (also on
 * overflow). */
int mem_parse_size(const char *s, uint64_t *out);

/* Frame allocator from the boot map, reclaim of boot-services memory,
 * paging on the live tables, kmalloc_init, the page-fault diagnosis.
 * Panics if the heap cannot be set up. */
void mem_init(const struct boot_info *bi);

/* One 4 KiB frame (contents undefined), under the frame allocator's lock
 * with interrupts off. Returns 0, or -1 when no frame is left. */
int mem_frame_alloc(uint64_t *phys);
/* Give back a frame from mem_frame_alloc; a bad frame panics. */
void mem_frame_free(uint64_t phys);
void mem_pmm_stats(struct pmm_stats *st);

/* Test hook: after `n` more successful frame allocations, every one fails
 * until called again with a negative n (the default: never fail). */
void mem_fail_frames_after(long n);

/* The page-fault diagnosis for addr (a #PF error code in error): a line
 * for addresses in the arena window, NULL elsewhere. Reads only; returns
 * a static buffer. Registered with idt_set_pf_hook by mem_init. */
const char *mem_pf_diagnose(uint64_t addr, uint64_t error);

/* The end-of-run report: kmalloc_dump(), the port's counters and the
 * frame allocator's summary; with heapmap=on, kmalloc_heapmap() last. */
void mem_report(void);

/* The heap port's own counters (arch/x86_64/sys.c). */
struct kmem_port_stats {
    uint64_t region_base, region_size; /* what sys_reserve handed out */
    uint64_t data_frames;     /* frames mapped for heap data + metadata now */
    uint64_t table_frames;    /* page-table frames paging.c holds now */
    uint64_t gathered_frames; /* unmapped data and table frames the CPUs
                                 hold until their next shootdown (tlb.h) */
    uint64_t zero_frames;     /* 1 once kmalloc_init ran: the read-only
                                 zero frame of release_zero (sys.c) */
    uint64_t commit_calls, commit_failures;
    uint64_t release_calls, released_pages;
    uint64_t moved_pages;     /* pages krealloc moved by page tables */
};
void kmem_port_stats(struct kmem_port_stats *st);

#endif
