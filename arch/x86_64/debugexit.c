/* debugexit.c: see debugexit.h. */
#include "debugexit.h"
#include "cpu.h"

void qemu_exit(enum kexit code)
{
    outl(DEBUG_EXIT_PORT, (uint32_t)code);
    cpu_halt_forever();
}
