/*
 * mkmemcache.c: typed caches (kmem_cache_create and the rest of
 * kmalloc.h's kmem_cache_* functions but the two fast paths, which are
 * kmalloc's and kfree's in malloc.c). See malloc.c for the overview.
 *
 * Go has no typed caches; Linux's SLUB, Solaris's object caches and
 * FreeBSD's UMA zones do. Here a cache is a span class of its own
 * (KMALLOC_SPANCLASSES and up: mspan.h) whose spans are cut at the
 * cache's exact object size, so everything kmalloc's classes have it has
 * too, with no code of its own: per-CPU magazines, the transfer cache,
 * the mcentral lists, the page descriptors kfree validates with, drains,
 * aging, trim, the scavenger and the leak detector (the noscan half is
 * the class's parity, as for kmalloc's classes). And no other class
 * shares its spans: memory freed to a cache only ever comes back as an
 * object of that cache (type isolation).
 *
 * Lifetime of a class, in mm_kmcaches[i].state (kmc_lock):
 *   FREE --create--> BUSY --> LIVE --destroy--> BUSY
 *     BUSY: live objects? --> LIVE (destroy returns -1)
 *     else --> RETIRED --every CPU drained since--> (reclaim) FREE
 * A destroyed class's objects and cached spans may sit in other CPUs'
 * magazines, which only their CPU may touch: destroy asks every CPU to
 * drain (mm_drain_request) and the class is reused only when each one
 * has (drain_seen >= retire_gen); those drains also clear the class's
 * constants in the magazines (mcache.c drain_class), so a kfree never
 * checks a new cache's pointer against an old cache's object size.
 * A CPU that touched no typed cache since it was made or last flushed
 * (mcache.kmc_clean: a new CPU, a host thread that exited) holds nothing
 * of the class and does not count. One that did and never drains (a host
 * thread blocked for good) keeps the class retired; create then takes
 * another.
 *
 * Data flow of create: a record and its class under kmc_lock, the
 * geometry (span pages like Go's size-class generator: waste at most an
 * eighth) and the class's cache bounds outside it, then LIVE. Destroy
 * and shrink drain every CPU, then walk the heap in batches under
 * mheap.lock counting the class's live objects (live bytes).
 */
#include "internal.h"

struct kmem_cache mm_kmcaches[KMC_MAX];
/* Guards the state changes of mm_kmcaches; a leaf,
 * held for a few loads and stores (never with an mm lock). The host's
 * fork handlers take it too (arch/host/fork.c). */
struct sys_lock mm_kmc_lock;
#define kmc_lock mm_kmc_lock

static size_t kmc_index(const struct kmem_cache *c) { return (size_t)(c - mm_kmcaches); }

/* The largest heap pages a cache span may have: Go's divMul is exact
 * for every offset below 2^32 / size (size <= 32 KiB: 128 KiB). */
#define KMC_MAX_SPAN_PAGES 16
/* The largest object a cache serves: Go's largest class. kmalloc's
 * classes above it hold one object a span (sizeclasses.h), where a cache
 * has nothing to share. */
#define KMC_MAX_SIZE 32768

static size_t round_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

/* Span pages for objects of `size`: the fewest whose tail waste is at
 * most an eighth of the span, as scripts/mksizeclasses picks them. */
static size_t span_pages_for(size_t size)
{
	size_t np = (size + PAGE_SIZE - 1) / PAGE_SIZE;
	for (; np < KMC_MAX_SPAN_PAGES; np++)
		if ((np * PAGE_SIZE) % size <= np * PAGE_SIZE / 8)
			break;
	return np;
}

/* Sum of class cls's per-CPU allocation and free counters. */
static void class_counts(unsigned cls, uint64_t *allocs, uint64_t *frees)
{
	*allocs = *frees = 0;
	for (unsigned slot = 1, hi = mcache_slots(); slot <= hi; slot++) {
		struct mcache *c = mcache_at(slot);
		if (c == NULL)
			continue;
		*allocs += LOAD(c->mag[cls].allocs);
		*frees += LOAD(c->mag[cls].frees);
	}
}

/* Whether every CPU drained at or after drain_gen gen, or holds no
 * typed cache's state since its last flush (kmc_clean: an exited host
 * thread, an offline CPU). */
