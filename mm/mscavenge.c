/*
 * mscavenge.c: the scavenger: gives free heap pages back to the port
 * (sys_release, Go's sysUnused) so an idle heap does not keep its peak
 * memory. See malloc.c for the overview.
 *
 * Goal. Go keeps about 10% more than the heap goal, which follows the
 * live heap of the last GC cycle. We have no GC cycle and no clock, so
 * the "recent peak" is measured in allocation volume: an epoch ends once
 * the heap has taken twice its recent peak (at least RETAIN_MIN) in pages
 * from the page allocator, and the goal follows the highest pages_inuse
 * of this epoch and the SCAV_EPOCHS - 1 before it:
 *
 *     committed goal = max(1.1 * recent peak, inuse + max(4 MiB, inuse/10))
 *
 * So a program that allocates and frees 25 MiB blocks in a loop keeps
 * them committed (releasing them on every free and faulting them in on
 * every allocation cost 10x its time in the kernel), and a heap that
 * shrank for good gives the memory back SCAV_EPOCHS epochs later. (Go's
 * goal is 10% over a heap goal that is itself about twice the live heap;
 * ours keeps 10% over what was live at the recent peak.)
 *
 * Pace. Nothing is released on the free path: a free that pushes the free
 * committed pages over the goal only sets scav_pending. The allocation
 * slow paths (mm_alloc_class, mm_alloc_large) then release at most
 * SCAV_STEP pages per call until the goal is met, oldest first: only
 * from 4 MiB chunks nobody allocated from or freed to for SCAV_COLD
 * epochs (pchunk.touched), and among those the highest addresses first
 * (the page allocator is first fit from the bottom: Go's order). Without
 * the age test, a heap whose free pages are fragmented beyond 10% of its
 * peak released pages in every round that the next round faulted back
 * in. kmalloc_trim releases everything (goal 0), like
 * debug.FreeOSMemory.
 *
 * sys_release is slow in the kernel (unmap, TLB shootdown by IPI), so it
 * never runs under a lock: under mheap.lock a batch of runs is marked
 * allocated (nobody else can take them) and counted as released; the lock
 * is dropped; the runs are released; under the lock again they are freed
 * and marked scavenged. A later allocation commits them again.
 */
#include "internal.h"

#define RETAIN_MIN ((uint64_t)4 << 20)
#define SCAV_STEP 64 /* heap pages (512 KiB) per paced step */

/* The highest pages_inuse of the recent epochs. pre: mheap.lock (or a
 * racy read for a hint). */
uint64_t mheap_recent_peak(void)
{
	uint64_t peak = 0;
	for (unsigned i = 0; i < SCAV_EPOCHS; i++)
		if (mheap_.scav_peaks[i] > peak)
			peak = mheap_.scav_peaks[i];
	return peak;
}

/* Bytes of free committed pages the heap may keep. pre: mheap.lock (or a
 * racy read for a hint). */
uint64_t mheap_retain_goal(void)
{
	uint64_t inuse = mheap_.pages_inuse * PAGE_SIZE;
	uint64_t peak = mheap_recent_peak() * PAGE_SIZE;
	uint64_t slack = inuse / 10 > RETAIN_MIN ? inuse / 10 : RETAIN_MIN;
	uint64_t want = peak + peak / 10;
	if (want < inuse + slack)
		want = inuse + slack;
	return want - inuse;
}

void mheap_scav_note_alloc(size_t npages)
{
	if (mheap_.pages_inuse > mheap_.scav_peaks[0])
		mheap_.scav_peaks[0] = mheap_.pages_inuse;
	mheap_.scav_epoch_alloc += npages;
	uint64_t len = 2 * mheap_recent_peak();
	if (len < RETAIN_MIN / PAGE_SIZE)
		len = RETAIN_MIN / PAGE_SIZE;
	if (mheap_.scav_epoch_alloc >= len) {
		for (unsigned i = SCAV_EPOCHS - 1; i > 0; i--)
			mheap_.scav_peaks[i] = mheap_.scav_peaks[i - 1];
		mheap_.scav_peaks[0] = mheap_.pages_inuse;
		mheap_.scav_epoch_alloc = 0;
		mheap_.pages.epoch++;
		if (mheap_.pages_free * PAGE_SIZE > mheap_retain_goal())
			mm_store_relaxed(&mheap_.scav_pending, 1);
	}
}

/* Release free committed pages, highest first, until at most keep_bytes
 * (or the goal, if keep_goal) stay committed free, or max_pages went;
 * only from chunks untouched for min_age epochs. pre: no mm lock held. */
static void scavenge(uint64_t keep_bytes, bool keep_goal, size_t max_pages, uint32_t min_age)
{
	MM_UNLOCKED();
	struct pagealloc *pa = &mheap_.pages;
	size_t done = 0, g = mheap_.gran;
	/* a port with a commit unit above a heap page releases whole units */
	if (g > 1 && max_pages < g)
		max_pages = g;
	while (done < max_pages) {
		size_t rp[16], rn[16];
		unsigned nr = 0;
		lock_heap();
		uint64_t keep = keep_goal ? mheap_retain_goal() : keep_bytes;
		while (nr < 16 && done < max_pages && mheap_.pages_free * PAGE_SIZE > keep &&
		       (g == 1 ? pa_highest_unscav_free(pa, min_age, &rp[nr], &rn[nr])
		               : pa_highest_free_granules(pa, g, min_age, &rp[nr], &rn[nr]))) {
			uint64_t over = (mheap_.pages_free * PAGE_SIZE - keep + PAGE_SIZE - 1) / PAGE_SIZE;
			/* whole units: round the excess up, the budget down */
			over = (over + g - 1) / g * g;
			size_t budget = (max_pages - done) / g * g;
			if (budget == 0)
				break;
			if (rn[nr] > over) { /* release only the top of the run */
				rp[nr] += rn[nr] - over;
				rn[nr] = over;
			}
			if (rn[nr] > budget) {
				rp[nr] += rn[nr] - budget;
				rn[nr] = budget;
			}
			pa_set_alloc_quiet(pa, rp[nr], rn[nr], true);
			mheap_.pages_free -= rn[nr];
			mheap_.pages_released += rn[nr];
			done += rn[nr];
			nr++;
		}
		if (nr == 0)
			mm_store_relaxed(&mheap_.scav_pending, 0);
		unlock_heap();
		if (nr == 0)
			return;
		for (unsigned i = 0; i < nr; i++)
			sys_release((void *)(mheap_.arena_start + rp[i] * PAGE_SIZE),
			            rn[i] * PAGE_SIZE);
		lock_heap();
		for (unsigned i = 0; i < nr; i++) {
			pa_set_alloc_quiet(pa, rp[i], rn[i], false);
			pa_set_scav(pa, rp[i], rn[i], true);
		}
		unlock_heap();
	}
}

void mheap_scavenge(uint64_t keep_bytes)
{
	if (!mheap_inited())
		return;
	scavenge(keep_bytes, false, SIZE_MAX, 0);
}

/* pre: no mm lock held, interrupts as the caller of kmalloc left them.
 * Cheap when nothing is pending (one load). */
void mheap_scavenge_paced(void)
{
	MM_UNLOCKED();
	if (!mm_load_relaxed(&mheap_.scav_pending))
		return;
	scavenge(0, true, SCAV_STEP, SCAV_COLD);
}
