/*
 * preload.c: the allocator as a drop-in malloc for Linux programs
 * (build/host/libkmalloc_preload.so, used with LD_PRELOAD). See
 * mm/malloc.c for the overview of the allocator itself.
 *
 * Every C library entry point below is a thin layer over kmalloc.h that
 * adds only what glibc promises and the core does not:
 *   - errno = ENOMEM on every NULL caused by exhaustion or overflow (the
 *     core reports those through the port's nomem hook);
 *   - posix_memalign / aligned_alloc / memalign reject alignments the way
 *     glibc does (EINVAL), valloc / pvalloc align (and round) to the page;
 *   - realloc(p, 0) frees p and returns NULL (glibc's REALLOC_ZERO_BYTES_FREES),
 *     where krealloc would keep p;
 *   - calloc and reallocarray return NULL when n * size overflows.
 * malloc(0) is a unique 16-byte object that free accepts.
 * Invalid and double frees are detected by the core before it touches
 * anything, reported as "kmalloc: <fault>: <pointer>" and abort.
 *
 * Data flow: program -> these wrappers -> kmalloc/kfree (inlined into
 * this object by LTO, see arch/host/preload.mk) -> arch/host/sys.c ->
 * mmap/mprotect/madvise/mremap. The core needs no initialisation call: the first
 * allocation in the process sets the heap up (so calls that glibc or
 * other libraries make before any constructor runs are served), and the
 * first allocation in a thread gives it a CPU id whose mcache is flushed
 * when the thread exits (sys.c). fork() safety: arch/host/fork.c.
 *
 * KMALLOC_PRELOAD_REPORT=<file>: at exit, append one line to <file>
 * saying that this process ran on kmalloc and how much it allocated; the
 * real-program tests use it to prove the shim was really in use without
 * changing what the program prints.
 *
 * KMALLOC_LEAK_CHECK=1: every allocation records its backtrace, and at
 * exit (the shim's destructor runs after the program's own) a leak scan
 * (kmalloc_leak_scan, arch/host/preload_leaks.c) prints each object
 * nothing points to any more, then a total, on stderr, like
 * LeakSanitizer without recompiling:
 *     kmemleak: 0x7f... size 48 [allocated at make_node+0x1c]
 *     kmemleak:   backtrace:
 *     kmemleak:     [<0x5...>] make_node+0x1c
 *     kmemleak:     [<0x5...>] main+0x46 ...
 *     kmemleak: 1 leak, 48 bytes (... live objects reached, ... KiB
 *     scanned; world stopped 0.412 ms, 4 other thread(s) stopped)
 * The program's other threads are stopped for it (arch/host/stopworld.c)
 * and their registers, stacks and thread-local storage are roots, as are
 * the data and bss of every loaded object and the exiting thread's TLS
 * (main has returned: not its stack). KMALLOC_LEAK_SUPPRESS=<file>:
 * LeakSanitizer's `leak:<pattern>` lines; matching leaks are counted on a
 * line of their own instead of printed. KMALLOC_LEAK_FRAMES=n (1..8,
 * default 8; LSan's malloc_context_size): frames recorded per allocation;
 * 1 records the caller alone, without walking the stack (tens of ns an
 * allocation instead of microseconds: README, "What tracking costs").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "host_port.h"
#include "internal.h"
#include "kmalloc.h"
#include "preload.h"

#define EXPORT __attribute__((visibility("default")))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Alignment every malloc result has (glibc's MALLOC_ALIGNMENT): the core
 * is built with KMALLOC_MIN16 (arch/host/preload.mk), so every object,
 * even of 0 or 1 byte, takes at least the 16-byte class. memalign at or
 * below it is malloc. */
#define MIN_ALIGNMENT 16
#define PRELOAD_PAGE 4096

static inline void *enomem_if_null(void *p)
{
	if (UNLIKELY(p == NULL))
		errno = ENOMEM;
	return p;
}

/* malloc, free and calloc are the core's functions with the flags the C
 * library means: the core's port sets errno on every NULL that is "out of
 * memory" (sys_config.nomem, arch/host/sys.c), and its size classes start
 * at 16 bytes here, so nothing is left to add. */
EXPORT void *malloc(size_t size)
{
	return kmalloc(size, 0);
}

EXPORT void free(void *p)
{
	kfree(p);
}

/* glibc's old alias of free; some programs still call it. */
EXPORT void cfree(void *p)
{
	kfree(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
	return kcalloc(n, size, 0);
}

EXPORT void *realloc(void *p, size_t size)
{
	if (p == NULL)
		return malloc(size);
	if (size == 0) {
		/* glibc frees and returns NULL (and does not set errno). */
		kfree(p);
		return NULL;
	}
	return krealloc(p, size, 0);
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t bytes;
	if (UNLIKELY(__builtin_mul_overflow(n, size, &bytes))) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, bytes);
}

static inline int is_pow2(size_t a)
{
	return a != 0 && (a & (a - 1)) == 0;
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	if (!is_pow2(align) || align % sizeof(void *) != 0)
		return EINVAL;
	void *p = kmemalign(align, size, 0);
	if (p == NULL)
		return ENOMEM; /* *out untouched, as POSIX requires */
	*out = p;
	return 0;
}

/* C11 leaves a bad alignment implementation-defined; glibc 2.38 and later
 * (and C17's DR 460 reading) reject it with EINVAL, which we follow. */
