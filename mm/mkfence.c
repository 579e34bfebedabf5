/*
 * mkfence.c: guarded sampling, Linux's KFENCE and Android's GWP-ASan in
 * this heap. About one kmalloc per interval (sys_config.kfence_ms) is
 * served from a pool of sys pages where every object page sits between
 * two inaccessible guard pages, the object against one of them (right and
 * left in turn, so overflows and underflows are both caught); a freed
 * object's page becomes inaccessible too. The access that runs off the
 * object or touches it after its free faults where it happens, and the
 * port's fault handler asks kmalloc_kfence_fault for the report.
 *
 * Layout (after the arena, reserved by mheap_init; sys pages):
 *
 *   [meta: a struct kf_meta per object] G O0 G O1 G ... O(n-1) G
 *
 * Every page changes state only through sys_config.guard (never
 * sys_commit/sys_release, which on the host leave pages readable): the
 * meta pages open once, when sampling first starts; an object page opens
 * when a sample takes it and closes when it is freed; guards never open.
 * Freed slots are reused oldest first (a FIFO), so a freed page stays
 * closed as long as the pool allows. The bytes of an object page outside
 * the object hold canary bytes from the sample on, checked when it is
 * freed (KFENCE's canaries): a write into the few bytes before the right
 * guard (a size that is not a multiple of malloc's alignment) or past a
 * left-aligned object, which no guard catches, is reported at the free.
 *
 * Data flow:
 *   kmalloc fast path: --mcache.kfence_left; at 0 (every KFENCE_CHECK_EVERY
 *     allocations of that CPU) -> kfence_sample: due by the clock (one
 *     winner per interval, a CAS on next_due)? -> take a slot (lock),
 *     open its page (no lock), record the backtrace, publish LIVE.
 *   kfree: the pool is outside the grown arena, so the fast path's bounds
 *     test sends its pointers to kfree_outside -> kfence_free: validated
 *     out of band against the slot's record (double, invalid, interior
 *     frees fault as anywhere else), backtrace, close the page, queue.
 *   fault: kmalloc_kfence_fault(addr) -> guard page: out of bounds of the
 *     nearer used neighbour; object page: use after free -> report.
 *   leak scan: mgcmark.c marks, scans and reports live samples through
 *     kfence_mark and friends, like objects of spans.
 *
 * Guards: kfence_lock (a leaf: no mm lock is taken under it, no hook is
 * called under it) for the free list and each slot's state changes; a
 * slot's other fields are written only by the CPU that moved it to
 * OPENING or CLOSING, and published by the release store of LIVE or
 * FREED. The fault handler and the leak scan read them without the lock
 * (the first stops the program, the second runs with the world stopped).
 * Typed caches are never sampled: their slots have constructors and a
 * class of their own (kmem_cache_free checks it).
 */
#include "internal.h"

#define KF_FRAMES          8
#define KF_DEFAULT_OBJECTS 255
#define KF_MAX_OBJECTS     65535
#define KF_MAX_PAGE        16384 /* larger sys pages: no pool */

enum kf_state { KF_UNUSED, KF_OPENING, KF_LIVE, KF_CLOSING, KF_FREED };

struct kf_meta {
	uintptr_t addr;     /* the owner (OPENING), published with LIVE */
	uint32_t size;      /* owner: bytes asked for */
	uint8_t state;      /* atomic: enum kf_state, changed under lock */
	uint8_t noscan;     /* owner: KM_NOSCAN */
	uint8_t mark;       /* leak scan (world stopped) */
	uint8_t rescan;     /* leak scan: marked, not yet scanned */
	uint16_t alloc_cpu; /* owner (OPENING) */
	uint16_t free_cpu;  /* owner (CLOSING) */
	uint8_t nalloc;     /* owner (OPENING): alloc_pcs used */
	uint8_t nfree;      /* owner (CLOSING): free_pcs used */
	uint8_t spanclass;  /* owner (OPENING): the kmalloc class it stands
	                       for in the statistics */
	uint32_t next;      /* lock: next in the free FIFO, index + 1 */
	uintptr_t alloc_pcs[KF_FRAMES];
	uintptr_t free_pcs[KF_FRAMES];
};

struct sys_lock kfence_lock;

