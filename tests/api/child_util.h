/*
 * child_util.h: run a piece of code in a forked child and check how it
 * died and what it printed (misuse must abort with one exact line on
 * stderr). Implemented in api_util.c; a header of its own so the internal
 * tests (tests/core/test_*.c), which see mm/internal.h and with it names
 * that clash with the rest of api_util.h (class_size), can use it too.
 */
#ifndef CHILD_UTIL_H
#define CHILD_UTIL_H

/* How a forked child ended. */
struct child_result {
	int signaled; /* 1 if killed by a signal */
	int sig;      /* the signal, if signaled */
	int status;   /* exit status, if not */
	char err[1024]; /* what it wrote to stderr (truncated, NUL-ended) */
	char out[8192]; /* what it wrote to stdout (truncated, NUL-ended) */
};

/* Run fn(arg) in a forked child with stderr captured through a pipe and
 * stdout through a temporary file. The child exits 0 if fn returns. */
void run_in_child(void (*fn)(void *), void *arg, struct child_result *res);

/* Returns NULL if `res` is a death by SIGABRT whose stderr is exactly one
 * line "kmalloc: <fault>: 0x<hex>" naming `ptr`, else a static message
 * saying what differed (written with the child's stderr). */
const char *misuse_mismatch(const struct child_result *res, const char *fault,
			    const void *ptr);

#endif /* CHILD_UTIL_H */
