/*
 * semantics.c: glibc's malloc contract, checked against the LD_PRELOAD
 * shim (tests/preload.mk runs it with LD_PRELOAD=libkmalloc_preload.so).
 * Built with -DAGAINST_GLIBC (linked with tests/lib/child_util.c, as
 * tests/preload.mk does) and run without the shim it checks glibc itself
 * (less the kmalloc-specific misuse messages), which is how the
 * expectations here were confirmed. Each CHECK prints its name on
 * failure; the exit status is the number of failures.
 *
 * Covers: the shim really is the malloc in use; malloc(0); errno ENOMEM on
 * every NULL; calloc overflow and zeroing; realloc growth/shrink/failure,
 * realloc(p, 0); reallocarray overflow; posix_memalign / aligned_alloc /
 * memalign / valloc / pvalloc alignment rules; malloc_usable_size; and
 * that invalid and double frees abort with exactly the line
 * "kmalloc: <fault>: <pointer>" (child_util.c's misuse_mismatch).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/child_util.h"
#include "../lib/fill.h"

static int failures;

#define CHECK(name, cond)                                              \
	do {                                                           \
		if (!(cond)) {                                         \
			fprintf(stderr, "FAIL %s:%d: %s (%s)\n", __FILE__, \
			        __LINE__, name, #cond);                \
			failures++;                                    \
		}                                                      \
	} while (0)

/* The allocator the program's malloc resolves to, from the dynamic linker. */
static const char *malloc_owner(void)
{
	Dl_info info;
	void *(*volatile m)(size_t) = malloc;
	if (dladdr((void *)m, &info) == 0 || info.dli_fname == NULL)
		return "?";
	return info.dli_fname;
}

static int aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

static void test_malloc_zero_and_huge(void)
{
	void *a = malloc(0), *b = malloc(0);
	CHECK("malloc(0) returns a pointer", a != NULL && b != NULL);
	CHECK("malloc(0) pointers are unique", a != b);
	free(a);
	free(b);

	errno = 0;
	CHECK("malloc(SIZE_MAX) fails", malloc(SIZE_MAX) == NULL);
	CHECK("malloc(SIZE_MAX) sets ENOMEM", errno == ENOMEM);
	errno = 0;
	CHECK("malloc(1 TiB) fails", malloc((size_t)1 << 40) == NULL);
	CHECK("malloc(1 TiB) sets ENOMEM", errno == ENOMEM);
	/* after a failure the heap still serves */
	void *c = malloc(100);
	CHECK("malloc after failure", c != NULL);
	free(c);
}

static void test_calloc(void)
{
	errno = 0;
	CHECK("calloc overflow is NULL", calloc(SIZE_MAX / 2, 3) == NULL);
	CHECK("calloc overflow sets ENOMEM", errno == ENOMEM);
	errno = 0;
	CHECK("calloc overflow (2^32 x 2^32) is NULL",
	      calloc((size_t)1 << 32, (size_t)1 << 32) == NULL);
	CHECK("calloc overflow sets ENOMEM", errno == ENOMEM);

	/* Dirty memory of several sizes, free it, and calloc the same sizes:
	 * reused slots must come back zeroed. */
	static const size_t sizes[] = { 8, 24, 100, 1000, 5000, 40000, 300000 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *d[64];
		for (int k = 0; k < 64; k++) {
			d[k] = malloc(sizes[i]);
			memset(d[k], 0xa5, sizes[i]);
		}
		for (int k = 0; k < 64; k++)
			free(d[k]);
		for (int k = 0; k < 64; k++) {
			d[k] = calloc(1, sizes[i]);
			CHECK("calloc returns memory", d[k] != NULL);
			if (d[k] != NULL)
				CHECK("calloc memory is zero",
				      check_bytes(d[k], sizes[i], 0) == SIZE_MAX);
		}
		for (int k = 0; k < 64; k++)
			free(d[k]);
	}
	void *z = calloc(0, 16);
	CHECK("calloc(0, n) is a unique pointer", z != NULL);
	free(z);
}

