/*
 * percpu.h: how many CPUs the kernel is built for, and the per-CPU
 * descriptor state every CPU gets (GDT, TSS, IST stacks). The bootstrap
 * CPU is index 0; application processors (SMP bring-up) call
 * gdt_init_cpu(i) and idt_load_cpu(i) with their own index.
 */
#ifndef ARCH_X86_64_PERCPU_H
#define ARCH_X86_64_PERCPU_H

#define MAX_CPUS 64

/* Interrupt stack table slots (TSS.IST1..7); 0 means "current stack". */
#define IST_DOUBLE_FAULT 1
#define IST_NMI          2
#define IST_STACK_SIZE   (16 * 1024)

#endif