static struct {
	/* immutable after kfence_init */
	uintptr_t base; /* the meta pages */
	size_t meta_bytes;
	size_t ps;  /* sys page size */
	unsigned n; /* objects */
	struct kf_meta *meta;
	/* atomic */
	int state;            /* 0: meta closed, 1: open, -1: failed */
	uint64_t interval_ns; /* 0: off */
	uint64_t next_due;    /* clock time the next sample is due */
	unsigned force;       /* samples asked for by kfence_sample_next */
	uint64_t allocs, frees, skipped, bytes;
	/* lock */
	uint32_t head, tail; /* free FIFO, index + 1 */
	uint32_t fresh;      /* slots never used: [fresh, n) */
	uint32_t flip;       /* samples taken: right aligned when even */
} kfence_;

struct kfence_pool kfence_pool;

static size_t round_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

size_t kfence_reserve_bytes(void)
{
	size_t ps = sys_config.page_size;
	if (sys_config.guard == NULL || ps > KF_MAX_PAGE)
		return 0;
	unsigned n = sys_config.kfence_objects ? sys_config.kfence_objects : KF_DEFAULT_OBJECTS;
	if (n > KF_MAX_OBJECTS)
		n = KF_MAX_OBJECTS;
	kfence_.n = n;
	kfence_.ps = ps;
	kfence_.meta_bytes = round_up(n * sizeof(struct kf_meta), ps);
	return round_up(kfence_.meta_bytes + (2 * (size_t)n + 1) * ps, CHUNK_BYTES);
}

void kfence_init(uintptr_t base)
{
	if (kfence_.n == 0)
		return;
	kfence_.base = base;
	kfence_.meta = (struct kf_meta *)base;
	kfence_pool.objs = base + kfence_.meta_bytes;
	kfence_pool.bytes = (2 * (size_t)kfence_.n + 1) * kfence_.ps;
	/* Nothing is open yet: the meta pages open at the first sample,
	 * outside the init lock. */
	if (sys_config.kfence_ms != 0 && mheap_.now_ns != NULL) {
		kfence_.interval_ns = (uint64_t)sys_config.kfence_ms * 1000000u;
	}
}

/* Open the meta pages once; whoever comes while another opens them
 * skips its sample rather than wait. */
static bool kfence_ready(void)
{
	int s = mm_load_acquire(&kfence_.state); /* pairs with the release below */
	if (MM_LIKELY(s != 0))
		return s == 1;
	if (!mm_cas_acq_rel(&kfence_.state, &s, 2))
		return s == 1;
	s = sys_config.guard((void *)kfence_.base, kfence_.meta_bytes, 1) == 0 ? 1 : -1;
	if (s != 1) {
		mm_store_release(&kfence_.state, s);
		return false;
	}
	if (!sys_config.commit_zeroed)
		__builtin_memset(kfence_.meta, 0, kfence_.meta_bytes);
	/* The records are metadata: meta_sys and the state change together
	 * under the heap lock, as mheap_valid reads them (mvalid.c). */
	lock_heap();
	mheap_.meta_sys += kfence_.meta_bytes;
	mm_store_release(&kfence_.state, 1);
	unlock_heap();
	return true;
}

uint64_t kfence_meta_sys(void)
{
	return mm_load_acquire(&kfence_.state) == 1 ? kfence_.meta_bytes : 0;
}

void kfence_start(void)
{
	if (mm_load_relaxed(&kfence_.interval_ns) != 0)
		kfence_ready();
}

int kmalloc_kfence_set(unsigned ms)
{
	if (mheap_ready() != 0 || kfence_pool.bytes == 0 || mheap_.now_ns == NULL)
		return -1;
	if (ms != 0 && !kfence_ready())
		return -1;
	mm_store_relaxed(&kfence_.interval_ns, (uint64_t)ms * 1000000u);
	return 0;
}

int kfence_sample_next(void)
{
	if (kfence_pool.bytes == 0 || !kfence_ready())
		return -1;
	mm_add_fetch_relaxed(&kfence_.force, 1);
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_this();
	if (c != NULL)
		c->kfence_left = 1;
	sys_irq_restore(f);
	return 0;
}

static inline uintptr_t obj_page(unsigned i)
{
	return kfence_pool.objs + (2 * (uintptr_t)i + 1) * kfence_.ps;
}

static unsigned kf_cpu(void)
{
	unsigned long f = sys_irq_save();
	unsigned cpu = sys_cpu_id();
	sys_irq_restore(f);
	return cpu;
}

