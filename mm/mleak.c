/*
 * mleak.c: what the leak scan says and what it is told. The scan itself
 * (Go's mark phase) is mgcmark.c; this file holds its report (a leak's
 * one-line form, then its allocation backtrace from the stack depot,
 * mstack.c), the suppressions table (kmalloc_leak_suppress) and the calls
 * by which a kernel tells the scan about objects it cannot judge
 * (kmalloc_leak_not_leak, _ignore, _end_ref), plus kmalloc_leak_backtrace
 * for a report callback. See kmalloc.h for the contract.
 *
 * Data flow: a flag call -> the object's word (mm/internal.h, LEAK_*),
 * read by mgcmark.c's mark (ignore: not greyed; end_ref: its end pointer
 * marks it; not_leak: a root) and by mm_leak_report (flagged objects are
 * never reported). kmalloc_leak_scan -> mm_leak_report per unmarked live
 * object -> suppressed? (each frame's function name, from the port's
 * symbolize, against the table) -> counted, or the caller's callback, or
 * sys_log lines.
 *
 * Flags live in the per-object word, which exists only where sites are
 * tracked (sys_config.track_sites): elsewhere the flag calls return -1
 * and change nothing.
 */
#include "internal.h"

int mm_leak_flags_used;

/* The word of the live object starting at p, or NULL (not one, or sites
 * not tracked). pre: p stays live (its owner calls us). */
static uintptr_t *word_of(const void *p)
{
	if (p == NULL || !mheap_inited() || !mheap_.track_sites)
		return NULL;
	struct mspan *s = spanOf((uintptr_t)p);
	if (s == NULL || span_state(s) != SPAN_INUSE)
		return NULL;
	if (span_is_large(s))
		return (uintptr_t)p == s->base ? &s->site1 : NULL;
	long idx = mspan_slot_of(s, (uintptr_t)p);
	if (idx < 0 || *mspan_live(s, (unsigned)idx) != 1)
		return NULL;
	return &s->sites[idx];
}

static int set_flag(const void *p, uintptr_t flag, int used)
{
	uintptr_t *w = word_of(p);
	if (w == NULL)
		return -1;
	__atomic_fetch_or(w, flag, __ATOMIC_RELAXED);
	__atomic_fetch_or(&mm_leak_flags_used, used, __ATOMIC_RELAXED);
	return 0;
}

int kmalloc_leak_not_leak(const void *p) { return set_flag(p, LEAK_NOT_LEAK, LEAK_FLAGS_ANY); }

int kmalloc_leak_ignore(const void *p) { return set_flag(p, LEAK_IGNORE, LEAK_FLAGS_ANY); }

int kmalloc_leak_end_ref(const void *p)
{
	return set_flag(p, LEAK_END_REF, LEAK_FLAGS_ANY | LEAK_FLAGS_END_REF);
}

unsigned kmalloc_leak_backtrace(const void *obj, uintptr_t *pcs, unsigned max)
{
	uintptr_t *w = word_of(obj);
	return w != NULL ? mm_depot_fetch(LEAK_HANDLE(mm_load_relaxed(w)), pcs, max) : 0;
}

/* ---- suppressions ---- */

#define MAX_SUPPRESS 64

/* Entries are written once under supp_lock before nsupp counts them
 * (release); the scan reads nsupp (acquire) and the entries lock-free.
 * count and bytes are the scanning CPU's (scans never overlap). */
static struct sys_lock supp_lock;
static struct {
	const char *pat;
	uint64_t count, bytes;
} supp[MAX_SUPPRESS];
static unsigned nsupp;

int kmalloc_leak_suppress(const char *pattern)
{
	int r = -1;
	if (pattern == NULL || *pattern == '\0')
		return -1;
	sys_lock(&supp_lock);
	if (nsupp < MAX_SUPPRESS) {
		supp[nsupp].pat = pattern;
		mm_store_release(&nsupp, nsupp + 1);
		r = 0;
	}
	sys_unlock(&supp_lock);
	return r;
}

/* LeakSanitizer's TemplateMatch: a substring, `*` any run, a leading `^`
 * and a trailing `$` anchor. Does p match at the start of s? */
static bool match_here(const char *p, const char *s)
{
	for (;; p++, s++) {
		if (*p == '\0')
			return true;
		if (*p == '$' && p[1] == '\0')
			return *s == '\0';
		if (*p == '*') {
			for (;; s++) {
				if (match_here(p + 1, s))
					return true;
				if (*s == '\0')
					return false;
			}
		}
		if (*s == '\0' || *p != *s)
			return false;
	}
}

static bool template_match(const char *p, const char *s)
{
	if (*p == '^')
		return match_here(p + 1, s);
	for (;; s++) {
		if (match_here(p, s))
			return true;
		if (*s == '\0')
			return false;
	}
}

