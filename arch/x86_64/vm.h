/*
 * vm.h: the few page-table operations the base kernel needs on the tables
 * the loader built (all reached through the direct map). The full paging
 * API (map/unmap with frames from the frame allocator) is paging.h's.
 */
#ifndef ARCH_X86_64_VM_H
#define ARCH_X86_64_VM_H

#include <stdint.h>

/* Clear PML4 slots 0..255 (the loader's identity map) and flush the TLB. */
void vm_drop_identity(void);

/* Remove the 4 KiB mapping of va (a guard page) and flush it from the
 * TLB. Returns 0, or -1 if va is not mapped by a 4 KiB page. */
int vm_unmap_4k(uint64_t va);

/* Make sure CR0.WP (read-only pages bind ring 0) and EFER.NXE are on. */
void vm_enable_protection(void);

/*
 * Walk the live page tables for va. Returns the leaf entry (0 if not
 * mapped) and stores the page size in *page_size when non-NULL.
 */
uint64_t vm_lookup(uint64_t va, uint64_t *page_size);

#endif