/* Whether this CPU's check finds a sample due: a forced one, or the
 * interval passed (one CPU wins each interval). */
static bool sample_due(void)
{
	unsigned f = mm_load_relaxed(&kfence_.force);
	while (f != 0)
		if (mm_cas_acq_rel(&kfence_.force, &f, f - 1))
			return true;
	uint64_t iv = mm_load_relaxed(&kfence_.interval_ns);
	if (iv == 0)
		return false;
	uint64_t now = mm_now(), due = mm_load_relaxed(&kfence_.next_due);
	if (now < due)
		return false;
	return mm_cas_acq_rel(&kfence_.next_due, &due, now + iv);
}

/* A sample counts in its class's allocations and frees as well (this
 * CPU's magazine counters, as any object does), so the per-class figures
 * stay the whole truth. */
static void count_class(unsigned spanclass, bool alloc)
{
	unsigned long f = sys_irq_save();
	struct mcache *c = mcache_this();
	if (c != NULL) {
		if (alloc)
			COUNT(c->mag[spanclass].allocs);
		else
			COUNT(c->mag[spanclass].frees);
	}
	sys_irq_restore(f);
}

/* ---- canaries ---- */

static inline uint8_t canary(uintptr_t a) { return (uint8_t)(0xaa ^ (a & 7)); }

/* Fill the object page around [v, v+size) with canaries. */
static void canary_fill(uintptr_t page, uintptr_t v, size_t size)
{
	for (uintptr_t a = page; a < v; a++)
		*(volatile uint8_t *)a = canary(a);
	for (uintptr_t a = v + size; a < page + kfence_.ps; a++)
		*(volatile uint8_t *)a = canary(a);
}

/* The first byte around m's object that lost its canary, or 0. */
static uintptr_t canary_broken(const struct kf_meta *m, uintptr_t page)
{
	for (uintptr_t a = page; a < m->addr; a++)
		if (*(volatile uint8_t *)a != canary(a))
			return a;
	for (uintptr_t a = m->addr + m->size; a < page + kfence_.ps; a++)
		if (*(volatile uint8_t *)a != canary(a))
			return a;
	return 0;
}

static void log_stack(void (*log)(const char *), const char *what, unsigned cpu,
                      const uintptr_t *pcs, unsigned n);
static size_t fmt_first(char *line, size_t n, size_t cap, const uintptr_t *pcs, unsigned npcs);

/* kfree found a broken canary at bad: the report on the port's log, then
 * the usual one-line fault (the free's own backtrace is the kernel
 * panic's). */
static _Noreturn void report_corruption(const struct kf_meta *m, uintptr_t bad)
{
	char line[192];
	bool right = bad >= m->addr + m->size;
	uintptr_t dist = right ? bad - (m->addr + m->size) + 1 : m->addr - bad;
	size_t k = mm_fmt_str(line, 0, sizeof line, "kfence: memory corruption at ");
	k = mm_fmt_hex(line, k, sizeof line, bad);
	k = mm_fmt_str(line, k, sizeof line, " (");
	k = mm_fmt_u64(line, k, sizeof line, dist, 0);
	k = mm_fmt_str(line, k, sizeof line, dist == 1 ? " byte" : " bytes");
	k = mm_fmt_str(line, k, sizeof line, right ? " right of " : " left of ");
	k = mm_fmt_u64(line, k, sizeof line, m->size, 0);
	k = mm_fmt_str(line, k, sizeof line, "-byte object ");
	k = mm_fmt_hex(line, k, sizeof line, m->addr);
	k = mm_fmt_str(line, k, sizeof line, " allocated at ");
	k = fmt_first(line, k, sizeof line, m->alloc_pcs, m->nalloc);
	mm_fmt_str(line, k, sizeof line, ", found at its free)");
	sys_log(line);
	log_stack(sys_log, "allocated", m->alloc_cpu, m->alloc_pcs, m->nalloc);
	sys_fault("memory corruption next to a sampled object", (void *)bad);
}

