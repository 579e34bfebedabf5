/*
 * percpu.c: the per-CPU areas (see percpu.h). Each CPU fills its own slot
 * in percpu_init_cpu before it takes an interrupt or runs shared code, so
 * the fields it sets need no lock; the `online` flag is published last by
 * smp.c with a release store.
 */
#include <stddef.h>
#include "percpu.h"
#include "cpu.h"

_Static_assert(offsetof(struct percpu, self) == 0, "this_cpu() reads gs:0");
_Static_assert(offsetof(struct percpu, cpu) == PERCPU_OFF_CPU, "this_cpu_id() reads gs:8");
_Static_assert(offsetof(struct percpu, mcache) == PERCPU_OFF_MCACHE, "mcache slot offset");

struct percpu percpu_area[MAX_CPUS];

void percpu_init_cpu(unsigned cpu, uint32_t apic_id)
{
    struct percpu *p = &percpu_area[cpu];
    p->self = p;
    p->cpu = cpu;
    p->apic_id = apic_id;
    /* after gdt_init_cpu: loading the null GS selector there may clear the base */
    wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)p);
}
