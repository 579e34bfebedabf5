/*
 * workloads.h: what the workloads of `make bench-peers` share across
 * their two files (workloads.c: the single-threaded ones, main and the
 * report; workloads_mt.c: the multi-threaded ones).
 */
#ifndef TESTS_BENCHPEERS_WORKLOADS_H
#define TESTS_BENCHPEERS_WORKLOADS_H

#include <stddef.h>
#include <stdint.h>

/* Peak RSS of this process image in KiB (VmHWM). */
long peak_kb(void);
/* The one line of key=value results of a workload. */
void report(const char *name, uint64_t ops, double secs);

/* Touch the object so no allocator gets away without handing out memory. */
static inline void touch(void *p, size_t n)
{
	((volatile char *)p)[0] = 1;
	((volatile char *)p)[n - 1] = 2;
}

void prodcons(void);
void larson(void);
void xlarson(void);

#endif
