/*
 * mheapmap.c: the heap walk and the heap map. mheap_run_at names the run
 * of pages that starts at a page (free, released, or one span's pages),
 * reading the page allocator's bitmaps and the page -> span map: the one
 * walker the census (mvalid.c) and kmalloc_heapmap share. kmalloc_heapmap
 * writes the whole arena through sys_log as run-length encoded lines, for
 * scripts/heapmap to draw (a picture of Go's heap: spans by class and
 * occupancy, free, released pages).
 *
 * Data flow of a dump: mheap.lock is held for a batch of at most HM_BATCH
 * runs (mheap_run_at, then each small span's live bytes counted); the
 * runs, merged with their equal neighbours, go to a stack array; the lock
 * is dropped and the array is formatted (mm/fmt.h) into a stack line and
 * logged. Nothing is allocated, no lock is held while sys_log prints (a
 * serial console is slow, and other CPUs keep allocating), so the lines
 * of one dump are snapshots of successive batches: exact for a heap that
 * holds still, and always covering every page once.
 */
#include "internal.h"

/* The run of pages that starts at page pg (< grown pages): free committed
 * pages, free released pages (each maximal), or the pages from pg on that
 * the page -> span map gives to one span, all allocated. For a span, the
 * caller judges the record: DEAD (being set up), or not starting at pg
 * (an extension under way, or a walk resumed inside a span).
 * pre: mheap.lock. */
void mheap_run_at(size_t pg, struct mm_run *r)
{
	MM_HELD_HEAP();
	const struct pagealloc *pa = &mheap_.pages;
	size_t end = pa->nchunks * CHUNK_PAGES, n = 1;
	r->pg = pg;
	r->s = NULL;
	if (!pa_is_alloc(pa, pg)) {
		bool scav = pa_is_scav(pa, pg);
		while (pg + n < end && !pa_is_alloc(pa, pg + n) && pa_is_scav(pa, pg + n) == scav)
			n++;
		r->kind = scav ? RUN_RELEASED : RUN_FREE;
	} else {
		struct mspan *s = mheap_.spans[pg];
		while (pg + n < end && pa_is_alloc(pa, pg + n) && mheap_.spans[pg + n] == s)
			n++;
		r->kind = RUN_SPAN;
		r->s = s;
	}
	r->n = n;
}

/* ---- kmalloc_heapmap ----
 *
 * Format, version 1. Lines, each through one sys_log call (a port may put
 * a prefix before them, like a kernel's log; readers look for "heapmap "
 * and "hm " and drop what comes before):
 *
 *   heapmap v1 arena 0x<start> pages <grown> cap <arena pages> page_size 8192 chunk_pages 512
 *   hm class <c> <size> <pages> <slots>      one per size class c = 1..67:
 *                                            object bytes, heap pages per
 *                                            span, slots per span
 *   hm spanclass <sc> <size> <pages> <slots> <c>  one per typed cache's
 *                                            span class sc with spans
 *                                            (mkmemcache.c): its geometry,
 *                                            and c, the size class of that
 *                                            size (its colour)
 *   hm <pg> <token> <token> ...              the runs from page pg on, in
 *                                            address order, each line
 *                                            starting where the last ended
 *   heapmap end pages <walked> lines <n>     n "hm <pg>" lines were sent
 *
 * Tokens (n pages; *k: k equal runs in a row):
 *   <sc>:<live>[*k]  a small span of span class sc (size class sc >> 1,
 *                    KM_NOSCAN if odd): class <sc >> 1>'s pages and
 *                    slots, <live> of them held by users (live byte 1);
 *                    slots in caches or free in the span are not live
 *   L<n>[*k]         a large span holding a live object
 *   C<n>[*k]         a large span a CPU keeps for reuse (free, committed)
 *   F<n>             free pages, committed (retained)
 *   R<n>             free pages released to the port (Go's scavenged)
 *   T<n>             pages changing hands while the walk passed: a span
 *                    being set up or freed
 *   U<n>             not grown: the arena's pages beyond the grown chunks
 *   M<n>[*k]         an alias's pages (mmesh.c): a small span whose
 *                    frames went back to the port when it was meshed;
 *                    its objects live on another span's frames
 * Every page from 0 to cap is in exactly one token. A line holds at most
 * HM_LINE characters. The size is about 7 bytes per span whose neighbour
 * differs from it: the worst heaps are 1-page spans of mixed classes, like
 * the fragmentation workload's (tests/heapmap/frag.c at 1 GiB of objects:
 * 138,000 spans, 920 KB); free, released and large runs cost a token each
 * whatever their length. Exact live counts cost about 3 bytes of those 7;
 * they stay because a reader of Go's heap asks "how full", and a dump is
 * read by a script, not a person.
 */

