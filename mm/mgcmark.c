/*
 * mgcmark.c: Go's mark phase as a leak detector (kmalloc_leak_scan). See
 * malloc.c for the overview; kmalloc.h says what a caller may expect.
 *
 * Go's allocator exists for its garbage collector: every span carries
 * gcmarkBits beside its allocBits, span classes split objects with and
 * without pointers (noscan), and the mark phase colours the heap from the
 * roots. We keep the machinery and drop the sweep: nothing is freed, the
 * objects the mark did not reach are reported.
 *
 *   0. Zero *out and the stack below: the scan's own frames are roots,
 *      and their unwritten slots must not hold old pointers.
 *   1. Stop the world (sys_config.stop_world, if the port has it; if it
 *      fails, log "kmemleak: could not stop the other CPUs; no scan" and
 *      return KMALLOC_LEAK_NO_SCAN); interrupts off on this CPU.
 *   2. Clear gcmarkBits of every in-use span; mark and grey the objects
 *      flagged kmalloc_leak_not_leak (roots of their own).
 *   3. Roots: the ranges given to kmalloc_add_root and the port's ranges
 *      (sys_config.roots: data, bss, stacks, per-CPU areas; the calling
 *      CPU's stack from the hook's frame up, which holds the callers'
 *      callee-saved registers: kmalloc_leak_scan spills them first). Scanned word by word, conservatively: a word whose
 *      value falls inside a live small object (live byte 1) or a live
 *      large object, at its start or inside it, marks it (Go's
 *      findObject + greyobject); a newly marked object that is not noscan
 *      goes on the grey stack.
 *   4. Drain: pop an object, scan its words the same way. No recursion,
 *      so a linked list of a million nodes costs one stack slot at a time.
 *      The grey stack is a chain of fixed-size blocks from a fixalloc (Go:
 *      workbufs); at GREY_MAX_BLOCKS it stops growing and a newly marked
 *      object only sets its span's gcrescan; when the stack is empty,
 *      spans with gcrescan have all their marked objects scanned again
 *      (marks only grow, so this ends).
 *   5. Report every live object left unmarked (mleak.c: flagged ones
 *      are skipped, suppressed ones counted, the rest reported with
 *      their backtraces); interrupts as they were; restart the world.
 *
 * A newly marked object flagged kmalloc_leak_ignore is never greyed. A
 * word equal to the end of a live object flagged kmalloc_leak_end_ref
 * marks that object instead of the one it starts (kmalloc.h says why).
 *
 * What is never marked or reported: free slots and objects in per-CPU or
 * transfer caches (live byte 0), dead spans, and the allocator's own
 * metadata (it is not in the arena and not a root). Allocation sites are
 * recorded only when the port asks for them at init (track_sites): one
 * word per slot after the span's bitmaps (the backtrace's handle in the
 * stack depot, mstack.c, and the object's flags), written by the
 * allocation slow paths, which are then the only paths (mcache_this does
 * not publish the fast slot), so tracking off costs the fast paths
 * nothing.
 */
#include "internal.h"

/* kmalloc_add_root's table. root_lock. */
static struct sys_lock root_lock;
static struct {
	uintptr_t start;
	size_t len;
} roots[MAX_ROOTS];

int kmalloc_add_root(const void *start, size_t len)
{
	int r = -1;
	sys_lock(&root_lock);
	for (unsigned i = 0; i < MAX_ROOTS; i++)
		if (roots[i].len == 0) {
			roots[i].start = (uintptr_t)start;
			roots[i].len = len;
			r = 0;
			break;
		}
	sys_unlock(&root_lock);
	return r;
}

void kmalloc_del_root(const void *start)
{
	sys_lock(&root_lock);
	for (unsigned i = 0; i < MAX_ROOTS; i++)
		if (roots[i].len != 0 && roots[i].start == (uintptr_t)start)
			roots[i].len = 0;
	sys_unlock(&root_lock);
}

/* Record that the object v was allocated at site, with its backtrace
 * (tracking on only). The word is cleared first: until the walk is done
 * a scan must not read an earlier incarnation's flags.
 * pre: v was just handed out by this CPU; no mm lock held. */
void mm_record_site(void *v, uintptr_t site)
{
	struct mspan *s = spanOf((uintptr_t)v);
	uintptr_t *word = span_is_large(s)
	                          ? &s->site1
	                          : &s->sites[obj_index(s->divMul, (uintptr_t)v - s->base)];
	mm_store_relaxed(word, 0);
	mm_store_relaxed(word, (uintptr_t)mm_depot_record(site));
}

/* ---- one scan (the world stopped; only the scanning CPU runs) ---- */

struct gcwork {
	struct greyblk *top;   /* the block being pushed to / popped from */
	unsigned nblocks;
	bool overflowed;       /* some span has gcrescan set */
	int flags;             /* mm_leak_flags_used when the scan began */
	struct kmalloc_leaks st;
};

