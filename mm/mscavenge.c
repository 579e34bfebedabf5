/*
 * mscavenge.c: the scavenger: gives free heap pages back to the port
 * (sys_release, Go's sysUnused) so an idle heap does not keep its peak
 * memory, and ages the caches in front of the spans. See malloc.c for
 * the overview.
 *
 * Two ways to decide what goes back, by whether the port has a clock.
 *
 * By age (sys_config.now_ns; both our ports). A free page goes back once
 * its 4 MiB chunk has not been allocated from or freed to for the
 * release delay (sys_config.release_ms, default 1 s): pchunk.touched and
 * pages.epoch then hold time in units of 2^20 ns. Chunks are looked at
 * from the highest address down (the page allocator is first fit from
 * the bottom, so high pages stay free longest: Go's order). A loop that
 * allocates and frees big blocks touches its chunks on every round and
 * keeps them committed: releasing on every free and faulting them in on
 * every allocation cost 10x its time in the kernel. Caches age at half
 * the delay (mcache_age per CPU, mm_transfer_age for the shared ones), so
 * the pages they held have aged the full delay a half delay later. Who
 * does the work, in steps of BG_STEP pages (kmalloc_background):
 *   - a background context of the port's (sys_config.start_background,
 *     asked for once the heap passes bg_threshold; the host's thread,
 *     Go's bgscavenge), paced so releasing takes about 1/BG_DUTY of a
 *     CPU; Go paces to 1%, which would spread the release of a 256 MiB
 *     burst (10 ms of madvise here) over a second;
 *   - kmalloc_safepoint when a step is due (the kernel's timer tick);
 *   - without a background context, the allocation slow paths when a
 *     step is due.
 * Where the port meshes, each step also reaps empty aliases and meshes
 * for up to 10 ms every 100 ms (mesh_paced, mmesh.c); while it finds
 * work the step comes back at its next period.
 *
 * By volume (no clock). Go keeps about 10% more than the heap goal, which
 * follows the live heap of the last GC cycle. Without a clock the "recent
 * peak" is measured in allocation volume: an epoch ends once the heap has
 * taken twice its recent peak (at least RETAIN_MIN) in pages from the
 * page allocator, and the goal follows the highest pages_inuse of this
 * epoch and the SCAV_EPOCHS - 1 before it:
 *
 *     committed goal = max(1.1 * recent peak, inuse + max(4 MiB, inuse/10))
 *
 * So a program that allocates and frees 25 MiB blocks in a loop keeps
 * them committed, and a heap that shrank for good gives the memory back
 * SCAV_EPOCHS epochs later; one that stops allocating keeps it. Nothing
 * is released on the free path: a free that pushes the free committed
 * pages over the goal only sets scav_pending; the allocation slow paths
 * then release at most SCAV_STEP pages per call until the goal is met,
 * only from chunks untouched for SCAV_COLD epochs, highest first. Without
 * the age test, a heap whose free pages are fragmented beyond 10% of its
 * peak released pages in every round that the next round faulted back
 * in.
 *
 * Either way kmalloc_trim releases everything (goal 0), like
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
#define BG_STEP     256                /* heap pages (2 MiB) per background step */
#define BG_DUTY     20                 /* background release: about 1/20 of a CPU */
#define BG_MIN_WAIT ((uint64_t)100000) /* ns between steps, at least */
#define EPOCH_SHIFT 20                 /* with a clock, an epoch is 2^20 ns (~1 ms) */

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
		if (mheap_.now_ns == NULL) /* with a clock the epoch is time */
			mheap_.pages.epoch++;
		if (mheap_.pages_free * PAGE_SIZE > mheap_retain_goal())
			mm_store_relaxed(&mheap_.scav_pending, 1);
	}
}

