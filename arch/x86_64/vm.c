/* vm.c: see vm.h. Runs on the bootstrap CPU before any other CPU starts. */
#include "vm.h"
#include "cpu.h"
#include "memlayout.h"

static uint64_t *table_at(uint64_t entry)
{
    return (uint64_t *)PHYS_TO_VIRT(entry & PTE_ADDR_MASK);
}

void vm_drop_identity(void)
{
    uint64_t *pml4 = table_at(read_cr3());
    for (int i = 0; i < 256; i++)
        pml4[i] = 0;
    write_cr3(read_cr3());  /* flush the lower-half translations */
}

void vm_enable_protection(void)
{
    write_cr0(read_cr0() | CR0_WP);
    if (cpu_has_nx())
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
}

uint64_t vm_lookup(uint64_t va, uint64_t *page_size)
{
    uint64_t e = read_cr3();
    static const unsigned shift[4] = { 39, 30, 21, 12 };
    for (int level = 0; level < 4; level++) {
        e = table_at(e)[(va >> shift[level]) & 511];
        if (!(e & PTE_P))
            return 0;
        if (level == 3 || ((level == 1 || level == 2) && (e & PTE_PS))) {
            if (page_size)
                *page_size = 1ull << shift[level];
            return e;
        }
    }
    return 0;
}

int vm_unmap_4k(uint64_t va)
{
    uint64_t *t = table_at(read_cr3());
    for (int shift = 39; shift > 12; shift -= 9) {
        uint64_t e = t[(va >> shift) & 511];
        if (!(e & PTE_P) || (e & PTE_PS))
            return -1;
        t = table_at(e);
    }
    uint64_t *pte = &t[PT_INDEX(va)];
    if (!(*pte & PTE_P))
        return -1;
    *pte = 0;
    invlpg(va);
    return 0;
}