/* A small object's or a large span's word (mm/internal.h, LEAK_*). */
static inline uintptr_t obj_word(const struct mspan *s, unsigned idx)
{
	return span_is_large(s) ? s->site1 : s->sites[idx];
}

static bool grey_push(struct gcwork *w, uintptr_t obj)
{
	if (w->top == NULL || w->top->n == GREY_N) {
		if (w->nblocks == GREY_MAX_BLOCKS)
			return false;
		lock_heap();
		struct greyblk *b = fixalloc_alloc(&mheap_.greyalloc);
		unlock_heap();
		if (b == NULL)
			return false;
		b->next = w->top;
		b->n = 0;
		w->top = b;
		w->nblocks++;
	}
	w->top->obj[w->top->n++] = obj;
	return true;
}

static bool grey_pop(struct gcwork *w, uintptr_t *obj)
{
	while (w->top != NULL && w->top->n == 0) {
		struct greyblk *b = w->top;
		w->top = b->next;
		w->nblocks--;
		lock_heap();
		fixalloc_free(&mheap_.greyalloc, b);
		unlock_heap();
	}
	if (w->top == NULL)
		return false;
	*obj = w->top->obj[--w->top->n];
	return true;
}

/* A word into the guarded pool: its live sample, as below (mkfence.c). */
static void mark_kfence(struct gcwork *w, uintptr_t v)
{
	uintptr_t obj;
	int r = kfence_mark(v, &obj);
	if (r == 0)
		return;
	w->st.marked++;
	if (r == 2 && !grey_push(w, obj)) {
		kfence_set_rescan(obj);
		w->overflowed = true;
	}
}

/* Go's greyobject: mark the live object obj (slot idx of s), and grey
 * it if it is new and may hold pointers (and is not kmalloc_leak_ignore'd). */
static inline void mark_object(struct gcwork *w, struct mspan *s, uintptr_t obj, unsigned idx)
{
	uint64_t *word, bit;
	if (span_is_large(s)) {
		word = &s->gcmark1;
		bit = 1;
	} else {
		word = &s->gcmarkBits[idx / 64];
		bit = (uint64_t)1 << (idx % 64);
	}
	if (*word & bit)
		return;
	*word |= bit;
	w->st.marked++;
	if (spanclass_noscan(s->spanclass))
		return;
	if (MM_UNLIKELY(w->flags != 0) && (obj_word(s, idx) & LEAK_IGNORE))
		return;
	if (!grey_push(w, obj)) {
		s->gcrescan = 1;
		w->overflowed = true;
	}
}

/* The live object containing p, with its span and slot; false if none. */
static inline bool find_object(uintptr_t p, struct mspan **sp, uintptr_t *obj, unsigned *idx)
{
	uintptr_t rel = p - mheap_.arena_start;
	if (rel >= mheap_.arena_used_bytes)
		return false;
	struct mspan *s = mheap_.spans[rel >> PAGE_SHIFT];
	if (s == NULL || span_state(s) != SPAN_INUSE) /* NULL: map given back */
		return false;
	if (span_is_large(s)) {
		if (p - s->base >= s->elemsize)
			return false;
		*obj = s->base;
		*idx = 0;
	} else {
		uintptr_t off = p - s->base;
		if (off >= s->nbytes)
			return false; /* the span's unused tail */
		*idx = obj_index(s->divMul, off);
		if (*mspan_live(s, *idx) != 1)
			return false; /* free, or waiting in a cache */
		*obj = s->base + (uintptr_t)*idx * s->elemsize;
	}
	*sp = s;
	return true;
}

/* v is the end (base + usable size) of a live object flagged
 * kmalloc_leak_end_ref: it keeps that object, and not the one that
 * starts at v (kmalloc.h says why). */
static bool mark_end_ref(struct gcwork *w, uintptr_t v)
{
	struct mspan *s;
	uintptr_t obj;
	unsigned idx;
	if (!find_object(v - 1, &s, &obj, &idx) || obj + s->elemsize != v ||
	    !(obj_word(s, idx) & LEAK_END_REF))
		return false;
	mark_object(w, s, obj, idx);
	return true;
}

/* Go's findObject + greyobject for the word v. */
static inline void mark_word(struct gcwork *w, uintptr_t v)
{
	struct mspan *s;
	uintptr_t obj;
	unsigned idx;
	if (MM_UNLIKELY(w->flags & LEAK_FLAGS_END_REF) && mark_end_ref(w, v))
		return;
	if (find_object(v, &s, &obj, &idx))
		mark_object(w, s, obj, idx);
	else if (MM_UNLIKELY(kfence_owns(v)))
		mark_kfence(w, v);
}