#define HM_BATCH 64  /* runs examined per hold of mheap.lock */
#define HM_LINE  100 /* characters per "hm" line, at most */

enum hm_kind {
	HM_SMALL,
	HM_LARGE,
	HM_CACHED,
	HM_MESHED,
	HM_FREE,
	HM_RELEASED,
	HM_TRANSIT,
	HM_UNGROWN
};
static const char hm_letter[] = { '?', 'L', 'C', 'M', 'F', 'R', 'T', 'U' };

struct hm_run {
	uint32_t n;     /* pages of one run (for SMALL, of one span) */
	uint32_t count; /* equal runs in a row (SMALL, LARGE, CACHED) */
	uint16_t live;  /* SMALL: live objects */
	uint8_t kind;   /* enum hm_kind */
	uint8_t spanclass;
};

/* What the map shows for run r. pre: mheap.lock. The lock keeps every
 * record on the walk alive and its pages its own (a span is made, freed
 * and its record reused only under mheap.lock) and a small span's fields
 * as they are; it does not stop a large span's owner: a free turns it
 * FREEING then CACHED, and a CPU taking it back from its large cache
 * relabels its span class (scan or noscan) and publishes it INUSE, all
 * without the lock. So a span is told large by its bitmaps (none; set
 * under the lock when its record was made), never by s->spanclass, and a
 * large span is described by its state word alone. */
static struct hm_run describe(const struct mm_run *r)
{
	struct hm_run h = { .n = (uint32_t)r->n, .count = 1, .kind = HM_TRANSIT };
	if (r->kind != RUN_SPAN) {
		h.kind = r->kind == RUN_FREE ? HM_FREE : HM_RELEASED;
		return h;
	}
	const struct mspan *s = r->s;
	unsigned st = span_state(s); /* acquire: a small span's init fields */
	/* A span's tail: what the span is was drawn at its base. */
	if (s->base != mheap_.arena_start + r->pg * PAGE_SIZE)
		return h;
	if (s->allocBits == NULL) { /* large */
		if (st == SPAN_CACHED)
			h.kind = HM_CACHED;
		else if (st == SPAN_INUSE)
			h.kind = HM_LARGE;
	} else if (st == SPAN_INUSE && r->n == s->npages && mm_load_relaxed(&s->mesh_dst) != NULL) {
		h.kind = HM_MESHED;
	} else if (st == SPAN_INUSE && r->n == s->npages) {
		h.kind = HM_SMALL;
		h.spanclass = s->spanclass;
		h.live = (uint16_t)mspan_live_count(s);
	}
	return h;
}

/* Merge h into the run before it, if the map can say both as one. */
static bool merge(struct hm_run *prev, const struct hm_run *h)
{
	if (prev->kind != h->kind)
		return false;
	if (h->kind >= HM_FREE) { /* page runs: one longer run */
		prev->n += h->n;
		return true;
	}
	if (prev->n != h->n || prev->live != h->live || prev->spanclass != h->spanclass)
		return false;
	prev->count++;
	return true;
}

struct hm_out {
	char line[HM_LINE + 1];
	size_t len;
	size_t pg;      /* page of the next token */
	uint64_t lines; /* "hm <pg>" lines sent */
};

static void out_flush(struct hm_out *o)
{
	if (o->len == 0)
		return;
	sys_log(o->line);
	o->lines++;
	o->len = 0;
}

/* Append h's token, starting a new line when it would not fit. */
static void out_token(struct hm_out *o, const struct hm_run *h)
{
	char tok[40];
	size_t t;
	if (h->kind == HM_SMALL) {
		t = mm_fmt_u64(tok, 0, sizeof tok, h->spanclass, 0);
		t = mm_fmt_str(tok, t, sizeof tok, ":");
		t = mm_fmt_u64(tok, t, sizeof tok, h->live, 0);
	} else {
		tok[0] = hm_letter[h->kind];
		t = mm_fmt_u64(tok, 1, sizeof tok, h->n, 0);
	}
	if (h->count > 1) {
		t = mm_fmt_str(tok, t, sizeof tok, "*");
		t = mm_fmt_u64(tok, t, sizeof tok, h->count, 0);
	}
	if (o->len + 1 + t > HM_LINE)
		out_flush(o);
	if (o->len == 0) {
		o->len = mm_fmt_str(o->line, 0, sizeof o->line, "hm ");
		o->len = mm_fmt_u64(o->line, o->len, sizeof o->line, o->pg, 0);
	}
	o->len = mm_fmt_str(o->line, o->len, sizeof o->line, " ");
	o->len = mm_fmt_str(o->line, o->len, sizeof o->line, tok);
	o->pg += (size_t)h->n * h->count;
}

