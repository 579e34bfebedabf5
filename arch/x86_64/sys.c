/*
 * sys.c (x86-64 kernel): mm/sys.h on bare metal. Where Go asks the OS for
 * memory (mmap, madvise), the kernel's heap asks the frame allocator for
 * frames and maps them itself. See mm/malloc.c for the allocator overview
 * and mm/sys.h for the states.
 *
 *   sys_reserve  Unreserved -> Reserved: hands out the fixed arena window
 *                (KMALLOC_ARENA_BASE, memlayout.h); maps nothing, costs no
 *                frame. Once only.
 *   sys_commit   Reserved -> Ready: per 4 KiB page, a frame from the frame
 *                allocator (kernel/mem.c), zeroed through the direct map,
 *                then mapped writable + NX (paging.c). All or nothing: on
 *                the first frame that cannot be had (data or page table),
 *                everything this call mapped is unmapped and given back.
 *   sys_release  Ready -> Reserved: unmap the range one PT's worth at a
 *                time, handing data frames and emptied page-table frames
 *                to this CPU's TLB gather (tlb.h); then one shootdown
 *                round for the whole range gives them back. Called with
 *                interrupts off (the timer interrupt's kfree, an irq-off
 *                caller), it leaves them gathered instead: no interrupt
 *                handler waits for other CPUs' acknowledgements. Called by
 *                the scavenger with no mm lock held.
 *   release_zero as sys_release, but each page then maps one zeroed frame
 *                read-only (mm's page maps, which kfree reads for stray
 *                pointers too); sys_commit replaces such leaves in place
 *                and shoots the range down
 *   move         krealloc's page moves: dst's leaf entries take src's
 *                frames (paging_move), one shootdown of both ranges, then
 *                dst's old frames go back to the frame allocator
 *   sys_lock     the kernel's ticket spinlock with interrupts off, serving
 *                TLB shootdown requests while it spins
 *   sys_fault    panic "kmalloc: <msg>: 0x<p>" with a backtrace
 *   sys_log      printk
 *   guard        guarded sampling's pages: sys_commit to open, sys_release
 *                to close (unmapped pages fault); kfence_ms 100 by
 *                default, kfence= and kfence_pages= (kernel/mem.c)
 *   now_ns       the TSC in nanoseconds; release_ms comes from the command
 *                line (release_ms=, kernel/mem.c). No background context:
 *                every CPU's timer tick calls kmalloc_safepoint, which
 *                runs a release step when one is due, and the idle loop
 *                calls kmalloc_background before it halts (smp.c). No
 *                now_coarse_ns: a TSC read is a few cycles on hardware
 *   leak detector hooks (kmalloc_leak_scan; kmemleak.c, stopworld.c):
 *     track_sites  8 (frames per allocation) when the command line says
 *                kmemleak=on (parsed before kmalloc_init asks)
 *     roots        .data and .bss less the stack memory inside them
 *                (boot stack, AP stacks' backing, IST stacks), then every
 *                online CPU's live stack, from its stack pointer to its top
 *     stop_world   VEC_STOP_WORLD to every other online CPU; each parks
 *                with interrupts off, its registers pushed and its RSP
 *                published, answering TLB shootdowns; -1 if one has not
 *                parked 1 s after the last that did (the parked ones go)
 *     start_world  releases them; the pause is kept for the report
 *     symbolize    ksym_lookup: "func+0xoff"
 *     backtrace    the frame-pointer walk of panic's backtrace (the
 *                kernel keeps frame pointers), bounded like it
 *   meshing hooks (mesh.c): mesh_alias, mesh_unalias and mesh_context;
 *                no mesh_protect, so the core stops the world around
 *                each mesh's copy (stop_world above)
 *
 * The port counts the frames it holds for heap data (kmem_port_stats), so
 * self-tests can check the core's committed bytes against them exactly.
 */
#include <stddef.h>
#include <stdint.h>

#include "../../mm/sys.h"
#include "../../kernel/mem.h"
#include "../../kernel/panic.h"
#include "../../kernel/printk.h"
#include "apic.h"
#include "cpu.h"
#include "kmemleak.h"
#include "memlayout.h"
#include "mesh.h"
#include "paging.h"
#include "percpu.h"
#include "stopworld.h"
#include "tlb.h"

/* arena_size is the default; kernel/mem.c sets arena= from the command
 * line before kmalloc_init (mm/sys.h lets a port write it until then). */