static void test_realloc(void)
{
	unsigned char *p = realloc(NULL, 10);
	CHECK("realloc(NULL, n) allocates", p != NULL);
	for (int i = 0; i < 10; i++)
		p[i] = (unsigned char)i;
	/* grow through small classes into large objects and back down */
	size_t sz = 10;
	int ok = 1;
	for (size_t n = 17; n <= (1u << 20); n = n * 3 / 2 + 1) {
		p = realloc(p, n);
		if (p == NULL) {
			ok = 0;
			break;
		}
		for (size_t i = 0; i < 10; i++)
			ok &= p[i] == (unsigned char)i;
		memset(p + 10, 0x5a, n - 10);
		sz = n;
	}
	CHECK("realloc growth keeps contents", ok);
	for (size_t n = sz; n > 10; n /= 3) {
		p = realloc(p, n);
		ok &= p != NULL && p[0] == 0 && p[9] == 9 &&
		      check_bytes(p + 10, n - 10, 0x5a) == SIZE_MAX;
	}
	CHECK("realloc shrink keeps contents", ok);

	errno = 0;
	void *q = realloc(p, SIZE_MAX - 4096);
	CHECK("realloc to a huge size fails", q == NULL);
	CHECK("realloc failure sets ENOMEM", errno == ENOMEM);
	CHECK("realloc failure keeps the block", p[0] == 0 && p[9] == 9);
	size_t before = malloc_usable_size(p);
	CHECK("block still live after failed realloc", before >= 10);

	/* glibc: realloc(p, 0) frees p and returns NULL. If it did not free,
	 * this loop would keep 200k objects (~200 MB) alive. */
	CHECK("realloc(p, 0) returns NULL", realloc(p, 0) == NULL);
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	for (int i = 0; i < 200000; i++) {
		void *t = malloc(1000);
		memset(t, 1, 1000);
		t = realloc(t, 0);
		ok &= t == NULL;
	}
	getrusage(RUSAGE_SELF, &r1);
	CHECK("realloc(p, 0) always returns NULL", ok);
	CHECK("realloc(p, 0) frees p (RSS stays < 64 MiB above start)",
	      r1.ru_maxrss - r0.ru_maxrss < 64 * 1024);
}

static void test_reallocarray(void)
{
	int *a = reallocarray(NULL, 10, sizeof(int));
	CHECK("reallocarray allocates", a != NULL);
	for (int i = 0; i < 10; i++)
		a[i] = i * 7;
	errno = 0;
	CHECK("reallocarray overflow is NULL", reallocarray(a, SIZE_MAX / 2, 4) == NULL);
	CHECK("reallocarray overflow sets ENOMEM", errno == ENOMEM);
	CHECK("reallocarray overflow keeps the block", a[9] == 63);
	a = reallocarray(a, 1000, sizeof(int));
	CHECK("reallocarray grows", a != NULL && a[9] == 63);
	free(a);
}

static void test_alignment(void)
{
	void *p = (void *)&p; /* sentinel: must stay untouched on failure */
	static const size_t bad[] = { 0, 1, 2, 4, 3, 24, 48, 100, 4095 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		void *q = p;
		CHECK("posix_memalign rejects bad alignment",
		      posix_memalign(&q, bad[i], 64) == EINVAL);
		CHECK("posix_memalign leaves *out on EINVAL", q == p);
	}
	void *q = p;
	CHECK("posix_memalign huge size is ENOMEM",
	      posix_memalign(&q, 64, SIZE_MAX - 8192) == ENOMEM);
	CHECK("posix_memalign leaves *out on ENOMEM", q == p);

	for (size_t a = sizeof(void *); a <= ((size_t)1 << 21); a <<= 1) {
		static const size_t sizes[] = { 0, 1, 8, 100, 4096, 10000, 70000 };
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			void *r = NULL;
			int rc = posix_memalign(&r, a, sizes[k]);
			CHECK("posix_memalign succeeds", rc == 0 && r != NULL);
			if (rc != 0)
				continue;
			CHECK("posix_memalign result aligned", aligned(r, a));
			CHECK("posix_memalign usable size", malloc_usable_size(r) >= sizes[k]);
			memset(r, 0x11, sizes[k]);
			free(r);

			r = aligned_alloc(a, sizes[k]);
			CHECK("aligned_alloc aligned", r != NULL && aligned(r, a));
			free(r);
			r = memalign(a, sizes[k]);
			CHECK("memalign aligned", r != NULL && aligned(r, a));
			free(r);
		}
	}

#ifndef AGAINST_GLIBC
	/* glibc 2.38+ (Debian 12 has 2.36, which still rounds up) */
	errno = 0;
	CHECK("aligned_alloc rejects non-power-of-two", aligned_alloc(24, 100) == NULL);
	CHECK("aligned_alloc sets EINVAL", errno == EINVAL);
#endif
	/* glibc memalign: a non-power-of-two alignment is rounded up */
	void *m = memalign(48, 100);
	CHECK("memalign(48) rounds up to 64", m != NULL && aligned(m, 64));
	free(m);
	m = memalign(0, 1);
	CHECK("memalign(0) is malloc", m != NULL && aligned(m, 16));
	free(m);
	errno = 0;
	CHECK("memalign too large alignment", memalign(SIZE_MAX / 2 + 2, 16) == NULL);
	CHECK("memalign too large sets EINVAL", errno == EINVAL);
	errno = 0;
	CHECK("memalign huge size fails", memalign(64, SIZE_MAX - 100) == NULL);
	CHECK("memalign huge size sets ENOMEM", errno == ENOMEM);

	long pg = sysconf(_SC_PAGESIZE);
	void *v = valloc(10);
	CHECK("valloc page aligned", v != NULL && aligned(v, (size_t)pg));
	free(v);
	v = pvalloc(1);
	CHECK("pvalloc page aligned", v != NULL && aligned(v, (size_t)pg));
	CHECK("pvalloc rounds to a page", v != NULL && malloc_usable_size(v) >= (size_t)pg);
	if (v != NULL)
		memset(v, 0x22, (size_t)pg);
	free(v);
	v = pvalloc(0);
	CHECK("pvalloc(0) gives a page-aligned pointer", v != NULL && aligned(v, (size_t)pg));
	free(v);
	errno = 0;
	CHECK("pvalloc overflow", pvalloc(SIZE_MAX - 10) == NULL);
	CHECK("pvalloc overflow sets ENOMEM", errno == ENOMEM);

	/* glibc's MALLOC_ALIGNMENT: every object is 16-byte aligned; keep
	 * several of each size live so slots at every offset are seen */
	for (size_t n = 0; n < 100000; n = n < 64 ? n + 1 : n * 5 / 4 + 3) {
		void *o[4];
		for (int k = 0; k < 4; k++) {
			o[k] = malloc(n);
			CHECK("malloc(n) is 16-byte aligned", aligned(o[k], 16));
		}
		for (int k = 0; k < 4; k++)
			free(o[k]);
	}
}

