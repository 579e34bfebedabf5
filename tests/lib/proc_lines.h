/*
 * proc_lines.h: the lines of a /proc file, counted without stdio or
 * malloc (so a test may call it while the allocator under test is in any
 * state, or is the process's malloc). The tests count /proc/self/maps
 * with it: the mappings a process has, which meshing on the host spends
 * (tests/api/api_mesh.c) and thread lifetimes must not leak
 * (tests/preload/limits.c). Header-only, like the rest of tests/lib.
 */
#ifndef TESTS_PROC_LINES_H
#define TESTS_PROC_LINES_H

#include <fcntl.h>
#include <unistd.h>

/* Lines of path, or -1 if it cannot be opened. */
static inline long proc_lines(const char *path)
{
	char buf[4096];
	long n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < r; i++)
			n += buf[i] == '\n';
	close(fd);
	return n;
}

#endif /* TESTS_PROC_LINES_H */
