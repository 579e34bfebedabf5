/*
 * xorshift.h: the seeded pseudo-random generators of the tests and
 * benchmarks, one copy for all of them. Header-only (static inline, only
 * <stdint.h>), so any program can include it however it is built: a
 * one-file benchmark, an LD_PRELOAD test, a Check suite, the loader's
 * host tests.
 *
 * Two generators, because each program keeps the one it was written with:
 * a seed printed by a failed run (api_model, pmm_stress) must replay the
 * same sequence, and a benchmark must keep drawing the same workload as
 * the results it is compared with.
 */
#ifndef TESTS_XORSHIFT_H
#define TESTS_XORSHIFT_H

#include <stdint.h>

/* Marsaglia's xorshift64 (shifts 13, 7, 17): the new state is the output.
 * The state must not be 0 (it would stay 0). */
static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Vigna's xorshift64* (shifts 12, 25, 27, then a multiply): better low
 * bits than xorshift64, so `% n` of its output is fair. The state must
 * not be 0. */
static inline uint64_t xorshift64star(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

#endif /* TESTS_XORSHIFT_H */
