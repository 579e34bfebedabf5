/*
 * entry.S: the kernel's first instructions.
 *
 * The loader jumps here on the kernel's own page tables, interrupts off,
 * with the boot info's physical address in RDI. We switch to the boot
 * stack in .bss (the loader's stack is reclaimable memory we must not
 * keep using), clear RBP so backtraces stop at kmain, and call kmain,
 * leaving RDI untouched as its first argument.
 */
    .section .text.entry, "ax"
    .global _start
    .type _start, @function
_start:
    cli
    cld
    leaq boot_stack_top(%rip), %rsp
    xorl %ebp, %ebp
    call kmain
1:  cli
    hlt
    jmp 1b
    .size _start, . - _start

    /* kernel.ld puts this first in .bss, page aligned; kmain unmaps the
     * guard page so an overflow faults (and double-faults onto the IST
     * stack) instead of silently overwriting .data below it. */
    .section .bss.boot_stack, "aw", @nobits
    .balign 4096
    .global boot_stack_guard, boot_stack_bottom, boot_stack_top
boot_stack_guard:
    .skip 4096
boot_stack_bottom:
    .skip 32768
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
