/*
 * mono_time.h: the wall clock the benchmarks time their measured parts
 * with, one copy for all of them (header-only, so one-file programs can
 * share it). CLOCK_MONOTONIC: a clock step while a benchmark runs must not
 * turn into a negative or inflated time.
 *
 * clock_gettime needs POSIX: define _GNU_SOURCE, _DEFAULT_SOURCE or
 * _POSIX_C_SOURCE before
 * the first #include of the file (under -std=c11 <time.h> hides it).
 */
#ifndef TESTS_MONO_TIME_H
#define TESTS_MONO_TIME_H

#include <time.h>

/* Seconds since an arbitrary start; only differences mean anything. */
static inline double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif /* TESTS_MONO_TIME_H */
