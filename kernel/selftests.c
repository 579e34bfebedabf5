/*
 * selftests.c: the base kernel's built-in ktests (see ktest.h). Each one
 * checks behaviour later code relies on: formatting, option parsing,
 * symbolisation, the boot hand-off and the page-table permissions.
 */
#include "ktest.h"
#include "printk.h"
#include "kstring.h"
#include "../arch/x86_64/memlayout.h"

KTEST_NAMED(fault_selftest)
{
    volatile uint64_t *p = (volatile uint64_t *)UNMAPPED_PROBE_ADDR;
    printk("fault_selftest: reading unmapped address 0x%lx; a page fault and panic must follow\n",
           (uint64_t)UNMAPPED_PROBE_ADDR);
    uint64_t v = *p;
    ktest_fail(t, "read of unmapped 0x%lx returned 0x%lx instead of faulting", (uint64_t)UNMAPPED_PROBE_ADDR, v);
}
