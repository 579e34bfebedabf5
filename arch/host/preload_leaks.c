/*
 * preload_leaks.c: the shim's leak check at exit (KMALLOC_LEAK_CHECK=1),
 * for the LD_PRELOAD library (arch/host/preload.c, which documents the
 * variables). See mm/mgcmark.c for the scan.
 *
 * Data flow: the shim's destructor reads the suppressions file, then
 * runs kmalloc_leak_scan with the program's other threads stopped
 * (arch/host/stopworld.c); the scan hands each leak to leak_found, which
 * only records it (object, size, its backtrace's return addresses from
 * the stack depot) in a table mapped for the purpose: naming a frame
 * takes dladdr, which takes the loader's lock, which a stopped thread may
 * hold. Once the world runs again each leak's frames are named, matched
 * against the suppressions and printed (the one-line form, then a
 * kmemleak-style backtrace), then a total of what was not suppressed and
 * one line per suppression used.
 *
 * Suppressions (KMALLOC_LEAK_SUPPRESS=<file>): LeakSanitizer's format,
 * one `leak:<pattern>` per line, `#` comments and other kinds of line
 * ignored. A pattern matches a substring of the name of any function of
 * the allocation's backtrace or of its module's path, `*` matching any
 * run of characters, a leading `^` and a trailing `$` anchoring it
 * (LSan's TemplateMatch, tried on every frame as LSan does).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host.h"
#include "kmalloc.h"
#include "preload.h"

#define MAX_LEAKS  (1u << 20) /* recorded; the rest are counted */
#define MAX_SUPP   512
#define SUPP_BYTES 65536

#define LEAK_PCS 8 /* frames the core records per object */

struct leak {
	uintptr_t obj, site;
	size_t size;
	unsigned npcs;
	uintptr_t pcs[LEAK_PCS];
};

/* The exit path's alone: one thread runs the destructor. */
static struct leak *leaks;
static size_t nleaks, dropped;
static char supp_text[SUPP_BYTES];
static struct {
	const char *pat;
	uint64_t count, bytes;
} supp[MAX_SUPP];
static unsigned nsupp;

static void leak_found(const void *obj, size_t size, uintptr_t site, void *arg)
{
	(void)arg;
	if (leaks != NULL && nleaks < MAX_LEAKS) {
		struct leak *l = &leaks[nleaks++];
		*l = (struct leak){ (uintptr_t)obj, site, size, 0, { 0 } };
		l->npcs = kmalloc_leak_backtrace(obj, l->pcs, LEAK_PCS);
		if (l->npcs == 0 && site != 0) {
			l->pcs[0] = site;
			l->npcs = 1;
		}
	} else
		dropped++;
}

