/*
 * isr.S: entry stubs for exception vectors 0..31.
 *
 * Each stub makes the stack look the same (a zero error code where the
 * CPU pushes none, then the vector number), then isr_common saves the
 * general registers as a struct regs (idt.h) and calls
 * exception_dispatch(regs). The stack is 16-byte aligned at that call:
 * CPU frame 40 + error 8 + vector 8 + 15 registers 120 = 176 bytes.
 */
#include "frame.h"

    .section .text

.macro ISR_NOERR n
    .global isr\n
isr\n:
    pushq $0
    pushq $\n
    jmp isr_common
.endm

.macro ISR_ERR n
    .global isr\n
isr\n:
    pushq $\n
    jmp isr_common
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR   8
ISR_NOERR 9
ISR_ERR   10
ISR_ERR   11
ISR_ERR   12
ISR_ERR   13
ISR_ERR   14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR   17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR   21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR   29
ISR_ERR   30
ISR_NOERR 31

isr_common:
    SAVE_REGS_AND_CALL exception_dispatch
    RESTORE_REGS_AND_IRET

    .section .rodata
    .balign 8
    .global isr_table
isr_table:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad isr\n
.endr

    .section .note.GNU-stack, "", @progbits
