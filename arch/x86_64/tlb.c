/*
 * tlb.c: the shootdown protocol and the frame gather (see tlb.h).
 *
 * Mailboxes live in struct percpu. An initiator I with targets T (every
 * other online CPU):
 *   1. I writes its request (tlb_start, tlb_end) and tlb_acks = |T|,
 *      plain stores into its own percpu (nobody reads them yet);
 *   2. for each t in T: atomic OR of bit I into t.tlb_pending[I / 64]
 *      (RELEASE): publishes step 1 to t;
 *   3. IPI VEC_TLB to t;
 *   4. I spins until tlb_acks == 0 (ACQUIRE), serving its own pending bits
 *      meanwhile, and every TLB_CHECK_MS looks at the targets whose bit is
 *      still set: one whose irq_count moved is alive (its IPI is queued);
 *      one whose irq_count stood still for TLB_STALL_MS is reported.
 * A target t in tlb_service: exchange each tlb_pending word with 0
 * (ACQUIRE; pairs with 2, so t sees I's request), flush it, then
 * decrement I.tlb_acks (RELEASE; pairs with 4, so I knows t's flush
 * happened before I frees).
 *
 * Lazy idle CPUs (Linux's lazy TLB mode, for a kernel-only address
 * space): an AP about to hlt with nothing to do sets its tlb_lazy; I
 * skips such targets, and the AP, on its first interrupt, clears the flag
 * and flushes its whole TLB before anything else (tlb_leave_lazy). Both
 * sides are SEQ_CST (a Dekker pair): I writes the page tables, fences,
 * then reads tlb_lazy; the AP stores 0, then flushes. If I read 1, the
 * AP's store and flush come after I's page-table write, so its next walk
 * sees the new entries; if I read 0, the AP gets the IPI as usual. On a
 * machine with 254 idle CPUs a shootdown then interrupts only the busy
 * ones.
 *
 * Happens-before edges: page-table write (caller) -> invlpg on I -> OR
 * (release) -> exchange (acquire) on t -> t's invlpg -> decrement (release)
 * -> I's acquire load of 0 -> caller frees the frames. I's request fields
 * are not rewritten until every target has acknowledged, and only I starts
 * requests from I (interrupts off for the whole round), so one slot per
 * initiator suffices.
 *
 * The gather: struct gather[cpu] is touched only by its own CPU with
 * interrupts off (so an interrupt handler's add cannot interleave with the
 * task's flush); other CPUs read `count` with relaxed loads for reports.
 */
#include <stddef.h>
#include "tlb.h"
#include "apic.h"
#include "cpu.h"
#include "memlayout.h"
#include "percpu.h"
#include "smp.h"
#include "../../kernel/ksyms.h"
#include "../../kernel/panic.h"
#include "../../kernel/printk.h"

/* ---- local flushes ---- */

static void flush_all_local(void)
{
    uint64_t cr4 = read_cr4();
    if (cr4 & CR4_PGE) {  /* toggling PGE drops global entries too */
        write_cr4(cr4 & ~CR4_PGE);
        write_cr4(cr4);
    } else {
        write_cr3(read_cr3());
    }
}

static void flush_range_local(uint64_t start, uint64_t end)
{
    start &= ~(PAGE_SIZE_4K - 1);
    if (end <= start)
        return;
    if ((end - start) / PAGE_SIZE_4K > TLB_FULL_FLUSH_PAGES) {
        flush_all_local();
        return;
    }
    for (uint64_t a = start; a < end; a += PAGE_SIZE_4K)
        invlpg(a);
}

void tlb_flush_local(uint64_t va, uint64_t len)
{
    if (len)
        flush_range_local(va, va + len);
}

/* ---- the target side ---- */

void tlb_enter_lazy(void)
{
    __atomic_store_n(&this_cpu()->tlb_lazy, 1, __ATOMIC_SEQ_CST);
}