void *kfence_sample(size_t size, unsigned spanclass, unsigned flags, uintptr_t site)
{
	if (size == 0 || size > kfence_.ps || kfence_pool.bytes == 0 || !sample_due() ||
	    !kfence_ready())
		return NULL;
	sys_lock(&kfence_lock);
	uint32_t i;
	if (kfence_.head != 0) {
		i = kfence_.head - 1;
		kfence_.head = kfence_.meta[i].next;
		if (kfence_.head == 0)
			kfence_.tail = 0;
	} else if (kfence_.fresh < kfence_.n) {
		i = kfence_.fresh++;
	} else {
		sys_unlock(&kfence_lock);
		mm_add_fetch_relaxed(&kfence_.skipped, 1); /* pool full: sampling pauses */
		return NULL;
	}
	struct kf_meta *m = &kfence_.meta[i];
	uint8_t was = m->state;
	mm_store_relaxed(&m->state, KF_OPENING);
	bool right = (kfence_.flip++ & 1) == 0;
	sys_unlock(&kfence_lock);

	uintptr_t page = obj_page(i);
	if (sys_config.guard((void *)page, kfence_.ps, 1) != 0) {
		sys_lock(&kfence_lock); /* back at the head: the same slot next */
		mm_store_relaxed(&m->state, was);
		m->next = kfence_.head;
		kfence_.head = i + 1;
		if (kfence_.tail == 0)
			kfence_.tail = i + 1;
		sys_unlock(&kfence_lock);
		mm_add_fetch_relaxed(&kfence_.skipped, 1);
		return NULL;
	}
	/* Right: the end against the next guard, at malloc's alignment (a
	 * size that is not a multiple of it leaves a few bytes before the
	 * guard); left: the start against the previous one. */
#ifdef KMALLOC_MIN16
	size_t align = 16;
#else
	size_t align = size <= 8 ? 8 : 16;
#endif
	uintptr_t v = right ? page + kfence_.ps - round_up(size, align) : page;
	if ((flags & KM_ZERO) && !sys_config.commit_zeroed)
		__builtin_memset((void *)v, 0, size);
	canary_fill(page, v, size);
	m->addr = v;
	m->size = (uint32_t)size;
	m->noscan = (flags & KM_NOSCAN) != 0;
	m->spanclass = (uint8_t)spanclass;
	m->alloc_cpu = (uint16_t)kf_cpu();
	m->nalloc = (uint8_t)mm_backtrace(m->alloc_pcs, KF_FRAMES, site);
	m->nfree = 0;
	mm_add_fetch_relaxed(&kfence_.allocs, 1);
	mm_add_fetch_relaxed(&kfence_.bytes, kfence_.ps);
	count_class(spanclass, true);
	mm_store_release(&m->state, KF_LIVE); /* publishes the fields above */
	return (void *)v;
}

/* The slot whose object page holds p, or -1 (a guard page). */
static long slot_of(uintptr_t p)
{
	uintptr_t j = (p - kfence_pool.objs) / kfence_.ps;
	return (j & 1) ? (long)(j / 2) : -1;
}

void kfence_free(uintptr_t p, unsigned want, uintptr_t site)
{
	long i = slot_of(p);
	if (i < 0)
		sys_fault("invalid free", (void *)p);
	struct kf_meta *m = &kfence_.meta[i];
	sys_lock(&kfence_lock);
	uint8_t st = m->state;
	if (st != KF_LIVE || p != m->addr)
		sys_fault((st == KF_FREED || st == KF_CLOSING) && p == m->addr ? "double free"
		                                                               : "invalid free",
		          (void *)p);
	if (want != 0)
		mm_kmc_wrong((void *)p, m->spanclass, want);
	mm_store_relaxed(&m->state, KF_CLOSING);
	sys_unlock(&kfence_lock);

	uintptr_t bad = canary_broken(m, obj_page((unsigned)i));
	if (bad != 0)
		report_corruption(m, bad);
	m->free_cpu = (uint16_t)kf_cpu();
	m->nfree = (uint8_t)mm_backtrace(m->free_pcs, KF_FRAMES, site);
	sys_config.guard((void *)obj_page((unsigned)i), kfence_.ps, 0);
	mm_add_fetch_relaxed(&kfence_.frees, 1);
	count_class(m->spanclass, false);
	mm_add_fetch_relaxed(&kfence_.bytes, -(uint64_t)kfence_.ps);
	sys_lock(&kfence_lock);
	mm_store_release(&m->state, KF_FREED); /* publishes the free's fields */
	m->next = 0;
	if (kfence_.tail != 0)
		kfence_.meta[kfence_.tail - 1].next = (uint32_t)i + 1;
	else
		kfence_.head = (uint32_t)i + 1;
	kfence_.tail = (uint32_t)i + 1;
	sys_unlock(&kfence_lock);
}

