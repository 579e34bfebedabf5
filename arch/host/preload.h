/*
 * preload.h: what the LD_PRELOAD shim's two files share (arch/host/
 * preload.c, the C library's entry points and the exit reports, and
 * arch/host/preload_leaks.c, the leak check at exit): output without
 * stdio, which may allocate through the shim while it reports.
 */
#ifndef ARCH_HOST_PRELOAD_H
#define ARCH_HOST_PRELOAD_H

#include <stddef.h>
#include <stdint.h>

/* Append s (or v in decimal) to buf[n..cap), then a NUL (buf holds
 * cap + 1 bytes); the new length. */
size_t preload_put_str(char *buf, size_t n, size_t cap, const char *s);
size_t preload_put_u64(char *buf, size_t n, size_t cap, uint64_t v);
/* a then b then a newline, on stderr, in one write (truncated at 511). */
void preload_write_line(const char *a, const char *b);

/* The leak check at exit, if KMALLOC_LEAK_CHECK=1 (preload_leaks.c). */
void preload_leak_check(void);

#endif /* ARCH_HOST_PRELOAD_H */
