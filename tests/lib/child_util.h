/*
 * child_util.h: run a piece of code in a forked child and check how it
 * died and what it printed (misuse must abort with one exact line on
 * stderr). Implemented in child_util.c, which needs only libc: the API
 * tests, the core's internal tests (which see mm/internal.h and with it
 * names that clash with api_util.h's class_size), the fuzzer and the
 * LD_PRELOAD semantics test all link it.
 */
#ifndef CHILD_UTIL_H
#define CHILD_UTIL_H

/* How a forked child ended. */
struct child_result {
	int signaled;   /* 1 if killed by a signal */
	int sig;        /* the signal, if signaled */
	int status;     /* exit status, if not */
	char err[1024]; /* what it wrote to stderr (truncated, NUL-ended) */
	char out[8192]; /* what it wrote to stdout (truncated, NUL-ended) */
};

/* Run fn(arg) in a forked child with stderr captured through a pipe and
 * stdout through a temporary file. The child exits 0 if fn returns. */
void run_in_child(void (*fn)(void *), void *arg, struct child_result *res);

/* Returns NULL if `res` is a death by SIGABRT whose stderr is exactly the
 * one line "kmalloc: <fault>: 0x<hex>\n" naming `ptr` (hex as %lx writes
 * it), else a static message saying what differed (with the child's
 * stderr). */
const char *misuse_mismatch(const struct child_result *res, const char *fault, const void *ptr);

#endif /* CHILD_UTIL_H */
