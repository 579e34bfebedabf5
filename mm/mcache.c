/*
 * mcache.c: the per-CPU caches: magazines of free objects per span class
 * in front of one cached span per class, and the slow half of kmalloc
 * and kfree around them. See malloc.c for the overview; the fast halves
 * (a magazine pop or push, nextFreeFast on the cached span) are inlined
 * into kmalloc and kfree.
 *
 * Each CPU has one mcache, created on its first allocation in the
 * metadata area (mheap.m_caches, never freed: a host thread's CPU id and
 * its mcache are reused by the next thread), holding per class a magazine
 * (struct magazine: entries, bound, counters) and a cached span. Only its
 * CPU touches it, always with interrupts off, so nothing here takes a lock
 * except when it goes to a transfer cache, an mcentral or the mheap.
 *
 * Objects flow:
 *   kfree -> magazine; full: its oldest batch -> transfer cache; that
 *     full too: the batch -> its spans (mcentral_return).
 *   kmalloc <- magazine; empty: <- the cached span's allocCache (inline);
 *     used up: <- a batch from the transfer cache; empty: <- the span the
 *     slow way (nextFreeIndex, sweep, mcentral).
 * Spilling the oldest objects keeps the most recently freed, cache-warm
 * ones on the CPU that freed them.
 *
 * Draining (mcache_drain) empties a CPU's magazines into their spans,
 * gives its cached spans back and empties its large cache: on
 * kmalloc_flush_cpu (thread exit, CPU offline), kmalloc_trim, and when
 * the heap is out of memory. Another CPU's caches are drained by that CPU
 * itself at its next safe point: mm_drain_all raises mheap.drain_gen, and
 * every CPU compares it with its own drain_seen in its slow paths and in
 * kmalloc_safepoint (Go's forEachP, which flushes each P's mcache at a
 * safe point). A port that calls kmalloc_safepoint regularly on every CPU
 * (the kernel: each timer tick) is waited for, except while it says it
 * is idle (kmalloc_cpu_idle: a CPU whose timer is stopped reaches no safe
 * point, and waiting seconds for each of 63 idle CPUs made every trim at
 * SMP=64 take minutes); others drain when they next take a slow path.
 *
 * Aging (mcache_age, with the port's clock): at a safe point, or every
 * AGE_EVERY alloc slow paths, each class this CPU left unused for half
 * the release delay is drained the same way, and so are its large bins.
 *
 * Idle CPUs (mcache_idle_pass, with the port's cpu_unpublish, cpu_fence
 * and cpu_busy: the host, whose threads are CPUs and may block for good
 * with full caches; a kernel's idle CPU ages itself at its safe points).
 * Every half delay the background work marks each mcache in use
 * (OWNED -> MARKED) and empties its CPU's fast slot, so the CPU's next
 * kmalloc or kfree takes the slow path, which takes its mcache back
 * (mcache_claim: MARKED -> OWNED). An mcache still MARKED a half delay
 * later belonged to a CPU that made no slow path since: it goes STOLEN,
 * every CPU runs a barrier (cpu_fence), and if its CPU is not inside a
 * sys_irq_save section and its slot is still empty (cpu_busy), the CPU
 * cannot be using it, and cannot start to without seeing the empty slot
 * and then STOLEN: it is flushed (mcache_flush) and left DRAINED for the
 * CPU to claim. The barrier is what makes the CPU's "enter the section,
 * then load the slot" safe against our "empty the slot, then look at the
 * section" without a barrier of its own on every call (the asymmetric
 * fence of userspace RCU and of tcmalloc's per-CPU caches): the fast
 * paths pay nothing. A busy CPU pays one slow path per half delay.
 *
 * There is no tiny allocator: Go packs several sub-16-byte objects into
 * one 16-byte block and frees the block only when the GC finds all of
 * them dead; with explicit free we could not tell which parts of a block
 * are still in use, so every object has its own slot.
 */
#include "internal.h"

#define AGE_EVERY 32 /* alloc slow paths between two looks at the clock */