static void scan_range(struct gcwork *w, uintptr_t start, size_t len)
{
	uintptr_t p = (start + sizeof(uintptr_t) - 1) & ~(uintptr_t)(sizeof(uintptr_t) - 1);
	uintptr_t end = start + len;
	if (end < start)
		return;
	for (; p + sizeof(uintptr_t) <= end; p += sizeof(uintptr_t))
		mark_word(w, *(const uintptr_t *)p);
	w->st.scanned_bytes += len;
}

/* A root range, less the allocator's own state (mheap_ holds arena_start
 * and friends, which look like pointers to the first objects): data and
 * bss ranges of a port contain it. */
static void scan_root(const void *start, size_t len, void *arg)
{
	uintptr_t s = (uintptr_t)start, e = s + len;
	uintptr_t hs = (uintptr_t)&mheap_, he = hs + sizeof(mheap_);
	if (e <= hs || s >= he) {
		scan_range(arg, s, len);
		return;
	}
	if (s < hs)
		scan_range(arg, s, hs - s);
	if (e > he)
		scan_range(arg, he, e - he);
}

/* Scan one marked object's words (they are the user's: the span is in
 * use and the slot live, so its memory is committed). */
static void scan_object(struct gcwork *w, uintptr_t obj)
{
	if (MM_UNLIKELY(kfence_owns(obj))) {
		scan_range(w, obj, kfence_ksize(obj, "leak scan"));
		return;
	}
	struct mspan *s = mheap_.spans[(obj - mheap_.arena_start) >> PAGE_SHIFT];
	scan_range(w, obj, s->elemsize);
}

static void drain(struct gcwork *w)
{
	uintptr_t obj;
	while (grey_pop(w, &obj))
		scan_object(w, obj);
}

/* Call fn(s) for every span in use (the world stopped). */
static void for_each_span(void (*fn)(struct mspan *s, void *arg), void *arg)
{
	size_t npages = mheap_.arena_used_bytes >> PAGE_SHIFT;
	for (size_t pg = 0; pg < npages; pg++) {
		struct mspan *s = mheap_.spans[pg];
		if (s != NULL && span_state(s) == SPAN_INUSE &&
		    s->base == mheap_.arena_start + pg * PAGE_SIZE)
			fn(s, arg);
	}
}

static void clear_marks(struct mspan *s, void *arg)
{
	(void)arg;
	if (span_is_large(s))
		s->gcmark1 = 0;
	else
		__builtin_memset(s->gcmarkBits, 0, span_nwords(s) * sizeof(uint64_t));
	s->gcrescan = 0;
}

/* The overflow pass: scan every marked object of the spans that could
 * not grey one (their other marked objects again too: harmless; not the
 * kmalloc_leak_ignore'd ones, which are never read). */
static void rescan_span(struct mspan *s, void *arg)
{
	struct gcwork *w = arg;
	if (!s->gcrescan)
		return;
	s->gcrescan = 0;
	if (span_is_large(s)) {
		if (s->gcmark1)
			scan_object(w, s->base);
	} else {
		for (unsigned i = 0; i < s->nelems; i++)
			if (((s->gcmarkBits[i / 64] >> (i % 64)) & 1) &&
			    !(w->flags != 0 && (s->sites[i] & LEAK_IGNORE)))
				scan_object(w, s->base + (uintptr_t)i * s->elemsize);
	}
	drain(w);
}

static void rescan_kfence(uintptr_t obj, void *arg)
{
	scan_object(arg, obj);
	drain(arg);
}

struct report {
	struct gcwork *w;
	kmalloc_leak_fn fn;
	void *arg;
};

static void report_span(struct mspan *s, void *arg)
{
	struct report *r = arg;
	if (span_is_large(s)) {
		if (!s->gcmark1)
			mm_leak_report(&r->w->st, r->fn, r->arg, s->base, s->elemsize, s->site1);
		return;
	}
	for (unsigned i = 0; i < s->nelems; i++)
		if (*mspan_live(s, i) == 1 && !((s->gcmarkBits[i / 64] >> (i % 64)) & 1))
			mm_leak_report(&r->w->st, r->fn, r->arg,
			               s->base + (uintptr_t)i * s->elemsize, s->elemsize,
			               s->sites != NULL ? s->sites[i] : 0);
}

/* A guarded sample nothing reached: reported with the frames its own
 * record keeps (mkfence.c), suppressions applying as to any other. */
static void report_kfence(uintptr_t obj, size_t size, const uintptr_t *pcs, unsigned n, void *arg)
{
	struct report *r = arg;
	mm_leak_report_pcs(&r->w->st, r->fn, r->arg, obj, size, pcs, n);
}

