/*
 * ktest.c: the self-test runner (see ktest.h). Tests run one after the
 * other on the bootstrap CPU; `current` and the counters are touched only
 * there, and by panic on the same CPU when a test dies.
 */
#include <stdarg.h>
#include "ktest.h"
#include "cmdline.h"
#include "kstring.h"
#include "printk.h"

extern const struct ktest_case __ktests_start[], __ktests_end[];

static char selection[CMDLINE_TOKEN_MAX + 1] = "all";
static struct ktest *current;
static unsigned passed, failed;

/* ktest=LIST; a bare or empty ktest is rejected (warned) and "all" stays. */
static int parse_ktest(const char *value)
{
    if (!value || !*value || strlen(value) > CMDLINE_TOKEN_MAX)
        return -1;
    memcpy(selection, value, strlen(value) + 1);
    return 0;
}
KPARAM(ktest, parse_ktest);

void ktest_fail(struct ktest *t, const char *fmt, ...)
{
    if (t->failed++)
        return;  /* keep the first reason: later failures often follow from it */
    va_list ap;
    va_start(ap, fmt);
    vsnprintk(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
}

void ktest_expect_str(struct ktest *t, const char *file, int line, const char *got, const char *want)
{
    if (strcmp(got, want) != 0)
        ktest_fail(t, "%s:%d: got \"%s\", expected \"%s\"", file, line, got, want);
}

static void run_one(const struct ktest_case *c)
{
    struct ktest t = { .name = c->name };
    current = &t;
    c->fn(&t);
    current = 0;
    if (t.failed) {
        failed++;
        printk("ktest: %s FAILED: %s\n", c->name, t.why);
    } else {
        passed++;
        printk("ktest: %s ok\n", c->name);
    }
}

static const struct ktest_case *find(const char *name, size_t len)
{
    for (const struct ktest_case *c = __ktests_start; c < __ktests_end; c++)
        if (strlen(c->name) == len && strncmp(c->name, name, len) == 0)
            return c;
    return 0;
}

unsigned ktest_run(void)
{
    passed = failed = 0;
    if (strcmp(selection, "all") == 0) {
        printk("ktest: running all tests\n");
        for (const struct ktest_case *c = __ktests_start; c < __ktests_end; c++)
            if (!(c->flags & KTEST_ONLY_NAMED))
                run_one(c);
    } else if (strcmp(selection, "none") != 0) {
        printk("ktest: running %s\n", selection);
        const char *p = selection;
        while (*p) {
            size_t n = 0;
            while (p[n] && p[n] != ',')
                n++;
            if (n > 0) {
                const struct ktest_case *c = find(p, n);
                if (c) {
                    run_one(c);
                } else {
                    printk("ktest: warning: unknown test '%.*s'\n", (int)n, p);
                    printk("ktest: %.*s FAILED: no such test\n", (int)n, p);
                    failed++;
                }
            }
            p += n;
            if (*p == ',')
                p++;
        }
    }
    printk("ktest: %u passed, %u failed\n", passed, failed);
    return failed;
}

void ktest_report_panic(const char *reason)
{
    if (!current)
        return;
    printk("ktest: %s FAILED: panic: %s\n", current->name, reason);
    current = 0;
    failed++;
    printk("ktest: %u passed, %u failed\n", passed, failed);
}