static size_t clamp(size_t v, size_t lo, size_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

size_t mm_mag_cap(size_t size)
{
	return clamp(MAG_BYTES / size, size > MAG_BIG ? MAG_MIN_BIG : MAG_MIN, MAG_MAX);
}

/* The bounds of class i for objects of `size` bytes: kmalloc's at init,
 * a typed cache's when it is created (its class unused until then). */
void mm_cache_set_class(unsigned i, size_t size)
{
	struct mm_cache_sizes *cs = &mheap_.cs;
	size_t mag = mm_mag_cap(size);
	cs->mag_cap[i] = (uint16_t)mag;
	cs->batch[i] = (uint16_t)(mag / 2);
	cs->tc_cap[i] = (uint16_t)clamp(TC_BYTES / size, mag, TC_MAX);
	struct transfer *t = &mheap_.transfer[i].t;
	lock_transfer(t);
	STORE(t->lim, cs->tc_cap[i]);
	unlock_transfer(t);
}

/* Per-class cache sizes from the byte bounds in internal.h. pre: called
 * once by mheap_init. */
void mm_cache_init(void)
{
	struct mm_cache_sizes *cs = &mheap_.cs;
	cs->mcache_bytes = (sizeof(struct mcache) + 63) & ~(size_t)63;
	cs->mcache_max_bytes = cs->mcache_bytes;
	cs->tc_bytes = 0;
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		/* A typed cache's class is carved for the largest bounds,
		 * since caches of other sizes reuse its entries (mcache_mag_ready,
		 * mm_cache_set_class). */
		bool typed = i >= KMALLOC_SPANCLASSES;
		size_t mag = typed ? MAG_MAX : mm_mag_cap(class_to_size[spanclass_size(i)]);
		if (!typed)
			mm_cache_set_class(i, class_to_size[spanclass_size(i)]);
		mheap_.transfer[i].t.cap = typed ? TC_MAX : cs->tc_cap[i];
		/* meta_alloc rounds every piece to 64 bytes */
		cs->mcache_max_bytes += (mag * sizeof(struct magentry) + 63) & ~(size_t)63;
		size_t tcb = mheap_.transfer[i].t.cap * sizeof(struct magentry);
		/* and a page-sized entry array is page-aligned (mtransfer.c) */
		cs->tc_bytes += ((tc_carve(tcb) + 63) & ~(size_t)63) + tc_align(tcb) - 64;
	}
}

/* The class constants of magazine m (struct magazine): a class's spans
 * are always spanclass_npages pages (mcentral_refill), so the bytes
 * their slots fill depend on the class alone. */
static void mag_class_init(struct magazine *m, unsigned spanclass)
{
	size_t size = spanclass_elemsize(spanclass);
	m->div_exact = slot_magic(size);
	m->slot_bytes = (uint32_t)(spanclass_nelems(spanclass) * size);
	m->liveshift = liveshift_of(size);
}

/* This CPU's mcache, creating it (and the heap, on the host's first
 * allocation) if needed. NULL if the heap cannot be set up.
 * pre: interrupts off, cpu == sys_cpu_id(). */
struct mcache *mcache_get(unsigned cpu)
{
	MM_ASSERT(cpu < sys_config.max_cpus);
	struct mcache *c = mcache_at(cpu_slot(cpu));
	if (c != NULL) {
		if (MM_UNLIKELY(mm_load_acquire(&c->idle) != MC_OWNED))
			mcache_claim(c);
		return c;
	}
	if (mheap_init() != 0)
		return NULL;
	lock_heap();
	c = meta_alloc(&mheap_.m_caches, mheap_.cs.mcache_bytes);
	if (c != NULL && cpu_slot(cpu) > mm_mcache_hi)
		mm_store_relaxed(&mm_mcache_hi, cpu_slot(cpu));
	unlock_heap();
	if (c == NULL)
		return NULL;
	for (unsigned i = 0; i < NUM_SPANCLASSES; i++)
		c->alloc[i] = &mspan_none; /* magazines: NULL until used */
	c->cpu = cpu;
	c->kmc_clean = 1;                    /* no typed cache's class touched yet */
	c->kfence_left = KFENCE_CHECK_EVERY; /* (mkfence.c) */
	/* acquire: pairs with mm_drain_all's increment (what it drained) */
	c->drain_seen = mm_load_acquire(&mheap_.drain_gen);
	mm_store_release(&mm_mcaches[cpu_slot(cpu)], c); /* publishes c's fields (mcache_at) */
	return c;
}

