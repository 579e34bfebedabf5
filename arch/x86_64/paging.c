/*
 * paging.c: see paging.h for the overview.
 *
 * The four levels are walked by index through the direct map; a table is
 * "empty" when none of its 512 entries is present (released markers do not
 * count). PDPTs are created on demand but never freed: keeping every PML4
 * entry of the upper half stable means an address space that copied the
 * kernel half (a per-CPU or per-process PML4, later) never goes stale. At
 * most 32 PDPTs cover the 16 TiB arena window, so this costs 128 KiB at
 * worst. PTs and PDs are freed as soon as they empty.
 */
#include "paging.h"
#include "cpu.h"
#include "memlayout.h"
#include "../../kernel/panic.h"
#include "../../kernel/spinlock.h"

static spinlock_t paging_lock = SPINLOCK_INIT;
static uint64_t *pml4;                     /* immutable after paging_init */
static struct paging_frame_source source;  /* immutable after paging_init */
static uint64_t table_frames;              /* paging_lock */

static const unsigned level_shift[4] = { 39, 30, 21, 12 };

static uint64_t *table_at(uint64_t entry)
{
    return (uint64_t *)PHYS_TO_VIRT(entry & PTE_ADDR_MASK);
}

static unsigned index_at(uint64_t va, int level)
{
    return (unsigned)((va >> level_shift[level]) & 511);
}

void paging_init(uint64_t pml4_phys, const struct paging_frame_source *src)
{
    pml4 = (uint64_t *)PHYS_TO_VIRT(pml4_phys);
    source = *src;
}

/* A fresh table under `parent` (the entry that will point at it): all zero,
 * or all marked when the parent carried the released marker, so the
 * per-page diagnosis stays as it was. pre: paging_lock. */
static int table_new(uint64_t parent, uint64_t *phys)
{
    if (source.alloc(phys) != 0)
        return -1;
    uint64_t *t = (uint64_t *)PHYS_TO_VIRT(*phys);
    uint64_t fill = (parent & PAGING_RELEASED) ? PAGING_RELEASED : 0;
    for (int i = 0; i < 512; i++)
        t[i] = fill;
    table_frames++;
    return 0;
}

int paging_map(uint64_t va, uint64_t phys, uint64_t flags)
{
    uint64_t *slot[3];   /* entries this call made present, to undo */
    uint64_t old[3];
    int made = 0;

    uint64_t irq = spin_lock_irqsave(&paging_lock);
    uint64_t *t = pml4;
    for (int level = 0; level < 3; level++) {
        uint64_t *e = &t[index_at(va, level)];
        if (!(*e & PTE_P)) {
            uint64_t tp;
            if (table_new(*e, &tp) != 0) {
                /* Undo deepest first: nothing half-built remains. */
                while (made-- > 0) {
                    uint64_t fp = *slot[made] & PTE_ADDR_MASK;
                    *slot[made] = old[made];
                    source.free(fp);
                    table_frames--;
                }
                spin_unlock_irqrestore(&paging_lock, irq);
                return -1;
            }
            slot[made] = e;
            old[made] = *e;
            made++;
            *e = tp | PTE_P | PTE_W;
        } else if (*e & PTE_PS) {
            panic("paging_map: 0x%lx lies in a huge page (level %d)", va, level);
        }
        t = table_at(*e);
    }
    uint64_t *leaf = &t[index_at(va, 3)];
    if (*leaf & PTE_P)
        panic("paging_map: 0x%lx is already mapped (pte 0x%lx)", va, *leaf);
    /* Bit 9 is ignored by the MMU in a present entry too: keep "this page
     * was released before" so undoing a failed commit can restore it. */
    *leaf = (phys & PTE_ADDR_MASK) | flags | PTE_P | (*leaf & PAGING_RELEASED);
    spin_unlock_irqrestore(&paging_lock, irq);
    return 0;
}

/* The leaf entry of a mapped 4 KiB page, or NULL. pre: paging_lock. */
static uint64_t *leaf_of(uint64_t va)
{
    uint64_t *t = pml4;
    for (int level = 0; level < 3; level++) {
        uint64_t e = t[index_at(va, level)];
        if (!(e & PTE_P) || (e & PTE_PS))
            return NULL;
        t = table_at(e);
    }
    uint64_t *leaf = &t[index_at(va, 3)];
    return (*leaf & PTE_P) ? leaf : NULL;
}

/* paging_move (alias 0) and paging_alias (alias 1): the n leaves of src
 * and dst in pairs, all or nothing. */
static int edit_pairs(uint64_t dst, uint64_t src, size_t n, uint64_t *old, int alias)
{
    uint64_t irq = spin_lock_irqsave(&paging_lock);
    for (size_t i = 0; i < n; i++)
        if (!leaf_of(dst + i * PAGE_SIZE_4K) || !leaf_of(src + i * PAGE_SIZE_4K)) {
            spin_unlock_irqrestore(&paging_lock, irq);
            return -1;
        }
    for (size_t i = 0; i < n; i++) {
        uint64_t *d = leaf_of(dst + i * PAGE_SIZE_4K), *s = leaf_of(src + i * PAGE_SIZE_4K);
        if (alias) {
            /* src keeps its own flags and released marker, takes dst's frame */
            old[i] = *s & PTE_ADDR_MASK;
            *s = (*s & ~PTE_ADDR_MASK) | (*d & PTE_ADDR_MASK);
        } else {
            old[i] = *d & PTE_ADDR_MASK;
            *d = (*s & ~PAGING_RELEASED) | (*d & PAGING_RELEASED);
            *s = PAGING_RELEASED;
            invlpg(dst + i * PAGE_SIZE_4K);
        }
        invlpg(src + i * PAGE_SIZE_4K);
    }
    spin_unlock_irqrestore(&paging_lock, irq);
    return 0;
}

