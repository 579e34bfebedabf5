/*
 * selftests.c: the base kernel's built-in ktests (see ktest.h). Each one
 * checks behaviour later code relies on: printk formatting, command-line
 * parsing, symbolisation, the boot hand-off, page-table permissions,
 * descriptor tables and the spinlock. The two named-only tests end the
 * kernel on purpose (a page fault, a panic) so the boot cases can check
 * the failure path.
 */
#include <stdarg.h>
#include "ktest.h"
#include "cmdline.h"
#include "ksyms.h"
#include "kstring.h"
#include "panic.h"
#include "printk.h"
#include "spinlock.h"
#include "bootinfo_check.h"
#include "../arch/x86_64/cpu.h"
#include "../arch/x86_64/gdt.h"
#include "../arch/x86_64/idt.h"
#include "../arch/x86_64/memlayout.h"
#include "../arch/x86_64/percpu.h"
#include "../arch/x86_64/vm.h"

/* ---- printk ---- */

#define FMT(t, want, ...)                                       \
    do {                                                        \
        char b_[64];                                            \
        size_t n_ = snprintk(b_, sizeof(b_), __VA_ARGS__);      \
        KTEST_EXPECT_STR(t, b_, want);                          \
        KTEST_EXPECT_EQ(t, n_, strlen(want));                   \
    } while (0)

/* No format attribute: lets the test pass what the compiler would reject
 * (an unknown conversion, a NULL %s) to check the runtime behaviour. */
