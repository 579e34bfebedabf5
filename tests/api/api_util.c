/*
 * api_util.c: the helpers declared in api_util.h (stats identities, class
 * lookup, fill patterns, forked-child death checks). Plain hosted C; it
 * uses glibc's malloc for nothing, so the allocator's stats only count
 * what a test asked for.
 */
#define _GNU_SOURCE
#include "api_util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *stats_inconsistency(const struct kmalloc_stats *st)
{
	static char msg[256];

	for (int c = 0; c < KMALLOC_NUM_CLASSES; c++) {
		const struct kmalloc_class_stats *k = &st->cls[c];
		if (k->allocs < k->frees || k->live != k->allocs - k->frees) {
			snprintf(msg, sizeof msg,
				 "class %d (size %llu): allocs %llu frees %llu live %llu",
				 c, (unsigned long long)k->size,
				 (unsigned long long)k->allocs,
				 (unsigned long long)k->frees,
				 (unsigned long long)k->live);
			return msg;
		}
		if (k->live && !k->spans) {
			snprintf(msg, sizeof msg,
				 "class %d: %llu live objects in 0 spans", c,
				 (unsigned long long)k->live);
			return msg;
		}
	}
	if (st->large_allocs < st->large_frees ||
	    st->large_live != st->large_allocs - st->large_frees) {
		snprintf(msg, sizeof msg,
			 "large: allocs %llu frees %llu live %llu",
			 (unsigned long long)st->large_allocs,
			 (unsigned long long)st->large_frees,
			 (unsigned long long)st->large_live);
		return msg;
	}
	if (st->heap_sys != st->heap_inuse + st->heap_free + st->heap_released) {
		snprintf(msg, sizeof msg,
			 "heap_sys %llu != inuse %llu + free %llu + released %llu",
			 (unsigned long long)st->heap_sys,
			 (unsigned long long)st->heap_inuse,
			 (unsigned long long)st->heap_free,
			 (unsigned long long)st->heap_released);
		return msg;
	}
	if (st->committed != st->heap_inuse + st->heap_free + st->meta_sys) {
		snprintf(msg, sizeof msg,
			 "committed %llu != inuse %llu + free %llu + meta %llu",
			 (unsigned long long)st->committed,
			 (unsigned long long)st->heap_inuse,
			 (unsigned long long)st->heap_free,
			 (unsigned long long)st->meta_sys);
		return msg;
	}
	if (st->committed != host_committed_bytes()) {
		snprintf(msg, sizeof msg,
			 "stats say %llu bytes committed, the port counts %zu",
			 (unsigned long long)st->committed, host_committed_bytes());
		return msg;
	}
	if (st->large_bytes > st->heap_inuse) {
		snprintf(msg, sizeof msg, "large_bytes %llu > heap_inuse %llu",
			 (unsigned long long)st->large_bytes,
			 (unsigned long long)st->heap_inuse);
		return msg;
	}
	return NULL;
}

uint64_t stats_live_objects(const struct kmalloc_stats *st)
{
	uint64_t n = st->large_live;
	for (int c = 0; c < KMALLOC_NUM_CLASSES; c++)
		n += st->cls[c].live;
	return n;
}

/* The class table never changes after init, so read it once. */
static size_t class_sizes[KMALLOC_NUM_CLASSES];

static void load_classes(void)
{
	struct kmalloc_stats st;

	if (class_sizes[1])
		return;
	kmalloc_stats(&st);
	for (int c = 0; c < KMALLOC_NUM_CLASSES; c++)
		class_sizes[c] = (size_t)st.cls[c].size;
}

size_t class_size(int c)
{
	load_classes();
	return (c > 0 && c < KMALLOC_NUM_CLASSES) ? class_sizes[c] : 0;
}

int class_of_size(size_t size)
{
	load_classes();
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++)
		if (class_sizes[c] >= size)
			return c;
	return 0;
}

/* Byte i of the pattern: a cheap hash of (seed, i) that never repeats
 * with a short period, so a shifted or overlapping copy is caught. */
static inline uint8_t pattern_byte(uint32_t seed, size_t i)
{
	uint32_t x = seed * 0x9E3779B1u ^ (uint32_t)i * 0x85EBCA77u;
	x ^= x >> 15;
	return (uint8_t)(x ^ (x >> 8) ^ (uint32_t)(i >> 8));
}

void fill_pattern(void *p, size_t n, uint32_t seed)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = pattern_byte(seed, i);
}

size_t check_pattern(const void *p, size_t n, uint32_t seed)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != pattern_byte(seed, i))
			return i;
	return (size_t)-1;
}

void run_in_child(void (*fn)(void *), void *arg, struct child_result *res)
{
	int fds[2];
	pid_t pid;
	size_t got = 0;
	int wst;
	FILE *out = tmpfile();

	memset(res, 0, sizeof *res);
	if (pipe(fds) != 0 || !out) {
		perror("pipe/tmpfile");
		abort();
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		abort();
	}
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], STDERR_FILENO);
		close(fds[1]);
		dup2(fileno(out), STDOUT_FILENO);
		/* No core files from the deaths we ask for. */
		signal(SIGABRT, SIG_DFL);
		fn(arg);
		_exit(0);
	}
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], res->err + got,
				 sizeof res->err - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == sizeof res->err - 1) {
			/* Drain the rest so the child never blocks. */
			char sink[256];
			while (read(fds[0], sink, sizeof sink) > 0)
				;
			break;
		}
	}
	res->err[got] = '\0';
	close(fds[0]);
	while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(wst)) {
		res->signaled = 1;
		res->sig = WTERMSIG(wst);
	} else {
		res->status = WEXITSTATUS(wst);
	}
	rewind(out);
	got = fread(res->out, 1, sizeof res->out - 1, out);
	res->out[got] = '\0';
	fclose(out);
}

const char *misuse_mismatch(const struct child_result *res, const char *fault,
			    const void *ptr)
{
	static char msg[1600];
	char prefix[64];
	const char *hex;
	char *end;
	unsigned long long v;
	size_t plen;

	if (!res->signaled || res->sig != SIGABRT) {
		snprintf(msg, sizeof msg,
			 "expected death by SIGABRT for %s %p, got %s %d; stderr: \"%s\"",
			 fault, ptr, res->signaled ? "signal" : "exit status",
			 res->signaled ? res->sig : res->status, res->err);
		return msg;
	}
	plen = (size_t)snprintf(prefix, sizeof prefix, "kmalloc: %s: 0x", fault);
	hex = res->err + plen;
	v = strncmp(res->err, prefix, plen) ? 0 : strtoull(hex, &end, 16);
	if (strncmp(res->err, prefix, plen) != 0 || end == hex ||
	    strcmp(end, "\n") != 0 || v != (unsigned long long)(uintptr_t)ptr) {
		snprintf(msg, sizeof msg,
			 "expected stderr exactly \"kmalloc: %s: %p\\n\", got \"%s\"",
			 fault, ptr, res->err);
		return msg;
	}
	return NULL;
}

uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return dflt;
	v = strtoull(s, &end, 0);
	if (*end) {
		fprintf(stderr, "%s=%s is not a number\n", name, s);
		exit(2);
	}
	return v;
}
