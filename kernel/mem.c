/*
 * mem.c: memory init (see mem.h for the data flow) and everything around
 * it: the frame allocator's lock, the arena= and heapmap= options, the
 * page-fault diagnosis for the heap arena, and the end-of-run report.
 *
 * Order in mem_init, each step needing the one before:
 *   1. pmm_init from the loader's memory map (read through the direct
 *      map; the loader sorted it, pmm copes if it did not).
 *   2. pmm_reclaim: boot-services memory and the loader's scratch become
 *      free frames right away. The kernel never reads them: its stack is
 *      in .bss, the boot info, memory map and page tables are LOADER
 *      frames (kept), and the identity map went away in kmain before this.
 *   3. paging_init on the live CR3 tables, frames from step 1.
 *   4. kmalloc_init with the arena size from arena= (or the default): the
 *      core reserves its region in the arena window; nothing is mapped.
 *   5. idt_set_pf_hook: faults in the window get a heap diagnosis.
 */
#include <stddef.h>
#include <stdint.h>

#include "mem.h"
#include "bootinfo_check.h"
#include "cmdline.h"
#include "panic.h"
#include "printk.h"
#include "spinlock.h"
#include "../mm/internal.h"
#include "../mm/kmalloc.h"
#include "pmm/pmm.h"
#include "../mm/sys.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/idt.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/paging.h"

_Static_assert(sizeof(struct pmm_region) == sizeof(struct boot_mem_region),
               "pmm_region and boot_mem_region must share a layout");

static spinlock_t pmm_lock = SPINLOCK_INIT;
static struct pmm kpmm;             /* pmm_lock */
static long fail_after = -1;        /* pmm_lock: mem_fail_frames_after */

_Static_assert(SYS_ARENA_MAX + SYS_ARENA_MAX / 4 < KMALLOC_ARENA_SIZE,
               "arena + metadata must fit the window");

static uint64_t arena_option;       /* 0: default; written by the parser */

static void pmm_log(const char *line)
{
    printk("%s\n", line);
}

int mem_frame_alloc(uint64_t *phys)
{
    uint64_t f = spin_lock_irqsave(&pmm_lock);
    if (fail_after == 0) {
        spin_unlock_irqrestore(&pmm_lock, f);
        return -1;
    }
    int r = pmm_alloc(&kpmm, 1, 1, phys);
    if (r == PMM_OK && fail_after > 0)
        fail_after--;
    spin_unlock_irqrestore(&pmm_lock, f);
    if (r == PMM_ENOMEM)
        return -1;
    if (r != PMM_OK)
        panic("mem_frame_alloc: frame allocator error %d (see the pmm line above)", r);
    return 0;
}

void mem_frame_free(uint64_t phys)
{
    uint64_t f = spin_lock_irqsave(&pmm_lock);
    int r = pmm_free(&kpmm, phys, 1);
    spin_unlock_irqrestore(&pmm_lock, f);
    if (r != PMM_OK)
        panic("mem_frame_free: frame 0x%lx rejected by the frame allocator (error %d)", phys, r);
}

void mem_pmm_stats(struct pmm_stats *st)
{
    uint64_t f = spin_lock_irqsave(&pmm_lock);
    pmm_stats(&kpmm, st);
    spin_unlock_irqrestore(&pmm_lock, f);
}

void mem_fail_frames_after(long n)
{
    uint64_t f = spin_lock_irqsave(&pmm_lock);
    fail_after = n;
    spin_unlock_irqrestore(&pmm_lock, f);
}

/* ---- arena=SIZE: a number with an optional K, M, G or T suffix ---- */

int mem_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || *s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*s) {
    case 'k': case 'K': shift = 10; s++; break;
    case 'm': case 'M': shift = 20; s++; break;
    case 'g': case 'G': shift = 30; s++; break;
    case 't': case 'T': shift = 40; s++; break;
    default: break;
    }
    if (*s != '\0')
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