static int kmem_move(void *dst, void *src, size_t n);
static int kmem_guard(void *p, size_t n, int open);
static void kmem_release_zero(void *p, size_t n);

/* sys_config.now_ns: the TSC, calibrated against the PIT at boot
 * (apic.c). Invariant under QEMU and on every CPU since Nehalem; a CPU
 * whose TSC stops in deep sleep would only make pages go back later. */
static uint64_t kmem_now_ns(void)
{
    uint64_t per_us = tsc_per_us();
    if (per_us == 0)
        return 0; /* before calibration: time stands still */
    uint64_t t = rdtsc();
    return t / per_us * 1000 + t % per_us * 1000 / per_us;
}

struct sys_config sys_config = {
    .page_size = 4096,
    .commit_zeroed = 1,
    .max_cpus = MAX_CPUS,
    .arena_size = KMEM_ARENA_DEFAULT,
    .move = kmem_move,
    .release_zero = kmem_release_zero,
    .track_sites = kmemleak_track_sites,
    .roots = kmemleak_roots,
    .stop_world = stop_world,
    .start_world = start_world,
    .symbolize = kmemleak_symbolize,
    .backtrace = kmemleak_backtrace,
    .now_ns = kmem_now_ns,
    .mesh_alias = kmem_mesh_alias,
    .mesh_unalias = kmem_mesh_unalias,
    .mesh_context = kmem_mesh_context,
    .guard = kmem_guard,
    .kfence_ms = 100, /* KFENCE's default; kfence= on the command line */
};

static uintptr_t region_base;   /* written once by sys_reserve */
static size_t region_size;      /* written once by sys_reserve */
static uint64_t data_frames;    /* atomic: frames mapped for heap data now */
static uint64_t commit_calls;   /* atomic */
static uint64_t commit_failures;/* atomic */
static uint64_t release_calls;  /* atomic */
static uint64_t released_pages; /* atomic: pages ever released */
static uint64_t moved_pages;    /* atomic: pages ever moved (kmem_move) */
static uint64_t zero_phys;      /* written once by sys_reserve: the frame
                                   every page given back by release_zero
                                   maps, read-only */

static void zero_frame(uint64_t phys);

int sys_reserve(size_t size, void **base)
{
    /* kmalloc_init's first call to the port: from here on sys_release
     * hands frames to the TLB gather, which gives them to kernel/mem.c. */
    tlb_gather_init(mem_frame_free);
    if (region_base != 0 || size == 0 || size > KMALLOC_ARENA_SIZE)
        return -1;
    if (zero_phys == 0) {
        if (mem_frame_alloc(&zero_phys) != 0)
            return -1;
        zero_frame(zero_phys);
    }
    region_base = KMALLOC_ARENA_BASE;
    region_size = (size + PAGE_SIZE_4K - 1) & ~(size_t)(PAGE_SIZE_4K - 1);
    *base = (void *)region_base;
    return 0;
}

/* Contract checks (mm/sys.h preconditions): a violation is a core bug. */
static void check_range(const char *who, const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p;
    if (n == 0 || (a | n) & (PAGE_SIZE_4K - 1) || a < region_base ||
        a - region_base > region_size || n > region_size - (a - region_base))
        panic("%s: range 0x%lx+0x%lx outside the reserved arena or unaligned", who,
              (uint64_t)a, (uint64_t)n);
}

/* Unmap [va, va + n). mark: a real release: leave released markers for
 * the fault diagnosis and hand the frames to the TLB gather, since other
 * CPUs may still hold translations; the caller flushes it. !mark: undoing
 * a commit that failed: those pages were never Ready, no address in them
 * was handed out, and this may run under mheap.lock, where waiting for
 * other CPUs' acks could deadlock; the frames go straight back. Returns
 * data frames unmapped. */
static uint64_t unmap_range(uintptr_t va, size_t n, int mark)
{
    uint64_t d[PAGING_BATCH], tables[2], freed = 0;
    size_t pages = n / PAGE_SIZE_4K;
    uintptr_t start = va;
    while (pages > 0) {
        unsigned nt;
        size_t done = paging_unmap_batch(va, pages, mark, d, tables, &nt);
        for (size_t i = 0; i < done; i++) {
            if (d[i]) {
                if (mark)
                    tlb_gather_add(d[i], start, start + n);
                else
                    mem_frame_free(d[i]);
                freed++;
            }
        }
        for (unsigned i = 0; i < nt; i++) {
            if (mark)
                tlb_gather_add(tables[i], start, start + n);
            else
                mem_frame_free(tables[i]);
        }
        va += done * PAGE_SIZE_4K;
        pages -= done;
    }
    __atomic_sub_fetch(&data_frames, freed, __ATOMIC_RELAXED);
    return freed;
}