static void test_usable_size(void)
{
	CHECK("malloc_usable_size(NULL) == 0", malloc_usable_size(NULL) == 0);
	for (size_t n = 1; n < 300000; n = n * 3 / 2 + 1) {
		unsigned char *p = malloc(n);
		size_t u = malloc_usable_size(p);
		CHECK("usable size >= requested", u >= n);
		memset(p, 0x33, u); /* the whole usable size is ours to write */
		free(p);
	}
	/* libc functions that allocate internally go through us too */
	char *s = strdup("kmalloc");
	CHECK("strdup works", s != NULL && strcmp(s, "kmalloc") == 0);
	CHECK("strdup memory is ours", malloc_usable_size(s) >= 8);
	free(s);
	CHECK("malloc_trim returns", malloc_trim(0) >= 0);
}

/* The misuse children: each names the pointer it is about to misuse on
 * stdout (run_in_child keeps it apart from the fault line on stderr),
 * since only the child knows it. */
static void say_ptr(void *p)
{
	printf("%p\n", p);
	fflush(stdout);
}

/* The misuse cases: what the child does, and the fault it must die of. */
enum misuse { DOUBLE_FREE, INTERIOR_FREE, STACK_FREE, USABLE_SIZE_OF_FREED };
static const struct misuse_case {
	const char *name;
	enum misuse how;
	size_t size; /* of the object misused (none for STACK_FREE) */
	const char *fault;
} misuse_cases[] = {
	{ "double free aborts", DOUBLE_FREE, 48, "double free" },
	{ "double free of large object aborts", DOUBLE_FREE, 100000, "double free" },
	{ "interior free aborts", INTERIOR_FREE, 64, "invalid free" },
	{ "free of stack memory aborts", STACK_FREE, 0, "invalid free" },
	{ "malloc_usable_size of freed memory aborts", USABLE_SIZE_OF_FREED, 200, "invalid pointer" },
};

static void misuse_child(void *arg)
{
	const struct misuse_case *c = arg;
	char local[16];
	char *p = c->how == STACK_FREE ? local : malloc(c->size);
	switch (c->how) {
	case DOUBLE_FREE:
		free(p);
		say_ptr(p);
		free(p);
		break;
	case INTERIOR_FREE:
		say_ptr(p + 8);
		free(p + 8);
		break;
	case STACK_FREE:
		say_ptr(p);
		free(p);
		break;
	case USABLE_SIZE_OF_FREED:
		free(p);
		say_ptr(p);
		(void)malloc_usable_size(p);
		break;
	}
}

/* Run case c in a child; 1 if it died of SIGABRT having written exactly
 * the line "kmalloc: <fault>: 0x<p>" on stderr, p the pointer it named. */
static int child_aborts_with(const struct misuse_case *c)
{
	static struct child_result r; /* 9 KiB */
	void *ptr;
	run_in_child(misuse_child, (void *)c, &r);
	const char *m = sscanf(r.out, "%p", &ptr) == 1 ? misuse_mismatch(&r, c->fault, ptr)
	                                                : "the child named no pointer";
	if (m != NULL)
		fprintf(stderr, "%s (child's stdout: %s)\n", m, r.out);
	return m == NULL;
}

__attribute__((unused)) static void test_misuse(void)
{
	for (size_t i = 0; i < sizeof(misuse_cases) / sizeof(misuse_cases[0]); i++)
		CHECK(misuse_cases[i].name, child_aborts_with(&misuse_cases[i]));
}

int main(void)
{
	const char *owner = malloc_owner();
	int ours = strstr(owner, "libkmalloc_preload") != NULL;
	printf("malloc resolves to %s\n", owner);
#ifndef AGAINST_GLIBC
	CHECK("malloc is the shim's (run with LD_PRELOAD)", ours);
	if (!ours)
		return 1;
#else
	(void)ours;
#endif
	test_malloc_zero_and_huge();
	test_calloc();
	test_realloc();
	test_reallocarray();
	test_alignment();
	test_usable_size();
#ifndef AGAINST_GLIBC
	test_misuse();
#endif
	printf("semantics: %d failures\n", failures);
	return failures;
}