static int arena_param(const char *value)
{
    uint64_t v;
    if (mem_parse_size(value, &v) != 0) {
        printk("mem: warning: arena=%s is not a size (like 64G or 512M); using the default %lu GiB\n",
               value ? value : "", KMEM_ARENA_DEFAULT >> 30);
        arena_option = 0;
        return 0;
    }
    if (v < SYS_ARENA_MIN || v > SYS_ARENA_MAX) {
        printk("mem: warning: arena=%s is outside %lu MiB..%lu TiB; using the default %lu GiB\n",
               value, SYS_ARENA_MIN >> 20, SYS_ARENA_MAX >> 40, KMEM_ARENA_DEFAULT >> 30);
        arena_option = 0;
        return 0;
    }
    arena_option = v;
    return 0;
}
KPARAM(arena, arena_param);

/* name=value: a number in lo..hi (unit after the range in the warning)
 * into *field; anything else keeps the default, deflt, with a warning. */
static int uint_param(const char *name, const char *value, uint64_t lo, uint64_t hi,
                      const char *unit, unsigned deflt, unsigned *field)
{
    uint64_t v;
    if (cmdline_uint(value, lo, hi, &v) != 0) {
        printk("mem: warning: %s=%s is not %lu..%lu%s; using the default %u\n", name,
               value ? value : "", lo, hi, unit, deflt);
        return 0;
    }
    *field = (unsigned)v;
    return 0;
}

/* release_ms=N: how long free heap pages and unused caches wait before
 * they go back (mm/sys.h, sys_config.release_ms) */
static int release_ms_param(const char *value)
{
    return uint_param("release_ms", value, 1, 86400000, "", 1000, &sys_config.release_ms);
}
KPARAM(release_ms, release_ms_param);

/* kfence=<ms>: guarded sampling's interval (mm/mkfence.c; 0 off, default
 * 100); kfence_pages=<n>: its pool, in objects (default 255). */
static int kfence_param(const char *value)
{
    return uint_param("kfence", value, 0, 86400000, " ms", 100, &sys_config.kfence_ms);
}
KPARAM(kfence, kfence_param);

static int kfence_pages_param(const char *value)
{
    return uint_param("kfence_pages", value, 1, 65535, "", 255, &sys_config.kfence_objects);
}
KPARAM(kfence_pages, kfence_pages_param);

/* heapmap=on|off: the end-of-run report ends with kmalloc_heapmap's dump,
 * for scripts/heapmap to draw from build/run.log. Off by default: the
 * dump's class table alone adds 70 lines to every run's log. */
static int heapmap_on;
static int heapmap_param(const char *value) { return cmdline_onoff(value, &heapmap_on); }
KPARAM(heapmap, heapmap_param);

/* ---- page faults in the arena window ---- */

static char pf_buf[160];

/* Runs inside #PF with interrupts off: reads only, no lock. */
const char *mem_pf_diagnose(uint64_t addr, uint64_t error)
{
    if (addr < KMALLOC_ARENA_BASE || addr - KMALLOC_ARENA_BASE >= KMALLOC_ARENA_SIZE)
        return NULL;
    struct kmem_port_stats ps;
    kmem_port_stats(&ps);
    if (addr < ps.region_base || addr - ps.region_base >= ps.region_size) {
        snprintk(pf_buf, sizeof(pf_buf),
                 "kmalloc arena window: access to 0x%lx, outside the region the heap reserved", addr);
        return pf_buf;
    }
    uint64_t page = addr & ~(PAGE_SIZE_4K - 1), leaf;
    switch (paging_probe(addr, &leaf)) {
    case PAGING_RELEASED_VA:
        snprintk(pf_buf, sizeof(pf_buf), "kmalloc arena: access to released page 0x%lx", page);
        break;
    case PAGING_NEVER:
        snprintk(pf_buf, sizeof(pf_buf),
                 "kmalloc arena: access to never-committed page 0x%lx (reserved, not backed)", page);
        break;
    case PAGING_MAPPED:
        snprintk(pf_buf, sizeof(pf_buf),
                 "kmalloc arena: %s of committed heap page 0x%lx (pte 0x%lx): heap memory is data only",
                 (error & 0x10) ? "instruction fetch" : "protection fault", page, leaf);
        break;
    }
    return pf_buf;
}

static pf_diag_fn prev_pf_hook; /* written once in mem_init */

static void kfence_line(const char *s) { printk("%s\n", s); }

/* Our window first; any other address goes to the hook installed before.
 * A guarded sample's fault prints kfence's report here, before the
 * exception's register dump and backtrace (the access's own stack). */
