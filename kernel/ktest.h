/*
 * ktest.h: named in-kernel self-tests and the runner that reports them.
 *
 * Register a test anywhere in the kernel:
 *
 *     KTEST(printk_format) {
 *         char b[32];
 *         snprintk(b, sizeof(b), "%5d", 42);
 *         KTEST_EXPECT_STR(t, b, "   42");
 *     }
 *
 * The macro puts a struct ktest_case in the .ktests linker section; the
 * body receives `struct ktest *t`. KTEST_NAMED(name) registers a test that
 * runs only when the command line names it (destructive ones such as
 * fault_selftest and, later, double_free_selftest).
 *
 * Selection: `ktest=all` (the default) runs every test not marked named-
 * only; `ktest=a,b` runs those, in that order; `ktest=none` runs nothing.
 * An unknown name is reported as a failed test. Output, one line per test:
 *     ktest: <name> ok
 *     ktest: <name> FAILED: <why>
 * then exactly one summary line "ktest: N passed, N failed". A test that
 * panics is reported FAILED with the panic reason, the summary follows,
 * and QEMU ends with the panic status (kernel/panic.c).
 *
 * Failing: KTEST_EXPECT* record the first failure and let the test go on;
 * KTEST_ASSERT returns from the test. ktest_fail(t, fmt, ...) records a
 * free-form reason.
 */
#ifndef KERNEL_KTEST_H
#define KERNEL_KTEST_H

#include <stdint.h>

#define KTEST_ONLY_NAMED 1u

struct ktest {
    const char *name;
    int failed;
    char why[192];  /* the first failure's reason */
};

struct ktest_case {
    const char *name;
    void (*fn)(struct ktest *t);
    unsigned flags;
};

#define KTEST_DEFINE_(name_, flags_)                                              \
    static void ktest_fn_##name_(struct ktest *t);                               \
    static const struct ktest_case ktest_case_##name_                            \
        __attribute__((used, section(".ktests"), aligned(8))) = {                \
            #name_, ktest_fn_##name_, flags_ };                                  \
    static void ktest_fn_##name_(__attribute__((unused)) struct ktest *t)

#define KTEST(name_)       KTEST_DEFINE_(name_, 0)
#define KTEST_NAMED(name_) KTEST_DEFINE_(name_, KTEST_ONLY_NAMED)

__attribute__((format(printf, 2, 3))) void ktest_fail(struct ktest *t, const char *fmt, ...);

#define KTEST_EXPECT(t, cond) \
    do { if (!(cond)) ktest_fail((t), "%s:%d: expected %s", __FILE__, __LINE__, #cond); } while (0)

#define KTEST_ASSERT(t, cond) \
    do { if (!(cond)) { ktest_fail((t), "%s:%d: assertion %s", __FILE__, __LINE__, #cond); return; } } while (0)

#define KTEST_EXPECT_EQ(t, got, want)                                                      \
    do {                                                                                   \
        uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);                              \
        if (g_ != w_)                                                                      \
            ktest_fail((t), "%s:%d: %s is 0x%lx, expected 0x%lx", __FILE__, __LINE__, #got, g_, w_); \
    } while (0)

#define KTEST_EXPECT_STR(t, got, want) ktest_expect_str((t), __FILE__, __LINE__, (got), (want))
void ktest_expect_str(struct ktest *t, const char *file, int line, const char *got, const char *want);

/* Run the tests the command line selected; returns the number failed. */
unsigned ktest_run(void);

/* Called by panic: if a test is running, report it failed with `reason`
 * and print the summary line. */
void ktest_report_panic(const char *reason);

/* A test's work per CPU: `total` shared by `ncpus`, kept within [min, max]
 * (under emulation every CPU's turn costs the others time, so many CPUs
 * each do less). */
static inline unsigned ktest_share(unsigned total, unsigned ncpus, unsigned min, unsigned max)
{
    unsigned k = total / ncpus;
    return k > max ? max : k < min ? min : k;
}

#endif