/* "<prefix><id> <size> <pages> <slots>[ <colour>]" (colour 0: none). */
static void log_class(const char *prefix, unsigned id, size_t size, size_t pages, unsigned slots,
                      unsigned colour)
{
	char line[128];
	size_t n = mm_fmt_field(line, 0, sizeof line, prefix, id);
	n = mm_fmt_field(line, n, sizeof line, " ", size);
	n = mm_fmt_field(line, n, sizeof line, " ", pages);
	n = mm_fmt_field(line, n, sizeof line, " ", slots);
	if (colour != 0)
		mm_fmt_field(line, n, sizeof line, " ", colour);
	sys_log(line);
}

static void log_header(size_t grown, size_t cap)
{
	char line[128];
	size_t n = mm_fmt_str(line, 0, sizeof line, "heapmap v1 arena ");
	n = mm_fmt_hex(line, n, sizeof line, mheap_.arena_start);
	n = mm_fmt_field(line, n, sizeof line, " pages ", grown);
	n = mm_fmt_field(line, n, sizeof line, " cap ", cap);
	n = mm_fmt_field(line, n, sizeof line, " page_size ", PAGE_SIZE);
	mm_fmt_field(line, n, sizeof line, " chunk_pages ", CHUNK_PAGES);
	sys_log(line);
	for (unsigned c = 1; c < _NumSizeClasses; c++)
		log_class("hm class ", c, class_to_size[c], class_to_allocnpages[c],
		          class_nelems(c, class_to_allocnpages[c]), 0);
	for (unsigned sc = KMALLOC_SPANCLASSES; sc < NUM_SPANCLASSES; sc++) {
		struct mcentral *mc = &mheap_.central[sc].c;
		lock_central(mc);
		uint64_t spans = mc->nspans; /* > 0: the record describes sc */
		size_t size = spans != 0 ? spanclass_elemsize(sc) : 0;
		size_t npages = spans != 0 ? spanclass_npages(sc) : 0;
		unsigned slots = spans != 0 ? spanclass_nelems(sc) : 0;
		unlock_central(mc);
		if (spans == 0)
			continue;
		unsigned c = 1;
		while (c + 1 < _NumSizeClasses && class_to_size[c] < size)
			c++;
		log_class("hm spanclass ", sc, size, npages, slots, c);
	}
}

void kmalloc_heapmap(void)
{
	MM_UNLOCKED();
	struct hm_out o = { .len = 0 };
	struct hm_run runs[HM_BATCH];
	unsigned nr = 0;
	size_t pg = 0, end = 0, cap = 0;
	char line[80];
	bool inited = mheap_inited();

	if (inited) {
		cap = (mheap_.arena_end - mheap_.arena_start) >> PAGE_SHIFT;
		lock_heap();
		end = mheap_.pages.nchunks * CHUNK_PAGES;
		unlock_heap();
	}
	log_header(end, cap);
	while (inited) {
		lock_heap();
		end = mheap_.pages.nchunks * CHUNK_PAGES; /* may have grown */
		/* at most HM_BATCH runs held: the carried one counts */
		for (unsigned k = 0; k < HM_BATCH && nr < HM_BATCH && pg < end; k++) {
			struct mm_run r;
			mheap_run_at(pg, &r);
			struct hm_run h = describe(&r);
			pg += r.n;
			if (nr == 0 || !merge(&runs[nr - 1], &h))
				runs[nr++] = h;
		}
		unlock_heap();
		bool done = pg >= end;
		/* The last run may still merge with the next batch's first. */
		unsigned emit = done ? nr : nr - 1;
		for (unsigned i = 0; i < emit; i++)
			out_token(&o, &runs[i]);
		if (done)
			break;
		runs[0] = runs[nr - 1];
		nr = 1;
	}
	if (cap > end) {
		struct hm_run u = { .n = (uint32_t)(cap - end), .count = 1, .kind = HM_UNGROWN };
		out_token(&o, &u);
	}
	out_flush(&o);
	size_t n = mm_fmt_str(line, 0, sizeof line, "heapmap end pages ");
	n = mm_fmt_u64(line, n, sizeof line, o.pg, 0);
	n = mm_fmt_str(line, n, sizeof line, " lines ");
	mm_fmt_u64(line, n, sizeof line, o.lines, 0);
	sys_log(line);
}
