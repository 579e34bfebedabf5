/*
 * msize.h: size -> size class, and byte offset -> object index. See
 * malloc.c for the overview. Both are table lookups or a multiply, cheap
 * enough for the fast path; both are checked exhaustively by
 * tests/core/test_sizeclasses.c.
 */
#ifndef MM_MSIZE_H
#define MM_MSIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sizeclasses.h"

/* A build for a C library's malloc (the LD_PRELOAD shim) defines
 * KMALLOC_MIN16: every request then takes at least the 16-byte class,
 * because malloc promises 16-byte alignment even for 1 byte, and the
 * shim's malloc stays a jump to kmalloc. */
#ifdef KMALLOC_MIN16
#define MM_SIZE_TO_CLASS8 size_to_class8_min16
#else
#define MM_SIZE_TO_CLASS8 size_to_class8
#endif

/* Size class for a request of `size` bytes, pre: size <= _MaxSmallSize.
 * The tables skip Go's 24-byte class for 17..24 bytes (see
 * sizeclasses.h): kmalloc.h promises 16-byte alignment from 16 bytes up.
 * Go uses class8 up to smallSizeMax-8 and lets the 128-byte table absorb
 * 1017..1023 by unsigned wrap; `size <= smallSizeMax` gives the same
 * classes and reads plainly. Size 0 maps to class 0 (no objects), which
 * the allocator serves from class 1. */
static inline unsigned size_to_class(size_t size)
{
	if (__builtin_expect(size <= smallSizeMax, 1))
		return MM_SIZE_TO_CLASS8[(size + smallSizeDiv - 1) / smallSizeDiv];
	return size_to_class128[(size - smallSizeMax + largeSizeDiv - 1) / largeSizeDiv];
}

/* Go's roundupsize for small sizes. */
static inline size_t class_size(unsigned sizeclass)
{
	return class_to_size[sizeclass];
}

/* Index of the object holding byte offset `off` of a span of class c:
 * off / size without a divide (Go's divideByElemSize). Exact for
 * 0 <= off <= span bytes since off * size < 2^32 there. */
static inline unsigned obj_index(uint32_t divMul, uintptr_t off)
{
	return (unsigned)(((uint64_t)(uint32_t)off * divMul) >> 32);
}

/* Whether a byte offset is a slot start, with one multiply: with
 * M = ceil(2^64 / size) (slot_magic), for every 32-bit off,
 * off % size == 0 iff (off * M) mod 2^64 < M (Lemire, Kaser and Kurz,
 * "Faster remainder by direct computation", 2019). Callers bound off by
 * the span's bytes (< 2^32) before they trust it. kfree's fast path uses
 * it next to obj_index (Go's 32-bit divMul for the index: a widening
 * multiply would give both at once but ties up rax:rdx). Checked
 * exhaustively by tests/core/test_sizeclasses.c. */
static inline uint64_t slot_magic(size_t size)
{
	return UINT64_MAX / size + 1;
}

static inline bool slot_exact(uint64_t M, uintptr_t off)
{
	return off * M < M;
}

#endif /* MM_MSIZE_H */
