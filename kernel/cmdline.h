/*
 * cmdline.h: the kernel command line and the options registry.
 *
 * A subsystem declares each option it accepts with KPARAM(name, parser);
 * the entry lands in the .kparams linker section, so adding an option
 * (arena=, stress=, ...) never touches the parser. At boot, kmain calls
 * cmdline_apply with the loader's line: space-separated tokens of the form
 * `name` or `name=value` (split at the first '='; no quoting). For each
 * token the option's parser gets the value (NULL when there is no '=');
 * the last occurrence of an option wins because parsers run in order.
 * Unknown names, over-long tokens and rejected values print a warning
 * naming the token, and boot continues.
 */
#ifndef KERNEL_CMDLINE_H
#define KERNEL_CMDLINE_H

#include <stdint.h>

#include <stddef.h>

#define CMDLINE_TOKEN_MAX 256  /* longer tokens are rejected with a warning */

struct kparam {
    const char *name;
    /* Returns 0 if the value was accepted, else a negative number and the
     * caller warns "invalid value". value is NULL for a bare `name`; it
     * points into a temporary buffer, so copy what must outlive the call. */
    int (*parse)(const char *value);
};

#define KPARAM(name_, fn_) \
    static const struct kparam kparam_##name_ \
        __attribute__((used, section(".kparams"), aligned(8))) = { #name_, fn_ }

/*
 * Parse `line` against the options in [begin, end). warn(msg, token) is
 * called once per problem (token is NUL-terminated, possibly shortened).
 * Returns the number of warnings.
 */
unsigned cmdline_parse(const char *line, const struct kparam *begin, const struct kparam *end,
                       void (*warn)(const char *msg, const char *token));

/* An option's decimal value: digits only, min <= value <= max. Returns 0
 * and the value in *out, or -1 (also for no value). */
int cmdline_uint(const char *v, uint64_t min, uint64_t max, uint64_t *out);
/* "on" or "off" into *out (1, 0); a flag given without a value sets *out
 * to 1. Each returns -1, changing nothing, for anything else. */
int cmdline_onoff(const char *v, int *out);
int cmdline_flag(const char *v, int *out);

/* Parse the boot command line against every registered option, printing
 * warnings as "cmdline: warning: <msg> '<token>'". */
unsigned cmdline_apply(const char *line, int truncated);

#endif