size_t kfence_ksize(uintptr_t p, const char *what)
{
	long i = slot_of(p);
	if (i < 0)
		sys_fault(what, (void *)p);
	struct kf_meta *m = &kfence_.meta[i];
	/* acquire: pairs with the LIVE store, so addr and size are its */
	if (mm_load_acquire(&m->state) != KF_LIVE || LOAD(m->addr) != p)
		sys_fault(what, (void *)p);
	return m->size;
}

void kfence_stats(struct kmalloc_stats *st)
{
	st->kfence_allocs = mm_load_relaxed(&kfence_.allocs);
	st->kfence_frees = mm_load_relaxed(&kfence_.frees);
	st->kfence_skipped = mm_load_relaxed(&kfence_.skipped);
	st->kfence_bytes = mm_load_relaxed(&kfence_.bytes);
}

/* ---- the report ---- */

static size_t fmt_sym(char *line, size_t n, size_t cap, uintptr_t pc)
{
	size_t k = sys_config.symbolize != NULL && n + 2 < cap
	                   ? sys_config.symbolize(pc, line + n, cap - n - 1)
	                   : 0;
	return k != 0 ? n + k : mm_fmt_hex(line, n, cap, pc);
}

static void log_stack(void (*log)(const char *), const char *what, unsigned cpu,
                      const uintptr_t *pcs, unsigned n)
{
	char line[192];
	size_t k = mm_fmt_str(line, 0, sizeof line, "kfence: ");
	k = mm_fmt_str(line, k, sizeof line, what);
	k = mm_fmt_str(line, k, sizeof line, " by cpu ");
	k = mm_fmt_u64(line, k, sizeof line, cpu, 0);
	k = mm_fmt_str(line, k, sizeof line, ":");
	log(line);
	for (unsigned i = 0; i < n && i < KF_FRAMES; i++) {
		k = mm_fmt_str(line, 0, sizeof line, "kfence:   #");
		k = mm_fmt_u64(line, k, sizeof line, i, 0);
		k = mm_fmt_str(line, k, sizeof line, " ");
		k = fmt_sym(line, k, sizeof line, pcs[i]);
		log(line);
	}
}

/* "kfence: <what> read at 0x..." (or write) into line; returns its length. */
static size_t fmt_head(char *line, size_t cap, const char *what, int write, uintptr_t addr)
{
	size_t k = mm_fmt_str(line, 0, cap, what);
	k = mm_fmt_str(line, k, cap, write ? " write at " : " read at ");
	return mm_fmt_hex(line, k, cap, addr);
}

/* The innermost frame of a recorded backtrace, or "?" if none was. */
static size_t fmt_first(char *line, size_t n, size_t cap, const uintptr_t *pcs, unsigned npcs)
{
	return npcs != 0 ? fmt_sym(line, n, cap, pcs[0]) : mm_fmt_str(line, n, cap, "?");
}

