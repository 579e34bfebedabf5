/*
 * test_heapmap.c: kmalloc_heapmap's dump (format in mm/mheapmap.c) says
 * exactly what the heap holds. Each test builds a heap it knows (small
 * spans of known classes with known live objects, large objects, a large
 * span a CPU caches, free pages, released pages after kmalloc_trim),
 * captures the dump the host port writes to stdout, parses it back page
 * by page, and compares with what it built, whose places it learns from
 * its own pointers (spanOf: which span an object landed in). The parser
 * also checks the format itself: versioned header, the class table, every
 * "hm" line starting where the last ended, at most 100 characters, every
 * page from 0 to the arena's end in exactly one token, the end line's
 * counts. Another thread allocating and freeing during dumps must not
 * break any of that.
 */
#define _GNU_SOURCE /* dup, pread, strdup under -std=c11 */
#include <check.h>
#include "../lib/check_runner.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "../lib/xorshift.h"

#define MAXP (64 * CHUNK_PAGES) /* pages a test heap grows to, at most */

/* A parsed dump: per grown page, what its token said. */
struct hmap {
	size_t grown, cap, walked, lines_said, lines_seen;
	size_t walked_grown; /* where the U token started */
	unsigned cls_size[_NumSizeClasses], cls_pages[_NumSizeClasses], cls_slots[_NumSizeClasses];
	char kind[MAXP];     /* 'S' small span, or the token's letter */
	uint8_t sc[MAXP];    /* 'S': span class */
	uint16_t live[MAXP]; /* 'S': live objects, on the span's first page */
	bool base[MAXP];     /* first page of a span ('S', 'L', 'C') */
	char first_token[32];
	char prev; /* the last token's kind */
};

/* kmalloc_heapmap's output: the host port's sys_log writes to fd 1. */
static char *capture(void)
{
	fflush(stdout);
	FILE *f = tmpfile();
	ck_assert_ptr_nonnull(f);
	int saved = dup(1);
	dup2(fileno(f), 1);
	kmalloc_heapmap();
	dup2(saved, 1);
	close(saved);
	long len = lseek(fileno(f), 0, SEEK_END);
	char *buf = malloc((size_t)len + 1);
	ck_assert_int_eq(pread(fileno(f), buf, (size_t)len, 0), len);
	buf[len] = 0;
	fclose(f);
	return buf;
}

/* One token at page *pos; pages beyond MAXP are only counted. */
static void parse_token(struct hmap *m, const char *tok, size_t *pos)
{
	unsigned long n, k = 1, sc = 0, live = 0;
	char kind;
	const char *star = strchr(tok, '*');
	if (star != NULL)
		k = strtoul(star + 1, NULL, 10);
	ck_assert_uint_ge(k, 1);
	if (tok[0] >= '0' && tok[0] <= '9') {
		kind = 'S';
		ck_assert_int_eq(sscanf(tok, "%lu:%lu", &sc, &live), 2);
		ck_assert_uint_ge(sc, 2);
		ck_assert_uint_lt(sc, NUM_SPANCLASSES);
		n = m->cls_pages[spanclass_size((unsigned)sc)];
		ck_assert_uint_le(live, m->cls_slots[spanclass_size((unsigned)sc)]);
	} else {
		kind = tok[0];
		ck_assert_msg(strchr("LCFRTU", kind) != NULL, "unknown token %s", tok);
		n = strtoul(tok + 1, NULL, 10);
		ck_assert_msg(k == 1 || strchr("LC", kind) != NULL, "repeat on a page run: %s",
		              tok);
		/* page runs are maximal: an F never follows an F */
		ck_assert_msg(k != 1 || strchr("FRTU", kind) == NULL || m->prev != kind,
		              "two %c runs in a row", kind);
	}
	m->prev = kind;
	ck_assert_uint_gt(n, 0);
	if (kind == 'U') { /* past the grown chunks: the header's, or more
	                    * if the heap grew during the dump */
		ck_assert_uint_eq(*pos % CHUNK_PAGES, 0);
		ck_assert_uint_ge(*pos, m->grown);
		m->walked_grown = *pos;
	}
	for (unsigned long r = 0; r < k; r++)
		for (unsigned long i = 0; i < n; i++, (*pos)++) {
			if (*pos >= MAXP) { /* the arena's tail: count it at once */
				*pos += (k - r) * n - i;
				return;
			}
			m->kind[*pos] = kind;
			m->sc[*pos] = (uint8_t)sc;
			m->live[*pos] = (uint16_t)(i == 0 ? live : 0);
			m->base[*pos] = i == 0 && kind != 'F' && kind != 'R' && kind != 'U';
		}
}