static size_t fmt_unchecked(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = vsnprintk(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

KTEST(printk_format)
{
    FMT(t, "-42", "%d", -42);
    FMT(t, "2147483647 -2147483648", "%d %i", 2147483647, (int)-2147483647 - 1);
    FMT(t, "   42|42   |", "%5d|%-5d|", 42, 42);
    FMT(t, "-0042", "%05d", -42);
    FMT(t, "4294967295", "%u", 4294967295u);
    FMT(t, "18446744073709551615", "%lu", (unsigned long)-1);
    FMT(t, "-9223372036854775808", "%ld", (long)(-9223372036854775807L - 1));
    FMT(t, "123 -7", "%zu %lld", (size_t)123, -7LL);
    FMT(t, "beef BEEF 0000001f", "%x %X %08x", 0xbeef, 0xbeef, 0x1f);
    FMT(t, "ffffffff80000000", "%lx", 0xffffffff80000000ul);
    FMT(t, "0xffffffff80001000", "%p", (void *)0xffffffff80001000ul);
    FMT(t, "0x0000000000000000", "%p", (void *)0);
    FMT(t, "   abc|abc   |ab", "%6s|%-6s|%.2s", "abc", "abc", "abcdef");
    FMT(t, "x 100% y", "%c %d%% %c", 'x', 100, 'y');
    FMT(t, "1 65535", "%hhu %hu", 257, 0x1ffff);
    FMT(t, "   7|7   |", "%*d|%-*d|", 4, 7, 4, 7);
    FMT(t, "abc|", "%.*s|", 3, "abcdef");
    char b[16];
    KTEST_EXPECT_EQ(t, fmt_unchecked(b, sizeof(b), "%q|%s", (char *)0), 9);
    KTEST_EXPECT_STR(t, b, "%q|(null)");
    FMT(t, "", "%s", "");

    /* truncation: the result counts the whole output, the buffer holds a prefix */
    char small[4];
    KTEST_EXPECT_EQ(t, snprintk(small, sizeof(small), "abcdef"), 6);
    KTEST_EXPECT_STR(t, small, "abc");
    char untouched = 'z';
    KTEST_EXPECT_EQ(t, snprintk(&untouched, 0, "%d", 12345), 5);
    KTEST_EXPECT_EQ(t, untouched, 'z');
}

/* ---- command line ---- */

static char seen_alpha[64];
static int alpha_calls, beta_calls, beta_bare;

static int parse_alpha(const char *v)
{
    alpha_calls++;
    if (!v)
        return -1;
    size_t n = strlen(v);
    if (n >= sizeof(seen_alpha))
        return -1;
    memcpy(seen_alpha, v, n + 1);
    return 0;
}

static int parse_beta(const char *v)
{
    beta_calls++;
    if (!v) {
        beta_bare = 1;
        return 0;
    }
    return strcmp(v, "bad") == 0 ? -1 : 0;
}

static char warned[8][64];
static unsigned nwarned;

static void capture_warning(const char *msg, const char *token)
{
    if (nwarned < 8)
        snprintk(warned[nwarned], sizeof(warned[0]), "%.12s|%s", msg, token);
    nwarned++;
}

KTEST(cmdline_parse)
{
    static const struct kparam params[] = { { "alpha", parse_alpha }, { "beta", parse_beta } };
    static char line[600];
    /* tabs and runs of spaces, a value holding '=', a bare flag, an unknown
     * option, a rejected value, a lone '=', the last alpha wins, and one
     * token over CMDLINE_TOKEN_MAX */
    const char *head = " \talpha=1   beta gamma=3 beta=bad = alpha=x=y ";
    size_t h = strlen(head);
    memcpy(line, head, h);
    memset(line + h, 'L', 300);
    memcpy(line + h + 300, " beta=ok  ", 11);

    nwarned = 0;
    alpha_calls = beta_calls = beta_bare = 0;
    unsigned w = cmdline_parse(line, params, params + 2, capture_warning);

    KTEST_EXPECT_EQ(t, w, 4);
    KTEST_EXPECT_EQ(t, nwarned, 4);
    KTEST_EXPECT_STR(t, warned[0], "unknown opti|gamma=3");
    KTEST_EXPECT_STR(t, warned[1], "invalid valu|beta=bad");
    KTEST_EXPECT_STR(t, warned[2], "unknown opti|=");
    KTEST_EXPECT_STR(t, warned[3], "option too l|LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL...");
    KTEST_EXPECT_EQ(t, alpha_calls, 2);
    KTEST_EXPECT_STR(t, seen_alpha, "x=y");
    KTEST_EXPECT_EQ(t, beta_calls, 3);
    KTEST_EXPECT_EQ(t, beta_bare, 1);

    /* empty and all-blank lines are not errors */
    KTEST_EXPECT_EQ(t, cmdline_parse("", params, params + 2, capture_warning), 0);
    KTEST_EXPECT_EQ(t, cmdline_parse("  \t ", params, params + 2, capture_warning), 0);
}

extern const struct kparam __kparams_start[], __kparams_end[];

KTEST(cmdline_registry)
{
    /* the ktest= option is registered through the .kparams section */
    int found = 0;
    for (const struct kparam *k = __kparams_start; k < __kparams_end; k++)
        if (strcmp(k->name, "ktest") == 0)
            found = 1;
    KTEST_EXPECT(t, found);
}

/* ---- symbols ---- */

void kmain(uint64_t);
extern const char __text_start[], __text_end[], __rodata_start[], __rodata_end[];
extern const char __data_start[], __bss_start[], __bss_end[];

KTEST(ksyms_lookup)
{
    uint64_t off = 99;
    uint64_t km = (uint64_t)(uintptr_t)kmain;
    const char *name = ksym_lookup(km, &off);
    KTEST_ASSERT(t, name != 0);
    KTEST_EXPECT_STR(t, name, "kmain");
    KTEST_EXPECT_EQ(t, off, 0);
    name = ksym_lookup(km + 5, &off);
    KTEST_ASSERT(t, name != 0);
    KTEST_EXPECT_STR(t, name, "kmain");
    KTEST_EXPECT_EQ(t, off, 5);
    KTEST_EXPECT_EQ(t, ksym_address("ktest_run"), (uint64_t)(uintptr_t)ktest_run);
    KTEST_EXPECT_EQ(t, ksym_address("no_such_function_anywhere"), 0);
    /* data is not code: no symbol */
    KTEST_EXPECT(t, ksym_lookup((uint64_t)(uintptr_t)__rodata_start, 0) == 0);
    KTEST_EXPECT(t, ksyms_count > 20);
    for (uint64_t i = 1; i < ksyms_count; i++)
        if (ksyms_table[i - 1].addr > ksyms_table[i].addr) {
            ktest_fail(t, "symbol table not sorted at %lu", i);
            break;
        }
}

/* ---- boot hand-off ---- */

static const struct boot_mem_region *region_of(uint64_t phys)
{
    const struct boot_mem_region *m = boot_memmap();
    for (uint64_t i = 0; i < boot_info->memmap_count; i++)
        if (phys >= m[i].base && phys - m[i].base < m[i].length)
            return &m[i];
    return 0;
}

KTEST(bootinfo_memmap)
{
    const struct boot_info *bi = boot_info;
    const struct boot_mem_region *m = boot_memmap();
    KTEST_ASSERT(t, bi->memmap_count > 0);
    for (uint64_t i = 0; i < bi->memmap_count; i++) {
        if ((m[i].base | m[i].length) & 0xfff)
            ktest_fail(t, "region %lu not page aligned", i);
        if (m[i].type < 1 || m[i].type > BOOT_MEM_TYPE_MAX)
            ktest_fail(t, "region %lu has type %u", i, m[i].type);
        if (i > 0 && m[i - 1].base + m[i - 1].length > m[i].base)
            ktest_fail(t, "regions %lu and %lu overlap or are unsorted", i - 1, i);
        if (m[i].base + m[i].length > bi->direct_map_size)
            ktest_fail(t, "region %lu beyond the direct map", i);
    }
    const struct boot_mem_region *r = region_of(bi->kernel_phys_base);
    KTEST_ASSERT(t, r != 0);
    KTEST_EXPECT_EQ(t, r->type, BOOT_MEM_KERNEL);
    KTEST_EXPECT(t, bi->kernel_phys_base + bi->kernel_phys_size <= r->base + r->length);
    KTEST_EXPECT_EQ(t, bi->kernel_virt_base, KERNEL_VIRT_BASE);
    r = region_of(bi->pml4_phys);
    KTEST_ASSERT(t, r != 0);
    KTEST_EXPECT_EQ(t, r->type, BOOT_MEM_LOADER);
    r = region_of(VIRT_TO_PHYS(bi));
    KTEST_ASSERT(t, r != 0);
    KTEST_EXPECT_EQ(t, r->type, BOOT_MEM_LOADER);
    r = region_of(bi->memmap_phys);
    KTEST_ASSERT(t, r != 0);
    KTEST_EXPECT_EQ(t, r->type, BOOT_MEM_LOADER);
    KTEST_ASSERT(t, bi->smp_trampoline_phys != 0);
    KTEST_EXPECT(t, bi->smp_trampoline_phys + 4096 <= 0x100000);
    KTEST_EXPECT_EQ(t, bi->smp_trampoline_phys & 0xfff, 0);
    r = region_of(bi->smp_trampoline_phys);
    KTEST_ASSERT(t, r != 0);
    KTEST_EXPECT_EQ(t, r->type, BOOT_MEM_LOADER);
    KTEST_EXPECT(t, bi->direct_map_size >= DIRECT_MAP_MIN_SIZE);
    /* the ACPI RSDP starts with "RSD PTR " */
    KTEST_ASSERT(t, bi->rsdp_phys != 0);
    KTEST_EXPECT(t, memcmp(PHYS_TO_VIRT(bi->rsdp_phys), "RSD PTR ", 8) == 0);
    KTEST_EXPECT_EQ(t, strlen(bi->cmdline), bi->cmdline_len);
}

static struct boot_info bi_copy;  /* only this test touches it */

KTEST(bootinfo_check_rejects)
{
    /* the real hand-off passes; each single corruption is caught */
    KTEST_ASSERT(t, boot_info_check(boot_info) == 0);
    static const char *const what[] = {
        "magic", "version", "size", "entry size", "offset", "count 0", "map past direct map",
        "map wraps", "cmdline len", "cmdline unterminated",
    };
    for (unsigned i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
        memcpy(&bi_copy, boot_info, sizeof(bi_copy));
        switch (i) {
        case 0: bi_copy.magic ^= 1; break;
        case 1: bi_copy.version++; break;
        case 2: bi_copy.size = 16; break;
        case 3: bi_copy.memmap_entry_size = 16; break;
        case 4: bi_copy.direct_map_offset = 0; break;
        case 5: bi_copy.memmap_count = 0; break;
        case 6: bi_copy.memmap_phys = bi_copy.direct_map_size - 8; break;
        case 7: bi_copy.memmap_count = UINT64_MAX / 2; break;
        case 8: bi_copy.cmdline_len = BOOT_CMDLINE_MAX; break;
        case 9: bi_copy.cmdline[bi_copy.cmdline_len] = 'x'; break;
        }
        if (boot_info_check(&bi_copy) == 0)
            ktest_fail(t, "boot info with bad %s accepted", what[i]);
    }
}

/* ---- paging ---- */

static void expect_perm(struct ktest *t, const char *what, uint64_t va, int writable, int exec)
{
    uint64_t size = 0;
    uint64_t e = vm_lookup(va, &size);
    if (!e) {
        ktest_fail(t, "%s (0x%lx) not mapped", what, va);
        return;
    }
    if (!!(e & PTE_W) != writable)
        ktest_fail(t, "%s (0x%lx) writable=%d, want %d", what, va, !!(e & PTE_W), writable);
    if (cpu_has_nx() && (!(e & PTE_NX)) != exec)
        ktest_fail(t, "%s (0x%lx) executable=%d, want %d", what, va, !(e & PTE_NX), exec);
}

static uint64_t some_data = 1;
extern const char boot_stack_guard[];

KTEST(kernel_page_permissions)
{
    expect_perm(t, "text", (uint64_t)(uintptr_t)kmain, 0, 1);
    expect_perm(t, "rodata", (uint64_t)(uintptr_t)__rodata_start, 0, 0);
    expect_perm(t, "data", (uint64_t)(uintptr_t)&some_data, 1, 0);
    expect_perm(t, "bss", (uint64_t)(uintptr_t)__bss_end - 8, 1, 0);
    expect_perm(t, "direct map", (uint64_t)(uintptr_t)boot_info, 1, 0);

    uint64_t size = 0;
    KTEST_EXPECT(t, vm_lookup(DIRECT_MAP_BASE, &size) != 0);
    KTEST_EXPECT_EQ(t, size, PAGE_SIZE_2M);
    /* the direct map reaches the top of the low 4 GiB (LAPIC at 0xfee00000) */
    KTEST_EXPECT(t, vm_lookup(DIRECT_MAP_BASE + 0xfee00000ull, 0) != 0);
    /* a kernel page's direct-map alias names the same frame */
    uint64_t ke = vm_lookup((uint64_t)(uintptr_t)kmain, 0);
    KTEST_EXPECT_EQ(t, ke & PTE_ADDR_MASK,
                    boot_info->kernel_phys_base + (((uint64_t)(uintptr_t)kmain & ~0xfffull) - KERNEL_VIRT_BASE));

    /* the identity map is gone; nothing is mapped where nothing may be
     * (the arena is not checked: the heap's metadata lives at its base) */
    KTEST_EXPECT_EQ(t, vm_lookup(VIRT_TO_PHYS(boot_info), 0), 0);
    KTEST_EXPECT_EQ(t, vm_lookup(0x1000, 0), 0);
    KTEST_EXPECT_EQ(t, vm_lookup(KSTACK_WINDOW_BASE, 0), 0);
    KTEST_EXPECT_EQ(t, vm_lookup(UNMAPPED_PROBE_ADDR, 0), 0);
    KTEST_EXPECT_EQ(t, vm_lookup((uint64_t)(uintptr_t)boot_stack_guard, 0), 0);
    expect_perm(t, "boot stack", (uint64_t)(uintptr_t)boot_stack_guard + 4096, 1, 0);
    /* vm_unmap_4k refuses what is not a mapped 4 KiB page */
    KTEST_EXPECT_EQ(t, vm_unmap_4k(DIRECT_MAP_BASE), -1);            /* 2 MiB page */
    KTEST_EXPECT_EQ(t, vm_unmap_4k(UNMAPPED_PROBE_ADDR), -1);        /* nothing there */
    KTEST_EXPECT_EQ(t, vm_unmap_4k((uint64_t)(uintptr_t)boot_stack_guard), -1); /* already gone */
    KTEST_EXPECT(t, read_cr0() & CR0_WP);
    if (cpu_has_nx())
        KTEST_EXPECT(t, rdmsr(MSR_EFER) & EFER_NXE);
}

/* ---- descriptor tables ---- */

KTEST(descriptor_tables)
{
    struct desc_ptr g, i;
    sgdt(&g);
    sidt(&i);
    KTEST_EXPECT_EQ(t, g.limit, 5 * 8 - 1);
    KTEST_EXPECT(t, g.base >= (uint64_t)(uintptr_t)__bss_start && g.base < (uint64_t)(uintptr_t)__bss_end);
    KTEST_EXPECT_EQ(t, i.limit, 256 * 16 - 1);
    KTEST_EXPECT(t, i.base >= (uint64_t)(uintptr_t)__bss_start && i.base < (uint64_t)(uintptr_t)__bss_end);
    KTEST_EXPECT_EQ(t, str(), GDT_TSS);
    /* the double-fault stack is a distinct, aligned stack for every CPU */
    uint64_t a = gdt_ist_top(0, IST_DOUBLE_FAULT), b = gdt_ist_top(1, IST_DOUBLE_FAULT);
    KTEST_EXPECT_EQ(t, a & 15, 0);
    KTEST_EXPECT(t, b >= a + IST_STACK_SIZE || a >= b + IST_STACK_SIZE);
    KTEST_EXPECT(t, gdt_ist_top(MAX_CPUS - 1, IST_NMI) <= (uint64_t)(uintptr_t)__bss_end);
}

/* ---- spinlock ---- */

KTEST(spinlock_ticket)
{
    spinlock_t l = SPINLOCK_INIT;
    KTEST_EXPECT(t, !spin_is_locked(&l));
    spin_lock(&l);
    KTEST_EXPECT(t, spin_is_locked(&l));
    KTEST_EXPECT(t, !spin_trylock(&l));
    KTEST_EXPECT(t, !spin_lock_bounded(&l, 1000));  /* held: gives up, does not queue */
    spin_unlock(&l);
    KTEST_EXPECT(t, !spin_is_locked(&l));
    KTEST_EXPECT(t, spin_trylock(&l));
    spin_unlock(&l);
    KTEST_EXPECT(t, spin_lock_bounded(&l, 1));
    spin_unlock(&l);
    KTEST_EXPECT_EQ(t, l.next, l.owner);

    /* irqsave turns interrupts off and restore brings back the old state */
    uint64_t before = cpu_read_rflags() & RFLAGS_IF;
    uint64_t f = spin_lock_irqsave(&l);
    KTEST_EXPECT_EQ(t, cpu_read_rflags() & RFLAGS_IF, 0);
    spin_unlock_irqrestore(&l, f);
    KTEST_EXPECT_EQ(t, cpu_read_rflags() & RFLAGS_IF, before);
    KTEST_EXPECT(t, !spin_is_locked(&l));
}

/* ---- deliberate failures, run only when named ---- */

static pf_diag_fn previous_pf_hook;

/* Stands in for the heap's diagnosis to prove the seam works. */
static const char *probe_pf_hook(uint64_t addr, uint64_t error, const struct regs *r)
{
    static char msg[96];
    if (addr != UNMAPPED_PROBE_ADDR)
        return previous_pf_hook ? previous_pf_hook(addr, error, r) : 0;
    snprintk(msg, sizeof(msg), "fault_selftest hook: probe address 0x%lx reached the diagnosis hook", addr);
    return msg;
}

KTEST_NAMED(fault_selftest)
{
    volatile uint64_t *p = (volatile uint64_t *)UNMAPPED_PROBE_ADDR;
    previous_pf_hook = idt_set_pf_hook(probe_pf_hook);
    printk("fault_selftest: reading unmapped address 0x%lx; a page fault and panic must follow\n",
           (uint64_t)UNMAPPED_PROBE_ADDR);
    uint64_t v = *p;
    ktest_fail(t, "read of unmapped 0x%lx returned 0x%lx instead of faulting", (uint64_t)UNMAPPED_PROBE_ADDR, v);
}

/* Never reached: keeps the recursion from looking infinite to the compiler. */
static volatile int overflow_stop_depth = -1;

static __attribute__((noinline)) int recurse_deeper(int depth)
{
    volatile char frame[256];
    frame[0] = (char)depth;
    if (depth == overflow_stop_depth)
        return 0;
    return recurse_deeper(depth + 1) + frame[0];  /* not a tail call */
}

KTEST_NAMED(stack_overflow_selftest)
{
    printk("stack_overflow_selftest: recursing into the boot stack guard page; a double fault must follow\n");
    int r = recurse_deeper(0);
    ktest_fail(t, "recursion returned %d instead of overflowing the stack", r);
}

KTEST_NAMED(triple_fault_selftest)
{
    /* An empty IDT turns the #UD into #GP, then #DF, then a triple fault:
     * the CPU resets and QEMU (-no-reboot) exits with no verdict, which
     * the harness must report as a failure. */
    printk("triple_fault_selftest: loading an empty IDT and executing ud2\n");
    struct desc_ptr empty = { .limit = 0, .base = 0 };
    lidt(&empty);
    __builtin_trap();
}

KTEST_NAMED(hang_selftest)
{
    /* Never ends: the harness's timeout must catch it. */
    printk("hang_selftest: halting with interrupts off\n");
    cpu_halt_forever();
}

KTEST_NAMED(panic_selftest)
{
    panic("panic_selftest: deliberate panic with value %d", 42);
}
