/*
 * trampoline.S: an application processor's path from the SIPI to C.
 *
 * smp.c copies smp_trampoline_start..end into the 4 KiB frame the loader
 * reserved below 1 MiB (boot_info.smp_trampoline_phys) and fills the
 * parameter block at offset 8, then sends SIPI with vector = frame >> 12.
 * The AP starts in real mode at CS = frame >> 4, IP = 0, and goes:
 *
 *   16-bit real mode: EBX = frame base; lgdt the block's GDT; CR0.PE
 *   32-bit protected: CR4.PAE(+PGE), CR3 = P_CR3 (a PML4 below 4 GiB that
 *       identity-maps the low 2 MiB and shares the kernel's upper half),
 *       EFER = P_EFER (LME, NXE), CR0.PG|WP; far return to the 64-bit CS
 *   64-bit, still identity-mapped: load RSP, CPU index, the kernel's CR3
 *       and jump to smp_ap_entry64 in the kernel image (upper half)
 *   smp_ap_entry64: CR3 = the kernel's tables, call smp_ap_main(cpu, ...)
 *
 * The code is position independent: every address it needs is EBX-relative
 * or comes from the block, because the frame's address is known only at
 * boot. The block is reused for each AP: the BSP starts APs one at a time
 * and waits for each to reach C before writing the next one's block.
 */
#define P_GDTR   8    /* u16 limit, u32 base (filled by smp.c) */
#define P_CR3    16   /* u32: temporary PML4, physical, below 4 GiB */
#define P_EFER   20   /* u32: EFER low half to load */
#define P_STACK  24   /* u64: top of this AP's kernel stack */
#define P_ENTRY  32   /* u64: smp_ap_entry64 */
#define P_KCR3   40   /* u64: the kernel's CR3 */
#define P_CPU    48   /* u64: dense CPU index */
#define P_CR4    56   /* u32: CR4 bits to set (PAE, PGE) */
#define P_GDT    64   /* 4 descriptors: null, code32, data, code64 */

#define SEL_CODE32 0x08
#define SEL_DATA   0x10
#define SEL_CODE64 0x18

    .section .rodata.trampoline, "a"
    .balign 16
    .global smp_trampoline_start, smp_trampoline_end
smp_trampoline_start:
    .code16
    jmp real16
    .balign 8
    .skip 96 - 8           /* parameter block, offsets 8..95 */
real16:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    movw %ax, %ss
    movl $0x1000, %esp     /* the top of our own frame: after INIT, SS:SP points at low memory */
    xorl %ebx, %ebx
    movw %ax, %bx
    shll $4, %ebx          /* EBX = physical base of the trampoline */
    lgdtl P_GDTR
    movl %cr0, %eax
    andl $0x9fffffff, %eax /* CD, NW off: the INIT state leaves caching disabled */
    orl $1, %eax
    movl %eax, %cr0
    leal (prot32 - smp_trampoline_start)(%ebx), %eax
    pushl $SEL_CODE32
    pushl %eax
    lretl

    .code32
prot32:
    movl $SEL_DATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    leal 0x1000(%ebx), %esp /* same stack, now with a flat SS */
    movl P_CR4(%ebx), %eax
    movl %eax, %cr4
    movl P_CR3(%ebx), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    movl P_EFER(%ebx), %eax
    xorl %edx, %edx
    wrmsr
    movl %cr0, %eax
    orl $0x80010000, %eax  /* PG, WP */
    movl %eax, %cr0
    leal (long64 - smp_trampoline_start)(%ebx), %eax
    pushl $SEL_CODE64
    pushl %eax
    lret

    .code64
long64:
    movl %ebx, %ebx        /* upper halves are undefined after the mode switch */
    movl $SEL_DATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movq P_STACK(%rbx), %rsp
    movq P_CPU(%rbx), %rdi
    movq P_KCR3(%rbx), %rsi
    movq P_ENTRY(%rbx), %rax
    jmp *%rax
smp_trampoline_end:

/*
 * In the kernel image: switch to the kernel's own page tables (the
 * trampoline page is not mapped there, which is why this runs from the
 * upper half) and enter C. RDI = CPU index, RSI = kernel CR3.
 */
    .section .text
    .global smp_ap_entry64
    .type smp_ap_entry64, @function
smp_ap_entry64:
    movq %rsi, %cr3
    xorl %ebp, %ebp
    call smp_ap_main
1:  cli
    hlt
    jmp 1b
    .size smp_ap_entry64, . - smp_ap_entry64

    .section .note.GNU-stack, "", @progbits
