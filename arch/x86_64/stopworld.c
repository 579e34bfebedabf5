/*
 * stopworld.c: stopping the other CPUs for a leak scan (see stopworld.h).
 *
 * The owner (the CPU in stop_world) and each target talk through two
 * words and one slot per CPU:
 *   1. owner: CAS `owner` from NO_OWNER (one stop at a time), interrupts
 *      off, next stop number g, `active` = g (SEQ_CST), VEC_STOP_WORLD to
 *      every other online CPU;
 *   2. target, in the IPI handler: reads `active` (ACQUIRE); 0 means the
 *      stop was called off before the IPI got here: return. Otherwise it
 *      spills its callee-saved registers into its frame, stores its RSP
 *      in its slot, then the slot's gen = g (RELEASE), and spins until
 *      `active` != g, serving TLB requests;
 *   3. owner: waits until every target's slot says g (ACQUIRE: pairs with
 *      2, so each target's earlier heap writes and its RSP are visible),
 *      serving TLB requests meanwhile; or gives up STOP_WORLD_QUIET_MS
 *      after the last progress: `active` = 0 (RELEASE) lets the parked
 *      ones go and the laggards' IPIs, when they finally arrive, find 0;
 *   4. start_world: `active` = 0 (RELEASE: the scan's writes happen
 *      before the targets run on), `owner` = NO_OWNER, interrupts back.
 * A late target from a stop that was called off may meet the next stop
 * in progress: it then parks for that one (its slot says the new g), or
 * leaves at once and parks when that stop's own IPI arrives; a slot with
 * an old g never counts.
 *
 * Why a maskable IPI and not an NMI: a CPU takes it only with interrupts
 * on, which in this kernel means it holds no spinlock (they are all
 * irq-off) and is not inside the allocator's per-CPU critical sections.
 * The heap the scan reads is then consistent and the owner can take
 * mheap.lock (its grey stack comes from a fixalloc) without deadlock. An
 * NMI would park CPUs in the middle of a kmalloc.
 *
 * TLB shootdowns: a parked CPU keeps answering them (tlb_service in its
 * loop), because one may be in flight: a CPU that started a shootdown
 * with interrupts off before the IPI came waits for a parked CPU's ack
 * and, unanswered, would never park itself. During the scan nobody
 * starts one: the other CPUs are parked, and the scanning CPU only reads
 * the heap, sets mark bits and takes grey-stack blocks from a fixalloc,
 * which may commit metadata (sys_commit: tlb_gather_sync may shoot down
 * a range the parked CPUs then acknowledge) but never releases memory.
 */
#include <stddef.h>
#include "stopworld.h"
#include "apic.h"
#include "cpu.h"
#include "percpu.h"
#include "smp.h"
#include "tlb.h"
#include "../../kernel/panic.h"
#include "../../kernel/printk.h"

#define NO_OWNER 0xffffffffu

static uint32_t owner = NO_OWNER; /* atomic (CAS): the CPU stopping the world */
static uint32_t active;           /* atomic: the stop in progress, 0: none */
static uint32_t gen;              /* owner only: the last stop's number */
static uint64_t owner_flags;      /* owner only: RFLAGS before stop_world */
static uint64_t t_start;          /* owner only: TSC at the first IPI */
static unsigned n_targets;        /* owner only: CPUs parked in this stop */
static uint64_t last_pause;       /* atomic (relaxed): the last stop's TSC ticks */
static unsigned last_parked;      /* atomic (relaxed): its parked CPUs */

/* Written by its own CPU while it parks (rsp, then gen with RELEASE);
 * read by the owner. One cache line each: targets store at once. */
struct parked_slot {
    uint64_t rsp;
    uint32_t gen;
} __attribute__((aligned(64)));
static struct parked_slot slots[MAX_CPUS];

static int is_parked(unsigned c, uint32_t g)
{
    return __atomic_load_n(&slots[c].gen, __ATOMIC_ACQUIRE) == g;
}

static unsigned count_parked(unsigned me, unsigned n, uint32_t g)
{
    unsigned k = 0;
    for (unsigned c = 0; c < n; c++)
        if (c != me && is_parked(c, g))
            k++;
    return k;
}