/* With interrupts on, give this CPU's gathered frames back now (one
 * shootdown round); with them off, only once the gather grew past
 * TLB_GATHER_MAX. An interrupt handler (interrupts off) only gets here
 * when the code it interrupted ran with interrupts on and so held no
 * irq-off lock another CPU could be spinning on: the wait cannot
 * deadlock, it is only slow, which is why it is the exception. */
static void gather_flush_if_allowed(void)
{
    if ((cpu_read_rflags() & RFLAGS_IF) || tlb_gather_count() > TLB_GATHER_MAX)
        tlb_gather_flush();
}

static void zero_frame(uint64_t phys)
{
    uint64_t *w = PHYS_TO_VIRT(phys);
    for (size_t i = 0; i < PAGE_SIZE_4K / sizeof(uint64_t); i++)
        w[i] = 0;
}

int sys_commit(void *p, size_t n)
{
    check_range("sys_commit", p, n);
    __atomic_add_fetch(&commit_calls, 1, __ATOMIC_RELAXED);
    uintptr_t va = (uintptr_t)p, end = va + n;
    /* Frames this CPU still holds for a shootdown are memory we can use;
     * and no CPU may keep a stale translation of the range (tlb.h). */
    if ((cpu_read_rflags() & RFLAGS_IF) && tlb_gather_count())
        tlb_gather_flush();
    tlb_gather_sync(va, end);
    /* A range release_zero gave back maps the zero frame: its leaves are
     * replaced in place, and every CPU must then drop the read-only
     * translation before mm writes there (a stale one would read zeros
     * where mm has just stored its page map). */
    int unzeroed = 0;
    for (; va < end; va += PAGE_SIZE_4K) {
        uint64_t phys;
        if (mem_frame_alloc(&phys) != 0)
            goto fail;
        zero_frame(phys);
        if (paging_unzero(va, phys, PAGING_HEAP_FLAGS, zero_phys))
            unzeroed = 1;
        else if (paging_map(va, phys, PAGING_HEAP_FLAGS) != 0) {
            mem_frame_free(phys);
            goto fail;
        }
        __atomic_add_fetch(&data_frames, 1, __ATOMIC_RELAXED);
    }
    if (unzeroed)
        tlb_shootdown((uintptr_t)p, n);
    return 0;
fail:
    __atomic_add_fetch(&commit_failures, 1, __ATOMIC_RELAXED);
    if (va > (uintptr_t)p && unzeroed) /* back to the zero frame: readers */
        kmem_release_zero(p, va - (uintptr_t)p);
    else if (va > (uintptr_t)p)
        unmap_range((uintptr_t)p, va - (uintptr_t)p, 0);
    return -1;
}

/* sys_config.release_zero: like sys_release, but each page maps the zero
 * frame read-only afterwards, so mm's lock-free readers of its page maps
 * (kfree of any pointer into the heap) read zeros instead of faulting.
 * The frames go to the TLB gather as in sys_release. */
static void kmem_release_zero(void *p, size_t n)
{
    check_range("sys_config.release_zero", p, n);
    __atomic_add_fetch(&release_calls, 1, __ATOMIC_RELAXED);
    uint64_t old[PAGING_BATCH];
    uintptr_t va = (uintptr_t)p, end = va + n;
    while (va < end) {
        size_t k = (end - va) / PAGE_SIZE_4K;
        if (k > PAGING_BATCH)
            k = PAGING_BATCH;
        if (paging_zero(va, k, zero_phys, old) != 0)
            panic("sys_config.release_zero: 0x%lx+0x%lx: a page is not mapped (must be Ready)",
                  (uint64_t)va, (uint64_t)(k * PAGE_SIZE_4K));
        for (size_t i = 0; i < k; i++)
            tlb_gather_add(old[i], (uintptr_t)p, end);
        __atomic_sub_fetch(&data_frames, k, __ATOMIC_RELAXED);
        __atomic_add_fetch(&released_pages, k, __ATOMIC_RELAXED);
        va += k * PAGE_SIZE_4K;
    }
    gather_flush_if_allowed();
}