static const char *kmem_pf_diag(uint64_t addr, uint64_t error, const struct regs *r)
{
    if (kmalloc_kfence_fault(addr, (error & 2) != 0, r->rip, kfence_line))
        return "kfence: guarded sampling caught the access above";
    const char *d = mem_pf_diagnose(addr, error);
    if (!d && prev_pf_hook)
        d = prev_pf_hook(addr, error, r);
    return d;
}

void mem_init(const struct boot_info *bi)
{
    if (bi->memmap_entry_size != sizeof(struct pmm_region))
        panic("mem_init: memory map entries are %lu bytes, expected %lu",
              bi->memmap_entry_size, (uint64_t)sizeof(struct pmm_region));
    if (pmm_init(&kpmm, (const struct pmm_region *)boot_memmap(), bi->memmap_count,
                 bi->direct_map_offset, pmm_log) != PMM_OK)
        panic("mem_init: pmm_init rejected the boot memory map");
    uint64_t reclaimed = pmm_reclaim(&kpmm);
    struct pmm_stats st;
    pmm_stats(&kpmm, &st);
    printk("mem: frame allocator: %lu frames (%lu MiB) managed, %lu free; reclaimed %lu frames of boot-services memory\n",
           st.managed_frames, st.managed_frames >> 8, st.free_frames, reclaimed);

    static const struct paging_frame_source src = { mem_frame_alloc, mem_frame_free };
    paging_init(read_cr3() & PTE_ADDR_MASK, &src);

    if (arena_option)
        sys_config.arena_size = arena_option;
    if (kmalloc_init() != 0)
        panic("mem_init: kmalloc_init failed (arena %lu bytes)", (uint64_t)sys_config.arena_size);
    prev_pf_hook = idt_set_pf_hook(kmem_pf_diag);

    struct kmem_port_stats ps;
    kmem_port_stats(&ps);
    /* The core halves the arena when sys_reserve refuses it (mm/sys.h);
     * with the bounds above it never should, but say so if it did. */
    uint64_t as = mheap_.arena_end - mheap_.arena_start;
    if (as != sys_config.arena_size)
        printk("mem: warning: asked for a %lu MiB arena, the heap reserved %lu MiB\n",
               (uint64_t)sys_config.arena_size >> 20, as >> 20);
    int gib = (as & ((1ULL << 30) - 1)) == 0;
    printk("mem: kmalloc arena %lu %s%s, region 0x%lx-0x%lx reserved, %lu frames committed\n",
           gib ? as >> 30 : as >> 20, gib ? "GiB" : "MiB", arena_option ? " (arena=)" : " (default)",
           ps.region_base, ps.region_base + ps.region_size, ps.data_frames);
}

void mem_report(void)
{
    kmalloc_dump();

    struct kmem_port_stats ps;
    struct kmalloc_stats ks;
    kmem_port_stats(&ps);
    kmalloc_stats(&ks);
    printk("kmem: %lu data frames (%lu KiB) mapped in the arena, kmalloc committed %lu KiB; %lu page-table frames\n",
           ps.data_frames, ps.data_frames * 4, ks.committed >> 10, ps.table_frames);
    printk("kmem: %lu commits (%lu refused), %lu releases (%lu pages given back); %lu frames still "
           "gathered for a TLB shootdown\n", ps.commit_calls, ps.commit_failures, ps.release_calls,
           ps.released_pages, ps.gathered_frames);

    /* Print from a snapshot, not under the lock (printing is slow and
     * other CPUs may need frames meanwhile). pmm_dump reads only the
     * counters and section descriptors, never the free lists, so a copy
     * of the struct is enough. */
    static struct pmm snapshot; /* only mem_report, which runs once */
    uint64_t f = spin_lock_irqsave(&pmm_lock);
    snapshot = kpmm;
    spin_unlock_irqrestore(&pmm_lock, f);
    struct pmm_stats st;
    pmm_stats(&snapshot, &st);
    pmm_dump(&snapshot);
    uint64_t managed = st.managed_frames << PMM_FRAME_SHIFT;
    uint64_t pct1000 = managed ? st.overhead_bytes * 100000 / managed : 0;
    printk("kmem: frame allocator bookkeeping %lu bytes for %lu MiB managed = %lu.%03lu%% (limit 0.5%%)\n",
           st.overhead_bytes, managed >> 20, pct1000 / 1000, pct1000 % 1000);
    if (heapmap_on)
        kmalloc_heapmap();
}
