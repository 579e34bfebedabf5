/*
 * api_util.h: helpers shared by the API-level tests (tests/api/api_*.c).
 *
 * The API tests see the allocator only through mm/kmalloc.h, the way a
 * kernel does, plus the host port's commit-limit knob for out-of-memory
 * cases. What they share lives here: checking the stats identities that
 * kmalloc.h promises, fill patterns that catch overlapping objects, the
 * size -> class lookup built from the stats' own class table, a handshake
 * with a thread the test holds at a known point, and (child_util.h)
 * running a piece of code in a forked child to assert how it died and
 * what it printed (misuse must abort with one exact line on stderr).
 */
#ifndef API_UTIL_H
#define API_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/child_util.h" /* run_in_child, misuse_mismatch */
#include "host.h"       /* host_set_commit_limit, host_committed_bytes */
#include "kmalloc.h"
#include "../lib/fill.h"     /* fill_pattern, check_pattern, check_bytes */
#include "../lib/xorshift.h" /* xorshift64star: the API tests' generator */

/* Stats identities every snapshot must satisfy, whatever is live:
 * per class live == allocs - frees, large_live == large_allocs -
 * large_frees, heap_sys == inuse + free + released, committed + mesh_bytes
 * == inuse + free + meta_sys + kfence_bytes (meshing gave those frames
 * back; guarded samples' pages are outside the heap), and committed == what the port counts as committed
 * (host_committed_bytes). Call it only while no other thread allocates.
 * Returns NULL when they hold, else a static message
 * naming the first broken one. */
const char *stats_inconsistency(const struct kmalloc_stats *st);

/* Objects live in the whole heap (small and large). */
uint64_t stats_live_objects(const struct kmalloc_stats *st);

/* Take a snapshot into *st and fail the test unless stats_inconsistency
 * finds nothing; the snapshot stays for the test's own checks. Macros, so
 * Check names the caller's line; the caller includes <check.h>. */
#define ASSERT_STATS_CONSISTENT(st)                                           \
	do {                                                                  \
		struct kmalloc_stats *st_ = (st);                             \
		const char *m_;                                               \
		kmalloc_stats(st_);                                           \
		m_ = stats_inconsistency(st_);                                \
		ck_assert_msg(m_ == NULL, "stats inconsistent: %s", m_);      \
	} while (0)
/* The same, and no object live: what a test that freed all it made leaves. */
#define ASSERT_HEAP_EMPTY(st)                                                 \
	do {                                                                  \
		ASSERT_STATS_CONSISTENT(st);                                  \
		ck_assert_uint_eq(stats_live_objects(st), 0);                 \
	} while (0)

/* Size class (1..KMALLOC_NUM_CLASSES-1) serving a request of `size`
 * bytes (size >= 1), from the class table kmalloc_stats reports: the
 * smallest class whose objects hold `size`; 0 for a large request. */
int class_of_size(size_t size);
/* Object size of class c, from the same table. */
size_t class_size(int c);

/* Uniform-ish in [0, n), from xorshift64* (a recorded seed replays). */
static inline uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n ? xorshift64star(s) % n : 0;
}

/* A step number that a test and a thread it keeps waiting hand over: one
 * sets a step, the other blocks until the number is that step. */
struct handshake {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int step;
};
#define HANDSHAKE_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 }
void handshake_set(struct handshake *h, int step);
void handshake_wait(struct handshake *h, int step);

/* Env var as an unsigned number, or `dflt` if unset or empty. */
uint64_t env_u64(const char *name, uint64_t dflt);

#endif /* API_UTIL_H */