/* Parse a whole dump into m, checking its format on the way. */
static void parse(const char *text, struct hmap *m)
{
	memset(m, 0, sizeof(*m));
	char *copy = strdup(text), *save = NULL;
	size_t pos = 0, classes = 0;
	bool header = false, end = false;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		ck_assert_msg(!end, "a line after the end line: %s", line);
		unsigned long a, b, c, d;
		unsigned long long arena;
		if (!header) {
			ck_assert_int_eq(
			        sscanf(line,
			               "heapmap v1 arena %llx pages %lu cap %lu page_size %lu "
			               "chunk_pages %lu",
			               &arena, &a, &b, &c, &d),
			        5);
			ck_assert_uint_eq(arena, mheap_inited() ? mheap_.arena_start : 0);
			ck_assert_uint_eq(c, PAGE_SIZE);
			ck_assert_uint_eq(d, CHUNK_PAGES);
			m->grown = a;
			m->cap = b;
			header = true;
		} else if (sscanf(line, "hm class %lu %lu %lu %lu", &a, &b, &c, &d) == 4) {
			ck_assert_uint_eq(a, ++classes);
			m->cls_size[a] = (unsigned)b;
			m->cls_pages[a] = (unsigned)c;
			m->cls_slots[a] = (unsigned)d;
		} else if (sscanf(line, "heapmap end pages %lu lines %lu", &a, &b) == 2) {
			m->walked = a;
			m->lines_said = b;
			end = true;
		} else {
			ck_assert_uint_le(strlen(line), 100);
			char *lsave = NULL, *w = strtok_r(line, " ", &lsave);
			ck_assert_msg(w != NULL && strcmp(w, "hm") == 0, "not a heap map line: %s",
			              line);
			w = strtok_r(NULL, " ", &lsave);
			ck_assert_uint_eq(strtoul(w, NULL, 10),
			                  pos); /* starts where the last ended */
			m->lines_seen++;
			for (w = strtok_r(NULL, " ", &lsave); w; w = strtok_r(NULL, " ", &lsave)) {
				if (m->first_token[0] == 0)
					snprintf(m->first_token, sizeof m->first_token, "%s", w);
				parse_token(m, w, &pos);
			}
		}
	}
	free(copy);
	if (m->prev != 'U')
		m->walked_grown = pos; /* the arena is grown to its end */
	ck_assert(header);
	ck_assert_msg(end, "no end line");
	ck_assert_uint_eq(classes, _NumSizeClasses - 1);
	ck_assert_uint_eq(pos, m->cap); /* every page once */
	ck_assert_uint_eq(m->walked, m->cap);
	ck_assert_uint_eq(m->lines_seen, m->lines_said);
	ck_assert_uint_le(m->grown, MAXP);
}

static struct hmap *dump(void)
{
	static struct hmap m;
	char *text = capture();
	parse(text, &m);
	free(text);
	return &m;
}

static size_t page_of(const void *p) { return ((uintptr_t)p - mheap_.arena_start) >> PAGE_SHIFT; }

/* What the test built, page by page, in the dump's terms. */
struct want {
	char kind[MAXP];
	uint8_t sc[MAXP];
	uint16_t live[MAXP];
};

/* The small object p is live: its span's first page says one more. */
static void want_small(struct want *w, const void *p, unsigned spanclass)
{
	struct mspan *s = spanOf((uintptr_t)p);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->spanclass, spanclass);
	size_t pg = page_of((void *)s->base);
	for (size_t i = 0; i < s->npages; i++) {
		w->kind[pg + i] = 'S';
		w->sc[pg + i] = (uint8_t)spanclass;
	}
	w->live[pg]++;
}

static void want_run(struct want *w, const void *p, size_t npages, char kind)
{
	for (size_t i = 0; i < npages; i++)
		w->kind[page_of(p) + i] = kind;
}

/* The dump says w on every grown page; pages nobody claimed are `rest`. */
static void check_dump(const struct want *w, char rest)
{
	struct hmap *m = dump();
	ck_assert_uint_eq(m->grown, mheap_.pages.nchunks * CHUNK_PAGES);
	ck_assert_uint_eq(m->walked_grown, m->grown); /* nobody grew it meanwhile */
	ck_assert_uint_eq(m->cap, (mheap_.arena_end - mheap_.arena_start) >> PAGE_SHIFT);
	for (unsigned c = 1; c < _NumSizeClasses; c++) {
		ck_assert_uint_eq(m->cls_size[c], class_to_size[c]);
		ck_assert_uint_eq(m->cls_pages[c], class_to_allocnpages[c]);
		ck_assert_uint_eq(m->cls_slots[c], class_nelems(c, class_to_allocnpages[c]));
	}
	for (size_t pg = 0; pg < m->grown; pg++) {
		char k = w->kind[pg] ? w->kind[pg] : rest;
		ck_assert_msg(m->kind[pg] == k, "page %zu: dump says %c, built %c", pg, m->kind[pg],
		              k);
		if (k == 'S') {
			ck_assert_uint_eq(m->sc[pg], w->sc[pg]);
			ck_assert_uint_eq(m->live[pg], w->live[pg]);
		}
	}
	for (size_t pg = m->grown; pg < MAXP && pg < m->cap; pg++)
		ck_assert_int_eq(m->kind[pg], 'U');
}

