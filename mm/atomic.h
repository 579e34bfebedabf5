/*
 * atomic.h: the core's only atomics, named by what they order. Every
 * shared word mm reads or writes without its lock goes through one of
 * these, so a reader sees the ordering in the name and a port to a
 * compiler without GCC's __atomic builtins changes one file.
 *
 * The default is relaxed: the word itself is atomic (no torn reads, no
 * compiler caching), nothing else is ordered by it. Every use of a
 * stronger ordering carries a one-line reason at the call: which store
 * the acquire pairs with, what the release publishes.
 *
 * On x86-64 relaxed, acquire loads and release stores are all plain
 * movs; only the read-modify-writes (fetch_or, exchange, cas, add) are
 * locked instructions. The names still matter there: they stop the
 * compiler from reordering, and ThreadSanitizer checks them.
 */
#ifndef MM_ATOMIC_H
#define MM_ATOMIC_H

#include <stdbool.h>

/* Loads and stores. p points at the shared word. */
#define mm_load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define mm_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define mm_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define mm_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Read-modify-writes. They return the old value (fetch_or, exchange),
 * the new one (add_fetch), or whether *p held *expected (cas; on failure
 * *expected receives what *p held). */
#define mm_fetch_or_release(p, v) __atomic_fetch_or((p), (v), __ATOMIC_RELEASE)
#define mm_exchange_acq_rel(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)
#define mm_add_fetch_acq_rel(p, v) __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)
#define mm_add_fetch_relaxed(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define mm_cas_acq_rel(p, expected, v)                                           \
	__atomic_compare_exchange_n((p), (expected), (v), false, __ATOMIC_ACQ_REL, \
	                            __ATOMIC_ACQUIRE)

/* Sequentially consistent read-modify-writes, for the two-sided flag
 * handshakes where each side writes its own flag and then reads the
 * other's (Dekker): acq_rel alone lets both reads miss both writes. */
#define mm_add_fetch_seq_cst(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define mm_exchange_seq_cst(p, v)  __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
#define mm_load_seq_cst(p)         __atomic_load_n((p), __ATOMIC_SEQ_CST)

/* Orders the loads before it against the loads after it (pairs with a
 * release store another CPU made). */
#define mm_fence_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define mm_fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)

/* Relaxed load/store of a plain field that one side writes while another
 * reads: the lvalue forms of mm_load_relaxed/mm_store_relaxed. */
#define LOAD(x) mm_load_relaxed(&(x))
#define STORE(x, v) mm_store_relaxed(&(x), (v))

#endif /* MM_ATOMIC_H */