/* The magazine and the span's allocCache are empty for spanclass: take
 * from the cached span the slow way, or sweep it, or trade it for another
 * span from the mcentral. Returns the object, marked live, or NULL when
 * memory is exhausted; *needzero tells whether it may hold old data.
 * pre: interrupts off; c is this CPU's mcache; spanclass >= 2. */
void *mcache_refill_alloc(struct mcache *c, unsigned spanclass, bool *needzero)
{
	for (;;) {
		struct mspan *s = c->alloc[spanclass];
		if (s != &mspan_none) {
			MM_ASSERT(s->cached_by == cpu_slot(c->cpu) && s->spanclass == spanclass);
			long idx = mspan_nextFreeFast(s);
			if (idx < 0) {
				idx = mspan_nextFreeIndex(s);
				if (idx >= s->nelems)
					idx = -1;
			}
			if (idx >= 0) {
				STORE(*mspan_live(s, (unsigned)idx), 1);
				*needzero = s->needzero;
				return mspan_slot_addr(s, (unsigned)idx);
			}
			/* Full as far as freeindex knows: merge what came back
			 * since the last sweep and keep the span if that freed
			 * enough slots (an eighth of it, at least one), so a span
			 * with a stray free slot or two is traded for one that had
			 * time to collect more. */
			unsigned freed = mspan_sweep(s);
			if (freed != 0 && freed >= s->nelems / 8u)
				continue;
		}
		struct mspan *old = s == &mspan_none ? NULL : s;
		c->alloc[spanclass] = &mspan_none;
		s = mcentral_refill(&mheap_.central[spanclass].c, old, c->cpu);
		if (s == NULL)
			return NULL;
		c->alloc[spanclass] = s;
	}
}

/* Carve the magazine's entries of spanclass on its first use, and set
 * its class constants: until then slot_bytes 0 sends kfree to its slow path,
 * which comes here, and a CPU writes only the magazine lines of classes
 * it uses. Returns false (the magazine stays unusable, NULL) if the
 * metadata area is out. pre: interrupts off; c is this CPU's mcache. */
bool mcache_mag_ready(struct mcache *c, unsigned spanclass)
{
	struct magazine *m = &c->mag[spanclass];
	size_t cap = mheap_.cs.mag_cap[spanclass];
	if (spanclass >= KMALLOC_SPANCLASSES && mm_load_relaxed(&c->kmc_clean))
		mm_store_relaxed(&c->kmc_clean, 0); /* only we write it */
	if (MM_LIKELY(m->base != NULL)) {
		if (MM_UNLIKELY(!mag_class_known(m))) {
			/* A typed cache's class, reset by a drain after its
			 * cache was destroyed (drain_class), now another
			 * cache's: its entries were carved for MAG_MAX. */
			m->limit = m->base + cap;
			mag_class_init(m, spanclass);
		}
		return true;
	}
	if (spanclass >= KMALLOC_SPANCLASSES)
		cap = MAG_MAX;
	lock_heap();
	struct magentry *e = meta_alloc(&mheap_.m_caches, cap * sizeof(struct magentry));
	unlock_heap();
	if (e == NULL)
		return false;
	m->base = m->top = e;
	m->limit = e + mheap_.cs.mag_cap[spanclass];
	mag_class_init(m, spanclass);
	return true;
}

/* kmalloc's slow half for a small class: a batch from the transfer cache
 * into the empty magazine, or else the span path. Returns the object,
 * marked live and counted, or NULL; *needzero as above.
 * pre: interrupts off; c is this CPU's mcache. */
