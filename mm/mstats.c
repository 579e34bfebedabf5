/*
 * mstats.c: statistics (kmalloc_stats, kmalloc_dump) and the whole-heap
 * validators and census that tests call (mheap_valid, mm_census). See
 * malloc.c for the overview.
 *
 * Counters live where they are cheapest to keep. The fast paths keep
 * none: a CPU's allocations and local frees are counted into its mcache
 * when it sweeps a span it caches (every refill, uncache and flush; Go
 * also counts at refill time, not per object); remote frees in the
 * mcentral (one atomic add next to the atomic OR the remote free does
 * anyway); page and large-object counts in the mheap (under its lock).
 * kmalloc_stats sums them and adds what the calling CPU's own cached
 * spans have not counted yet. So a snapshot is exact for the calling CPU
 * and for CPUs that flushed (threads that exited, on the host); the
 * allocations and local frees of other running CPUs since their last
 * sweep show up when they next sweep or flush. Reading another CPU's
 * cached spans instead would race with it.
 *
 * mm has no printf: kmalloc_dump formats with the two tiny helpers below,
 * into a stack buffer, and never allocates.
 */
#include "internal.h"

void kmalloc_stats(struct kmalloc_stats *st)
{
	__builtin_memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < _NumSizeClasses; i++)
		st->cls[i].size = class_to_size[i];
	for (unsigned slot = 1; slot <= MM_MAX_CPUS; slot++) {
		struct mcache *c = __atomic_load_n(&mm_mcaches[slot], __ATOMIC_ACQUIRE);
		if (c == NULL)
			continue;
		for (unsigned i = 0; i < _NumSizeClasses; i++) {
			st->cls[i].allocs += LOAD(c->allocs[i]);
			st->cls[i].frees += LOAD(c->frees[i]);
		}
	}
	/* This CPU's own cached spans: what their next sweep will count. */
	unsigned long f = sys_irq_save();
	struct mcache *mine = mm_mcaches[cpu_slot(SYS_CPU_ID_FAST())];
	for (unsigned i = 1; mine != NULL && i < _NumSizeClasses; i++)
		if (mine->alloc[i] != &mspan_empty)
			mspan_pending(mine->alloc[i], &st->cls[i].allocs, &st->cls[i].frees);
	sys_irq_restore(f);
	if (!__atomic_load_n(&mheap_.inited, __ATOMIC_ACQUIRE))
		return;
	for (unsigned i = 1; i < _NumSizeClasses; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		st->cls[i].frees += __atomic_load_n(&c->remote_frees, __ATOMIC_RELAXED);
		lock_central(c);
		st->cls[i].spans = c->nspans;
		unlock_central(c);
		st->cls[i].live = st->cls[i].allocs - st->cls[i].frees;
	}
	lock_heap();
	st->large_allocs = mheap_.large_allocs;
	st->large_frees = mheap_.large_frees;
	st->large_live = mheap_.large_live;
	st->large_bytes = mheap_.large_pages * PAGE_SIZE;
	st->heap_sys = mheap_.pages_sys * PAGE_SIZE;
	st->heap_inuse = mheap_.pages_inuse * PAGE_SIZE;
	st->heap_free = mheap_.pages_free * PAGE_SIZE;
	st->heap_released = mheap_.pages_released * PAGE_SIZE;
	st->meta_sys = mheap_.meta_sys;
	st->committed = st->heap_inuse + st->heap_free + st->meta_sys;
	unlock_heap();
}

size_t mm_fmt_str(char *buf, size_t n, size_t cap, const char *s)
{
	while (*s && n + 1 < cap)
		buf[n++] = *s++;
	buf[n] = 0;
	return n;
}

