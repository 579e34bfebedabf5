/*
 * statecost.c: what the one per-object state change that free-time
 * double-free detection needs costs on this CPU, for the choice recorded
 * in mm/malloc.c ("Why a live byte per slot"). A kmalloc+kfree pair
 * changes the state twice (live on allocation, free on free):
 *
 *   byte    two plain byte stores (what the core does: mspan live bytes)
 *   locked  lock bts + lock btr on a bitmap word (an atomic live bit,
 *           needed as soon as other CPUs may flip neighbouring bits)
 *   cas     lock cmpxchg on the word twice (an atomic test-and-set
 *           of the bit, the other way to write the same thing)
 *
 * Each variant runs ROUNDS batches of BATCH pairs over 64 objects' state
 * (one cache line, hot, as on the fast path); the printed figure is TSC
 * cycles per pair from the cheapest batch, so a busy shared machine adds
 * little. Output: one line "statecost: byte X locked Y cas Z" (cycles).
 */
#include <stdint.h>
#include <stdio.h>
#include <x86intrin.h>

enum { BATCH = 4096, ROUNDS = 200 };

static volatile uint8_t live[64];
static uint64_t word;

__attribute__((noinline)) static void pairs_byte(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		live[i & 63] = 1;
		live[i & 63] = 0;
	}
}

__attribute__((noinline)) static void pairs_locked(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t bit = (uint64_t)1 << (i & 63);
		__atomic_fetch_or(&word, bit, __ATOMIC_RELAXED);
		__atomic_fetch_and(&word, ~bit, __ATOMIC_RELAXED);
	}
}

__attribute__((noinline)) static void pairs_cas(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t bit = (uint64_t)1 << (i & 63);
		uint64_t w = __atomic_load_n(&word, __ATOMIC_RELAXED);
		while (!__atomic_compare_exchange_n(&word, &w, w | bit, 0, __ATOMIC_RELAXED,
		                                    __ATOMIC_RELAXED))
			;
		while (!__atomic_compare_exchange_n(&word, &w, w & ~bit, 0, __ATOMIC_RELAXED,
		                                    __ATOMIC_RELAXED))
			;
	}
}

__attribute__((noinline)) static void pairs_none(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		__asm__ volatile("" ::: "memory");
}

static double best(void (*fn)(unsigned))
{
	uint64_t min = UINT64_MAX;
	for (int r = 0; r < ROUNDS; r++) {
		uint64_t t0 = __rdtsc();
		fn(BATCH);
		uint64_t t = __rdtsc() - t0;
		if (t < min)
			min = t;
	}
	return (double)min / BATCH;
}

int main(void)
{
	double none = best(pairs_none);
	double b = best(pairs_byte) - none, l = best(pairs_locked) - none,
	       c = best(pairs_cas) - none;
	printf("statecost: byte %.1f locked %.1f cas %.1f\n", b < 0 ? 0 : b, l, c);
	return 0;
}
