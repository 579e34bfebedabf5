/*
 * fill.h: the one fill-with-pattern and verify-pattern helper of the host
 * tests. A test writes an object with fill_pattern(p, n, seed) when it
 * gets it and asks check_pattern(p, n, seed) before it frees it (or after
 * a realloc, a fork, a mesh, another thread's work): the answer is the
 * offset of the first wrong byte, or SIZE_MAX when all are intact.
 * check_bytes does the same for a constant byte (zeroed memory, a
 * memset).
 *
 * Header-only (static inline, only <stddef.h>, <stdint.h> and <string.h>),
 * so a one-file LD_PRELOAD program, a Check suite and the fuzzer include
 * it alike. The fuzzer defines FILL_ATTR (no coverage instrumentation)
 * before including it: these loops are checks, not code to explore.
 */
#ifndef TESTS_FILL_H
#define TESTS_FILL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef FILL_ATTR
#define FILL_ATTR
#endif

/* Word i of the pattern of `seed`: a mix of both, so no two objects (seeds)
 * or offsets agree and a shifted or overlapping copy is caught. Byte b of
 * an object is byte b % 8 of word b / 8 whatever the object's length, so a
 * prefix check after a realloc sees the bytes the fill wrote. */
static inline uint64_t pattern_word(uint64_t seed, size_t i)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + i * 0xD6E8FEB86659FD93ULL;
	return x ^ (x >> 29);
}

static inline unsigned char pattern_byte(uint64_t seed, size_t b)
{
	return (unsigned char)(pattern_word(seed, b / 8) >> (8 * (b % 8)));
}

/* Beyond FILL_DENSE bytes the sparse pair below covers one word in
 * FILL_STRIDE bytes: a test filling megabytes per second (the API model)
 * still catches any overlap or misplaced copy of a big object. */
enum { FILL_DENSE = 4096, FILL_STRIDE = 512 };

/* Writes every byte of [p, p + dense) (dense clipped to n), then one
 * word in FILL_STRIDE bytes from offset FILL_DENSE on. */
FILL_ATTR static inline void fill_pattern_upto(void *p, size_t n, uint64_t seed, size_t dense)
{
	unsigned char *b = p;
	size_t i;

	if (dense > n)
		dense = n;
	for (i = 0; i + 8 <= dense; i += 8) {
		uint64_t w = pattern_word(seed, i / 8);
		memcpy(b + i, &w, 8);
	}
	for (; i < dense; i++)
		b[i] = pattern_byte(seed, i);
	for (i = dense < FILL_DENSE ? FILL_DENSE : dense; i + 8 <= n; i += FILL_STRIDE) {
		uint64_t w = pattern_word(seed, i / 8);
		memcpy(b + i, &w, 8);
	}
}

/* The first wrong byte among those fill_pattern_upto(p, n, seed, dense)
 * wrote, or SIZE_MAX. */
FILL_ATTR static inline size_t check_pattern_upto(const void *p, size_t n, uint64_t seed,
                                                  size_t dense)
{
	const unsigned char *b = p;
	size_t i;
	uint64_t w;

	if (dense > n)
		dense = n;
	for (i = 0; i + 8 <= dense; i += 8) {
		memcpy(&w, b + i, 8);
		if (w != pattern_word(seed, i / 8))
			break;
	}
	for (; i < dense; i++)
		if (b[i] != pattern_byte(seed, i))
			return i;
	for (i = dense < FILL_DENSE ? FILL_DENSE : dense; i + 8 <= n; i += FILL_STRIDE) {
		memcpy(&w, b + i, 8);
		if (w != pattern_word(seed, i / 8))
			for (size_t k = i;; k++)
				if (b[k] != pattern_byte(seed, k))
					return k;
	}
	return SIZE_MAX;
}

/* Every byte of [p, p + n). */
static inline void fill_pattern(void *p, size_t n, uint64_t seed)
{
	fill_pattern_upto(p, n, seed, n);
}

static inline size_t check_pattern(const void *p, size_t n, uint64_t seed)
{
	return check_pattern_upto(p, n, seed, n);
}

/* The first FILL_DENSE bytes whole, then one word in FILL_STRIDE. */
static inline void fill_pattern_sparse(void *p, size_t n, uint64_t seed)
{
	fill_pattern_upto(p, n, seed, FILL_DENSE);
}

static inline size_t check_pattern_sparse(const void *p, size_t n, uint64_t seed)
{
	return check_pattern_upto(p, n, seed, FILL_DENSE);
}

/* The first byte of [p, p + n) that is not v, or SIZE_MAX. */
FILL_ATTR static inline size_t check_bytes(const void *p, size_t n, unsigned char v)
{
	const unsigned char *b = p;
	uint64_t want = 0x0101010101010101ULL * v, x;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&x, b + i, 8);
		if (x != want)
			break;
	}
	for (; i < n; i++)
		if (b[i] != v)
			return i;
	return SIZE_MAX;
}

#endif /* TESTS_FILL_H */