void tlb_leave_lazy(void)
{
    struct percpu *me = this_cpu();
    if (__atomic_load_n(&me->tlb_lazy, __ATOMIC_RELAXED)) {
        __atomic_store_n(&me->tlb_lazy, 0, __ATOMIC_SEQ_CST);
        flush_all_local();
    }
}

void tlb_service(void)
{
    struct percpu *me = this_cpu();
    for (unsigned w = 0; w < CPU_MASK_WORDS; w++) {
        if (!__atomic_load_n(&me->tlb_pending[w], __ATOMIC_RELAXED))
            continue;
        uint64_t pending = __atomic_exchange_n(&me->tlb_pending[w], 0, __ATOMIC_ACQUIRE);
        while (pending) {
            unsigned from = w * 64 + (unsigned)__builtin_ctzll(pending);
            pending &= pending - 1;
            struct percpu *src = &percpu_area[from];
            flush_range_local(src->tlb_start, src->tlb_end);
            __atomic_store_n(&me->tlb_served, me->tlb_served + 1, __ATOMIC_RELAXED);
            __atomic_fetch_sub(&src->tlb_acks, 1, __ATOMIC_RELEASE);
        }
    }
}

/* ---- the initiator side ---- */

static int still_pending(unsigned target, unsigned me)
{
    return (__atomic_load_n(&percpu_area[target].tlb_pending[me / 64], __ATOMIC_RELAXED) >> (me % 64)) & 1;
}

/* Print where a stuck target is (it answers an NMI even with interrupts
 * off), then panic. Interrupts are off; we are the initiator. */
static __attribute__((noreturn)) void stall_report(struct percpu *me, unsigned stuck, unsigned n)
{
    struct percpu *t = &percpu_area[stuck];
    uint32_t seq = __atomic_load_n(&t->nmi_state_seq, __ATOMIC_ACQUIRE);
    smp_nmi_request(stuck, NMI_REQ_STATE);
    uint64_t end = tsc_deadline_us(rdtsc(), 200000);
    while (__atomic_load_n(&t->nmi_state_seq, __ATOMIC_ACQUIRE) == seq && rdtsc() < end) {
        tlb_service();
        cpu_pause();
    }
    unsigned waiting = 0;
    for (unsigned c = 0; c < n; c++)
        if (c != me->cpu && still_pending(c, me->cpu))
            waiting++;
    printk("\ntlb: shootdown of 0x%lx-0x%lx from cpu %u: cpu %u (APIC id %u) took no interrupt and "
           "did not acknowledge for %u ms (%lu interrupts, %lu timer ticks, %lu requests served so far); "
           "%u CPU(s) still to acknowledge\n",
           me->tlb_start, me->tlb_end, me->cpu, stuck, t->apic_id, TLB_STALL_MS,
           __atomic_load_n(&t->irq_count, __ATOMIC_RELAXED), __atomic_load_n(&t->timer_ticks, __ATOMIC_RELAXED),
           __atomic_load_n(&t->tlb_served, __ATOMIC_RELAXED), waiting);
    if (__atomic_load_n(&t->nmi_state_seq, __ATOMIC_ACQUIRE) != seq) {
        uint64_t off = 0;
        const char *fn = ksym_lookup(t->nmi_rip, &off);
        printk("tlb: cpu %u is at RIP 0x%lx (%s+0x%lx), RSP 0x%lx, interrupts %s; its stack:\n", stuck,
               t->nmi_rip, fn ? fn : "?", off, t->nmi_rsp, (t->nmi_rflags & RFLAGS_IF) ? "on" : "off");
        backtrace_print(t->nmi_rip, t->nmi_rbp);
    } else {
        printk("tlb: cpu %u did not answer an NMI within 200 ms either\n", stuck);
    }
    panic("tlb: cpu %u made no progress for %u ms during a shootdown from cpu %u", stuck, TLB_STALL_MS, me->cpu);
}

