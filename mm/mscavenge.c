/*
 * mscavenge.c: the scavenger: gives free heap pages back to the port
 * (sys_release, Go's sysUnused) so an idle heap does not keep its peak
 * memory. See malloc.c for the overview.
 *
 * Policy. Go keeps about 10% more than the heap goal and scavenges the
 * rest in the background. We have no background thread in a kernel
 * allocator, so the work happens synchronously, at the end of the kfree
 * (or flush) that pushed the free committed pages past the retain goal
 *
 *     retain goal = max(4 MiB, 10% of the bytes in use)
 *
 * and it releases whole free runs, highest addresses first (the page
 * allocator is first fit from the bottom, so high pages stay free
 * longest), until the free committed bytes are back under the goal.
 * kmalloc_trim releases everything (goal 0), like debug.FreeOSMemory.
 *
 * sys_release is slow in the kernel (unmap, TLB shootdown by IPI), so it
 * never runs under a lock: under mheap.lock a batch of runs is marked
 * allocated (nobody else can take them) and counted as released; the lock
 * is dropped; the runs are released; under the lock again they are freed
 * and marked scavenged. A later allocSpan commits them again.
 */
#include "internal.h"

#define RETAIN_MIN ((uint64_t)4 << 20)

/* pre: mheap.lock (or a racy read for a hint). */
uint64_t mheap_retain_goal(void)
{
	uint64_t tenth = mheap_.pages_inuse * PAGE_SIZE / 10;
	return tenth > RETAIN_MIN ? tenth : RETAIN_MIN;
}

void mheap_scavenge(uint64_t keep_bytes)
{
	struct pagealloc *pa = &mheap_.pages;
	if (!__atomic_load_n(&mheap_.inited, __ATOMIC_ACQUIRE))
		return;
	for (;;) {
		size_t rp[16], rn[16];
		unsigned nr = 0;
		lock_heap();
		while (nr < 16 && mheap_.pages_free * PAGE_SIZE > keep_bytes &&
		       pa_highest_unscav_free(pa, &rp[nr], &rn[nr])) {
			pa_set_alloc(pa, rp[nr], rn[nr], true);
			mheap_.pages_free -= rn[nr];
			mheap_.pages_released += rn[nr];
			nr++;
		}
		if (nr == 0)
			__atomic_store_n(&mheap_.scav_pending, 0, __ATOMIC_RELAXED);
		unlock_heap();
		if (nr == 0)
			return;
		for (unsigned i = 0; i < nr; i++)
			sys_release((void *)(mheap_.arena_start + rp[i] * PAGE_SIZE),
			            rn[i] * PAGE_SIZE);
		lock_heap();
		for (unsigned i = 0; i < nr; i++) {
			pa_set_alloc(pa, rp[i], rn[i], false);
			pa_set_scav(pa, rp[i], rn[i], true);
		}
		unlock_heap();
	}
}

/* pre: no mm lock held, interrupts as the caller of kmalloc/kfree left
 * them. Cheap when nothing is pending (one load). */
void mheap_scavenge_maybe(void)
{
	if (!__atomic_load_n(&mheap_.scav_pending, __ATOMIC_RELAXED))
		return;
	lock_heap();
	uint64_t goal = mheap_retain_goal();
	unlock_heap();
	mheap_scavenge(goal);
}