void mheap_scav_init(void)
{
	mheap_.now_ns = sys_config.now_ns;
	mheap_.coarse = sys_config.now_ns == NULL          ? NULL
	                : sys_config.now_coarse_ns != NULL ? sys_config.now_coarse_ns
	                                                   : sys_config.now_ns;
	uint64_t ms = sys_config.release_ms ? sys_config.release_ms : 1000;
	mheap_.release_ns = ms * 1000000;
	mheap_.release_epochs = (uint32_t)(mheap_.release_ns >> EPOCH_SHIFT);
	if (mheap_.release_epochs == 0)
		mheap_.release_epochs = 1;
	mheap_.bg_threshold =
	        sys_config.background_min ? sys_config.background_min : (size_t)64 << 20;
	mheap_scav_clock();
	if (mheap_.now_ns != NULL) /* nothing can have aged yet */
		mheap_.bg_due = mheap_.now_ns() + mheap_.release_ns / 4;
}

void mheap_scav_clock(void)
{
	if (mheap_.coarse == NULL)
		return;
	uint64_t now = mheap_.coarse(); /* stamps compare only with stamps */
	/* Pages an aging cache gives back were last used half a delay ago
	 * at least: stamped as of then, they go back half a delay later,
	 * not a whole one. (A free on another CPU meanwhile gets the older
	 * stamp too: its pages may go back half a delay early.) */
	if (mm_load_relaxed(&mheap_.aging) != 0)
		now -= mheap_.release_ns / 2;
	mheap_.pages.epoch = (uint32_t)(now >> EPOCH_SHIFT);
}

void mheap_aging(int delta) { mm_add_fetch_acq_rel(&mheap_.aging, delta); }

/* Release free committed pages, highest first, until at most keep_bytes
 * (or the goal, if keep_goal) stay committed free, or max_pages went;
 * only from chunks untouched for min_age epochs. Returns the pages
 * released. pre: no mm lock held. */
static size_t scavenge(uint64_t keep_bytes, bool keep_goal, size_t max_pages, uint32_t min_age)
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
		mheap_scav_clock();
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
			return done;
		for (unsigned i = 0; i < nr; i++)
			sys_release((void *)(mheap_.arena_start + rp[i] * PAGE_SIZE),
			            rn[i] * PAGE_SIZE);
		lock_heap();
		for (unsigned i = 0; i < nr; i++) {
			pa_set_alloc_quiet(pa, rp[i], rn[i], false);
			pa_set_scav(pa, rp[i], rn[i], true);
		}
		MM_VALIDATE(pa_valid(pa)); /* never a page allocated and released */
		unlock_heap();
	}
	return done;
}

void mheap_scavenge(uint64_t keep_bytes)
{
	if (!mheap_inited())
		return;
	scavenge(keep_bytes, false, SIZE_MAX, 0);
}

/* Keep background steps out (kmalloc_trim, the leak scan, fork, tests
 * that count frames): one that aged a transfer cache before trim drained
 * them would give its batch back to the spans after trim released the
 * free pages, and trim would return with a free page. Nests (a trim
 * inside an excluded stretch). Raises bg_excl, then waits for a step
 * already running; a step starting later sees bg_excl and gives up (each
 * side writes its flag, then reads the other's: sequentially consistent).
 * pre: no mm lock held. */
void mheap_bg_exclude(bool on)
{
	if (!on) {
		mm_add_fetch_seq_cst(&mheap_.bg_excl, -1);
		return;
	}
	mm_add_fetch_seq_cst(&mheap_.bg_excl, 1);
	while (mm_load_seq_cst(&mheap_.bg_busy) != 0)
		;
}

bool mheap_bg_enter(void)
{
	for (;;) {
		/* excluded: perhaps by this very CPU (a kernel test that keeps
		 * release steps out while it counts frames, then trims) */
		if (mm_load_seq_cst(&mheap_.bg_excl) != 0)
			return false;
		if (mm_exchange_seq_cst(&mheap_.bg_busy, 1) != 0) {
			while (mm_load_relaxed(&mheap_.bg_busy) != 0)
				; /* a step on another CPU: bounded */
			continue;
		}
		if (mm_load_seq_cst(&mheap_.bg_excl) == 0)
			return true;
		mm_store_release(&mheap_.bg_busy, 0);
	}
}