void *mcache_alloc_slow(struct mcache *c, unsigned spanclass, bool *needzero)
{
	struct magazine *m = &c->mag[spanclass];
	mcache_poll(c);
	/* every AGE_EVERY slow paths (not each: a clock read is dearer
	 * than the rest of a refill from the transfer cache) */
	if (mheap_.now_ns != NULL && ++c->age_tick % AGE_EVERY == 0)
		mcache_age(c, mheap_.now_ns());
	if (m->top == m->base && mcache_mag_ready(c, spanclass))
		m->top += mm_transfer_take(spanclass, m->base, mheap_.cs.batch[spanclass]);
	void *v;
	if (m->top != m->base) {
		struct magentry *e = --m->top;
		STORE(*e->live, 1);
		*needzero = true;
		v = e->p;
	} else {
		v = mcache_refill_alloc(c, spanclass, needzero);
		if (v == NULL)
			return NULL;
	}
	COUNT(m->allocs);
	return v;
}

/* The magazine of spanclass is full: move its oldest batch to the
 * transfer cache, or to the spans if that is full too.
 * pre: interrupts off; c is this CPU's mcache. */
void mcache_spill(struct mcache *c, unsigned spanclass)
{
	struct magazine *m = &c->mag[spanclass];
	size_t n = mag_count(m), b = mheap_.cs.batch[spanclass];
	if (b == 0 || b > n)
		b = n;
	size_t put = mm_transfer_put(spanclass, m->base, b);
	if (put < b)
		mcentral_return(&mheap_.central[spanclass].c, m->base + put, b - put);
	__builtin_memmove(m->base, m->base + b, (n - b) * sizeof(struct magentry));
	m->top -= b;
}

/* Empty every magazine into its spans, give the cached spans back (unless
 * keep_spans) and empty the large cache. pre: interrupts off; c is this
 * CPU's mcache, or one the idle-CPU drain holds STOLEN; no mm lock held. */
static void drain_class(struct mcache *c, unsigned i, bool keep_span)
{
	struct magazine *m = &c->mag[i];
	if (m->top != m->base) {
		mcentral_return(&mheap_.central[i].c, m->base, mag_count(m));
		m->top = m->base;
	}
	/* A destroyed cache's class may come back with another object size:
	 * no kfree may check a pointer against these constants, and the
	 * next slow path sets the new ones (mcache_mag_ready). */
	if (m->base != NULL && spanclass_retired(i))
		m->slot_bytes = 0;
	struct mspan *s = c->alloc[i];
	if (keep_span || s == &mspan_none)
		return;
	c->alloc[i] = &mspan_none;
	mcentral_uncacheSpan(&mheap_.central[i].c, s);
}

void mcache_drain(struct mcache *c, bool keep_spans)
{
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++)
		drain_class(c, i, keep_spans);
	mlarge_drain(c);
}

/* Each class whose magazine or cached span holds something and that saw
 * no allocation or free on this CPU for half the release delay goes back
 * to its spans; the large bins likewise. Looks every quarter delay, so
 * what a CPU stopped using is gone within three quarters of one. A class
 * in use keeps its cache: the fast paths count every object, and the
 * counts are what this compares. */
void mcache_age(struct mcache *c, uint64_t now)
{
	uint64_t half = mheap_.release_ns / 2;
	if (now - c->aged_at < half / 2)
		return;
	c->aged_at = now;
	uint32_t now_ms = (uint32_t)(now / 1000000), half_ms = (uint32_t)(half / 1000000);
	mheap_aging(1);
	for (unsigned i = 2; i < NUM_SPANCLASSES; i++) {
		struct magazine *m = &c->mag[i];
		uint32_t ops = (uint32_t)(m->allocs + m->frees);
		if (ops != m->aged_ops) {
			m->aged_ops = ops;
			m->aged_ms = now_ms;
		} else if (now_ms - m->aged_ms >= half_ms &&
		           (m->top != m->base || c->alloc[i] != &mspan_none)) {
			drain_class(c, i, false);
		}
	}
	uint64_t lops = c->large_allocs + c->large_frees;
	if (lops != c->large_aged_ops) {
		c->large_aged_ops = lops;
		c->large_aged_at = now;
	} else if (now - c->large_aged_at >= half && c->nlarge != 0) {
		mlarge_drain(c);
	}
	mheap_aging(-1);
}

