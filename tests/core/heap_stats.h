/*
 * heap_stats.h: the core tests' view of the heap's totals. checked_stats
 * reads kmalloc_stats and asserts what must hold after every step of a
 * test: the pages add up (in use + free + released == grown), committed
 * bytes are heap pages in use or free plus metadata and equal what the
 * host port itself counts, and the whole-structure validator passes.
 * Include after check.h, host.h and internal.h.
 */
#ifndef TESTS_CORE_HEAP_STATS_H
#define TESTS_CORE_HEAP_STATS_H

static inline struct kmalloc_stats checked_stats(void)
{
	struct kmalloc_stats st;
	kmalloc_stats(&st);
	ck_assert_uint_eq(st.heap_inuse + st.heap_free + st.heap_released, st.heap_sys);
	ck_assert_uint_eq(st.committed, st.heap_inuse + st.heap_free + st.meta_sys);
	ck_assert_uint_eq(st.committed, host_committed_bytes());
	ck_assert(mheap_valid());
	return st;
}

#endif
