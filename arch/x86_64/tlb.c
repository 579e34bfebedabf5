/*
 * tlb.c: the shootdown protocol (see tlb.h).
 *
 * Mailboxes live in struct percpu. An initiator I with targets T:
 *   1. I writes its request (tlb_va, tlb_len) and tlb_acks = |T|, plain
 *      stores into its own percpu (nobody reads them yet);
 *   2. for each t in T: atomic OR of bit I into t.tlb_pending (RELEASE):
 *      publishes step 1 to t;
 *   3. IPI VEC_TLB to t;
 *   4. I spins until tlb_acks == 0 (ACQUIRE), serving its own pending bits
 *      meanwhile.
 * A target t in tlb_service: exchange tlb_pending with 0 (ACQUIRE; pairs
 * with 2, so t sees I's request), flush it, then decrement I.tlb_acks
 * (RELEASE; pairs with 4, so I knows t's flush happened before I frees).
 *
 * Happens-before edges: page-table write (caller) -> invlpg on I -> OR
 * (release) -> exchange (acquire) on t -> t's invlpg -> decrement (release)
 * -> I's acquire load of 0 -> caller frees the frames. I's request fields
 * are not rewritten until every target has acknowledged, and only I starts
 * requests from I (irq-off, not from interrupt context), so one slot per
 * initiator suffices.
 */
#include "tlb.h"
#include "apic.h"
#include "cpu.h"
#include "memlayout.h"
#include "percpu.h"
#include "smp.h"
#include "../../kernel/panic.h"

void tlb_flush_local(uint64_t va, uint64_t len)
{
    uint64_t start = va & ~(PAGE_SIZE_4K - 1);
    uint64_t end = va + len;
    if (len == 0)
        return;
    if ((end - start) / PAGE_SIZE_4K > TLB_FULL_FLUSH_PAGES) {
        uint64_t cr4 = read_cr4();
        if (cr4 & CR4_PGE) {  /* toggling PGE drops global entries too */
            write_cr4(cr4 & ~CR4_PGE);
            write_cr4(cr4);
        } else {
            write_cr3(read_cr3());
        }
        return;
    }
    for (uint64_t a = start; a < end; a += PAGE_SIZE_4K)
        invlpg(a);
}

void tlb_service(void)
{
    struct percpu *me = this_cpu();
    uint64_t pending = __atomic_exchange_n(&me->tlb_pending, 0, __ATOMIC_ACQUIRE);
    while (pending) {
        unsigned from = __builtin_ctzll(pending);
        pending &= pending - 1;
        struct percpu *src = &percpu_area[from];
        tlb_flush_local(src->tlb_va, src->tlb_len);
        __atomic_store_n(&me->tlb_served, me->tlb_served + 1, __ATOMIC_RELAXED);
        __atomic_fetch_sub(&src->tlb_acks, 1, __ATOMIC_RELEASE);
    }
}

void tlb_shootdown(uint64_t va, uint64_t len)
{
    uint64_t flags = irq_save();  /* stay on this CPU; its slot is ours */
    struct percpu *me = this_cpu();
    tlb_flush_local(va, len);
    unsigned n = smp_cpus_online();
    if (n > 1) {
        me->tlb_va = va;
        me->tlb_len = len;
        __atomic_store_n(&me->tlb_acks, n - 1, __ATOMIC_RELAXED);
        __atomic_store_n(&me->tlb_requests, me->tlb_requests + 1, __ATOMIC_RELAXED);
        for (unsigned c = 0; c < n; c++) {
            if (c == me->cpu)
                continue;
            __atomic_fetch_or(&percpu_area[c].tlb_pending, 1ull << me->cpu, __ATOMIC_RELEASE);
            lapic_send_ipi(percpu_area[c].apic_id, VEC_TLB);
        }
        uint64_t end = tsc_deadline_us(rdtsc(), TLB_ACK_TIMEOUT_MS * 1000ull);
        while (__atomic_load_n(&me->tlb_acks, __ATOMIC_ACQUIRE) != 0) {
            tlb_service();  /* another initiator may be waiting for us */
            if (rdtsc() > end) {
                unsigned late = 0;
                for (unsigned c = 0; c < n; c++)
                    if (c != me->cpu && (__atomic_load_n(&percpu_area[c].tlb_pending, __ATOMIC_RELAXED) >> me->cpu) & 1)
                        late = c;
                panic("tlb: shootdown of 0x%lx+0x%lx from cpu %u: %u CPU(s) did not acknowledge "
                      "within %u ms (cpu %u still has the request pending)",
                      va, len, me->cpu, __atomic_load_n(&me->tlb_acks, __ATOMIC_RELAXED),
                      TLB_ACK_TIMEOUT_MS, late);
            }
            cpu_pause();
        }
    }
    irq_restore(flags);
}
