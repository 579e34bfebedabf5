/*
 * kmemleak.c: the leak detector's kernel hooks and report (kmemleak.h).
 *
 * What is a root here, and why. The scan (mm/mgcmark.c) marks every live
 * object reachable from these ranges, so a range belongs here exactly
 * when it may hold the only pointer to a live object, and must stay out
 * when it holds dead copies of pointers that would hide leaks:
 *   - .data and .bss: every global and static, per-CPU areas
 *     (percpu_area is in .bss), the self-tests' state, the core's own
 *     globals (the core leaves mheap_ out itself: it holds the arena
 *     bounds, which look like pointers to the first objects);
 *   - less the stacks that live inside .bss: the boot stack (its guard
 *     page is not even mapped), the memory behind the AP stacks and the
 *     IST stacks. Their dead parts hold old frames full of stale
 *     pointers;
 *   - plus each online CPU's stack from its stack pointer up to its top,
 *     the live part only: the scanning CPU's from this hook's frame (the
 *     core spilled its callers' registers into a frame above), a parked
 *     CPU's from the RSP it published after pushing its registers
 *     (stopworld.c).
 * Not roots, on purpose: the direct map (the frame allocator's free
 * lists and per-frame bytes, page tables and the TLB gather chains, which
 * live in freed frames: physical addresses, never heap pointers), the
 * loader's boot info and memory map (written before the heap existed),
 * .rodata and .text (no heap pointer can be stored there), the core's
 * metadata region (span records, magazines: objects waiting in a cache
 * are not live and are never reported). The heap itself is scanned
 * object by object from the roots, never as a whole.
 */
#include <stddef.h>
#include <stdint.h>

#include "kmemleak.h"
#include "../../mm/sys.h"
#include "../../kernel/cmdline.h"
#include "../../kernel/kstring.h"
#include "../../kernel/ksyms.h"
#include "../../kernel/panic.h"
#include "../../kernel/printk.h"
#include "apic.h"
#include "cpu.h"
#include "gdt.h"
#include "percpu.h"
#include "smp.h"
#include "stopworld.h"

extern const char __data_start[], __data_end[], __bss_start[], __bss_end[]; /* kernel.ld */
extern const char boot_stack_guard[], boot_stack_bottom[], boot_stack_top[]; /* entry.S */

/* kmemleak=on|off. Written by the command-line parser, which runs before
 * kmalloc_init asks track_sites; read-only afterwards. */
static int kmemleak_on;

static int parse_kmemleak(const char *v) { return cmdline_onoff(v, &kmemleak_on); }
KPARAM(kmemleak, parse_kmemleak);

int kmemleak_enabled(void) { return kmemleak_on; }
/* 8 frames per allocation: the frame-pointer walk is cheap. */
int kmemleak_track_sites(void) { return kmemleak_on ? 8 : 0; }

/* ---- roots ---- */

struct range {
    uint64_t start, end;
};

/* scan [start, end) less the holes (sorted by start, disjoint). */
static void scan_less(void (*scan)(const void *, size_t, void *), void *arg, uint64_t start,
                      uint64_t end, const struct range *holes, unsigned nholes)
{
    for (unsigned i = 0; i < nholes && start < end; i++) {
        if (holes[i].end <= start || holes[i].start >= end)
            continue;
        if (holes[i].start > start)
            scan((const void *)(uintptr_t)start, holes[i].start - start, arg);
        start = holes[i].end;
    }
    if (start < end)
        scan((const void *)(uintptr_t)start, end - start, arg);
}

static uint64_t stack_top(unsigned cpu)
{
    return cpu == 0 ? (uint64_t)(uintptr_t)boot_stack_top : smp_stack_top(cpu);
}

static uint64_t stack_bottom(unsigned cpu)
{
    return cpu == 0 ? (uint64_t)(uintptr_t)boot_stack_bottom : smp_stack_top(cpu) - smp_stack_size();
}

void kmemleak_roots(void (*scan)(const void *, size_t, void *), void *arg)
{
    struct range holes[3];
    holes[0].start = (uint64_t)(uintptr_t)boot_stack_guard;
    holes[0].end = (uint64_t)(uintptr_t)boot_stack_top;
    smp_stack_area(&holes[1].start, &holes[1].end);
    gdt_ist_area(&holes[2].start, &holes[2].end);
    for (unsigned i = 1; i < 3; i++)  /* insertion sort by start */
        for (unsigned j = i; j > 0 && holes[j].start < holes[j - 1].start; j--) {
            struct range r = holes[j];
            holes[j] = holes[j - 1];
            holes[j - 1] = r;
        }
    scan_less(scan, arg, (uint64_t)(uintptr_t)__data_start, (uint64_t)(uintptr_t)__data_end, holes, 3);
    scan_less(scan, arg, (uint64_t)(uintptr_t)__bss_start, (uint64_t)(uintptr_t)__bss_end, holes, 3);

    unsigned me = this_cpu_id(), n = smp_cpus_online();
    for (unsigned c = 0; c < n; c++) {
        uint64_t sp;
        if (c == me) {
            sp = read_rsp();
        } else if (stop_world_parked_rsp(c, &sp) != 0) {
            printk("kmemleak: cpu %u is not parked; its stack is not a root\n", c);
            continue;
        }
        uint64_t lo = stack_bottom(c), hi = stack_top(c);
        if (sp < lo || sp > hi) {
            printk("kmemleak: cpu %u's stack pointer 0x%lx is outside its stack 0x%lx-0x%lx; "
                   "not scanned\n", c, sp, lo, hi);
            continue;
        }
        scan((const void *)(uintptr_t)sp, hi - sp, arg);
    }
}