/* Step 4: wait for every ack, checking the laggards' progress. */
static void wait_acks(struct percpu *me, unsigned n)
{
    uint64_t seen[MAX_CPUS];     /* targets' irq_count at their last progress */
    uint32_t quiet_ms[MAX_CPUS]; /* how long each has been without progress */
    for (unsigned c = 0; c < n; c++) {
        seen[c] = __atomic_load_n(&percpu_area[c].irq_count, __ATOMIC_RELAXED);
        quiet_ms[c] = 0;
    }
    uint64_t check = tsc_deadline_us(rdtsc(), TLB_CHECK_MS * 1000ull);
    while (__atomic_load_n(&me->tlb_acks, __ATOMIC_ACQUIRE) != 0) {
        tlb_service();  /* another initiator may be waiting for us */
        if (rdtsc() < check) {
            cpu_pause();
            continue;
        }
        for (unsigned c = 0; c < n; c++) {
            if (c == me->cpu || !still_pending(c, me->cpu))
                continue;
            uint64_t now = __atomic_load_n(&percpu_area[c].irq_count, __ATOMIC_RELAXED);
            if (now != seen[c]) {
                seen[c] = now;
                quiet_ms[c] = 0;
                continue;  /* it takes interrupts: ours is queued behind */
            }
            if ((quiet_ms[c] += TLB_CHECK_MS) >= TLB_STALL_MS)
                stall_report(me, c, n);
            /* Quiet for a whole second: send the IPI again in case it was
             * lost (it merges with a pending one, so this is only a
             * guard). Not more often: with 255 CPUs all shooting down at
             * once under emulation, re-sends every 100 ms were most of
             * the interrupts. */
            if (quiet_ms[c] % TLB_RESEND_MS == 0)
                lapic_send_ipi(percpu_area[c].apic_id, VEC_TLB);
        }
        check = tsc_deadline_us(rdtsc(), TLB_CHECK_MS * 1000ull);
    }
}

void tlb_shootdown_range(uint64_t start, uint64_t end)
{
    uint64_t flags = irq_save();  /* stay on this CPU; its slot is ours */
    struct percpu *me = this_cpu();
    flush_range_local(start, end);
    unsigned n = smp_cpus_online();
    if (n > 1) {
        me->tlb_start = start;
        me->tlb_end = end;
        /* More acks than targets until the loop has counted the lazy ones
         * out: no target can bring it to 0 early. */
        __atomic_store_n(&me->tlb_acks, n - 1, __ATOMIC_RELAXED);
        __atomic_store_n(&me->tlb_requests, me->tlb_requests + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);  /* page tables before tlb_lazy */
        uint64_t bit = 1ull << (me->cpu % 64);
        unsigned skipped = 0;
        for (unsigned c = 0; c < n; c++) {
            if (c == me->cpu)
                continue;
            struct percpu *t = &percpu_area[c];
            if (__atomic_load_n(&t->tlb_lazy, __ATOMIC_SEQ_CST)) {
                __atomic_fetch_add(&t->tlb_lazy_skips, 1, __ATOMIC_RELAXED);
                skipped++;
                continue;
            }
            __atomic_fetch_or(&t->tlb_pending[me->cpu / 64], bit, __ATOMIC_RELEASE);
            lapic_send_ipi(t->apic_id, VEC_TLB);
        }
        if (skipped)
            __atomic_fetch_sub(&me->tlb_acks, skipped, __ATOMIC_RELAXED);
        wait_acks(me, n);
    }
    irq_restore(flags);
}

void tlb_shootdown(uint64_t va, uint64_t len)
{
    if (len)
        tlb_shootdown_range(va, va + len);
}

/* ---- the frame gather ---- */

/* Link words in a gathered frame: next, and next ^ GATHER_MAGIC. Bit 0 of
 * both is clear, so a detached page-table page that still sits in another
 * CPU's paging-structure cache reads them as not-present entries. */
