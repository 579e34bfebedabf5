/*
 * mlock.c: the lock-order checker of debug builds (MM_DEBUG >= 1),
 * like Go's lockrank. mm_lock and mm_unlock (mlock.h) record, per CPU,
 * which lock of each rank it holds; taking a lock while holding one of
 * equal or higher rank is a fault, and MM_HELD / MM_UNLOCKED assert what
 * a function needs. Release builds compile none of this.
 */
#include "internal.h"

#ifdef MM_DEBUG
/* The mm lock of each rank each CPU holds (NULL: none of that rank). */
static const struct sys_lock *lock_held[MM_MAX_CPUS][RANK_N];

void mm_lockrank_acquire(enum mm_lockrank r, const struct sys_lock *l)
{
	unsigned long f = sys_irq_save();
	const struct sys_lock **held = lock_held[sys_cpu_id()];
	for (unsigned i = r; i < RANK_N; i++)
		MM_CHECK(held[i] == NULL, "lock order violated", (uintptr_t)r);
	held[r] = l;
	sys_irq_restore(f);
}

void mm_lockrank_release(enum mm_lockrank r)
{
	unsigned long f = sys_irq_save();
	lock_held[sys_cpu_id()][r] = NULL;
	sys_irq_restore(f);
}

bool mm_lock_held(enum mm_lockrank r, const struct sys_lock *l)
{
	unsigned long f = sys_irq_save();
	bool held = lock_held[sys_cpu_id()][r] == l;
	sys_irq_restore(f);
	return held;
}

void mm_lockrank_save(const struct sys_lock *save[RANK_N])
{
	const struct sys_lock **held = lock_held[sys_cpu_id()];
	for (unsigned i = 0; i < RANK_N; i++) {
		save[i] = held[i];
		held[i] = NULL;
	}
}

void mm_lockrank_restore(const struct sys_lock *const save[RANK_N])
{
	const struct sys_lock **held = lock_held[sys_cpu_id()];
	for (unsigned i = 0; i < RANK_N; i++)
		held[i] = save[i];
}

bool mm_no_lock_held(void)
{
	unsigned long f = sys_irq_save();
	const struct sys_lock **held = lock_held[sys_cpu_id()];
	bool none = true;
	for (unsigned i = 0; i < RANK_N; i++)
		none = none && held[i] == NULL;
	sys_irq_restore(f);
	return none;
}
#endif