static bool all_drained(uint64_t gen)
{
	for (unsigned slot = 1, hi = mcache_slots(); slot <= hi; slot++) {
		struct mcache *c = mcache_at(slot);
		/* acquire: pairs with the release stores after the drain */
		if (c != NULL && mm_load_acquire(&c->drain_seen) < gen &&
		    !mm_load_acquire(&c->kmc_clean))
			return false;
	}
	return true;
}

/* Make a retired class reusable, if every CPU drained since it retired:
 * what they drained meanwhile left the transfer cache and spare spans.
 * The count is made with background steps kept out: one that aged the
 * class's transfer cache holds a batch on its way back to the spans,
 * which would keep a span of the class alive past the count, and the
 * class retired though nothing of it is live (api_stress's stress_caches
 * saw that with the background thread on). Exclusion waits for such a
 * step to end; the mesh reap goes first, being a background step's work.
 * pre: c->state is BUSY and ours, no mm lock held. */
static bool reclaim(struct kmem_cache *c)
{
	if (!all_drained(c->retire_gen))
		return false;
	mm_transfer_drain_class(c->spanclass);
	mesh_reap_now(); /* empty aliases of the class, and their dsts' hold */
	mheap_bg_exclude(true);
	mm_transfer_drain_class(c->spanclass);
	mcentral_free_spares_class(c->spanclass);
	struct mcentral *mc = &mheap_.central[c->spanclass].c;
	lock_central(mc);
	uint64_t n = mc->nspans;
	unlock_central(mc);
	mheap_bg_exclude(false);
	return n == 0;
}

static void set_state(struct kmem_cache *c, enum kmc_state st)
{
	mm_store_release(&c->state, (uint8_t)st); /* pairs: spanclass_retired */
}

/* A FREE record of the given noscan parity, or a RETIRED one that
 * reclaim makes free, now BUSY; NULL if none. */
static struct kmem_cache *take_record(unsigned noscan)
{
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < KMC_MAX; i++) {
			struct kmem_cache *c = &mm_kmcaches[i];
			if (((KMALLOC_SPANCLASSES + i) & 1) != noscan)
				continue;
			sys_lock(&kmc_lock);
			enum kmc_state st = (enum kmc_state)c->state;
			bool mine = st == (pass == 0 ? KMC_FREE : KMC_RETIRED);
			if (mine)
				set_state(c, KMC_BUSY);
			sys_unlock(&kmc_lock);
			if (!mine)
				continue;
			if (pass == 0 || reclaim(c))
				return c;
			set_state(c, KMC_RETIRED);
		}
	}
	return NULL;
}

struct kmem_cache *kmem_cache_create(const char *name, size_t size, size_t align, unsigned flags,
                                     void (*ctor)(void *obj))
{
	if (size == 0 || size > KMC_MAX_SIZE || (align & (align - 1)) != 0 || align > PAGE_SIZE ||
	    (flags & ~(KMC_NOSCAN | KMC_HWALIGN)) != 0)
		return mm_nomem();
	if (align == 0) {
		/* natural: the largest power of two dividing size, to 16 */
		align = size & -size;
		if (align > 16)
			align = 16;
	}
	if ((flags & KMC_HWALIGN) && align < 64)
		align = 64;
	if (align < 8)
		align = 8; /* slots are at least 8 bytes apart (live bytes) */
	size_t osize = round_up(size, align);
	if (osize > KMC_MAX_SIZE || mheap_ready() != 0)
		return mm_nomem();
	struct kmem_cache *c = take_record(flags & KMC_NOSCAN ? 1 : 0);
	if (c == NULL) {
		/* Every record taken or retired: CPUs that reach safe points
		 * drain now, which may free a retired one. */
		mm_drain_request(true);
		c = take_record(flags & KMC_NOSCAN ? 1 : 0);
	}
	if (c == NULL)
		return mm_nomem();
	size_t np = span_pages_for(osize);
	c->spanclass = (uint8_t)(KMALLOC_SPANCLASSES + kmc_index(c));
	c->size = (uint32_t)osize;
	c->align = (uint16_t)align;
	c->npages = (uint16_t)np;
	c->divmagic = (uint32_t)(0xffffffffu / osize + 1); /* Go's divMul */
	c->nelems = (uint16_t)(np * PAGE_SIZE / osize);
	c->ctor = ctor;
	c->flags = flags;
	size_t n = 0;
	for (; name != NULL && name[n] != 0 && n + 1 < KMC_NAME_MAX; n++)
		c->name[n] = name[n];
	c->name[n] = 0;
	class_counts(c->spanclass, &c->base_allocs, &c->base_frees);
	mm_cache_set_class(c->spanclass, osize);
	set_state(c, KMC_LIVE);
	return c;
}