/* ---- symbols and printing ---- */

size_t kmemleak_symbolize(uintptr_t pc, char *buf, size_t cap)
{
    uint64_t off = 0;
    const char *name = ksym_lookup(pc, &off);
    if (name == NULL || cap == 0)
        return 0;
    size_t n = snprintk(buf, cap, "%s+0x%lx", name, off);
    return n < cap ? n : 0;
}

/* The frame-pointer walk of panic's backtrace (the kernel keeps frame
 * pointers), from this function's frame: mm_backtrace cuts mm's frames. */
unsigned kmemleak_backtrace(uintptr_t *pcs, unsigned max)
{
    return backtrace_save(read_rbp(), pcs, max);
}

/* The one-line form, then the backtrace as kmemleak prints it. */
static void print_leak(uint64_t obj, uint64_t size, const uintptr_t *pcs, unsigned n)
{
    char where[128] = "";
    if (n != 0) {
        char sym[96];
        if (kmemleak_symbolize(pcs[0], sym, sizeof sym) != 0)
            snprintk(where, sizeof where, " [allocated at %s]", sym);
        else
            snprintk(where, sizeof where, " [allocated at 0x%lx]", (uint64_t)pcs[0]);
    }
    printk("kmemleak: 0x%lx size %lu%s\n", obj, size, where);
    if (n != 0)
        printk("kmemleak:   backtrace:\n");
    for (unsigned i = 0; i < n; i++) {
        char sym[96];
        if (kmemleak_symbolize(pcs[i], sym, sizeof sym) == 0)
            sym[0] = '\0';
        printk("kmemleak:     [<0x%lx>] %s\n", (uint64_t)pcs[i], sym);
    }
}

/* The frames come from the stack depot (mm/mstack.c): no lock, no
 * allocation, so this may run with the world stopped. */
void kmemleak_print_leak(const void *obj, size_t size, uintptr_t site, void *arg)
{
    (void)arg;
    uintptr_t pcs[8];
    unsigned n = kmalloc_leak_backtrace(obj, pcs, 8);
    if (n == 0 && site != 0) {
        pcs[0] = site;
        n = 1;
    }
    print_leak((uint64_t)(uintptr_t)obj, size, pcs, n);
}

/* kmemleak_report's leaks, printed after the world runs again: printing
 * a backtrace over the serial console with every CPU parked multiplied
 * the pause by ten under QEMU. The first DEFER_MAX wait here (the scan
 * is the only writer: scans never overlap); the rest print at once. */
#define DEFER_MAX 64
static struct deferred_leak {
    uint64_t obj, size;
    unsigned n;
    uintptr_t pcs[8];
} deferred[DEFER_MAX];
static unsigned ndeferred;
static kmalloc_leak_fn defer_also; /* kmemleak_scan_print's, for the scan */

static void defer_leak(const void *obj, size_t size, uintptr_t site, void *arg)
{
    if (defer_also != NULL)
        defer_also(obj, size, site, arg);
    if (ndeferred == DEFER_MAX) {
        kmemleak_print_leak(obj, size, site, arg);
        return;
    }
    struct deferred_leak *d = &deferred[ndeferred++];
    d->obj = (uint64_t)(uintptr_t)obj;
    d->size = size;
    d->n = kmalloc_leak_backtrace(obj, d->pcs, 8);
    if (d->n == 0 && site != 0) {
        d->pcs[0] = site;
        d->n = 1;
    }
}

void kmemleak_print_summary(const struct kmalloc_leaks *l)
{
    uint64_t us = stop_world_last_pause_tsc() / tsc_per_us();
    uint64_t rate = us ? l->scanned_bytes / us : 0;  /* bytes per us = MB/s */
    printk("kmemleak: %lu %s, %lu bytes (%lu live objects reached, %lu KiB scanned; "
           "world stopped %lu.%03lu ms, %u other CPU(s) parked, %lu MB/s)\n",
           l->leaks, l->leaks == 1 ? "leak" : "leaks", l->leak_bytes, l->marked,
           l->scanned_bytes >> 10, us / 1000, us % 1000, stop_world_last_parked(), rate);
}

/* The frames the scan is about to occupy lie where the callers' earlier
 * callees left theirs: zero them, so an old pointer there does not keep a
 * leak alive (a conservative scan cannot tell a dead slot from a live
 * one; only the frames above the scan are live). */
static __attribute__((noinline)) void scrub_stack_below(void)
{
    volatile char pad[4096];
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = 0;
}

uint64_t kmemleak_scan_print(struct kmalloc_leaks *l, kmalloc_leak_fn also, void *arg)
{
    ndeferred = 0;
    defer_also = also;
    uint64_t n = kmalloc_leak_scan(l, defer_leak, arg);
    defer_also = NULL;
    for (unsigned i = 0; i < ndeferred; i++)
        print_leak(deferred[i].obj, deferred[i].size, deferred[i].pcs, deferred[i].n);
    /* raw addresses of leaks: they would keep them alive in the next scan */
    memset(deferred, 0, sizeof deferred);
    ndeferred = 0;
    return n;
}

uint64_t kmemleak_report(void)
{
    struct kmalloc_leaks l;
    scrub_stack_below();
    uint64_t n = kmemleak_scan_print(&l, NULL, NULL);
    if (n != KMALLOC_LEAK_NO_SCAN)
        kmemleak_print_summary(&l);
    return n;
}