/* Drain this CPU if mm_drain_all asked since it last did.
 * pre: interrupts off; c is this CPU's mcache; no mm lock held. */
void mcache_poll(struct mcache *c)
{
	uint64_t gen = mm_load_acquire(&mheap_.drain_gen); /* pairs: mm_drain_all */
	if (MM_LIKELY(gen == c->drain_seen))
		return;
	mcache_drain(c, false);
	mm_store_release(&c->drain_seen, gen); /* the drain is done: a waiter may go on */
}

/* Drain this CPU whether asked or not, and say so in drain_seen. Then,
 * holding nothing, it forgets every typed cache's class constants and
 * says it is clean: a thread that exited (the host flushes its mcache)
 * or a CPU going offline must not keep a destroyed cache's class from
 * reuse (mkmemcache.c), as it would if only drains after the destroy
 * counted. Same pre as mcache_poll. */
void mcache_flush(struct mcache *c)
{
	uint64_t gen = mm_load_acquire(&mheap_.drain_gen); /* pairs: mm_drain_all */
	mcache_drain(c, false);
	for (unsigned i = KMALLOC_SPANCLASSES; i < NUM_SPANCLASSES; i++)
		if (c->mag[i].base != NULL)
			c->mag[i].slot_bytes = 0;
	mm_store_release(&c->drain_seen, gen);
	mm_store_release(&c->kmc_clean, 1); /* pairs: mkmemcache.c all_drained */
}

/* Take c back from the idle-CPU drain (MARKED or DRAINED -> OWNED),
 * waiting while it is STOLEN: that lasts one flush, and the drain never
 * waits for this CPU. pre: interrupts off; c is this CPU's mcache. */
void mcache_claim(struct mcache *c)
{
	for (;;) {
		uint32_t st = mm_load_acquire(&c->idle);
		if (st == MC_OWNED)
			return;
		if (st != MC_STOLEN && mm_cas_acq_rel(&c->idle, &st, MC_OWNED))
			return; /* acquire: what the drain did to c */
	}
}

/* One look at the other CPUs' caches (see "Idle CPUs" above): drain the
 * ones marked a half delay ago whose CPUs made no slow path since, then
 * mark the ones in use. pre: bg_busy is ours (kmalloc_background); no mm
 * lock held; interrupts on. */
void mcache_idle_pass(uint64_t now)
{
	if (sys_config.cpu_fence == NULL || now - mheap_.idle_pass_at < mheap_.release_ns / 2)
		return;
	mheap_.idle_pass_at = now;
	unsigned long f = sys_irq_save();
	unsigned me = cpu_slot(sys_cpu_id()), hi = mcache_slots(), stolen = 0;
	sys_irq_restore(f);
	for (unsigned slot = 1; slot <= hi; slot++) {
		struct mcache *c = mcache_at(slot);
		uint32_t st = MC_MARKED;
		if (c != NULL && slot != me && mm_cas_acq_rel(&c->idle, &st, MC_STOLEN))
			stolen++;
	}
	bool fenced = stolen != 0 && sys_config.cpu_fence() == 0;
	for (unsigned slot = 1; stolen != 0 && slot <= hi; slot++) {
		struct mcache *c = mcache_at(slot);
		if (c == NULL || mm_load_relaxed(&c->idle) != MC_STOLEN)
			continue;
		stolen--;
		if (!fenced || sys_config.cpu_busy(c->cpu)) {
			mm_store_release(&c->idle, MC_OWNED); /* in use after all */
			continue;
		}
		f = sys_irq_save();
		mheap_aging(1); /* its pages were last used half a delay ago */
		mcache_flush(c);
		mheap_aging(-1);
		sys_irq_restore(f);
		mm_add_fetch_relaxed(&mheap_.idle_drains, 1);
		mm_store_release(&c->idle, MC_DRAINED); /* pairs: mcache_claim */
	}
	for (unsigned slot = 1; slot <= hi; slot++) {
		struct mcache *c = mcache_at(slot);
		uint32_t st = MC_OWNED;
		/* the mark first, then the slot: a CPU that sees its slot
		 * empty finds the mark to take back */
		if (c != NULL && slot != me && mm_cas_acq_rel(&c->idle, &st, MC_MARKED))
			(void)sys_config.cpu_unpublish(c->cpu); /* -1: no thread
			                     has the id; MARKED, it goes next time */
	}
}