#define GATHER_MAGIC 0x6b6d616c6c6f6300ull

struct gather {
    uint64_t head;    /* phys of the first gathered frame, 0: none */
    uint64_t count;   /* atomic for readers; frames on the chain */
    uint64_t start;   /* VA range to shoot down before they are reused */
    uint64_t end;
} __attribute__((aligned(64)));

static struct gather gathers[MAX_CPUS];
static void (*gather_free)(uint64_t phys);  /* set once at boot */

void tlb_gather_init(void (*free_fn)(uint64_t phys))
{
    gather_free = free_fn;
}

void tlb_gather_add(uint64_t phys, uint64_t start, uint64_t end)
{
    uint64_t f = irq_save();
    struct gather *g = &gathers[this_cpu_id()];
    uint64_t *w = PHYS_TO_VIRT(phys);
    w[0] = g->head;
    w[1] = g->head ^ GATHER_MAGIC;
    g->head = phys;
    if (g->count == 0 || start < g->start)
        __atomic_store_n(&g->start, start, __ATOMIC_RELAXED);
    if (g->count == 0 || end > g->end)
        __atomic_store_n(&g->end, end, __ATOMIC_RELAXED);
    __atomic_store_n(&g->count, g->count + 1, __ATOMIC_RELEASE);
    irq_restore(f);
}

/*
 * Before [start, end) is mapped again: if any CPU still holds a gather
 * whose range overlaps it, other CPUs may still hold translations of the
 * old frames there, and a write through one would land in a gathered
 * frame instead of the new one. Shoot the range down now (the gathered
 * frames stay where they are). The release that gathered happened before
 * the heap handed the range out again (the core's lock orders them), so
 * its range is visible here.
 */
void tlb_gather_sync(uint64_t start, uint64_t end)
{
    for (unsigned c = 0; c < MAX_CPUS; c++) {
        struct gather *g = &gathers[c];
        if (!__atomic_load_n(&g->count, __ATOMIC_ACQUIRE))
            continue;
        if (__atomic_load_n(&g->start, __ATOMIC_RELAXED) < end &&
            start < __atomic_load_n(&g->end, __ATOMIC_RELAXED)) {
            tlb_shootdown_range(start, end);
            return;
        }
    }
}

uint64_t tlb_gather_count(void)
{
    return __atomic_load_n(&gathers[this_cpu_id()].count, __ATOMIC_RELAXED);
}

uint64_t tlb_gathered_frames(void)
{
    uint64_t sum = 0;
    for (unsigned c = 0; c < MAX_CPUS; c++)
        sum += __atomic_load_n(&gathers[c].count, __ATOMIC_RELAXED);
    return sum;
}

uint64_t tlb_gather_flush(void)
{
    uint64_t f = irq_save();
    struct gather *g = &gathers[this_cpu_id()];
    uint64_t head = g->head, count = g->count, freed = 0;
    if (count == 0) {
        irq_restore(f);
        return 0;
    }
    /* One round for everything gathered; the chain stays ours until the
     * acks are in (an interrupt handler here would start a new chain, but
     * interrupts stay off for the whole flush). */
    tlb_shootdown_range(g->start, g->end);
    g->head = 0;
    __atomic_store_n(&g->count, 0, __ATOMIC_RELAXED);
    while (head) {
        const uint64_t *w = PHYS_TO_VIRT(head);
        uint64_t next = w[0];
        if ((next ^ GATHER_MAGIC) != w[1] || (next & (PAGE_SIZE_4K - 1)))
            panic("tlb: gathered frame 0x%lx was written after its page was unmapped "
                  "(links 0x%lx, 0x%lx): a use after release through a stale translation", head, w[0], w[1]);
        gather_free(head);
        freed++;
        head = next;
    }
    if (freed != count)
        panic("tlb: gather chain held %lu frames, its count says %lu", freed, count);
    irq_restore(f);
    return freed;
}
