/*
 * mstack.c: backtraces for reports. The port's backtrace hook (sys.h)
 * walks the calling thread's stack from inside mm; mm_backtrace keeps what
 * lies beyond the allocator: it finds the allocation site (the address the
 * kmalloc-family entry point returns to, which the caller already knows)
 * among the frames and drops every frame before it, so a report starts
 * where the user's code called us, whatever mm inlined or not.
 *
 * Data flow: a kmalloc/kfree path that reports later (leak tracking,
 * guarded sampling) -> mm_backtrace(pcs, max, site) -> sys_config.backtrace
 * -> pcs[0] == site, then its callers.
 */
#include "internal.h"

/* Frames that may lie between the hook and the site: the hook's own, the
 * port's, and mm's slow paths (kmalloc -> slow half -> mcentral -> this
 * file is at most about a dozen). */
#define MM_BACKTRACE_SLACK 24

unsigned mm_backtrace(uintptr_t *pcs, unsigned max, uintptr_t site)
{
	uintptr_t raw[MM_BACKTRACE_MAX + MM_BACKTRACE_SLACK];
	unsigned n = 0, i = 0, out = 0;
	if (max == 0)
		return 0;
	if (max > MM_BACKTRACE_MAX)
		max = MM_BACKTRACE_MAX;
	if (sys_config.backtrace != NULL)
		n = sys_config.backtrace(raw, max + MM_BACKTRACE_SLACK);
	while (i < n && raw[i] != site)
		i++;
	if (i == n) { /* the walk missed the site (no unwind info): one frame */
		pcs[0] = site;
		return 1;
	}
	while (i < n && out < max)
		pcs[out++] = raw[i++];
	return out;
}