void kmalloc_safepoint(void)
{
	if (!mheap_inited())
		return;
	unsigned long f = sys_irq_save();
	const struct sys_lock *ranks[RANK_N];
	mm_lockrank_save(ranks);
	unsigned slot = cpu_slot(sys_cpu_id());
	if (!mm_cpu_polls[slot])
		mm_store_release(&mm_cpu_polls[slot], 1); /* this CPU answers drains from now on */
	struct mcache *c = mcache_mine();
	if (c != NULL)
		mcache_poll(c);
	if (mheap_.now_ns != NULL) {
		uint64_t now = mheap_.now_ns();
		if (c != NULL)
			mcache_age(c, now);
		if (now >= mm_load_relaxed(&mheap_.bg_due))
			kmalloc_background(); /* a step is due */
	}
	mm_lockrank_restore(ranks);
	sys_irq_restore(f);
}

void kmalloc_cpu_idle(void)
{
	if (!mheap_inited())
		return;
	unsigned long f = sys_irq_save();
	unsigned slot = cpu_slot(sys_cpu_id());
	if (mm_cpu_polls[slot])
		mm_store_release(&mm_cpu_polls[slot], 0); /* drains stop waiting for this CPU */
	sys_irq_restore(f);
}

/* How long mm_drain_all waits for one CPU to reach its safe point, in
 * loads of its drain_seen: seconds, far more than a timer period. */
#define DRAIN_SPINS (1ul << 28)

/* Give back everything the caches hold: this CPU's at once, the transfer
 * caches, and every other CPU's at its next safe point; if `wait`, wait
 * (boundedly) for the CPUs that poll. Used by kmalloc_trim and before an
 * allocation reports out of memory.
 * pre: no mm lock held; interrupts as the caller of kmalloc left them. */
void mm_drain_all(bool wait) { mm_drain_request(wait); }

/* mm_drain_all, returning the drain_gen it asked for: a CPU whose
 * drain_seen reached it drained after every store the caller made
 * before the call. */
uint64_t mm_drain_request(bool wait)
{
	/* acq_rel: our caches' state before the request, theirs after */
	uint64_t gen = mm_add_fetch_acq_rel(&mheap_.drain_gen, 1);
	unsigned long f = sys_irq_save();
	unsigned me = cpu_slot(sys_cpu_id());
	struct mcache *mine = mcache_mine();
	if (mine != NULL)
		mcache_poll(mine);
	sys_irq_restore(f);
	mm_transfer_drain_all();
	mcentral_free_spares();
	if (!wait)
		return gen;
	for (unsigned slot = 1, hi = mcache_slots(); slot <= hi; slot++) {
		struct mcache *c = mcache_at(slot);
		/* acquire: pairs with kmalloc_safepoint's store */
		if (c == NULL || slot == me || !mm_load_acquire(&mm_cpu_polls[slot]))
			continue;
		/* acquire: pairs with mcache_poll's release (its drain is
		 * visible); a CPU that goes idle meanwhile (kmalloc_cpu_idle)
		 * ends the wait */
		for (unsigned long i = 0;
		     i < DRAIN_SPINS && mm_load_acquire(&c->drain_seen) < gen &&
		     mm_load_relaxed(&mm_cpu_polls[slot]);
		     i++)
			;
	}
	/* What the others spilled into transfer caches meanwhile. */
	mm_transfer_drain_all();
	mcentral_free_spares();
	return gen;
}