int kmalloc_kfence_fault(uintptr_t addr, int write, uintptr_t pc, void (*log)(const char *line))
{
	if (!kfence_owns(addr) || mm_load_acquire(&kfence_.state) != 1)
		return 0;
	uintptr_t j = (addr - kfence_pool.objs) / kfence_.ps;
	struct kf_meta *m = NULL;
	const char *side = NULL;
	uintptr_t dist = 0;
	if (j & 1) {
		m = &kfence_.meta[j / 2];
		/* acquire: pairs with the FREED store, so the free's fields
		 * are there */
		uint8_t st = mm_load_acquire(&m->state);
		if (st == KF_LIVE)
			return 0; /* open: not a fault of ours */
		if (st != KF_FREED && st != KF_CLOSING)
			m = NULL;
	} else {
		/* A guard page: blame the nearer neighbour that was ever used,
		 * as KFENCE does. */
		struct kf_meta *l = j >= 2 ? &kfence_.meta[j / 2 - 1] : NULL;
		struct kf_meta *r = j / 2 < kfence_.n ? &kfence_.meta[j / 2] : NULL;
		if (l != NULL && mm_load_acquire(&l->state) < KF_LIVE)
			l = NULL;
		if (r != NULL && mm_load_acquire(&r->state) < KF_LIVE)
			r = NULL;
		uintptr_t dl = l != NULL ? addr - (l->addr + l->size) + 1 : UINTPTR_MAX;
		uintptr_t dr = r != NULL ? r->addr - addr : UINTPTR_MAX;
		if (l != NULL && dl <= dr) {
			m = l, side = " right of ", dist = dl;
		} else if (r != NULL) {
			m = r, side = " left of ", dist = dr;
		}
	}
	char line[224];
	size_t k;
	if (m == NULL) {
		k = fmt_head(line, sizeof line, "kfence: invalid", write, addr);
		k = mm_fmt_str(line, k, sizeof line, " (guarded pool, no object there)");
	} else if (side == NULL) {
		k = fmt_head(line, sizeof line, "kfence: use-after-free", write, addr);
		k = mm_fmt_str(line, k, sizeof line, " (object ");
		k = mm_fmt_hex(line, k, sizeof line, m->addr);
		k = mm_fmt_str(line, k, sizeof line, " freed at ");
		k = fmt_first(line, k, sizeof line, m->free_pcs, m->nfree);
	} else {
		k = fmt_head(line, sizeof line, "kfence: out-of-bounds", write, addr);
		k = mm_fmt_str(line, k, sizeof line, " (");
		k = mm_fmt_u64(line, k, sizeof line, dist, 0);
		k = mm_fmt_str(line, k, sizeof line, dist == 1 ? " byte" : " bytes");
		k = mm_fmt_str(line, k, sizeof line, side);
		k = mm_fmt_u64(line, k, sizeof line, m->size, 0);
		k = mm_fmt_str(line, k, sizeof line, "-byte object ");
		k = mm_fmt_hex(line, k, sizeof line, m->addr);
		k = mm_fmt_str(line, k, sizeof line, " allocated at ");
		k = fmt_first(line, k, sizeof line, m->alloc_pcs, m->nalloc);
	}
	if (m != NULL)
		k = mm_fmt_str(line, k, sizeof line, ")");
	log(line);
	if (pc != 0) {
		k = mm_fmt_str(line, 0, sizeof line, "kfence: by the instruction at ");
		k = fmt_sym(line, k, sizeof line, pc);
		log(line);
	}
	if (m != NULL) {
		log_stack(log, "allocated", m->alloc_cpu, m->alloc_pcs, m->nalloc);
		uint8_t st = mm_load_acquire(&m->state);
		if (st == KF_FREED)
			log_stack(log, "freed", m->free_cpu, m->free_pcs, m->nfree);
	}
	return 1;
}

/* ---- the leak scan (mgcmark.c; the world stopped) ---- */

void kfence_clear_marks(void)
{
	if (kfence_.state != 1)
		return;
	for (unsigned i = 0; i < kfence_.n; i++)
		kfence_.meta[i].mark = kfence_.meta[i].rescan = 0;
}

int kfence_mark(uintptr_t v, uintptr_t *obj)
{
	if (kfence_.state != 1)
		return 0;
	long i = slot_of(v);
	if (i < 0)
		return 0;
	struct kf_meta *m = &kfence_.meta[i];
	if (m->state != KF_LIVE || v - m->addr >= m->size || m->mark)
		return 0;
	m->mark = 1;
	*obj = m->addr;
	return m->noscan ? 1 : 2;
}

void kfence_set_rescan(uintptr_t obj) { kfence_.meta[slot_of(obj)].rescan = 1; }

void kfence_rescan(void (*scan)(uintptr_t obj, void *arg), void *arg)
{
	if (kfence_.state != 1)
		return;
	for (unsigned i = 0; i < kfence_.n; i++)
		if (kfence_.meta[i].rescan) {
			kfence_.meta[i].rescan = 0;
			scan(kfence_.meta[i].addr, arg);
		}
}

void kfence_report_leaks(void (*fn)(uintptr_t obj, size_t size, const uintptr_t *pcs, unsigned n,
                                    void *arg),
                         void *arg)
{
	if (kfence_.state != 1)
		return;
	for (unsigned i = 0; i < kfence_.n; i++) {
		struct kf_meta *m = &kfence_.meta[i];
		if (m->state == KF_LIVE && !m->mark)
			fn(m->addr, m->size, m->alloc_pcs, m->nalloc, arg);
	}
}
