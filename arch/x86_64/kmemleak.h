/*
 * kmemleak.h: the kernel's half of the leak detector (mm/mgcmark.c): the
 * sys_config hooks the port (sys.c) installs, and the report kmain prints
 * at the end of a kmemleak=on run.
 *
 *   kmemleak=on (command line, parsed before kmalloc_init)
 *     -> kmemleak_track_sites() = 8: every allocation records 8 frames of
 *        its backtrace (kmemleak_backtrace: the frame-pointer walk)
 *   kmalloc_leak_scan (any CPU)
 *     -> stop_world (stopworld.h): the other CPUs park, RSPs published
 *     -> kmemleak_roots: .data and .bss less the stack memory in them,
 *        then each online CPU's live stack, RSP to top
 *     -> each leak: its site and backtrace copied (kmalloc_leak_backtrace)
 *     -> start_world; then each leak printed, named by kmemleak_symbolize
 *        (kmemleak_scan_print), and kmemleak_print_summary adds the pause
 */
#ifndef ARCH_X86_64_KMEMLEAK_H
#define ARCH_X86_64_KMEMLEAK_H

#include <stddef.h>
#include <stdint.h>
#include "../../mm/kmalloc.h"

/* 1 if the command line said kmemleak=on. */
int kmemleak_enabled(void);

/* sys_config hooks (mm/sys.h). */
int kmemleak_track_sites(void);
void kmemleak_roots(void (*scan)(const void *start, size_t len, void *arg), void *arg);
size_t kmemleak_symbolize(uintptr_t pc, char *buf, size_t cap);
unsigned kmemleak_backtrace(uintptr_t *pcs, unsigned max);

/* A kmalloc_leak_fn that prints "kmemleak: 0x<obj> size <n> [allocated
 * at func+0xoff]", the core's own format. */
void kmemleak_print_leak(const void *obj, size_t size, uintptr_t site, void *arg);
/* "kmemleak: <n> leaks, <bytes> bytes (<marked> live objects reached,
 * <KiB> KiB scanned; world stopped <ms> ms, <k> CPUs parked, <rate> MB/s)"
 * for the scan that just ended. */
void kmemleak_print_summary(const struct kmalloc_leaks *l);

/* Scan now from this CPU (kmalloc_leak_scan), and print every leak with
 * its backtrace once the other CPUs run again; each leak also goes to
 * also(obj, size, site, arg) during the scan if not NULL. Fills *l.
 * Returns the leaks, or KMALLOC_LEAK_NO_SCAN. */
uint64_t kmemleak_scan_print(struct kmalloc_leaks *l, kmalloc_leak_fn also, void *arg);

/* Scan now from this CPU, print every leak and the summary. Returns the
 * number of leaks, or KMALLOC_LEAK_NO_SCAN (the other CPUs would not
 * stop; the core printed why). */
uint64_t kmemleak_report(void);

#endif
