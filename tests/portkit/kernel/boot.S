/*
 * boot.S: the kit kernel's entry from GRUB (multiboot2) and its interrupt
 * stubs. GRUB loads the ELF at 1 MiB and jumps to _start in 32-bit
 * protected mode, paging off, with the multiboot2 magic in EAX and the
 * boot information's physical address in EBX. We identity-map the first
 * GiB (2 MiB pages: only the kernel's own mapping; the heap's pages are
 * 4 KiB ones made in kernel.c), enter long mode and call kmain(magic, mbi).
 *
 * Interrupts: isr<N> pushes a zero when the CPU pushes no error code, then
 * the vector, and isr_common saves the general registers and calls
 * trap(frame) (kernel.c) on the interrupted stack; ring 0 only, so no TSS.
 */
#define MB2_MAGIC 0xe85250d6
#define MB2_ARCH_I386 0

	.section .multiboot2, "a"
	.balign 8
mb2_header:
	.long MB2_MAGIC
	.long MB2_ARCH_I386
	.long mb2_header_end - mb2_header
	.long 0x100000000 - (MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
	.short 0, 0 /* end tag: type 0, flags 0, size 8 */
	.long 8
mb2_header_end:

	.section .text.boot, "ax"
	.code32
	.globl _start
_start:
	cli
	mov $boot_stack_top, %esp
	mov %eax, %edi /* kmain's arguments, kept across the mode switch */
	mov %ebx, %esi

	/* pml4[0] -> pdpt, pdpt[0] -> pd, pd[i] = i * 2 MiB, present + writable + large */
	mov $pdpt, %eax
	or $3, %eax
	mov %eax, pml4
	mov $pd, %eax
	or $3, %eax
	mov %eax, pdpt
	xor %ecx, %ecx
1:	mov %ecx, %eax
	shl $21, %eax
	or $0x83, %eax
	mov %eax, pd(, %ecx, 8)
	inc %ecx
	cmp $512, %ecx
	jne 1b

	mov $pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x20, %eax /* PAE */
	mov %eax, %cr4
	mov $0xc0000080, %ecx /* EFER */
	rdmsr
	or $0x100, %eax /* long mode enable */
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax /* paging + protection */
	mov %eax, %cr0
	lgdt gdt_ptr
	ljmp $0x08, $long_mode

	.code64
long_mode:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	xor %ax, %ax
	mov %ax, %fs
	mov %ax, %gs /* no per-CPU segment: the port must not need one */
	mov $boot_stack_top, %rsp
	mov %edi, %edi /* upper halves are undefined after the switch */
	mov %esi, %esi
	call kmain
2:	cli
	hlt
	jmp 2b

	.macro isr_stub n, has_error
isr\n:
	.if \has_error == 0
	pushq $0
	.endif
	pushq $\n
	jmp isr_common
	.endm

	.irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31,32
	isr_stub \n, 0
	.endr
	.irp n, 8,10,11,12,13,14,17,21,29,30
	isr_stub \n, 1
	.endr

isr_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi /* 16-byte aligned here: 5 + 2 + 15 quadwords pushed */
	cld
	call trap
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp /* vector and error code */
	iretq

	.section .rodata
	.balign 8
	.globl isr_table
isr_table: /* kernel.c fills the IDT from it: vectors 0..32 */
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32
	.quad isr\n
	.endr

	.balign 8
gdt:
	.quad 0
	.quad 0x00af9a000000ffff /* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff /* 0x10: data */
gdt_ptr:
	.short gdt_ptr - gdt - 1
	.long gdt

	.section .bss
	.balign 4096
	.globl pml4
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4096
boot_stack:
	.skip 16384
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