void sys_release(void *p, size_t n)
{
    check_range("sys_release", p, n);
    __atomic_add_fetch(&release_calls, 1, __ATOMIC_RELAXED);
    uint64_t freed = unmap_range((uintptr_t)p, n, 1);
    gather_flush_if_allowed();
    if (freed != n / PAGE_SIZE_4K)
        panic("sys_release: 0x%lx+0x%lx had %lu unmapped pages (must all be Ready)",
              (uint64_t)(uintptr_t)p, (uint64_t)n, (uint64_t)(n / PAGE_SIZE_4K - freed));
    __atomic_add_fetch(&released_pages, freed, __ATOMIC_RELAXED);
}

/* sys_config.guard: a guarded sample's page is committed when taken and
 * released when freed (then not present: any access faults, and the
 * #PF hook asks kmalloc_kfence_fault first, kernel/mem.c). In the timer
 * interrupt the release leaves the frame gathered as any other does, and
 * the page stays reachable through a stale translation on another CPU
 * until the next shootdown: a use after free right then is missed. */
static int kmem_guard(void *p, size_t n, int open)
{
    if (open)
        return sys_commit(p, n);
    sys_release(p, n);
    return 0;
}

/* sys_config.move, a PT's worth at a time: leaves move, then every CPU
 * drops its translations of both ranges, then dst's old frames are free. */
static int kmem_move(void *dst, void *src, size_t n)
{
    check_range("sys_config.move", dst, n);
    check_range("sys_config.move", src, n);
    uint64_t old[PAGING_BATCH];
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    for (size_t pages = n / PAGE_SIZE_4K; pages > 0;) {
        size_t k = pages < PAGING_BATCH ? pages : PAGING_BATCH;
        if (paging_move(d, s, k, old) != 0)
            panic("sys_config.move: 0x%lx <- 0x%lx: a page is not mapped (must be Ready)",
                  (uint64_t)d, (uint64_t)s);
        tlb_shootdown(s, k * PAGE_SIZE_4K);
        tlb_shootdown(d, k * PAGE_SIZE_4K);
        for (size_t i = 0; i < k; i++)
            mem_frame_free(old[i]);
        __atomic_sub_fetch(&data_frames, k, __ATOMIC_RELAXED);
        __atomic_add_fetch(&moved_pages, k, __ATOMIC_RELAXED);
        d += k * PAGE_SIZE_4K;
        s += k * PAGE_SIZE_4K;
        pages -= k;
    }
    return 0;
}


void kmem_port_frames_gone(uint64_t n) { __atomic_sub_fetch(&data_frames, n, __ATOMIC_RELAXED); }

/* The ticket lock, serving TLB shootdown requests while it waits: a CPU
 * spinning here has interrupts off and would otherwise never acknowledge,
 * and the holder may be a sys_commit waiting for exactly that (tlb.h). */
void sys_lock(struct sys_lock *l)
{
    uint64_t f = irq_save();
    uint64_t spins = 0;
    uint32_t me = __atomic_fetch_add(&l->lock.next, 1, __ATOMIC_RELAXED);
    while (__atomic_load_n(&l->lock.owner, __ATOMIC_ACQUIRE) != me) {
        tlb_service();
        cpu_pause();
        spins++;
    }
    l->irqflags = f;
    l->acquisitions++;
    l->spins += spins;
}

void sys_unlock(struct sys_lock *l)
{
    uint64_t f = l->irqflags;
    spin_unlock_irqrestore(&l->lock, f);
}

_Noreturn void sys_fault(const char *msg, const void *p)
{
    panic("kmalloc: %s: 0x%lx", msg, (uint64_t)(uintptr_t)p);
}

void sys_log(const char *s)
{
    printk("%s\n", s);
}

void kmem_port_stats(struct kmem_port_stats *st)
{
    st->region_base = region_base;
    st->region_size = region_size;
    st->data_frames = __atomic_load_n(&data_frames, __ATOMIC_RELAXED);
    st->table_frames = paging_table_frames();
    st->gathered_frames = tlb_gathered_frames();
    st->zero_frames = zero_phys != 0;
    st->commit_calls = __atomic_load_n(&commit_calls, __ATOMIC_RELAXED);
    st->commit_failures = __atomic_load_n(&commit_failures, __ATOMIC_RELAXED);
    st->release_calls = __atomic_load_n(&release_calls, __ATOMIC_RELAXED);
    st->released_pages = __atomic_load_n(&released_pages, __ATOMIC_RELAXED);
    st->moved_pages = __atomic_load_n(&moved_pages, __ATOMIC_RELAXED);
}
