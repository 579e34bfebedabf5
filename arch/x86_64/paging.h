/*
 * paging.h: map and unmap 4 KiB pages of the kernel's upper half, on the
 * page tables the loader built (one PML4, shared by every CPU). The heap's
 * port (sys.c) is the user: commit maps fresh frames, release unmaps them.
 *
 * Data flow:
 *   paging_map(va, phys, flags): walk PML4 -> PDPT -> PD -> PT through the
 *     direct map; a missing table is taken from the frame source (zeroed)
 *     and counted in paging_table_frames; the leaf gets phys | flags | P.
 *   paging_unmap_batch(va, n, mark, ...): clear up to one PT's worth of
 *     leaves, invlpg each page on this CPU, take every table that became
 *     empty out (PT, then PD; PDPTs stay, see paging.c), and hand the data
 *     frames and freed table frames to the caller, who returns them to the
 *     frame allocator only after the TLBs are clean (SMP: the shootdown).
 *
 * Released-page markers: a cleared leaf does not become 0 but
 * PAGING_RELEASED (present bit clear, so the MMU ignores the rest); a page
 * mapped again keeps the bit (ignored in present entries too), so undoing
 * a failed commit (mark == 0) puts back exactly what was there. When a
 * table empties and is freed, the marker moves up to the entry that pointed
 * at it, and a table created under a marked entry starts with every entry
 * marked. paging_probe() reads this back for the page-fault diagnosis:
 * "released" is exact per 4 KiB page while its PT lives, and per 2 MiB /
 * 1 GiB region once the PT / PD was freed: a never-committed page next to
 * released ones may then be reported as released (never the reverse).
 *
 * Locking: one spinlock (interrupts off) around every table edit; frames
 * are taken from the source inside it (its own lock nests inside ours).
 * paging_probe takes no lock (it runs inside a page fault).
 */
#ifndef ARCH_X86_64_PAGING_H
#define ARCH_X86_64_PAGING_H

#include <stddef.h>
#include <stdint.h>
#include "memlayout.h"

/* Software bit 9 of a non-present entry: "something here was released". */
#define PAGING_RELEASED (1ULL << 9)

/* Leaf flags for heap pages: writable, never executable. */
#define PAGING_HEAP_FLAGS (PTE_W | PTE_NX)

/* Where page-table pages come from; alloc returns 0 and a frame address in
 * *phys, or -1 when memory is out. The frame's contents are not assumed. */
struct paging_frame_source {
    int (*alloc)(uint64_t *phys);
    void (*free)(uint64_t phys);
};

/* pre: pml4_phys is the live CR3 table; called once, before SMP. */
void paging_init(uint64_t pml4_phys, const struct paging_frame_source *src);

/* Map the 4 KiB page at va (upper half, page-aligned) to phys.
 * pre: va not mapped. Returns 0, or -1 if a table page could not be
 * allocated; then nothing was changed (no table was left behind). */
int paging_map(uint64_t va, uint64_t phys, uint64_t flags);

/* Most pages one paging_unmap_batch call handles: one PT. */
#define PAGING_BATCH 512

/*
 * Unmap pages starting at va, at most n and never past the end of the PT
 * holding va; mark != 0 leaves PAGING_RELEASED in the cleared entries, 0
 * (undoing a failed commit: those pages never were Ready) puts back what
 * each entry held before paging_map. Each data frame
 * is stored in data[] and each freed table page in tables[] (room for 2); *ntables receives their count. Pages
 * that were not mapped are skipped (data[i] = 0). Only this CPU's TLB is
 * flushed (marked spot in paging.c for the SMP shootdown). Returns the
 * number of pages the call covered (>= 1 for n >= 1).
 */
size_t paging_unmap_batch(uint64_t va, size_t n, int mark, uint64_t *data,
                          uint64_t *tables, unsigned *ntables);

/* Give the n pages at dst the frames mapped at src (leaf entries move,
 * flags included), leave src's leaves released, and store the frames dst
 * held in old[]: no table is created or freed, so it cannot fail for
 * memory. Only this CPU's TLB is flushed; the caller shoots down both
 * ranges before it frees old[]. Returns 0, or -1 (nothing changed) if a
 * page of either range is not mapped. */
int paging_move(uint64_t dst, uint64_t src, size_t n, uint64_t *old);

/* Meshing (mesh.c): the n pages at src map the frames mapped at dst,
 * keeping src's flags (writable, NX); the frames src held go to old[].
 * Like paging_move: no table is created or freed, only this CPU's TLB is
 * flushed, and the caller shoots src down before it frees old[]. Returns
 * 0, or -1 (nothing changed) if a page of either range is not mapped. */
int paging_alias(uint64_t dst, uint64_t src, size_t n, uint64_t *old);

/* Point the n mapped pages at va at the frame `zero`, read-only (a range
 * given back that must stay readable: sys_config.release_zero), storing
 * the frames they held in old[]. Like paging_move: no table is created or
 * freed, only this CPU's TLB is flushed, and the caller shoots the range
 * down before it frees old[]. Returns 0, or -1 (nothing changed) if a
 * page is not mapped. */
int paging_zero(uint64_t va, size_t n, uint64_t zero, uint64_t *old);

/* If va maps the frame `zero` (paging_zero), map phys there with flags
 * instead and return 1; else return 0 and change nothing. Only this CPU's
 * TLB is flushed. */
int paging_unzero(uint64_t va, uint64_t phys, uint64_t flags, uint64_t zero);

enum paging_state {
    PAGING_MAPPED,      /* leaf present */
    PAGING_RELEASED_VA, /* not present, marked released (here or above) */
    PAGING_NEVER,       /* not present, never marked */
};
/* Lock-free look-up for diagnosis; *leaf gets the present entry (or 0). */
enum paging_state paging_probe(uint64_t va, uint64_t *leaf);

/* Page-table frames this module holds now (tables it created). */
uint64_t paging_table_frames(void);

#endif
