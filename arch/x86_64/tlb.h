/*
 * tlb.h: TLB shootdown. After a caller removes or weakens page-table
 * entries for [va, va+len), tlb_shootdown makes sure no CPU can still use
 * the old translations: it flushes them here, asks every other online CPU
 * by IPI (VEC_TLB) to flush them too, and returns only when each one has
 * acknowledged. Only then may the frames behind the range be reused (the
 * kernel's sys_release frees them after this returns).
 *
 * Works with interrupts on or off: while waiting, the initiator keeps
 * serving requests aimed at itself, so two CPUs shooting down at once
 * (each waiting for the other's ack) cannot deadlock. A CPU that does not
 * acknowledge within TLB_ACK_TIMEOUT_MS ends in a panic naming it.
 * The caller must not hold a lock another CPU could spin on with
 * interrupts off (that CPU would never take the IPI). An interrupt
 * handler may call it (the heap's scavenger can run inside an allocating
 * timer tick): the interrupted code held no irq-off lock, or the interrupt
 * could not have arrived.
 */
#ifndef ARCH_X86_64_TLB_H
#define ARCH_X86_64_TLB_H

#include <stdint.h>

#define TLB_ACK_TIMEOUT_MS 2000
/* Above this many pages, flush everything rather than page by page. */
#define TLB_FULL_FLUSH_PAGES 64

void tlb_shootdown(uint64_t va, uint64_t len);

/* Flush what other CPUs asked of this one; from the VEC_TLB handler and
 * from waiting initiators. Interrupts must be off. */
void tlb_service(void);

/* Flush [va, va+len) on this CPU only. */
void tlb_flush_local(uint64_t va, uint64_t len);

#endif
