/*
 * frame.h: the register save/restore every interrupt entry shares
 * (isr.S for exceptions, irq.S for device vectors and IPIs). The pushes
 * build the `struct regs` of idt.h on top of the vector and error code the
 * stub pushed; changing one order without the other breaks the register
 * dump, so both entry paths take it from here.
 */
#ifndef ARCH_X86_64_FRAME_H
#define ARCH_X86_64_FRAME_H
#ifdef __ASSEMBLER__

/* Save the general registers as struct regs and call `handler`(regs). */
.macro SAVE_REGS_AND_CALL handler
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    call \handler
.endm

/* Undo SAVE_REGS_AND_CALL, drop the vector and error code, return. */
.macro RESTORE_REGS_AND_IRET
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
.endm

#endif /* __ASSEMBLER__ */
#endif
