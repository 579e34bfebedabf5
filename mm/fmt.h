/*
 * fmt.h: the number formatting behind every line mm/ logs. mm has no
 * printf and must not allocate while it reports, so a line is built in the
 * caller's stack buffer: each helper appends to buf (length n, capacity
 * cap), keeps it NUL-terminated, truncates at cap and returns the new
 * length.
 *
 * Users: the allocator core (kmalloc_dump in mstats.c, the leak reports in
 * mgcmark.c, through internal.h) and the kernel's frame allocator (kernel/pmm/, whose
 * log lines go through the struct pmm's callback). Header-only, so every
 * build that compiles either one (the kernel, the host library, make lib,
 * the frame allocator's host and ASan tests) gets it with no source file
 * to add to its list, and make lib's exported symbols stay the API alone.
 */
#ifndef MM_FMT_H
#define MM_FMT_H

#include <stddef.h>
#include <stdint.h>

static inline size_t mm_fmt_str(char *buf, size_t n, size_t cap, const char *s)
{
	while (*s && n + 1 < cap)
		buf[n++] = *s++;
	buf[n] = 0;
	return n;
}

/* Decimal, right-aligned to `width` columns (0: no padding). */
static inline size_t mm_fmt_u64(char *buf, size_t n, size_t cap, uint64_t v, int width)
{
	char tmp[24];
	int k = 0;
	do {
		tmp[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (width-- > k && n + 1 < cap)
		buf[n++] = ' ';
	while (k > 0 && n + 1 < cap)
		buf[n++] = tmp[--k];
	buf[n] = 0;
	return n;
}

/* A label and a decimal after it ("pages " 12): the shape of most fields
 * of the lines mm logs. */
static inline size_t mm_fmt_field(char *buf, size_t n, size_t cap, const char *label, uint64_t v)
{
	return mm_fmt_u64(buf, mm_fmt_str(buf, n, cap, label), cap, v, 0);
}

/* "0x" and lower-case digits, no leading zeros ("0x0" for zero). */
static inline size_t mm_fmt_hex(char *buf, size_t n, size_t cap, uint64_t v)
{
	char tmp[16];
	int k = 0;
	do {
		tmp[k++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v != 0);
	n = mm_fmt_str(buf, n, cap, "0x");
	while (k > 0 && n + 1 < cap)
		buf[n++] = tmp[--k];
	buf[n] = 0;
	return n;
}

#endif /* MM_FMT_H */
