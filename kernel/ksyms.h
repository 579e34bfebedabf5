/*
 * ksyms.h: address -> function name, for backtraces.
 *
 * The table is generated at build time from the linked kernel by
 * scripts/mksyms (nm -n, text symbols only) and linked into a second pass
 * of the kernel link (kernel/build.mk); the table lives in .rodata after
 * .text, so adding it does not move any function, and the build checks
 * that the second pass yields the same table.
 */
#ifndef KERNEL_KSYMS_H
#define KERNEL_KSYMS_H

#include <stdint.h>

struct ksym {
    uint64_t addr;
    const char *name;
};

/* Generated: sorted by addr. */
extern const struct ksym ksyms_table[];
extern const uint64_t ksyms_count;

/*
 * The function containing addr, or NULL if addr is outside the kernel's
 * text. *offset (if non-NULL) gets addr minus the function's start.
 */
const char *ksym_lookup(uint64_t addr, uint64_t *offset);

/* Address of the function named `name`, or 0. */
uint64_t ksym_address(const char *name);

#endif
