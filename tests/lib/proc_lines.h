/*
 * proc_lines.h: the lines of a /proc file, counted without stdio or
 * malloc (so a test may call it while the allocator under test is in any
 * state, or is the process's malloc). The tests count /proc/self/maps
 * with it: the mappings a process has, which thread lifetimes must not
 * leak (tests/preload/limits.c), and those of the host's memfd arena,
 * which meshing spends (tests/api/api_mesh_runs.c). Header-only, like the rest of tests/lib.
 */
#ifndef TESTS_PROC_LINES_H
#define TESTS_PROC_LINES_H

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* Lines of path that contain needle (NULL: every line), or -1 if it
 * cannot be opened. A line is matched within its first 511 bytes. */
static inline long proc_lines_with(const char *path, const char *needle)
{
	char buf[4096], line[512];
	size_t len = 0;
	long n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] != '\n') {
				if (len + 1 < sizeof line)
					line[len++] = buf[i];
				continue;
			}
			line[len] = 0;
			n += needle == NULL || strstr(line, needle) != NULL;
			len = 0;
		}
	close(fd);
	return n;
}

/* Lines of path, or -1 if it cannot be opened. */
static inline long proc_lines(const char *path) { return proc_lines_with(path, NULL); }

#endif /* TESTS_PROC_LINES_H */
