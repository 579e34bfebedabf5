/*
 * mstack.c: backtraces for reports, and the stack depot that stores them.
 * The port's backtrace hook (sys.h) walks the calling thread's stack from
 * inside mm; mm_backtrace keeps what lies beyond the allocator: it finds
 * the allocation site (the address the kmalloc-family entry point returns
 * to, which the caller already knows) among the frames and drops every
 * frame before it, so a report starts where the user's code called us,
 * whatever mm inlined or not.
 *
 * The depot (Linux's stackdepot, for the leak detector's tracked
 * objects): every distinct trace is stored once, in a chained hash table
 * in the metadata region (mheap.m_depot: never in the heap the scan
 * reads, never freed), and an object keeps a 32-bit handle of it in the
 * one word it had for its site, so tracking still costs a word per
 * object. Most allocations repeat a trace already stored: they cost the
 * walk and a lock-free lookup. A new trace is added under depot.lock, a
 * leaf lock taken with no mm lock held (the block it carves from comes
 * from mheap.lock with depot.lock dropped). When the depot is full
 * (MM_DEPOT_BYTES), an object keeps its single site (a one-frame trace from
 * the last DEPOT_SPARE bytes, counted as a fallback); when even that has
 * no room, no site (counted as lost). kmalloc_dump prints the counts.
 *
 * Data flow: an allocation's slow path (tracking on) -> mm_depot_record
 * (site) -> mm_backtrace -> sys_config.backtrace -> pcs[0] == site, then
 * its callers -> hash, lookup, maybe insert -> handle, stored in the
 * object's word (mgcmark.c); the scan's report -> mm_depot_fetch.
 */
#include "internal.h"

/* Frames that may lie between the hook and the site: the hook's own, the
 * port's, and mm's slow paths (kmalloc -> slow half -> mcentral -> this
 * file is at most about a dozen). */
#define MM_BACKTRACE_SLACK 24

/* The walk, asking the hook for max + slack frames: up to max frames
 * from the site on into pcs, or 0 if the site is not among them; *at is
 * how many frames lay before it, *cut whether the hook stopped at the
 * limit (a longer walk might still find it). */
static unsigned walk(uintptr_t *pcs, unsigned max, uintptr_t site, unsigned slack, unsigned *at,
                     bool *cut)
{
	uintptr_t raw[MM_BACKTRACE_MAX + MM_BACKTRACE_SLACK];
	unsigned n = 0, i = 0, out = 0;
	if (max > MM_BACKTRACE_MAX)
		max = MM_BACKTRACE_MAX;
	if (slack > MM_BACKTRACE_SLACK)
		slack = MM_BACKTRACE_SLACK;
	if (sys_config.backtrace != NULL)
		n = sys_config.backtrace(raw, max + slack);
	*cut = n == max + slack;
	while (i < n && raw[i] != site)
		i++;
	*at = i;
	while (i < n && out < max)
		pcs[out++] = raw[i++];
	return out;
}

unsigned mm_backtrace(uintptr_t *pcs, unsigned max, uintptr_t site)
{
	unsigned at;
	bool cut;
	if (max == 0)
		return 0;
	unsigned n = walk(pcs, max, site, MM_BACKTRACE_SLACK, &at, &cut);
	if (n == 0) { /* the walk missed the site (no unwind info): one frame */
		pcs[0] = site;
		return 1;
	}
	return n;
}

/* ---- the depot ---- */

#define DEPOT_BUCKETS 16384              /* heads, a uint32_t each */
#define DEPOT_BLOCK   ((size_t)64 << 10) /* carved into records */
#define DEPOT_BYTES   (MM_DEPOT_BYTES - DEPOT_BUCKETS * sizeof(uint32_t))
#define DEPOT_SPARE   ((size_t)1 << 20) /* kept for one-frame traces */

/* A stored trace. Written once before its handle is published in a
 * bucket (release), immutable after. */
struct depot_rec {
	uint32_t next; /* handle of the next record of the bucket, 0 = end */
	uint32_t hash;
	uint32_t n;
	uint32_t pad;
	uintptr_t pcs[];
};

static struct {
	struct sys_lock lock;
	uint32_t *buckets;        /* atomic: NULL until the first record; heads
	                       written under lock (release), read lock-free */
	uintptr_t cur, end;       /* lock: the current block's free part */
	size_t used;              /* lock: bytes of m_depot handed to blocks */
	uint64_t traces, bytes;   /* lock */
	uint64_t fallbacks, lost; /* atomic */
} depot;

