/*
 * debugexit.h: ending QEMU with a verdict through the isa-debug-exit
 * device (-device isa-debug-exit,iobase=0xf4,iosize=0x04). Writing v makes
 * QEMU exit with status (v << 1) | 1; scripts/qemu-run maps those back:
 *   KEXIT_PASS  0x10 -> QEMU 33 -> harness 0
 *   KEXIT_FAIL  0x11 -> QEMU 35 -> harness "test failure", non-zero
 *   KEXIT_PANIC 0x12 -> QEMU 37 -> harness "panic", non-zero
 * The codes start at 0x10 so none of them collides with QEMU's own exit
 * statuses (0 after a reset under -no-reboot, 1 on a QEMU error).
 * Without the device (real hardware) the CPU just halts.
 */
#ifndef ARCH_X86_64_DEBUGEXIT_H
#define ARCH_X86_64_DEBUGEXIT_H

#define DEBUG_EXIT_PORT 0xf4

enum kexit {
    KEXIT_PASS = 0x10,
    KEXIT_FAIL = 0x11,
    KEXIT_PANIC = 0x12,
};

__attribute__((noreturn)) void qemu_exit(enum kexit code);

#endif
