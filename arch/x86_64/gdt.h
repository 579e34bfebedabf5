/*
 * gdt.h: segment descriptors and the task-state segment, one set per CPU.
 * Long mode ignores segment bases and limits; the GDT exists for the CS/SS
 * privilege level and to point at the TSS, whose IST slots give the double
 * fault and NMI handlers a known-good stack even when RSP is garbage.
 */
#ifndef ARCH_X86_64_GDT_H
#define ARCH_X86_64_GDT_H

#include <stdint.h>

#define GDT_KERNEL_CS 0x08
#define GDT_KERNEL_DS 0x10
#define GDT_TSS       0x18

/* Build and load CPU `cpu`'s GDT and TSS (0 <= cpu < MAX_CPUS). */
void gdt_init_cpu(unsigned cpu);

/* Top of CPU `cpu`'s IST stack `ist` (1-based), for tests and diagnostics. */
uint64_t gdt_ist_top(unsigned cpu, unsigned ist);

/* [*start, *end): every CPU's IST stacks together (the leak scan leaves
 * them out of its roots: nothing there holds a heap pointer for long). */
void gdt_ist_area(uint64_t *start, uint64_t *end);

#endif
