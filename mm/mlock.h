/*
 * mlock.h: the allocator's locks, in order. Every mm lock is a sys_lock
 * of the port, taken through mm_lock and dropped through mm_unlock, so
 * that a debug build checks the order below at every acquisition
 * (mlock.c). Part of internal.h, included after the mheap (the
 * lock_heap family names mheap_'s lock).
 *
 * Lock order (take left before right, never the reverse):
 *
 *     mcentral[i].lock  ->  mheap.lock  ->  transfer[j].lock
 *
 * No code holds two mcentral or two transfer locks at once; in practice
 * nothing is taken while a transfer lock is held (a leaf). mheap.lock also
 * guards the fixallocs and the metadata commit watermarks. sys_commit may
 * run under mheap.lock (metadata growth); sys_release never runs under
 * any lock.
 */
#ifndef MM_MLOCK_H
#define MM_MLOCK_H

/* Locks go through these so a debug build (MM_DEBUG >= 1) can check the
 * lock order above, like Go's lockrank: taking
 * a lock while holding one of equal or higher rank is a fault. It also
 * remembers which lock of each rank a CPU holds, so a function that must
 * run under a lock says so with MM_HELD(&lock) and one that must run with
 * none (it may commit, release or take a lock) says MM_UNLOCKED(). The
 * check assumes a CPU does not migrate while it holds an mm lock (true on
 * both ports: the kernel's sys_lock keeps interrupts off, a host "CPU" is
 * a thread). */
enum mm_lockrank { RANK_MCENTRAL = 1, RANK_MHEAP = 2, RANK_TRANSFER = 3, RANK_N };
#ifdef MM_DEBUG
void mm_lockrank_acquire(enum mm_lockrank r, const struct sys_lock *l);
void mm_lockrank_release(enum mm_lockrank r);
bool mm_lock_held(enum mm_lockrank r, const struct sys_lock *l);
bool mm_no_lock_held(void);
/* mm code in an interrupt handler (kmalloc_safepoint from a timer tick)
 * may land where the interrupted code has done an mm_lock's bookkeeping
 * but not yet taken the lock (interrupts are still on there), or has
 * dropped the lock but not the bookkeeping: it runs with this CPU's
 * ranks saved and cleared, and puts them back. pre: interrupts off. */
void mm_lockrank_save(const struct sys_lock *save[RANK_N]);
void mm_lockrank_restore(const struct sys_lock *const save[RANK_N]);
#define MM_HELD(r, l) MM_ASSERT(mm_lock_held((r), (l)))
#define MM_UNLOCKED() MM_ASSERT(mm_no_lock_held())
#else
static inline void mm_lockrank_acquire(enum mm_lockrank r, const struct sys_lock *l)
{
	(void)r;
	(void)l;
}
static inline void mm_lockrank_release(enum mm_lockrank r) { (void)r; }
static inline void mm_lockrank_save(const struct sys_lock *save[RANK_N]) { (void)save; }
static inline void mm_lockrank_restore(const struct sys_lock *const save[RANK_N]) { (void)save; }
#define MM_HELD(r, l) ((void)0)
#define MM_UNLOCKED() ((void)0)
#endif
#define MM_HELD_HEAP()     MM_HELD(RANK_MHEAP, &mheap_.lock)
#define MM_HELD_CENTRAL(c) MM_HELD(RANK_MCENTRAL, &(c)->lock)
static inline void mm_lock(enum mm_lockrank r, struct sys_lock *l)
{
	mm_lockrank_acquire(r, l);
	sys_lock(l);
}
static inline void mm_unlock(enum mm_lockrank r, struct sys_lock *l)
{
	sys_unlock(l);
	mm_lockrank_release(r);
}
#define lock_heap()        mm_lock(RANK_MHEAP, &mheap_.lock)
#define unlock_heap()      mm_unlock(RANK_MHEAP, &mheap_.lock)
#define lock_central(c)    mm_lock(RANK_MCENTRAL, &(c)->lock)
#define unlock_central(c)  mm_unlock(RANK_MCENTRAL, &(c)->lock)
#define lock_transfer(t)   mm_lock(RANK_TRANSFER, &(t)->lock)
#define unlock_transfer(t) mm_unlock(RANK_TRANSFER, &(t)->lock)

#endif /* MM_MLOCK_H */
