/*
 * preload.h: what the parts of the LD_PRELOAD shim (arch/host/preload*.c)
 * share. See arch/host/preload.c for the overview.
 */
#ifndef ARCH_HOST_PRELOAD_H
#define ARCH_HOST_PRELOAD_H

/* Register the fork() handlers (preload_fork.c). Called by the shim's
 * constructor; idempotent. */
void preload_fork_init(void);

#endif /* ARCH_HOST_PRELOAD_H */