/* kmalloc_leak_not_leak's objects are roots: marked and scanned. */
static void mark_not_leak(struct mspan *s, void *arg)
{
	struct gcwork *w = arg;
	if (span_is_large(s)) {
		if (s->site1 & LEAK_NOT_LEAK)
			mark_object(w, s, s->base, 0);
		return;
	}
	if (s->sites == NULL)
		return;
	for (unsigned i = 0; i < s->nelems; i++)
		if ((s->sites[i] & LEAK_NOT_LEAK) && *mspan_live(s, i) == 1)
			mark_object(w, s, s->base + (uintptr_t)i * s->elemsize, i);
}

static __attribute__((noinline)) uint64_t leak_scan(struct kmalloc_leaks *out, kmalloc_leak_fn fn,
                                                    void *arg)
{
	struct gcwork w = { 0 };
	if (!mheap_inited()) {
		if (out != NULL)
			*out = w.st;
		return 0;
	}
	/* No background step while we scan: one ages caches (spans change
	 * under the walk) and releases pages; where the port has no
	 * stop_world (the host), its background thread would still run. */
	mheap_bg_exclude(true);
	/* A port that can stop the world but could not this time: scanning
	 * a heap that moves under us could read pages being released, so
	 * say why and do nothing. */
	if (sys_config.stop_world != NULL && sys_config.stop_world() != 0) {
		sys_log("kmemleak: could not stop the other CPUs; no scan");
		mheap_bg_exclude(false);
		if (out != NULL)
			*out = w.st;
		return KMALLOC_LEAK_NO_SCAN;
	}
	/* Interrupts off for the whole scan, whatever the port's stop_world
	 * left them: an interrupt handler on this CPU that allocates or
	 * frees would change the heap under the walk (kmalloc.h). */
	unsigned long irq = sys_irq_save();
	w.flags = mm_load_relaxed(&mm_leak_flags_used);
	mm_leak_report_begin();
	for_each_span(clear_marks, NULL);
	if (w.flags != 0)
		for_each_span(mark_not_leak, &w);
	kfence_clear_marks();
	sys_lock(&root_lock);
	for (unsigned i = 0; i < MAX_ROOTS; i++)
		if (roots[i].len != 0)
			scan_root((const void *)roots[i].start, roots[i].len, &w);
	sys_unlock(&root_lock);
	if (sys_config.roots != NULL)
		sys_config.roots(scan_root, &w);
	drain(&w);
	while (w.overflowed) {
		w.overflowed = false;
		w.st.rescans++;
		for_each_span(rescan_span, &w);
		kfence_rescan(rescan_kfence, &w);
	}
	struct report r = { &w, fn, arg };
	for_each_span(report_span, &r);
	kfence_report_leaks(report_kfence, &r);
	sys_irq_restore(irq);
	if (sys_config.stop_world != NULL && sys_config.start_world != NULL)
		sys_config.start_world();
	mheap_bg_exclude(false);
	mm_leak_report_end();
	char line[160];
	size_t n = mm_fmt_str(line, 0, sizeof line, "kmemleak: ");
	n = mm_fmt_u64(line, n, sizeof line, w.st.leaks, 0);
	n = mm_fmt_str(line, n, sizeof line, w.st.leaks == 1 ? " leak, " : " leaks, ");
	n = mm_fmt_u64(line, n, sizeof line, w.st.leak_bytes, 0);
	n = mm_fmt_str(line, n, sizeof line, " bytes (");
	n = mm_fmt_u64(line, n, sizeof line, w.st.marked, 0);
	n = mm_fmt_str(line, n, sizeof line, " live objects reached, ");
	n = mm_fmt_u64(line, n, sizeof line, w.st.scanned_bytes >> 10, 0);
	n = mm_fmt_str(line, n, sizeof line, " KiB scanned)");
	if (fn == NULL)
		sys_log(line);
	if (out != NULL)
		*out = w.st;
	return w.st.leaks;
}

/* The scan's own frames will lie where its callers' earlier callees left
 * theirs, and a scan of a live frame reads the slots it never wrote too
 * (a local buffer, padding): zero what they are about to occupy, or an
 * old copy of a dropped pointer there keeps its object alive. */
static __attribute__((noinline)) void scrub_below(void)
{
	volatile char pad[2048];
	for (size_t i = 0; i < sizeof pad; i++)
		pad[i] = 0;
}

uint64_t kmalloc_leak_scan(struct kmalloc_leaks *out, kmalloc_leak_fn fn, void *arg)
{
	/* The callers' callee-saved registers go into this frame, which the
	 * port's stack range (from its hook's frame up) covers. */
	__builtin_unwind_init();
	/* *out is usually a local of the caller's frame, which the scan
	 * reads: unwritten, it would hold whatever an earlier call left. */
	if (out != NULL)
		__builtin_memset(out, 0, sizeof *out);
	scrub_below();
	uint64_t n = leak_scan(out, fn, arg);
	__asm__ volatile("" ::: "memory"); /* no tail call: this frame stays */
	return n;
}
