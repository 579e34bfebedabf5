/*
 * stopworld.h: park every other online CPU while one CPU looks at memory
 * that they would otherwise change (the leak scan, mm/mgcmark.c, through
 * sys_config.stop_world/start_world).
 *
 * stop_world() sends VEC_STOP_WORLD to every other online CPU and waits,
 * with interrupts off on the caller, until each has parked: it took the
 * IPI (so it had interrupts on and holds no spinlock and no per-CPU
 * allocator state), pushed its registers, published its stack pointer
 * and spins with interrupts off until start_world(). The wait is
 * bounded: if some CPU has not parked STOP_WORLD_QUIET_MS after the last
 * one that did, the ones that parked are released, the laggards are
 * named on the console and stop_world returns -1.
 *
 * Parked CPUs keep serving TLB shootdown requests, so a shootdown that
 * was in flight when the stop began still completes (tlb.h).
 */
#ifndef ARCH_X86_64_STOPWORLD_H
#define ARCH_X86_64_STOPWORLD_H

#include <stdint.h>

/* A stop gives up when no further CPU parked for this long. */
#define STOP_WORLD_QUIET_MS 1000

/* 0: every other online CPU is parked, and the caller runs with
 * interrupts off until start_world. -1: the world is running as before
 * (some CPU did not park in time, or another CPU's stop is in progress).
 * Not reentrant; pairs with one start_world. */
int stop_world(void);
void start_world(void);

/* While the world is stopped: the stack pointer CPU cpu published when
 * it parked, below which nothing on its stack is live. Returns 0, or -1
 * if cpu is not parked in the current stop. */
int stop_world_parked_rsp(unsigned cpu, uint64_t *rsp);

/* The last completed stop: TSC ticks from the first IPI to start_world,
 * and how many CPUs were parked. */
uint64_t stop_world_last_pause_tsc(void);
unsigned stop_world_last_parked(void);

/* VEC_STOP_WORLD's handler (smp.c's irq_dispatch, after the EOI):
 * interrupts off; parks if a stop is in progress, returns at once if it
 * was called off before this CPU got here. */
void stop_world_park(void);

#endif
