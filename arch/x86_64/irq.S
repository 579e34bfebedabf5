/*
 * irq.S: entry stubs for the device and IPI vectors (apic.h) and the NMI.
 *
 * Same frame as isr.S (a struct regs, idt.h), so the C side can print it:
 * each stub pushes a zero error code and its vector, irq_common saves the
 * registers and calls irq_dispatch(regs) (smp.c), which sends the EOI.
 * Interrupt gates enter with IF = 0 and iretq restores the interrupted
 * RFLAGS, so a handler never nests with itself.
 *
 * The NMI stub: when a panicking CPU has asked the others to stop
 * (smp_stop_requested != 0), halt here for good, touching nothing;
 * otherwise save a struct regs and call nmi_dispatch (smp.c), which
 * answers a request another CPU posted in this CPU's percpu.nmi_request
 * (a ping, or "where are you" for a stall report) and returns here, or
 * treats an unexpected NMI as an exception (it does not return).
 */
#include "frame.h"

    .section .text

.macro IRQ_STUB n
    .global irq_stub_\n
irq_stub_\n:
    pushq $0
    pushq $\n
    jmp irq_common
.endm

IRQ_STUB 0x40
IRQ_STUB 0x41
IRQ_STUB 0x50
IRQ_STUB 0x60
IRQ_STUB 0xff

irq_common:
    SAVE_REGS_AND_CALL irq_dispatch
    RESTORE_REGS_AND_IRET

    .global irq_nmi
irq_nmi:
    cmpl $0, smp_stop_requested(%rip)
    jne 1f
    pushq $0
    pushq $2
    SAVE_REGS_AND_CALL nmi_dispatch
    RESTORE_REGS_AND_IRET
1:  cli
    hlt
    jmp 1b

    .section .note.GNU-stack, "", @progbits