/* Step 3's failure: let the parked ones go, name the others. */
static void give_up(unsigned me, unsigned n, uint32_t g, unsigned parked)
{
    __atomic_store_n(&active, 0, __ATOMIC_RELEASE);
    for (unsigned c = 0; c < n; c++)
        if (c != me && !is_parked(c, g))
            printk("stop_world: cpu %u (APIC id %u) did not park within %u ms of the last CPU "
                   "that did (interrupts off that long?)\n", c, percpu_area[c].apic_id,
                   STOP_WORLD_QUIET_MS);
    printk("stop_world: released the %u of %u other CPU(s) that parked\n", parked, n - 1);
}

int stop_world(void)
{
    uint64_t f = irq_save();
    unsigned me = this_cpu_id();
    uint32_t none = NO_OWNER;
    if (!__atomic_compare_exchange_n(&owner, &none, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        irq_restore(f);
        return -1;  /* another CPU's stop is in progress */
    }
    if (++gen == 0)
        gen = 1;
    uint32_t g = gen;
    unsigned n = smp_cpus_online();
    t_start = rdtsc();
    __atomic_store_n(&active, g, __ATOMIC_SEQ_CST);
    for (unsigned c = 0; c < n; c++)
        if (c != me)
            lapic_send_ipi(percpu_area[c].apic_id, VEC_STOP_WORLD);
    unsigned got = 0;
    uint64_t quiet_end = tsc_deadline_us(rdtsc(), STOP_WORLD_QUIET_MS * 1000ull);
    while (got < n - 1) {
        tlb_service();  /* a shootdown in flight may wait for us */
        unsigned now = count_parked(me, n, g);
        if (now != got) {
            got = now;
            quiet_end = tsc_deadline_us(rdtsc(), STOP_WORLD_QUIET_MS * 1000ull);
            continue;
        }
        if (rdtsc() > quiet_end) {
            give_up(me, n, g, got);
            __atomic_store_n(&owner, NO_OWNER, __ATOMIC_RELEASE);
            irq_restore(f);
            return -1;
        }
        cpu_pause();
    }
    owner_flags = f;
    n_targets = n - 1;
    return 0;
}

void start_world(void)
{
    unsigned me = this_cpu_id();
    uint32_t o = __atomic_load_n(&owner, __ATOMIC_RELAXED);
    if (o != me)
        panic("start_world on cpu %u, but the world was stopped by cpu %d", me,
              o == NO_OWNER ? -1 : (int)o);
    __atomic_store_n(&last_pause, rdtsc() - t_start, __ATOMIC_RELAXED);
    __atomic_store_n(&last_parked, n_targets, __ATOMIC_RELAXED);
    __atomic_store_n(&active, 0, __ATOMIC_RELEASE);
    uint64_t f = owner_flags;
    __atomic_store_n(&owner, NO_OWNER, __ATOMIC_RELEASE);
    irq_restore(f);
}

int stop_world_parked_rsp(unsigned cpu, uint64_t *rsp)
{
    uint32_t g = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (g == 0 || cpu >= MAX_CPUS || !is_parked(cpu, g))
        return -1;
    *rsp = slots[cpu].rsp;
    return 0;
}

uint64_t stop_world_last_pause_tsc(void) { return __atomic_load_n(&last_pause, __ATOMIC_RELAXED); }
unsigned stop_world_last_parked(void) { return __atomic_load_n(&last_parked, __ATOMIC_RELAXED); }

void stop_world_park(void)
{
    uint32_t g = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (g == 0)
        return;  /* called off before we got here */
    /* The interrupted context's registers are already on this stack (the
     * entry stub's struct regs, above us); this adds the handler's own
     * callee-saved registers, so everything is at or above the RSP we
     * publish and the scan reads it. */
    __builtin_unwind_init();
    struct parked_slot *s = &slots[this_cpu_id()];
    s->rsp = read_rsp();
    __atomic_store_n(&s->gen, g, __ATOMIC_RELEASE);
    while (__atomic_load_n(&active, __ATOMIC_ACQUIRE) == g) {
        tlb_service();
        cpu_pause();
    }
}