EXPORT void *aligned_alloc(size_t align, size_t size)
{
	if (!is_pow2(align)) {
		errno = EINVAL;
		return NULL;
	}
	return enomem_if_null(kmemalign(align, size, 0));
}

/* glibc's _mid_memalign: alignments every malloc result has are plain
 * malloc, a
 * non-power-of-two is rounded up to the next power of two, and one too
 * large to round is EINVAL. */
EXPORT void *memalign(size_t align, size_t size)
{
	if (align <= MIN_ALIGNMENT)
		return malloc(size);
	if (align > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	if (!is_pow2(align))
		align = (size_t)1 << (64 - __builtin_clzll((unsigned long long)align));
	return enomem_if_null(kmemalign(align, size, 0));
}

EXPORT void *valloc(size_t size)
{
	return enomem_if_null(kmemalign(PRELOAD_PAGE, size, 0));
}

/* Like valloc, but the size is rounded up to whole pages (0 -> 1 page). */
EXPORT void *pvalloc(size_t size)
{
	size_t rounded;
	if (UNLIKELY(__builtin_add_overflow(size, PRELOAD_PAGE - 1, &rounded))) {
		errno = ENOMEM;
		return NULL;
	}
	rounded &= ~(size_t)(PRELOAD_PAGE - 1);
	if (rounded == 0)
		rounded = PRELOAD_PAGE;
	return enomem_if_null(kmemalign(PRELOAD_PAGE, rounded, 0));
}

EXPORT size_t malloc_usable_size(void *p)
{
	return ksize(p);
}

/* glibc's malloc_trim: give free memory back to the OS. kmalloc_trim
 * empties the calling thread's caches and the shared transfer caches
 * (they may be all that keeps some pages in use), then releases every
 * free heap page, so `pad` has nothing to keep. Returns 1 ("some memory
 * may have been released"). Other threads empty their caches at their
 * next slow path (threads do not call kmalloc_safepoint). */
EXPORT int malloc_trim(size_t pad)
{
	(void)pad;
	kmalloc_trim();
	return 1;
}

/* fork(): arch/host/fork.c holds every lock of the core and the port
 * across fork and, in the child, gives the parent's other threads' CPU
 * ids and caches back. Registered here as well as at the first thread's
 * first allocation, so it is in place before any fork. */

/* ---- KMALLOC_PRELOAD_REPORT ---- */

static char report_path[512]; /* written once by the constructor */

/* mm's own formatting (mm/fmt.h), which also ends the text with a NUL:
 * buf holds cap + 1 bytes. */
size_t preload_put_str(char *buf, size_t n, size_t cap, const char *s)
{
	return mm_fmt_str(buf, n, cap + 1, s);
}

size_t preload_put_u64(char *buf, size_t n, size_t cap, uint64_t v)
{
	return mm_fmt_u64(buf, n, cap + 1, v, 0);
}

void preload_write_line(const char *a, const char *b)
{
	char line[512];
	size_t n = preload_put_str(line, 0, sizeof(line) - 1, a);
	n = preload_put_str(line, n, sizeof(line) - 1, b);
	line[n++] = '\n';
	ssize_t r = write(2, line, n); /* one write: lines of threads never mix */
	(void)r;
}

__attribute__((constructor)) static void preload_init(void)
{
	host_fork_init();
	const char *r = getenv("KMALLOC_PRELOAD_REPORT");
	if (r != NULL && strlen(r) < sizeof(report_path))
		memcpy(report_path, r, strlen(r) + 1);
}

/* ---- KMALLOC_LEAK_CHECK: preload_leaks.c ---- */

/* A destructor runs after the program's own (main returned or exit was
 * called); other threads may still run. */
__attribute__((destructor)) static void leak_check_at_exit(void) { preload_leak_check(); }

/* One line per process: "kmalloc-preload: pid P allocs A frees F
 * committed C meta M" (C and M in bytes), and " kfence S" when S
 * allocations were guarded samples. No stdio (it would allocate through us while we report). */
__attribute__((destructor)) static void preload_report(void)
{
	if (report_path[0] == '\0')
		return;
	static struct kmalloc_stats st; /* too big for some thread stacks */
	kmalloc_stats(&st);
	uint64_t allocs = st.large_allocs, frees = st.large_frees;
	for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++) {
		allocs += st.cls[c].allocs;
		frees += st.cls[c].frees;
	}
	char line[256];
	size_t n = 0, cap = sizeof(line) - 1;
	n = preload_put_str(line, n, cap, "kmalloc-preload: pid ");
	n = preload_put_u64(line, n, cap, (uint64_t)getpid());
	n = preload_put_str(line, n, cap, " allocs ");
	n = preload_put_u64(line, n, cap, allocs);
	n = preload_put_str(line, n, cap, " frees ");
	n = preload_put_u64(line, n, cap, frees);
	n = preload_put_str(line, n, cap, " committed ");
	n = preload_put_u64(line, n, cap, st.committed);
	n = preload_put_str(line, n, cap, " meta ");
	n = preload_put_u64(line, n, cap, st.meta_sys);
	if (st.kfence_allocs != 0) { /* KMALLOC_KFENCE: how many were sampled */
		n = preload_put_str(line, n, cap, " kfence ");
		n = preload_put_u64(line, n, cap, st.kfence_allocs);
	}
	line[n++] = '\n';
	int fd = open(report_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	ssize_t w = write(fd, line, n); /* one O_APPEND write: lines never mix */
	(void)w;
	close(fd);
}