void mm_kmc_construct(struct mspan *s, unsigned spanclass)
{
	const struct kmem_cache *c = kmc_of_class(spanclass);
	if (c->ctor == NULL)
		return;
	for (unsigned i = 0; i < c->nelems; i++)
		c->ctor((void *)(s->base + (uintptr_t)i * c->size));
	s->needzero = 1; /* KM_ZERO must clear what the constructor wrote */
}

/* Class cls's live objects: their count, and the first `cap` addresses
 * in out. Batches of runs under mheap.lock, as kmalloc_heapmap walks. */
#define WALK_BATCH 64
static uint64_t live_objects(unsigned cls, uintptr_t *out, unsigned cap)
{
	uint64_t live = 0;
	size_t pg = 0;
	for (bool more = true; more;) {
		lock_heap();
		size_t end = mheap_.pages.nchunks * CHUNK_PAGES;
		for (unsigned k = 0; k < WALK_BATCH && pg < end; k++) {
			struct mm_run r;
			mheap_run_at(pg, &r);
			pg += r.n;
			struct mspan *s = r.s;
			if (r.kind != RUN_SPAN || span_state(s) != SPAN_INUSE ||
			    s->spanclass != cls ||
			    s->base != mheap_.arena_start + (pg - r.n) * PAGE_SIZE)
				continue;
			for (unsigned i = 0; i < s->nelems; i++) {
				if (LOAD(*mspan_live(s, i)) != 1)
					continue;
				if (live < cap)
					out[live] = (uintptr_t)mspan_slot_addr(s, i);
				live++;
			}
		}
		more = pg < end;
		unlock_heap();
	}
	return live;
}

#define DESTROY_SHOWN 16 /* addresses a destroy report lists */

int kmem_cache_destroy(struct kmem_cache *c)
{
	if (c == NULL)
		return 0;
	sys_lock(&kmc_lock);
	bool live = c->state == KMC_LIVE;
	if (live)
		set_state(c, KMC_BUSY);
	sys_unlock(&kmc_lock);
	if (!live)
		sys_fault("invalid cache", c);
	/* Every CPU's magazines into the spans, so the only slots out are
	 * the live ones; BUSY first, so these drains reset the constants. */
	uint64_t gen = mm_drain_request(true);
	uintptr_t shown[DESTROY_SHOWN];
	uint64_t n = live_objects(c->spanclass, shown, DESTROY_SHOWN);
	if (n != 0) {
		char line[80 + KMC_NAME_MAX + DESTROY_SHOWN * 20];
		size_t k = mm_fmt_str(line, 0, sizeof line, "kmem_cache_destroy: '");
		k = mm_fmt_str(line, k, sizeof line, c->name);
		k = mm_fmt_str(line, k, sizeof line, "': ");
		k = mm_fmt_u64(line, k, sizeof line, n, 0);
		k = mm_fmt_str(line, k, sizeof line,
		               n == 1 ? " object remaining:" : " objects remaining:");
		for (uint64_t i = 0; i < n && i < DESTROY_SHOWN; i++) {
			k = mm_fmt_str(line, k, sizeof line, " ");
			k = mm_fmt_hex(line, k, sizeof line, shown[i]);
		}
		if (n > DESTROY_SHOWN) {
			k = mm_fmt_str(line, k, sizeof line, " and ");
			k = mm_fmt_u64(line, k, sizeof line, n - DESTROY_SHOWN, 0);
			mm_fmt_str(line, k, sizeof line, " more");
		}
		sys_log(line);
		set_state(c, KMC_LIVE);
		return -1;
	}
	c->retire_gen = gen;
	set_state(c, reclaim(c) ? KMC_FREE : KMC_RETIRED);
	return 0;
}

