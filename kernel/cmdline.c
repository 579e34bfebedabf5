/*
 * cmdline.c: tokenizer and dispatcher for the command line (see cmdline.h).
 * Runs once on the bootstrap CPU before anything reads options, so the
 * options' own state needs no lock.
 */
#include "cmdline.h"
#include "kstring.h"
#include "printk.h"

extern const struct kparam __kparams_start[], __kparams_end[];

#define CMDLINE_SHOW_MAX 200  /* echo at most this much of the line */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

unsigned cmdline_parse(const char *line, const struct kparam *begin, const struct kparam *end,
                       void (*warn)(const char *msg, const char *token))
{
    char tok[CMDLINE_TOKEN_MAX + 1];
    unsigned warnings = 0;
    const char *p = line;

    for (;;) {
        while (is_space(*p))
            p++;
        if (!*p)
            break;
        size_t n = 0;
        while (p[n] && !is_space(p[n]))
            n++;
        if (n > CMDLINE_TOKEN_MAX) {
            /* show the start of it so the user can find it */
            memcpy(tok, p, 32);
            memcpy(tok + 32, "...", 4);
            warn("option too long, ignored", tok);
            warnings++;
            p += n;
            continue;
        }
        memcpy(tok, p, n);
        tok[n] = 0;
        p += n;

        char *eq = tok;
        while (*eq && *eq != '=')
            eq++;
        const char *value = 0;
        if (*eq) {
            *eq = 0;
            value = eq + 1;
        }
        const struct kparam *k;
        for (k = begin; k < end; k++)
            if (strcmp(k->name, tok) == 0)
                break;
        if (value)
            *eq = '=';  /* restore the whole token for messages */
        if (k == end) {
            warn("unknown option, ignored", tok);
            warnings++;
            continue;
        }
        if (k->parse(value) != 0) {
            warn("invalid value, ignored", tok);
            warnings++;
        }
    }
    return warnings;
}

static void warn_console(const char *msg, const char *token)
{
    printk("cmdline: warning: %s: '%s'\n", msg, token);
}

unsigned cmdline_apply(const char *line, int truncated)
{
    size_t len = strlen(line);
    if (len > CMDLINE_SHOW_MAX)
        printk("cmdline: \"%.*s...\" (%zu bytes)\n", CMDLINE_SHOW_MAX, line, len);
    else
        printk("cmdline: \"%s\"\n", line);
    unsigned w = 0;
    if (truncated) {
        printk("cmdline: warning: command line longer than %u bytes was truncated\n", 1023u);
        w++;
    }
    return w + cmdline_parse(line, __kparams_start, __kparams_end, warn_console);
}

int cmdline_uint(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t x = 0;
    if (!v || !*v)
        return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || x > max)
            return -1;
        x = x * 10 + (uint64_t)(*v - '0');
    }
    if (x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

int cmdline_onoff(const char *v, int *out)
{
    if (v && strcmp(v, "on") == 0)
        *out = 1;
    else if (v && strcmp(v, "off") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

int cmdline_flag(const char *v, int *out)
{
    if (v)
        return -1;
    *out = 1;
    return 0;
}