/* Decimal, right-aligned to `width` columns. */
size_t mm_fmt_u64(char *buf, size_t n, size_t cap, uint64_t v, int width)
{
	char tmp[24];
	int k = 0;
	do {
		tmp[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (width-- > k && n + 1 < cap)
		buf[n++] = ' ';
	while (k > 0 && n + 1 < cap)
		buf[n++] = tmp[--k];
	buf[n] = 0;
	return n;
}

static void log_kv(const char *key, uint64_t v)
{
	char line[96];
	size_t n = mm_fmt_str(line, 0, sizeof line, key);
	n = mm_fmt_u64(line, n, sizeof line, v, 14);
	sys_log(line);
}

void kmalloc_dump(void)
{
	struct kmalloc_stats st;
	char line[128];
	size_t n;

	kmalloc_stats(&st);
	sys_log("kmalloc: class   size     allocs      frees       live  spans");
	for (unsigned i = 1; i < _NumSizeClasses; i++) {
		if (st.cls[i].allocs == 0 && st.cls[i].spans == 0)
			continue;
		n = mm_fmt_str(line, 0, sizeof line, "kmalloc: ");
		n = mm_fmt_u64(line, n, sizeof line, i, 5);
		n = mm_fmt_u64(line, n, sizeof line, st.cls[i].size, 7);
		n = mm_fmt_u64(line, n, sizeof line, st.cls[i].allocs, 11);
		n = mm_fmt_u64(line, n, sizeof line, st.cls[i].frees, 11);
		n = mm_fmt_u64(line, n, sizeof line, st.cls[i].live, 11);
		n = mm_fmt_u64(line, n, sizeof line, st.cls[i].spans, 7);
		sys_log(line);
	}
	log_kv("kmalloc: large allocs  ", st.large_allocs);
	log_kv("kmalloc: large frees   ", st.large_frees);
	log_kv("kmalloc: large live    ", st.large_live);
	log_kv("kmalloc: large bytes   ", st.large_bytes);
	log_kv("kmalloc: heap_sys      ", st.heap_sys);
	log_kv("kmalloc: heap_inuse    ", st.heap_inuse);
	log_kv("kmalloc: heap_free     ", st.heap_free);
	log_kv("kmalloc: heap_released ", st.heap_released);
	log_kv("kmalloc: meta_sys      ", st.meta_sys);
	log_kv("kmalloc: committed     ", st.committed);
}

/* Walk the page -> span map of the grown arena and the mcentral lists.
 * pre: no other CPU allocates or frees meanwhile (tests). */
void mm_census(struct mm_census *out)
{
	__builtin_memset(out, 0, sizeof(*out));
	if (!__atomic_load_n(&mheap_.inited, __ATOMIC_ACQUIRE))
		return;
	lock_heap();
	size_t npages = mheap_.pages.nchunks * CHUNK_PAGES;
	for (size_t pg = 0; pg < npages; pg++) {
		bool alloc = pa_is_alloc(&mheap_.pages, pg);
		if (!alloc) {
			if (pa_is_scav(&mheap_.pages, pg))
				out->pages_released++;
			else
				out->pages_free++;
			continue;
		}
		struct mspan *s = mheap_.spans[pg];
		if (s == NULL || s->state == SPAN_DEAD)
			continue;
		out->pages_inuse++;
		if (s->base != mheap_.arena_start + pg * PAGE_SIZE)
			continue;
		if (s->spanclass == 0)
			out->spans_large++;
		else {
			out->spans_small++;
			if (s->cachedBy != CPU_NONE)
				out->spans_cached++;
		}
	}
	unlock_heap();
	for (unsigned i = 1; i < _NumSizeClasses; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		lock_central(c);
		out->spans_partial += c->partial.len;
		out->spans_full += c->full.len;
		out->spans_unswept += c->unswept.len;
		unlock_central(c);
	}
}

static int fail(const char *why)
{
	sys_log(why);
	return 0;
}

/* Whole-heap check: page allocator consistent, counters match a walk of
 * the bitmaps and the page map, every in-use span valid and mapped on all
 * its pages, mcentral lists hold uncached spans of their class with the
 * right fullness. Logs the first failure and returns 0; 1 if valid.
 * pre: no other CPU allocates or frees meanwhile. */
int mheap_valid(void)
{
	struct mm_census cs;
	if (!__atomic_load_n(&mheap_.inited, __ATOMIC_ACQUIRE))
		return 1;
	mm_census(&cs);
	lock_heap();
	int ok = pa_valid(&mheap_.pages);
	for (size_t ci = 0; ci < mheap_.pages.nchunks; ci++)
		for (unsigned w = 0; w < CHUNK_WORDS; w++)
			if (mheap_.pages.chunks[ci].alloc[w] & mheap_.pages.chunks[ci].scav[w])
				ok = 0;
	uint64_t inuse = mheap_.pages_inuse, fr = mheap_.pages_free,
	         rel = mheap_.pages_released, sys = mheap_.pages_sys;
	size_t npages = mheap_.pages.nchunks * CHUNK_PAGES;
	int spans_ok = 1;
	for (size_t pg = 0; pg < npages && spans_ok; pg++) {
		struct mspan *s = mheap_.spans[pg];
		if (!pa_is_alloc(&mheap_.pages, pg) || s == NULL || s->state == SPAN_DEAD)
			continue;
		if (s->base != mheap_.arena_start + pg * PAGE_SIZE)
			continue;
		if (!mspan_valid(s))
			spans_ok = 0;
		for (size_t i = 0; i < s->npages; i++)
			if (mheap_.spans[pg + i] != s || !pa_is_alloc(&mheap_.pages, pg + i))
				spans_ok = 0;
	}
	unlock_heap();
	if (!ok)
		return fail("mheap_valid: page allocator summaries disagree with bitmaps, "
		            "or a page is both allocated and scavenged");
	if (!spans_ok)
		return fail("mheap_valid: an in-use span is invalid or not mapped on all its pages");
	if (inuse + fr + rel != sys)
		return fail("mheap_valid: inuse + free + released != sys");
	if (cs.pages_inuse != inuse || cs.pages_free != fr || cs.pages_released != rel)
		return fail("mheap_valid: page counters disagree with the bitmaps");
	for (unsigned i = 1; i < _NumSizeClasses; i++) {
		struct mcentral *c = &mheap_.central[i].c;
		lock_central(c);
		for (unsigned l = LIST_PARTIAL; l <= LIST_UNSWEPT && ok; l++) {
			struct spanlist *list = l == LIST_PARTIAL ? &c->partial :
			                        l == LIST_FULL ? &c->full : &c->unswept;
			uint64_t n = 0;
			struct mspan *prev = NULL;
			for (struct mspan *s = list->head; s; prev = s, s = s->next, n++) {
				uint32_t q = __atomic_load_n(&s->queued, __ATOMIC_RELAXED);
				if (s->spanclass != i || s->cachedBy != CPU_NONE ||
				    s->onlist != l || s->prev != prev ||
				    s->state != SPAN_INUSE ||
				    (l == LIST_PARTIAL && s->allocCount == s->nelems) ||
				    (l == LIST_FULL && (s->allocCount != s->nelems || q == Q_PARKED)) ||
				    (l == LIST_UNSWEPT && q == Q_CLEAN)) {
					ok = 0;
					break;
				}
			}
			if (n != list->len || list->tail != prev)
				ok = 0;
		}
		unlock_central(c);
		if (!ok)
			return fail("mheap_valid: an mcentral list holds a wrong span");
	}
	if (cs.spans_partial + cs.spans_full + cs.spans_unswept + cs.spans_cached > cs.spans_small)
		return fail("mheap_valid: more listed spans than small spans in use");
	return 1;
}
