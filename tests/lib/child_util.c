/*
 * child_util.c: the helpers of child_util.h, running code in a forked
 * child and checking how it died. libc only (no allocator header), so
 * programs that are not API tests link it too: the core's unit tests,
 * the fuzzer and the LD_PRELOAD semantics test.
 */
#define _GNU_SOURCE
#include "child_util.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
		ssize_t r = read(fds[0], res->err + got, sizeof res->err - 1 - got);
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

const char *misuse_mismatch(const struct child_result *res, const char *fault, const void *ptr)
{
	static char msg[1600];
	char want[256];

	if (!res->signaled || res->sig != SIGABRT) {
		snprintf(msg, sizeof msg,
		         "expected death by SIGABRT for %s %p, got %s %d; stderr: \"%s\"", fault,
		         ptr, res->signaled ? "signal" : "exit status",
		         res->signaled ? res->sig : res->status, res->err);
		return msg;
	}
	/* The text itself, to the letter: the port writes the pointer as %lx
	 * would (arch/host/sys.c), and nothing may come before or after. */
	snprintf(want, sizeof want, "kmalloc: %s: 0x%lx\n", fault, (unsigned long)(uintptr_t)ptr);
	if (strcmp(res->err, want) != 0) {
		snprintf(msg, sizeof msg, "expected stderr exactly \"%.*s\\n\", got \"%s\"",
		         (int)strlen(want) - 1, want, res->err);
		return msg;
	}
	return NULL;
}
