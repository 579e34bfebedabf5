/*
 * early.c: a shared object whose constructor allocates, built as
 * build/host/preload/libearly.so. tests/preload.mk preloads it AFTER the
 * shim (LD_PRELOAD="shim early"), so the dynamic linker runs this
 * constructor before the shim's own: the allocator must serve calls made
 * before any of its constructors ran, as glibc and other libraries make
 * them. The constructor checks what it got and exits 3 on a failure;
 * main programs then run as usual.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void early_alloc(void)
{
	char *keep[100];
	for (int i = 0; i < 100; i++) {
		size_t n = (size_t)i * 97 + 1;
		keep[i] = malloc(n);
		if (keep[i] == NULL || malloc_usable_size(keep[i]) < n)
			_exit(3);
		memset(keep[i], i, n);
	}
	char *big = calloc(1, 1 << 20);
	if (big == NULL || big[12345] != 0)
		_exit(3);
	for (int i = 0; i < 100; i++) {
		if (keep[i][0] != (char)i)
			_exit(3);
		free(keep[i]);
	}
	free(big);
	static const char ok[] = "early: allocations before the shim's constructor ok\n";
	if (write(2, ok, sizeof(ok) - 1) < 0)
		_exit(3);
}
