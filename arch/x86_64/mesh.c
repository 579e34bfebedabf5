/*
 * mesh.c (x86-64 kernel): meshing's hooks (mm/sys.h: mesh_alias,
 * mesh_unalias, mesh_context; the core is mm/mmesh.c, which copies src's
 * live objects into dst's frames and then calls mesh_alias).
 *
 *   mesh_alias(dst, src, len, own)  src's leaf entries take dst's
 *       frames, keeping their flags (writable, NX): paging_alias; then
 *       one shootdown of src's range; only then do src's own frames go
 *       back to the frame allocator (own), since until every CPU has
 *       dropped its translation a write through it would land in a freed
 *       frame. own 0: src is an alias moving with its group (mmesh.c),
 *       the frames it showed are another span's and stay.
 *   mesh_unalias(src, len)  src's leaves are cleared (released markers,
 *       as sys_release leaves them) without taking their frames, which
 *       are dst's; page tables that emptied go back after one shootdown.
 *       The range is Reserved, so a later sys_commit maps fresh frames.
 *   mesh_context  1 with interrupts on (the idle loop's
 *       kmalloc_background), 0 in the timer tick (kmalloc_safepoint).
 *
 * Writers are kept out by stop_world, not by write protection: the core
 * calls sys_config.stop_world around the copy and mesh_alias when the
 * port has no mesh_protect. A write-protect scheme would need a page
 * fault handler that waits for the mesher, and a fault taken by an
 * interrupt handler on the mesher's own CPU (the timer tick allocating
 * and writing) could never be answered; with the world stopped nobody
 * but the mesher runs, parked CPUs still answer the shootdown (they poll
 * tlb_service), and the mesher itself runs with interrupts off.
 *
 * Why not from the timer tick (mesh_context): stop_world from a tick
 * stalls the task the tick interrupted for the whole pause; a CPU that
 * spins with interrupts off waiting for that task (a flag handshake)
 * never parks, and stop_world can only give up after
 * STOP_WORLD_QUIET_MS: a second-long interrupt handler. From the idle
 * loop nothing is interrupted, and kmalloc_mesh/kmalloc_trim are called
 * by task code. mesh_unalias is only reached from those contexts too
 * (the core asks mesh_context before it reaps), so it shoots down at
 * once rather than through the TLB gather; if a task calls kmalloc_trim
 * with interrupts off, the shootdown still completes (sys_lock and
 * parked CPUs serve requests), it is only slower.
 *
 * Counters are atomics, read by kmem_mesh_stats for the self-tests.
 */
#include <stddef.h>
#include <stdint.h>

#include "../../mm/sys.h"
#include "../../kernel/mem.h"
#include "../../kernel/panic.h"
#include "cpu.h"
#include "memlayout.h"
#include "mesh.h"
#include "paging.h"
#include "tlb.h"

static uint64_t aliased_pages;   /* atomic: 4 KiB pages ever aliased */
static uint64_t freed_frames;    /* atomic: src frames given back by alias */
static uint64_t unaliased_pages; /* atomic: pages ever unaliased */

static void check_range(const char *who, const void *p, size_t len)
{
    struct kmem_port_stats ps;
    kmem_port_stats(&ps);
    uintptr_t a = (uintptr_t)p;
    if (len == 0 || (a | len) & (PAGE_SIZE_4K - 1) || a < ps.region_base ||
        a - ps.region_base > ps.region_size || len > ps.region_size - (a - ps.region_base))
        panic("%s: range 0x%lx+0x%lx outside the reserved arena or unaligned", who, (uint64_t)a,
              (uint64_t)len);
}

int kmem_mesh_alias(void *dst, void *src, size_t len, int own)
{
    check_range("sys_config.mesh_alias", dst, len);
    check_range("sys_config.mesh_alias", src, len);
    uint64_t old[PAGING_BATCH];
    size_t n = len / PAGE_SIZE_4K;
    /* a span of a small class is a few pages: one batch, all or nothing */
    if (n > PAGING_BATCH)
        return -1;
    if (paging_alias((uintptr_t)dst, (uintptr_t)src, n, old) != 0)
        return -1;
    tlb_shootdown((uintptr_t)src, len);
    if (!own)
        return 0; /* an alias moving with its group: the frames it showed
                     are its old dst's, which stays a span of its own */
    for (size_t i = 0; i < n; i++)
        mem_frame_free(old[i]);
    kmem_port_frames_gone(n);
    __atomic_add_fetch(&aliased_pages, n, __ATOMIC_RELAXED);
    __atomic_add_fetch(&freed_frames, n, __ATOMIC_RELAXED);
    return 0;
}

int kmem_mesh_unalias(void *src, size_t len)
{
    check_range("sys_config.mesh_unalias", src, len);
    uint64_t d[PAGING_BATCH], tables[2 * 4];
    unsigned nt = 0;
    uintptr_t va = (uintptr_t)src;
    for (size_t pages = len / PAGE_SIZE_4K; pages > 0;) {
        unsigned k;
        if (nt + 2 > sizeof tables / sizeof tables[0])
            panic("sys_config.mesh_unalias: 0x%lx+0x%lx is larger than any span",
                  (uint64_t)(uintptr_t)src, (uint64_t)len);
        size_t done = paging_unmap_batch(va, pages, 1, d, tables + nt, &k);
        for (size_t i = 0; i < done; i++)
            if (d[i] == 0)
                panic("sys_config.mesh_unalias: 0x%lx is not mapped (an alias is Ready)",
                      (uint64_t)(va + i * PAGE_SIZE_4K));
        nt += k;
        /* the data frames are dst's: not ours to free */
        va += done * PAGE_SIZE_4K;
        pages -= done;
    }
    tlb_shootdown((uintptr_t)src, len);
    for (unsigned i = 0; i < nt; i++)
        mem_frame_free(tables[i]);
    __atomic_add_fetch(&unaliased_pages, len / PAGE_SIZE_4K, __ATOMIC_RELAXED);
    return 0;
}

int kmem_mesh_context(void) { return (cpu_read_rflags() & RFLAGS_IF) != 0; }

void kmem_mesh_stats(struct kmem_mesh_stats *st)
{
    st->aliased_pages = __atomic_load_n(&aliased_pages, __ATOMIC_RELAXED);
    st->freed_frames = __atomic_load_n(&freed_frames, __ATOMIC_RELAXED);
    st->unaliased_pages = __atomic_load_n(&unaliased_pages, __ATOMIC_RELAXED);
}