int paging_move(uint64_t dst, uint64_t src, size_t n, uint64_t *old)
{
    return edit_pairs(dst, src, n, old, 0);
}

int paging_alias(uint64_t dst, uint64_t src, size_t n, uint64_t *old)
{
    return edit_pairs(dst, src, n, old, 1);
}

int paging_zero(uint64_t va, size_t n, uint64_t zero, uint64_t *old)
{
    uint64_t irq = spin_lock_irqsave(&paging_lock);
    for (size_t i = 0; i < n; i++)
        if (!leaf_of(va + i * PAGE_SIZE_4K)) {
            spin_unlock_irqrestore(&paging_lock, irq);
            return -1;
        }
    for (size_t i = 0; i < n; i++) {
        uint64_t *leaf = leaf_of(va + i * PAGE_SIZE_4K);
        old[i] = *leaf & PTE_ADDR_MASK;
        *leaf = (zero & PTE_ADDR_MASK) | PTE_NX | PTE_P | PAGING_RELEASED;
        invlpg(va + i * PAGE_SIZE_4K);
    }
    spin_unlock_irqrestore(&paging_lock, irq);
    return 0;
}

int paging_unzero(uint64_t va, uint64_t phys, uint64_t flags, uint64_t zero)
{
    uint64_t irq = spin_lock_irqsave(&paging_lock);
    uint64_t *leaf = leaf_of(va);
    int hit = leaf != NULL && (*leaf & PTE_ADDR_MASK) == (zero & PTE_ADDR_MASK);
    if (hit) {
        *leaf = (phys & PTE_ADDR_MASK) | flags | PTE_P | PAGING_RELEASED;
        invlpg(va);
    }
    spin_unlock_irqrestore(&paging_lock, irq);
    return hit;
}

static int table_empty(const uint64_t *t, int *marked)
{
    *marked = 0;
    for (int i = 0; i < 512; i++) {
        if (t[i] & PTE_P)
            return 0;
        if (t[i] & PAGING_RELEASED)
            *marked = 1;
    }
    return 1;
}

size_t paging_unmap_batch(uint64_t va, size_t n, int mark, uint64_t *data,
                          uint64_t *tables, unsigned *ntables)
{
    size_t cover = 512 - index_at(va, 3);
    if (cover > n)
        cover = n;
    for (size_t i = 0; i < cover; i++)
        data[i] = 0;
    *ntables = 0;

    uint64_t irq = spin_lock_irqsave(&paging_lock);
    uint64_t *e[3];
    uint64_t *t = pml4;
    for (int level = 0; level < 3; level++) {
        e[level] = &t[index_at(va, level)];
        if (!(*e[level] & PTE_P)) {
            spin_unlock_irqrestore(&paging_lock, irq);
            return cover;  /* nothing mapped under here */
        }
        if (*e[level] & PTE_PS)
            panic("paging_unmap: 0x%lx lies in a huge page (level %d)", va, level);
        t = table_at(*e[level]);
    }
    unsigned first = index_at(va, 3);
    for (size_t i = 0; i < cover; i++) {
        uint64_t *leaf = &t[first + i];
        if (*leaf & PTE_P) {
            data[i] = *leaf & PTE_ADDR_MASK;
            *leaf = mark ? PAGING_RELEASED : (*leaf & PAGING_RELEASED);
            invlpg(va + i * PAGE_SIZE_4K);
        }
    }
    /* Give back the PT, then the PD, if they emptied. INVLPG also drops
     * every paging-structure-cache entry (Intel SDM 4.10.4.1), so the
     * invlpg above already covers the freed tables on this CPU. */
    for (int level = 2; level >= 1; level--) {
        int marked;
        uint64_t *tab = table_at(*e[level]);
        if (!table_empty(tab, &marked))
            break;
        tables[(*ntables)++] = *e[level] & PTE_ADDR_MASK;
        *e[level] = marked ? PAGING_RELEASED : 0;
        table_frames--;
    }
    if (*ntables)
        invlpg(va);
    /* ---- SMP: TLB shootdown of [va, va + cover pages) goes in
     * the caller (sys_release), before any frame returned here is reused. */
    spin_unlock_irqrestore(&paging_lock, irq);
    return cover;
}

enum paging_state paging_probe(uint64_t va, uint64_t *leaf)
{
    uint64_t *t = pml4;
    *leaf = 0;
    if (!t)
        return PAGING_NEVER;
    for (int level = 0; level < 4; level++) {
        uint64_t e = __atomic_load_n(&t[index_at(va, level)], __ATOMIC_RELAXED);
        if (!(e & PTE_P))
            return (e & PAGING_RELEASED) ? PAGING_RELEASED_VA : PAGING_NEVER;
        if (level == 3 || (e & PTE_PS)) {
            *leaf = e;
            return PAGING_MAPPED;
        }
        t = table_at(e);
    }
    return PAGING_NEVER;
}

uint64_t paging_table_frames(void)
{
    return __atomic_load_n(&table_frames, __ATOMIC_RELAXED);
}
