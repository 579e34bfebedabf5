/*
 * backtrace.c (host): the port's backtrace hook (mm/sys.h) on Linux.
 * Programs run under the shim are rarely built with frame pointers (nor
 * is this library: they would cost the fast path a push and a pop per
 * call), so the walk uses the DWARF call-frame information every x86-64
 * object carries (.eh_frame) through libgcc's unwinder, as glibc's
 * backtrace() does. Unlike backtrace() it is linked directly (the
 * compiler links libgcc_s), because backtrace() dlopens libgcc_s on first
 * use, and dlopen allocates. Cost: about 0.4 us a frame, 4-5 us per
 * tracked allocation keeping 8 (make bench-sites; the walk covers mm's
 * own frames too); the leak detector pays it per tracked allocation only.
 *
 * Data flow: mm_backtrace (mm/mstack.c) -> host_backtrace ->
 * _Unwind_Backtrace -> one callback per frame -> pcs[].
 */
#include <stdint.h>
#include <unwind.h>

#include "host_port.h"

struct walk {
	uintptr_t *pcs;
	unsigned n, max;
};

static _Unwind_Reason_Code one_frame(struct _Unwind_Context *ctx, void *arg)
{
	struct walk *w = arg;
	uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
	if (ip == 0 || w->n == w->max)
		return _URC_END_OF_STACK;
	w->pcs[w->n++] = ip;
	return _URC_NO_REASON;
}

unsigned host_backtrace(uintptr_t *pcs, unsigned max)
{
	struct walk w = { pcs, 0, max };
	_Unwind_Backtrace(one_frame, &w);
	return w.n;
}
