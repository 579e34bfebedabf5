/*
 * preload.c: the LD_PRELOAD shim: the C library's malloc family on top of
 * kmalloc, so unmodified Linux programs run on the allocator
 * (LD_PRELOAD=build/host/libkmalloc-preload.so program). Not part of
 * libkmalloc.a. See mm/malloc.c for the allocator itself.
 *
 * Mapping: malloc -> kmalloc, free -> kfree, calloc -> kcalloc, realloc ->
 * krealloc, the aligned forms -> kmemalign, malloc_usable_size -> ksize.
 * Differences the C library's contract forces on us:
 *   - glibc's malloc returns 16-byte aligned memory for every size
 *     (max_align_t), and compilers assume it, so requests below 16 bytes
 *     are served as 16;
 *   - realloc(p, 0) frees p and returns NULL (glibc's behaviour), while
 *     krealloc(p, 0) keeps p;
 *   - failures set errno to ENOMEM.
 * A bad free in the program ends it the allocator's way: one line
 * "kmalloc: <fault>: <pointer>" on stderr and abort().
 * Not handled: fork() while another thread is inside the allocator (the
 * child may inherit a held lock; glibc takes its own locks around fork).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "kmalloc.h"

#define EXPORT __attribute__((visibility("default")))

static size_t min16(size_t n)
{
	return n < 16 ? 16 : n;
}

static void *nomem(void *p)
{
	if (p == NULL)
		errno = ENOMEM;
	return p;
}

EXPORT void *malloc(size_t n)
{
	return nomem(kmalloc(min16(n), 0));
}

EXPORT void free(void *p)
{
	kfree(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
	if (size != 0 && n > (size_t)-1 / size)
		return nomem(NULL);
	return nomem(kzalloc(min16(n * size), 0));
}

EXPORT void *realloc(void *p, size_t n)
{
	if (p == NULL)
		return malloc(n);
	if (n == 0) {
		kfree(p);
		return NULL;
	}
	return nomem(krealloc(p, min16(n), 0));
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	if (size != 0 && n > (size_t)-1 / size)
		return nomem(NULL);
	return realloc(p, n * size);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	if (align < sizeof(void *) || (align & (align - 1)) != 0)
		return EINVAL;
	void *p = kmemalign(align < 16 ? 16 : align, min16(n), 0);
	if (p == NULL)
		return ENOMEM;
	*out = p;
	return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (align == 0 || (align & (align - 1)) != 0) {
		errno = EINVAL;
		return NULL;
	}
	return nomem(kmemalign(align < 16 ? 16 : align, min16(n), 0));
}

EXPORT void *memalign(size_t align, size_t n)
{
	return aligned_alloc(align, n);
}

EXPORT void *valloc(size_t n)
{
	return nomem(kmemalign(4096, min16(n), 0));
}

EXPORT void *pvalloc(size_t n)
{
	return nomem(kmemalign(4096, min16((n + 4095) & ~(size_t)4095), 0));
}

EXPORT size_t malloc_usable_size(void *p)
{
	return ksize(p);
}