/* Spans of 64-byte objects, one full and one half full, a KM_NOSCAN
 * span, two large objects; then the big one freed (free committed pages),
 * the small large one freed (cached by this CPU), then everything freed
 * and trimmed (released). */
START_TEST(dump_says_what_was_built)
{
	static struct want w;
	unsigned c64 = size_to_class(64), c16 = size_to_class(16);
	unsigned slots = class_nelems(c64, class_to_allocnpages[c64]);
	unsigned sc64 = spanclass_make(c64, 0), sc16 = spanclass_make(c16, 1);
	void **a = malloc(2 * slots * sizeof(void *));
	for (unsigned i = 0; i < 2 * slots; i++)
		a[i] = kmalloc(64, 0);
	for (unsigned i = 0; i < 2 * slots; i++)
		if (i < slots || i % 2 == 0)
			want_small(&w, a[i], sc64);
	for (unsigned i = slots + 1; i < 2 * slots; i += 2)
		kfree(a[i]); /* into the magazine: no longer live */
	void *n16 = kmalloc(16, KM_NOSCAN);
	want_small(&w, n16, sc16);
	void *big = kmalloc(40 * PAGE_SIZE, 0), *mid = kmalloc(9 * PAGE_SIZE, 0);
	want_run(&w, big, 40, 'L');
	want_run(&w, mid, 9, 'L');
	/* Never-used pages of a grown chunk were never committed. */
	check_dump(&w, 'R');

	kfree(big); /* over 32 pages: straight back to the page allocator */
	want_run(&w, big, 40, 'F');
	kfree(mid); /* kept in this CPU's large cache */
	want_run(&w, mid, 9, 'C');
	check_dump(&w, 'R');

	for (unsigned i = 0; i < 2 * slots; i++)
		if (i < slots || i % 2 == 0)
			kfree(a[i]);
	kfree(n16);
	free(a);
	kmalloc_trim();
	memset(&w, 0, sizeof w);
	check_dump(&w, 'R');
	char r[32];
	snprintf(r, sizeof r, "R%zu", (size_t)mheap_.pages.nchunks * CHUNK_PAGES);
	ck_assert_str_eq(dump()->first_token, r); /* one run: the whole grown arena */
}
END_TEST

/* Equal spans in a row are one token: six 8 KiB objects, each the only
 * slot of its own 1-page span, side by side. */
START_TEST(equal_neighbours_are_one_token)
{
	unsigned c = size_to_class(8192);
	ck_assert_uint_eq(class_nelems(c, class_to_allocnpages[c]), 1);
	void *p[6];
	for (int i = 0; i < 6; i++)
		p[i] = kmalloc(8192, 0);
	for (int i = 1; i < 6; i++)
		ck_assert_uint_eq(page_of(p[i]),
		                  page_of(p[0]) + (size_t)i * class_to_allocnpages[c]);
	ck_assert_uint_eq(page_of(p[0]), 0);
	char t[32];
	snprintf(t, sizeof t, "%u:1*6", spanclass_make(c, 0));
	ck_assert_str_eq(dump()->first_token, t);
	for (int i = 0; i < 6; i++)
		kfree(p[i]);
}
END_TEST

/* Before the heap exists: a header with nothing in it. */
START_TEST(empty_heap_before_init)
{
	ck_assert(!mheap_inited());
	struct hmap *m = dump();
	ck_assert_uint_eq(m->grown, 0);
	ck_assert_uint_eq(m->cap, 0);
	ck_assert_uint_eq(m->lines_seen, 0);
}
END_TEST

static int stop;

static void *churn(void *arg)
{
	(void)arg;
	enum { N = 4096 };
	static void *p[N];
	uint64_t x = 88172645463325252ull;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		xorshift64(&x);
		size_t i = x % N;
		kfree(p[i]);
		p[i] = kmalloc(x % 7 == 0 ? 8 + (x >> 40) % 100000 : 8 + (x >> 40) % 2000, 0);
	}
	for (size_t i = 0; i < N; i++)
		kfree(p[i]);
	return NULL;
}

/* While another thread allocates and frees, every dump still covers each
 * page once, in order, in well-formed lines (parse checks all of it). */
START_TEST(dumps_while_another_thread_allocates)
{
	void *warm = kmalloc(100, 0); /* the heap exists before the thread */
	pthread_t t;
	pthread_create(&t, NULL, churn, NULL);
	for (int i = 0; i < 30; i++) {
		struct hmap *m = dump();
		ck_assert_uint_gt(m->grown, 0);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	kfree(warm);
	ck_assert(mheap_valid());
}
END_TEST

CHECK_MAIN("heapmap", 120, CHECK_TEST(dump_says_what_was_built),
           CHECK_TEST(equal_neighbours_are_one_token), CHECK_TEST(empty_heap_before_init),
           CHECK_TEST(dumps_while_another_thread_allocates))
