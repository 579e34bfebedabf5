/*
 * mstats.c: statistics (kmalloc_stats, kmalloc_dump). See malloc.c for
 * the overview; the whole-heap validator and census are in mvalid.c.
 *
 * Counters live where they are cheapest to keep: each CPU counts its own
 * allocations and frees per class in its magazines, and its large objects
 * in its mcache, with plain stores (the fast paths' cost: one add each);
 * pages and spans are counted in the mheap and the mcentrals under their
 * locks. kmalloc_stats sums them; each CPU's counters are exact at every
 * instant, so a snapshot is exact whenever no other CPU is allocating.
 *
 * mm has no printf: kmalloc_dump formats with mm/fmt.h's helpers, into a
 * stack buffer, and never allocates.
 *
 */
#include "internal.h"

void kmalloc_stats(struct kmalloc_stats *st)
{
	__builtin_memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < _NumSizeClasses; i++)
		st->cls[i].size = class_to_size[i];
	uint64_t large_bytes_in = 0, large_bytes_out = 0, large_cached = 0;
	for (unsigned slot = 1, hi = mcache_slots(); slot <= hi; slot++) {
		struct mcache *c = mcache_at(slot);
		if (c == NULL)
			continue;
		for (unsigned i = 2; i < KMALLOC_SPANCLASSES; i++) {
			struct kmalloc_class_stats *k = &st->cls[spanclass_size(i)];
			uint64_t a = LOAD(c->mag[i].allocs), f = LOAD(c->mag[i].frees);
			k->allocs += a;
			k->frees += f;
			if (spanclass_noscan(i))
				k->noscan_live += a - f;
		}
		st->large_allocs += LOAD(c->large_allocs);
		st->large_frees += LOAD(c->large_frees);
		large_bytes_in += LOAD(c->large_alloc_bytes);
		large_bytes_out += LOAD(c->large_free_bytes);
		large_cached += LOAD(c->large_cached_bytes);
	}
	st->large_live = st->large_allocs - st->large_frees;
	st->large_bytes = large_bytes_in - large_bytes_out;
	for (unsigned i = 0; i < _NumSizeClasses; i++)
		st->cls[i].live = st->cls[i].allocs - st->cls[i].frees;
	if (!mheap_inited())
		return;
	for (unsigned i = 2; i < KMALLOC_SPANCLASSES; i++) { /* typed caches: kmem_cache_stats */
		struct mcentral *c = &mheap_.central[i].c;
		lock_central(c);
		st->cls[spanclass_size(i)].spans += c->nspans;
		if (spanclass_noscan(i))
			st->cls[spanclass_size(i)].noscan_spans += c->nspans;
		unlock_central(c);
	}
	lock_heap();
	st->heap_sys = mheap_.pages_sys * PAGE_SIZE;
	/* Freed large spans that CPUs keep for reuse count as free:
	 * committed, holding no object. */
	st->heap_inuse = mheap_.pages_inuse * PAGE_SIZE - large_cached;
	st->heap_free = mheap_.pages_free * PAGE_SIZE + large_cached;
	st->heap_released = mheap_.pages_released * PAGE_SIZE;
	st->meta_sys = mheap_.meta_sys;
	mesh_stats(st);
	st->idle_drains = mm_load_relaxed(&mheap_.idle_drains);
	st->committed = st->heap_inuse + st->heap_free + st->meta_sys - st->mesh_bytes;
	unlock_heap();
	kfence_stats(st); /* its own lock, a leaf */
	st->committed += st->kfence_bytes;
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
	sys_log("kmalloc: class   size     allocs      frees       live  spans  noscan");
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
		n = mm_fmt_u64(line, n, sizeof line, st.cls[i].noscan_live, 8);
		sys_log(line);
	}
	mm_kmc_dump();
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
	if (st.idle_drains != 0)
		log_kv("kmalloc: idle_drains   ", st.idle_drains);
	if (st.mesh_count != 0) {
		log_kv("kmalloc: meshes        ", st.mesh_count);
		log_kv("kmalloc: mesh_spans    ", st.mesh_spans);
		log_kv("kmalloc: mesh_bytes    ", st.mesh_bytes);
		log_kv("kmalloc: mesh_steps    ", st.mesh_steps);
		log_kv("kmalloc: mesh_pause_max_ns ", st.mesh_pause_max_ns);
	}
	if (mheap_.track_sites) { /* the leak detector's stack depot */
		struct mm_depot_stats d;
		mm_depot_stats(&d);
		log_kv("kmalloc: depot_traces  ", d.traces);
		log_kv("kmalloc: depot_bytes   ", d.bytes);
		log_kv("kmalloc: depot_fallbacks ", d.fallbacks);
		log_kv("kmalloc: depot_lost    ", d.lost);
	}
	if (st.kfence_allocs != 0 || st.kfence_skipped != 0) {
		log_kv("kmalloc: kfence allocs ", st.kfence_allocs);
		log_kv("kmalloc: kfence frees  ", st.kfence_frees);
		log_kv("kmalloc: kfence skipped", st.kfence_skipped);
		log_kv("kmalloc: kfence bytes  ", st.kfence_bytes);
	}
}
