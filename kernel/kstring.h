/*
 * kstring.h: the handful of libc string functions the kernel needs (GCC
 * may also emit calls to memcpy/memset/memmove/memcmp on its own, even
 * with -ffreestanding, so these names must exist). Implemented in string.c.
 */
#ifndef KERNEL_KSTRING_H
#define KERNEL_KSTRING_H

#include <stddef.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

#endif