static uint32_t hash_pcs(const uintptr_t *pcs, unsigned n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
	for (unsigned i = 0; i < n; i++) {
		h ^= pcs[i];
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	return (uint32_t)h;
}

/* Handles are 8-byte offsets into m_depot: never 0 (the buckets come
 * first). */
static struct depot_rec *rec_of(uint32_t h)
{
	return (struct depot_rec *)(mheap_.m_depot.base + (uintptr_t)h * 8);
}

static uint32_t lookup(uint32_t *buckets, uint32_t hash, const uintptr_t *pcs, unsigned n)
{
	for (uint32_t h = mm_load_acquire(&buckets[hash % DEPOT_BUCKETS]); h != 0;) {
		const struct depot_rec *r = rec_of(h);
		if (r->hash == hash && r->n == n) {
			unsigned i = 0;
			while (i < n && r->pcs[i] == pcs[i])
				i++;
			if (i == n)
				return h;
		}
		h = r->next;
	}
	return 0;
}

/* metadata for the depot, from mheap.lock (never held with depot.lock) */
static void *depot_meta(size_t bytes)
{
	lock_heap();
	void *p = meta_alloc(&mheap_.m_depot, bytes);
	unlock_heap();
	return p;
}

/* The handle of the trace pcs[0..n), stored if new; 0 when the depot has
 * no room for it (one-frame traces may use the spare part). */
static uint32_t depot_save(const uintptr_t *pcs, unsigned n)
{
	uint32_t *b = mm_load_acquire(&depot.buckets);
	if (b == NULL) {
		void *nb = depot_meta(DEPOT_BUCKETS * sizeof(uint32_t));
		if (nb == NULL)
			return 0;
		sys_lock(&depot.lock);
		if (depot.buckets == NULL)
			mm_store_release(&depot.buckets, (uint32_t *)nb);
		b = depot.buckets; /* a racing first call's block stays unused */
		sys_unlock(&depot.lock);
	}
	uint32_t hash = hash_pcs(pcs, n);
	uint32_t h = lookup(b, hash, pcs, n);
	if (h != 0)
		return h;
	size_t need = sizeof(struct depot_rec) + n * sizeof(uintptr_t);
	size_t limit = DEPOT_BYTES - (n > 1 ? DEPOT_SPARE : 0);
	sys_lock(&depot.lock);
	while ((h = lookup(b, hash, pcs, n)) == 0 && depot.end - depot.cur < need) {
		if (depot.used + DEPOT_BLOCK > limit) {
			sys_unlock(&depot.lock);
			return 0;
		}
		depot.used += DEPOT_BLOCK; /* claimed before the lock is dropped */
		sys_unlock(&depot.lock);
		void *blk = depot_meta(DEPOT_BLOCK);
		sys_lock(&depot.lock);
		if (blk == NULL) {
			sys_unlock(&depot.lock);
			return 0;
		}
		depot.cur = (uintptr_t)blk; /* the old block's tail is lost */
		depot.end = depot.cur + DEPOT_BLOCK;
	}
	if (h == 0) {
		struct depot_rec *r = (struct depot_rec *)depot.cur;
		depot.cur += need;
		r->hash = hash;
		r->n = n;
		for (unsigned i = 0; i < n; i++)
			r->pcs[i] = pcs[i];
		h = (uint32_t)(((uintptr_t)r - mheap_.m_depot.base) / 8);
		r->next = b[hash % DEPOT_BUCKETS];
		mm_store_release(&b[hash % DEPOT_BUCKETS], h);
		depot.traces++;
		depot.bytes += need;
	}
	sys_unlock(&depot.lock);
	return h;
}

/* The most frames seen before the site, plus one; 0 until the first
 * walk (atomic; a racy maximum, only ever a hint). */
static unsigned depot_skip;

/* mm_backtrace for tracked allocations, which happen all the time: the
 * walk costs per frame (the host's DWARF unwinder, ~0.4 us each), so
 * after the first walks it asks only for the frames mm's paths were seen
 * to take, plus two, instead of MM_BACKTRACE_SLACK; a walk cut before
 * the site is done again in full. A deep stack then costs max + a few
 * frames, not max + 24. */
static unsigned depot_walk(uintptr_t *pcs, unsigned max, uintptr_t site)
{
	unsigned k = mm_load_relaxed(&depot_skip), at = 0, n = 0;
	bool cut = true;
	if (k != 0 && k + 2 < MM_BACKTRACE_SLACK)
		n = walk(pcs, max, site, k + 2, &at, &cut);
	if (n == 0 && cut)
		n = walk(pcs, max, site, MM_BACKTRACE_SLACK, &at, &cut);
	if (n == 0) { /* no unwind information: the site alone */
		pcs[0] = site;
		return 1;
	}
	if (at + 1 > k)
		mm_store_relaxed(&depot_skip, at + 1);
	return n;
}

uint32_t mm_depot_record(uintptr_t site)
{
	uintptr_t pcs[LEAK_FRAMES];
	unsigned n = 1;
	pcs[0] = site;
	if (mheap_.site_frames > 1) /* the walk is most of the cost */
		n = depot_walk(pcs, mheap_.site_frames, site);
	uint32_t h = depot_save(pcs, n);
	if (h == 0 && n > 1) {
		mm_add_fetch_relaxed(&depot.fallbacks, 1);
		h = depot_save(pcs, 1);
	}
	if (h == 0)
		mm_add_fetch_relaxed(&depot.lost, 1);
	return h;
}

unsigned mm_depot_fetch(uint32_t h, uintptr_t *pcs, unsigned max)
{
	if (h == 0 || (uintptr_t)h * 8 >= mheap_.m_depot.size)
		return 0;
	const struct depot_rec *r = rec_of(h);
	unsigned n = r->n < max ? r->n : max;
	for (unsigned i = 0; i < n; i++)
		pcs[i] = r->pcs[i];
	return n;
}

void mm_depot_stats(struct mm_depot_stats *st)
{
	sys_lock(&depot.lock);
	st->traces = depot.traces;
	st->bytes = depot.bytes;
	sys_unlock(&depot.lock);
	st->fallbacks = mm_load_relaxed(&depot.fallbacks);
	st->lost = mm_load_relaxed(&depot.lost);
}

void mm_depot_lock(void) { sys_lock(&depot.lock); }
void mm_depot_unlock(void) { sys_unlock(&depot.lock); }