/* The port's name of pc without its "+0xoff", in buf; false if none. */
static bool func_name(uintptr_t pc, char *buf, size_t cap)
{
	size_t n = sys_config.symbolize != NULL ? sys_config.symbolize(pc, buf, cap - 1) : 0;
	if (n == 0)
		return false;
	buf[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '+')
			buf[i] = '\0';
	return true;
}

/* The first suppression matching a function of the trace, or -1. */
static int suppressed(const uintptr_t *pcs, unsigned n)
{
	unsigned k = mm_load_acquire(&nsupp);
	char name[128];
	for (unsigned f = 0; f < n && k != 0; f++) {
		if (!func_name(pcs[f], name, sizeof name))
			continue;
		for (unsigned i = 0; i < k; i++)
			if (template_match(supp[i].pat, name))
				return (int)i;
	}
	return -1;
}

/* ---- the report ---- */

void mm_leak_report_begin(void)
{
	unsigned k = mm_load_acquire(&nsupp);
	for (unsigned i = 0; i < k; i++)
		supp[i].count = supp[i].bytes = 0;
}

/* "func+0xoff" or the hex address, after "prefix". */
static size_t put_pc(char *line, size_t n, size_t cap, uintptr_t pc)
{
	size_t k = sys_config.symbolize != NULL && cap > n + 2
	                   ? sys_config.symbolize(pc, line + n, cap - n - 2)
	                   : 0;
	return k != 0 ? n + k : mm_fmt_hex(line, n, cap, pc);
}

static void print_leak(uintptr_t obj, size_t size, const uintptr_t *pcs, unsigned npcs)
{
	char line[192];
	size_t n = mm_fmt_str(line, 0, sizeof line, "kmemleak: ");
	n = mm_fmt_hex(line, n, sizeof line, obj);
	n = mm_fmt_str(line, n, sizeof line, " size ");
	n = mm_fmt_u64(line, n, sizeof line, size, 0);
	if (npcs != 0) {
		n = mm_fmt_str(line, n, sizeof line, " [allocated at ");
		n = put_pc(line, n, sizeof line, pcs[0]);
		n = mm_fmt_str(line, n, sizeof line, "]");
	}
	sys_log(line);
	if (npcs == 0)
		return;
	sys_log("kmemleak:   backtrace:");
	for (unsigned i = 0; i < npcs; i++) {
		n = mm_fmt_str(line, 0, sizeof line, "kmemleak:     [<");
		n = mm_fmt_hex(line, n, sizeof line, pcs[i]);
		n = mm_fmt_str(line, n, sizeof line, ">] ");
		n = put_pc(line, n, sizeof line, pcs[i]);
		sys_log(line);
	}
}

void mm_leak_report(struct kmalloc_leaks *st, kmalloc_leak_fn fn, void *arg, uintptr_t obj,
                    size_t size, uintptr_t word)
{
	if (word & (LEAK_NOT_LEAK | LEAK_IGNORE))
		return;
	uintptr_t pcs[LEAK_FRAMES];
	unsigned n = mm_depot_fetch(LEAK_HANDLE(word), pcs, LEAK_FRAMES);
	mm_leak_report_pcs(st, fn, arg, obj, size, pcs, n);
}

void mm_leak_report_pcs(struct kmalloc_leaks *st, kmalloc_leak_fn fn, void *arg, uintptr_t obj,
                        size_t size, const uintptr_t *pcs, unsigned n)
{
	int s = n != 0 ? suppressed(pcs, n) : -1;
	if (s >= 0) {
		supp[s].count++;
		supp[s].bytes += size;
		st->suppressed++;
		st->suppressed_bytes += size;
		return;
	}
	st->leaks++;
	st->leak_bytes += size;
	if (fn != NULL)
		fn((const void *)obj, size, n != 0 ? pcs[0] : 0, arg);
	else
		print_leak(obj, size, pcs, n);
}

void mm_leak_report_end(void)
{
	unsigned k = mm_load_acquire(&nsupp);
	for (unsigned i = 0; i < k; i++) {
		if (supp[i].count == 0)
			continue;
		char line[192];
		size_t n = mm_fmt_str(line, 0, sizeof line, "kmemleak: suppressed ");
		n = mm_fmt_u64(line, n, sizeof line, supp[i].count, 0);
		n = mm_fmt_str(line, n, sizeof line, supp[i].count == 1 ? " leak, " : " leaks, ");
		n = mm_fmt_u64(line, n, sizeof line, supp[i].bytes, 0);
		n = mm_fmt_str(line, n, sizeof line, " bytes: ");
		n = mm_fmt_str(line, n, sizeof line, supp[i].pat);
		sys_log(line);
	}
}
