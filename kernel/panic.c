/*
 * panic.c: the one way the kernel stops on an error (see panic.h).
 *
 * Order matters: interrupts off first (nothing may preempt a dying CPU),
 * then the console (bounded, so a CPU that died holding the lock cannot
 * silence us), then the message and backtrace, then ktest's verdict and
 * QEMU exit. panic_depth catches a fault inside this path: the second
 * entry prints one line and exits without touching anything else.
 */
#include <stdarg.h>
#include "panic.h"
#include "printk.h"
#include "ksyms.h"
#include "ktest.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/debugexit.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/smp.h"
#include "../arch/x86_64/vm.h"

#define PANIC_LOCK_SPINS 10000000ul
#define BACKTRACE_MAX    32

static int panic_depth;  /* atomic: how many panics have started */

void panic_enter(void)
{
    cpu_cli();
    if (__atomic_fetch_add(&panic_depth, 1, __ATOMIC_ACQ_REL) > 0) {
        console_panic_mode(0);
        printk("\nPANIC: panic while panicking (a fault in the panic path, or another CPU); stopping\n");
        qemu_exit(KEXIT_PANIC);
    }
    smp_stop_others();  /* SMP: the other CPUs halt (NMI) while we report */
    console_panic_mode(PANIC_LOCK_SPINS);
}

extern const char __kernel_start[], __kernel_end[];

/* A frame pointer we may dereference: aligned and inside the kernel image
 * (boot and IST stacks live in .bss) or the guarded-stack window. */
static int frame_ok(uint64_t fp)
{
    if (fp & 7)
        return 0;
    int in_image = fp >= (uint64_t)(uintptr_t)__kernel_start && fp + 16 <= (uint64_t)(uintptr_t)__kernel_end;
    int in_stacks = fp >= KSTACK_WINDOW_BASE && fp + 16 <= KSTACK_WINDOW_BASE + KSTACK_WINDOW_SIZE;
    /* guard pages are inside those ranges but unmapped: a fault here would
     * turn a clean report into a nested panic */
    return (in_image || in_stacks) && vm_lookup(fp, 0) && vm_lookup(fp + 8, 0);
}

static void print_frame(int i, uint64_t pc, int is_return)
{
    uint64_t off = 0;
    /* a return address may be one past the end of its caller: look up pc-1 */
    const char *name = ksym_lookup(is_return ? pc - 1 : pc, &off);
    if (is_return && name)
        off++;
    if (name)
        printk("  #%-2d 0x%016lx %s+0x%lx\n", i, pc, name, off);
    else
        printk("  #%-2d 0x%016lx ?\n", i, pc);
}

unsigned backtrace_save(uint64_t rbp, uintptr_t *pcs, unsigned max)
{
    unsigned n = 0;
    for (uint64_t fp = rbp; n < max && fp && frame_ok(fp);) {
        const uint64_t *frame = (const uint64_t *)(uintptr_t)fp;
        if (!frame[1])
            break;
        pcs[n++] = (uintptr_t)frame[1];
        if (frame[0] <= fp) /* stacks grow down: callers' frames are higher */
            break;
        fp = frame[0];
    }
    return n;
}

void backtrace_print(uint64_t rip, uint64_t rbp)
{
    printk("Backtrace:\n");
    int i = 0;
    if (rip)
        print_frame(i++, rip, 0);
    uint64_t fp = rbp, last = 0, repeats = 0;
    /* Walk far (a runaway recursion is deep) but print at most
     * BACKTRACE_MAX lines, folding runs of the same return address. */
    for (unsigned walked = 0; walked < 4096 && fp && frame_ok(fp); walked++) {
        const uint64_t *frame = (const uint64_t *)(uintptr_t)fp;
        uint64_t ret = frame[1];
        if (!ret)
            break;
        if (ret == last) {
            repeats++;
        } else {
            if (repeats)
                printk("      ... the frame above repeated %lu more times\n", repeats);
            repeats = 0;
            if (i == BACKTRACE_MAX) {
                printk("      ... (backtrace cut at %d frames)\n", BACKTRACE_MAX);
                return;
            }
            print_frame(i++, ret, 1);
            last = ret;
        }
        if (frame[0] <= fp)  /* stacks grow down: callers' frames are higher */
            break;
        fp = frame[0];
    }
    if (repeats)
        printk("      ... the frame above repeated %lu more times\n", repeats);
}

void panic_finish(const char *reason)
{
    ktest_report_panic(reason);
    printk("PANIC: kernel stopped (%s); ending QEMU with a failing status\n", reason);
    qemu_exit(KEXIT_PANIC);
}

void panic(const char *fmt, ...)
{
    char msg[256];
    panic_enter();
    va_list ap;
    va_start(ap, fmt);
    vsnprintk(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printk("\nPANIC: %s\n", msg);
    backtrace_print(0, read_rbp());  /* starts at panic's caller */
    panic_finish(msg);
}