/* Read the suppressions file into supp[] (no stdio: it may allocate). */
static void read_suppressions(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		preload_write_line("kmemleak: cannot read KMALLOC_LEAK_SUPPRESS file ", path);
		return;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, supp_text + n, sizeof(supp_text) - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	supp_text[n] = '\0';
	for (char *line = supp_text; line < supp_text + n && nsupp < MAX_SUPP;) {
		char *end = strchr(line, '\n');
		if (end != NULL)
			*end = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		size_t len = strlen(line);
		while (len > 0 &&
		       (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (strncmp(line, "leak:", 5) == 0 && line[5] != '\0')
			supp[nsupp++].pat = line + 5;
		if (end == NULL)
			break;
		line = end + 1;
	}
}

/* Does p (no leading ^) match at the start of s? */
static int match_here(const char *p, const char *s)
{
	for (;; p++, s++) {
		if (*p == '\0')
			return 1;
		if (*p == '$' && p[1] == '\0')
			return *s == '\0';
		if (*p == '*') {
			for (;; s++) {
				if (match_here(p + 1, s))
					return 1;
				if (*s == '\0')
					return 0;
			}
		}
		if (*s == '\0' || *p != *s)
			return 0;
	}
}

static int template_match(const char *p, const char *s)
{
	if (s == NULL)
		return 0;
	if (*p == '^')
		return match_here(p + 1, s);
	for (;; s++) {
		if (match_here(p, s))
			return 1;
		if (*s == '\0')
			return 0;
	}
}

/* The suppression that covers a leak whose frames di[0..n) are (have[i]:
 * dladdr knew frame i), or -1: the first pattern that matches any frame's
 * function or module, as LSan tries every frame. */
static int suppressed(const Dl_info *di, const int *have, unsigned n)
{
	for (unsigned i = 0; i < nsupp; i++)
		for (unsigned f = 0; f < n; f++)
			if (have[f] && (template_match(supp[i].pat, di[f].dli_sname) ||
			                template_match(supp[i].pat, di[f].dli_fname)))
				return (int)i;
	return -1;
}

static size_t put_hex(char *buf, size_t n, size_t cap, uintptr_t v)
{
	char hex[16];
	int k = 0;
	do
		hex[k++] = "0123456789abcdef"[v & 15];
	while ((v >>= 4) != 0);
	n = preload_put_str(buf, n, cap, "0x");
	while (k > 0 && n < cap)
		buf[n++] = hex[--k];
	return n;
}

/* "func+0xoff", "module+0xoff" (not exported) or the address. */
static size_t put_frame(char *line, size_t n, size_t cap, uintptr_t pc, const Dl_info *di, int have)
{
	if (have && di->dli_sname != NULL) {
		n = preload_put_str(line, n, cap, di->dli_sname);
		n = preload_put_str(line, n, cap, "+");
		return put_hex(line, n, cap, pc - (uintptr_t)di->dli_saddr);
	}
	if (have && di->dli_fname != NULL) {
		const char *f = strrchr(di->dli_fname, '/');
		n = preload_put_str(line, n, cap, f != NULL ? f + 1 : di->dli_fname);
		n = preload_put_str(line, n, cap, "+");
		return put_hex(line, n, cap, pc - (uintptr_t)di->dli_fbase);
	}
	return put_hex(line, n, cap, pc);
}

/* One leak, unless suppressed; returns whether it was printed. */
static int report(const struct leak *l)
{
	Dl_info di[LEAK_PCS];
	int have[LEAK_PCS];
	for (unsigned i = 0; i < l->npcs; i++)
		have[i] = dladdr((void *)l->pcs[i], &di[i]) != 0;
	int s = nsupp != 0 ? suppressed(di, have, l->npcs) : -1;
	if (s >= 0) {
		supp[s].count++;
		supp[s].bytes += l->size;
		return 0;
	}
	char line[256];
	size_t n = 0, cap = sizeof(line) - 1;
	n = preload_put_str(line, n, cap, "kmemleak: ");
	n = put_hex(line, n, cap, l->obj);
	n = preload_put_str(line, n, cap, " size ");
	n = preload_put_u64(line, n, cap, l->size);
	if (l->npcs != 0) {
		n = preload_put_str(line, n, cap, " [allocated at ");
		n = put_frame(line, n, cap, l->pcs[0], &di[0], have[0]);
		n = preload_put_str(line, n, cap, "]");
	}
	line[n] = '\0';
	preload_write_line(line, "");
	if (l->npcs != 0)
		preload_write_line("kmemleak:   backtrace:", "");
	for (unsigned i = 0; i < l->npcs; i++) {
		n = preload_put_str(line, 0, cap, "kmemleak:     [<");
		n = put_hex(line, n, cap, l->pcs[i]);
		n = preload_put_str(line, n, cap, ">] ");
		n = put_frame(line, n, cap, l->pcs[i], &di[i], have[i]);
		line[n] = '\0';
		preload_write_line(line, "");
	}
	return 1;
}

void preload_leak_check(void)
{
	const char *v = getenv("KMALLOC_LEAK_CHECK");
	if (v == NULL || v[0] != '1')
		return;
	const char *sp = getenv("KMALLOC_LEAK_SUPPRESS");
	if (sp != NULL && *sp != '\0')
		read_suppressions(sp);
	void *t = mmap(NULL, MAX_LEAKS * sizeof(*leaks), PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	leaks = t != MAP_FAILED ? t : NULL;
	struct kmalloc_leaks l;
	host_set_leak_scan_stack(0); /* main returned: its frames are gone */
	if (kmalloc_leak_scan(&l, leak_found, NULL) == KMALLOC_LEAK_NO_SCAN)
		return; /* the port said why */
	uint64_t shown = 0, shown_bytes = 0;
	for (size_t i = 0; i < nleaks; i++)
		if (report(&leaks[i])) {
			shown++;
			shown_bytes += leaks[i].size;
		}
	shown += dropped; /* not recorded: cannot be matched either */
	uint64_t ns;
	unsigned threads;
	host_leak_stop_stats(&ns, &threads);
	char line[256];
	size_t n = 0, cap = sizeof(line) - 1;
	n = preload_put_str(line, n, cap, "kmemleak: ");
	n = preload_put_u64(line, n, cap, shown);
	n = preload_put_str(line, n, cap, shown == 1 ? " leak, " : " leaks, ");
	n = preload_put_u64(line, n, cap, shown_bytes);
	n = preload_put_str(line, n, cap, " bytes (");
	n = preload_put_u64(line, n, cap, l.marked);
	n = preload_put_str(line, n, cap, " live objects reached, ");
	n = preload_put_u64(line, n, cap, l.scanned_bytes >> 10);
	n = preload_put_str(line, n, cap, " KiB scanned; world stopped ");
	n = preload_put_u64(line, n, cap, ns / 1000000);
	n = preload_put_str(line, n, cap, ".");
	n = preload_put_u64(line, n, cap, ns / 100000 % 10);
	n = preload_put_u64(line, n, cap, ns / 10000 % 10);
	n = preload_put_u64(line, n, cap, ns / 1000 % 10);
	n = preload_put_str(line, n, cap, " ms, ");
	n = preload_put_u64(line, n, cap, threads);
	n = preload_put_str(line, n, cap, " other thread(s) stopped)");
	line[n] = '\0';
	preload_write_line(line, "");
	for (unsigned i = 0; i < nsupp; i++) {
		if (supp[i].count == 0)
			continue;
		n = preload_put_str(line, 0, cap, "kmemleak: suppressed ");
		n = preload_put_u64(line, n, cap, supp[i].count);
		n = preload_put_str(line, n, cap, supp[i].count == 1 ? " leak, " : " leaks, ");
		n = preload_put_u64(line, n, cap, supp[i].bytes);
		n = preload_put_str(line, n, cap, " bytes: leak:");
		line[n] = '\0';
		preload_write_line(line, supp[i].pat);
	}
}
