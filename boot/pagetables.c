/*
 * pagetables.c: build the kernel's first 4-level page tables.
 *
 * All table pages come from one pool of LOADER-type frames the loader
 * allocated up front (pt_pages_needed tells it how many), so the tables
 * survive ExitBootServices and the kernel keeps using them. Three parts,
 * addresses from arch/x86_64/memlayout.h:
 *   1. the direct map: every physical byte up to direct_size at
 *      DIRECT_MAP_BASE + phys, 2 MiB pages, writable, NX;
 *   2. the kernel image at its link address, 4 KiB pages, permissions
 *      from each ELF segment (text R-X, rodata R-- NX, data/bss RW- NX);
 *   3. an identity map of the loader's own image, executable, so the
 *      instructions after the CR3 write keep fetching; the kernel drops it.
 * The loader runs with firmware paging (identity), so a table's physical
 * address is also the pointer the loader writes through.
 */
#include "loader.h"
#include "../arch/x86_64/memlayout.h"

#define ENTRIES 512

static uint64_t *pool_page(struct pt_pool *pool)
{
    if (pool->used == pool->pages)
        return NULL;
    uint64_t *p = (uint64_t *)(uintptr_t)(pool->base + pool->used * 4096);
    pool->used++;
    for (int i = 0; i < ENTRIES; i++)
        p[i] = 0;
    return p;
}

/* Next-level table under entry e, created on demand. Upper levels are
 * P|W without NX so the leaf alone decides the permissions. */
static uint64_t *next_table(struct pt_pool *pool, uint64_t *e)
{
    if (*e & PTE_P)
        return (uint64_t *)(uintptr_t)(*e & PTE_ADDR_MASK);
    uint64_t *t = pool_page(pool);
    if (t)
        *e = (uint64_t)(uintptr_t)t | PTE_P | PTE_W;
    return t;
}

static int map_one(struct pt_pool *pool, uint64_t *pml4, uint64_t va, uint64_t pa, uint64_t flags, int huge)
{
    uint64_t *pdpt = next_table(pool, &pml4[PML4_INDEX(va)]);
    if (!pdpt)
        return -1;
    uint64_t *pd = next_table(pool, &pdpt[PDPT_INDEX(va)]);
    if (!pd)
        return -1;
    if (huge) {
        pd[PD_INDEX(va)] = pa | flags | PTE_PS;
        return 0;
    }
    uint64_t *pt = next_table(pool, &pd[PD_INDEX(va)]);
    if (!pt)
        return -1;
    pt[PT_INDEX(va)] = pa | flags;
    return 0;
}

uint64_t pt_pages_needed(uint64_t direct_size, uint64_t kernel_size)
{
    uint64_t gib = (direct_size + PAGE_SIZE_1G - 1) / PAGE_SIZE_1G;
    uint64_t direct = gib + (gib + 511) / 512;             /* PDs + PDPTs */
    uint64_t kernel = 2 + (kernel_size / PAGE_SIZE_2M) + 2; /* PDPT, PD, PTs (+ a boundary) */
    uint64_t ident = 2 * 3;                                 /* PDPT, PD for up to two 1 GiB spans */
    return 1 + direct + kernel + ident + 4;
}

/* Returns the PML4's physical address, or 0 when the pool ran out. */
uint64_t pt_build(struct pt_pool *pool, const struct kernel_image *img, uint64_t direct_size,
                  uint64_t ident_base, uint64_t ident_size, int use_nx)
{
    uint64_t nx = use_nx ? PTE_NX : 0;
    uint64_t *pml4 = pool_page(pool);
    if (!pml4)
        return 0;

    for (uint64_t pa = 0; pa < direct_size; pa += PAGE_SIZE_2M)
        if (map_one(pool, pml4, DIRECT_MAP_BASE + pa, pa, PTE_P | PTE_W | nx, 1))
            return 0;

    for (unsigned s = 0; s < img->nseg; s++) {
        const struct kernel_segment *k = &img->seg[s];
        uint64_t flags = PTE_P;
        if (k->flags & 2 /* PF_W */)
            flags |= PTE_W;
        if (!(k->flags & 1 /* PF_X */))
            flags |= nx;
        uint64_t end = k->vaddr + ((k->memsz + 4095) & ~4095ull);
        for (uint64_t va = k->vaddr; va < end; va += 4096)
            if (map_one(pool, pml4, va, img->phys_base + (va - img->virt_base), flags, 0))
                return 0;
    }

    uint64_t lo = ident_base & ~(PAGE_SIZE_2M - 1);
    uint64_t hi = (ident_base + ident_size + PAGE_SIZE_2M - 1) & ~(PAGE_SIZE_2M - 1);
    for (uint64_t pa = lo; pa < hi; pa += PAGE_SIZE_2M)
        if (map_one(pool, pml4, pa, pa, PTE_P | PTE_W, 1))
            return 0;

    return (uint64_t)(uintptr_t)pml4;
}
