/*
 * tlb.h: TLB shootdown. After a caller removes or weakens page-table
 * entries for [start, end), tlb_shootdown_range makes sure no CPU can
 * still use the old translations: it flushes them here, asks every other
 * online CPU by IPI (VEC_TLB) to flush them too, and returns only when
 * each one has acknowledged. Only then may the frames behind the range be
 * reused.
 *
 * Waiting is progress-based, not a fixed deadline: a target that keeps
 * taking interrupts (its percpu.irq_count moves) is waited for however
 * long emulation makes it; the IPI is re-sent after every TLB_RESEND_MS
 * without progress, in case one was lost. Only a target that has neither acknowledged nor taken a
 * single interrupt for TLB_STALL_MS (interrupts off that long: a deadlock)
 * is reported: an NMI asks it where it is, and the panic names it with
 * its RIP, RFLAGS and backtrace.
 *
 * Works with interrupts on or off: while waiting, the initiator keeps
 * serving requests aimed at itself, so two CPUs shooting down at once
 * (each waiting for the other's ack) cannot deadlock. The caller must not
 * hold a lock another CPU could spin on with interrupts off (that CPU
 * would never take the IPI; the stall report then names it).
 *
 * Batching (the frame gather): code that unmaps pages hands their frames
 * to tlb_gather_add instead of freeing them; tlb_gather_flush then covers
 * everything gathered on this CPU with ONE shootdown round (the bounding
 * range, or a whole-TLB flush when that is wider than
 * TLB_FULL_FLUSH_PAGES) and only then gives the frames back. The heap
 * port (sys.c) gathers a whole sys_release, and when it is called with
 * interrupts off (from the timer interrupt's kfree, or under a caller's
 * irq-off lock) it does not flush at all: the frames stay gathered,
 * unmapped here and unusable, until this CPU next runs with interrupts
 * on (its next sys_release or sys_commit, smp_run_all work, the idle
 * loop). So no interrupt handler waits for 254 other CPUs. Gathered
 * frames are chained through their own memory (direct map), each link
 * stored twice so a stray write by a stale translation is caught.
 *
 * What makes the lazy case safe: until its shootdown, other CPUs may
 * still translate the released range to the gathered frames. Nobody may
 * use released memory, but the heap may commit the same range again, and
 * then a write through a stale translation would go to the old frame: so
 * sys_commit calls tlb_gather_sync first, which shoots the range down if
 * any CPU's gather still covers it. That can happen under the heap's
 * lock with interrupts off; it cannot deadlock because the port's
 * sys_lock serves TLB requests while it spins (a CPU waiting for the
 * lock still acknowledges).
 */
#ifndef ARCH_X86_64_TLB_H
#define ARCH_X86_64_TLB_H

#include <stdint.h>

/* A target with no interrupt and no acknowledgement for this long is stuck. */
#define TLB_STALL_MS 10000
/* How often the initiator checks its targets' progress, and after how
 * long without any it sends a target's IPI again. */
#define TLB_CHECK_MS 100
#define TLB_RESEND_MS 1000
/* Above this many pages, flush everything rather than page by page. */
#define TLB_FULL_FLUSH_PAGES 64
/* A CPU with interrupts off flushes its gather anyway beyond this many
 * frames (16 MiB), so memory held back stays bounded. */
#define TLB_GATHER_MAX 4096

void tlb_shootdown(uint64_t va, uint64_t len);
void tlb_shootdown_range(uint64_t start, uint64_t end);

/* Flush what other CPUs asked of this one; from the VEC_TLB handler and
 * from waiting initiators. Interrupts must be off. */
void tlb_service(void);

/* Lazy idle (tlb.c): an AP about to hlt with nothing to do enters; every
 * interrupt leaves first (irq_dispatch), flushing this CPU's whole TLB.
 * Interrupts off for both. */
void tlb_enter_lazy(void);
void tlb_leave_lazy(void);

/* Flush [va, va+len) on this CPU only. */
void tlb_flush_local(uint64_t va, uint64_t len);

/* The frame gather (above). add: any context; phys was mapped somewhere
 * in [start, end), already unmapped on this CPU. flush: returns the
 * frames it gave back. free_fn is set once at boot (kernel/mem.c's
 * mem_frame_free through sys.c). */
void tlb_gather_add(uint64_t phys, uint64_t start, uint64_t end);
uint64_t tlb_gather_flush(void);
/* Shoot [start, end) down if any CPU's gather overlaps it (sys_commit). */
void tlb_gather_sync(uint64_t start, uint64_t end);
uint64_t tlb_gather_count(void);        /* this CPU's gathered frames */
uint64_t tlb_gathered_frames(void);     /* all CPUs' (reports) */
void tlb_gather_init(void (*free_fn)(uint64_t phys));

#endif