void mheap_bg_leave(void) { mm_store_release(&mheap_.bg_busy, 0); }

/* One step of the work by age: age the shared caches every quarter delay,
 * then release up to BG_STEP cold pages. Returns how long to wait.
 * pre: bg_busy is ours; no mm lock held. */
static uint64_t bg_step(uint64_t now)
{
	uint64_t delay = mheap_.release_ns, idle = delay / 4;
	if (now - LOAD(mheap_.bg_aged) >= delay / 4) {
		STORE(mheap_.bg_aged, now);
		mheap_aging(1);
		mm_transfer_age(now);
		mheap_aging(-1);
	}
	mcache_idle_pass(now); /* every half delay */
	/* meshing paces itself (a tenth of a CPU at most); while it finds
	 * work, come back when its next period starts */
	if (mesh_paced(now) != 0 && idle > MESH_PERIOD_NS)
		idle = MESH_PERIOD_NS;
	uint64_t t0 = mm_now();
	if (scavenge(0, false, BG_STEP, mheap_.release_epochs) == 0)
		return idle;
	/* paced: wait BG_DUTY - 1 times what the step took */
	uint64_t spent = mm_now() - t0, wait = spent * (BG_DUTY - 1);
	return wait < BG_MIN_WAIT ? BG_MIN_WAIT : wait > idle ? idle : wait;
}

uint64_t kmalloc_background(void)
{
	if (!mheap_inited() || mheap_.now_ns == NULL)
		return UINT64_MAX;
	uint64_t now = mheap_.now_ns(), due = mm_load_relaxed(&mheap_.bg_due);
	if (now < due)
		return due - now;
	/* seq_cst: against mheap_bg_exclude (it raises bg_excl, then reads
	 * bg_busy); also acquires the last step's state */
	if (mm_exchange_seq_cst(&mheap_.bg_busy, 1) != 0)
		return mheap_.release_ns / 4; /* another CPU is stepping */
	if (mm_load_seq_cst(&mheap_.bg_excl) != 0) {
		mm_store_release(&mheap_.bg_busy, 0);
		return mheap_.release_ns / 4; /* trim, a scan or a fork runs */
	}
	uint64_t wait = bg_step(now);
	mm_store_relaxed(&mheap_.bg_due, now + wait);
	mm_store_release(&mheap_.bg_busy, 0);
	return wait;
}

/* With a clock: ask the port for its background context once the heap
 * is big enough to be worth one. pre: no mm lock held. */
static void bg_maybe_start(void)
{
	if (sys_config.start_background == NULL ||
	    LOAD(mheap_.arena_used_bytes) < mheap_.bg_threshold)
		return;
	int want = BG_NONE;
	if (!mm_cas_acq_rel(&mheap_.bg_state, &want, BG_STARTING))
		return;
	int ok = sys_config.start_background() == 0;
	mm_store_release(&mheap_.bg_state, ok ? BG_RUNNING : BG_REFUSED);
}

/* pre: no mm lock held, interrupts as the caller of kmalloc left them.
 * Cheap when nothing is pending (one load; with a clock, no background
 * context and no safe points on this CPU, one clock read). */
void mheap_scavenge_paced(void)
{
	MM_UNLOCKED();
	if (mheap_.now_ns != NULL) {
		int st = mm_load_relaxed(&mheap_.bg_state);
		if (st == BG_RUNNING)
			return; /* the background context does it */
		if (st == BG_NONE)
			bg_maybe_start();
		/* a CPU that reaches kmalloc_safepoint regularly (the kernel's
		 * timer tick) steps there: no clock read per slow path */
		unsigned long f = sys_irq_save();
		bool ticks = mm_cpu_polls[cpu_slot(sys_cpu_id())] != 0;
		sys_irq_restore(f);
		if (!ticks && mheap_.coarse() >= mm_load_relaxed(&mheap_.bg_due))
			kmalloc_background();
		return;
	}
	if (!mm_load_relaxed(&mheap_.scav_pending))
		return;
	scavenge(0, true, SCAV_STEP, SCAV_COLD);
}