/* Spans of cls in use. */
static uint64_t class_spans(unsigned cls)
{
	struct mcentral *mc = &mheap_.central[cls].c;
	lock_central(mc);
	uint64_t n = mc->nspans;
	unlock_central(mc);
	return n;
}

int kmem_cache_shrink(struct kmem_cache *c)
{
	if (LOAD(c->state) != KMC_LIVE)
		sys_fault("invalid cache", c);
	uint64_t before = class_spans(c->spanclass);
	mm_drain_request(true); /* every CPU's; then the spare spans go */
	mesh_reap_now();
	mcentral_free_spares_class(c->spanclass);
	uint64_t after = class_spans(c->spanclass);
	return before > after ? (int)((before - after) * c->npages) : 0;
}

static void fill_stats(const struct kmem_cache *c, struct kmem_cache_stats *st)
{
	__builtin_memset(st, 0, sizeof(*st));
	uint64_t a, f;
	class_counts(c->spanclass, &a, &f);
	st->objsize = c->size;
	st->align = c->align;
	st->objperslab = c->nelems;
	st->pagesperslab = c->npages;
	st->allocs = a - c->base_allocs;
	st->frees = f - c->base_frees;
	st->active_objs = st->allocs - st->frees;
	st->slabs = class_spans(c->spanclass);
	st->num_objs = st->slabs * c->nelems;
}

void kmem_cache_stats(struct kmem_cache *c, struct kmem_cache_stats *st)
{
	if (LOAD(c->state) != KMC_LIVE)
		sys_fault("invalid cache", c);
	fill_stats(c, st);
}

/* The name a fault gives span class cls's objects: a cache's, or
 * kmalloc's class as Linux names its kmalloc caches. */
static size_t class_name(char *buf, size_t n, size_t cap, unsigned cls)
{
	if (cls >= KMALLOC_SPANCLASSES)
		return mm_fmt_str(buf, n, cap, kmc_of_class(cls)->name);
	if (cls < 2)
		return mm_fmt_str(buf, n, cap, "kmalloc-large");
	n = mm_fmt_str(buf, n, cap, "kmalloc-");
	return mm_fmt_u64(buf, n, cap, class_to_size[spanclass_size(cls)], 0);
}

/* sys_fault's line has no room after the pointer, so the names go in a
 * log line of the same form first: on the host stdout, in the kernel the
 * console line above the panic. */
_Noreturn void mm_kmc_wrong(const void *p, unsigned have, unsigned want)
{
	char line[96 + 2 * KMC_NAME_MAX];
	size_t n = mm_fmt_str(line, 0, sizeof line, "kmalloc: wrong cache: ");
	n = mm_fmt_hex(line, n, sizeof line, (uintptr_t)p);
	n = mm_fmt_str(line, n, sizeof line, " (object of '");
	n = class_name(line, n, sizeof line, have);
	n = mm_fmt_str(line, n, sizeof line, "', freed to '");
	n = class_name(line, n, sizeof line, want);
	mm_fmt_str(line, n, sizeof line, "')");
	sys_log(line);
	sys_fault("wrong cache", p);
}

void mm_kmc_dump(void)
{
	bool header = false;
	for (size_t i = 0; i < KMC_MAX; i++) {
		struct kmem_cache *c = &mm_kmcaches[i];
		if (mm_load_acquire(&c->state) != KMC_LIVE)
			continue;
		if (!header)
			sys_log("kmalloc: slabinfo: # name            <active_objs> <num_objs> "
			        "<objsize> <objperslab> <pagesperslab>");
		header = true;
		struct kmem_cache_stats st;
		fill_stats(c, &st);
		char line[128];
		size_t n = mm_fmt_str(line, 0, sizeof line, "kmalloc: slabinfo: ");
		n = mm_fmt_str(line, n, sizeof line, c->name);
		while (n < 19 + 18 && n + 1 < sizeof line)
			n = mm_fmt_str(line, n, sizeof line, " ");
		n = mm_fmt_u64(line, n, sizeof line, st.active_objs, 13);
		n = mm_fmt_u64(line, n, sizeof line, st.num_objs, 11);
		n = mm_fmt_u64(line, n, sizeof line, st.objsize, 10);
		n = mm_fmt_u64(line, n, sizeof line, st.objperslab, 13);
		mm_fmt_u64(line, n, sizeof line, st.pagesperslab, 15);
		sys_log(line);
	}
}
