/*
 * printk.c: the formatter and the console lock (see printk.h).
 *
 * Formatting happens into a caller-stack buffer before the lock is taken,
 * so the locked section is only the UART writes. console_lock orders whole
 * lines between CPUs; panic_console (set once by panic) makes every later
 * printk skip the lock, because the CPU holding it may never release it.
 */
#include <stdint.h>
#include "printk.h"
#include "spinlock.h"
#include "../arch/x86_64/serial.h"

static spinlock_t console_lock = SPINLOCK_INIT;
static int panic_console;  /* 0, then 1 forever once a panic began (atomic) */

struct out {
    char *buf;
    size_t size;
    size_t len;   /* would-be length, may exceed size */
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_padded(struct out *o, const char *s, size_t n, int width, int left, char pad)
{
    int fill = width > (int)n ? width - (int)n : 0;
    if (!left) {
        /* zero padding goes after a sign or 0x prefix */
        if (pad == '0' && n > 0 && (s[0] == '-')) {
            put(o, *s++);
            n--;
        } else if (pad == '0' && n > 1 && s[0] == '0' && s[1] == 'x') {
            put(o, *s++);
            put(o, *s++);
            n -= 2;
        }
        while (fill-- > 0)
            put(o, pad);
    }
    for (size_t i = 0; i < n; i++)
        put(o, s[i]);
    if (left)
        while (fill-- > 0)
            put(o, ' ');
}

/* Digits of v in base 10 or 16 at the end of tmp[32]; returns the start. */
static char *utoa(char *end, uint64_t v, unsigned base, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *p = end;
    do {
        *--p = digits[v % base];
        v /= base;
    } while (v);
    return p;
}

/* A directive's flags, width, precision and length modifiers. */
struct spec {
    int left, zero, width, prec;
    int lng;    /* 0 int, 1 long / size_t / ptrdiff_t / long long */
    int narrow; /* h: 1, hh: 2 */
};

/* Parse what follows '%' up to the conversion character; returns its
 * address. */
static const char *parse_spec(const char *f, va_list *ap, struct spec *sp)
{
    *sp = (struct spec){ .prec = -1 };
    for (;; f++) {
        if (*f == '-')
            sp->left = 1;
        else if (*f == '0')
            sp->zero = 1;
        else
            break;
    }
    if (*f == '*') {
        sp->width = va_arg(*ap, int);
        if (sp->width < 0) {
            sp->left = 1;
            sp->width = -sp->width;
        }
        f++;
    } else {
        while (*f >= '0' && *f <= '9')
            sp->width = sp->width * 10 + (*f++ - '0');
    }
    if (*f == '.') {
        f++;
        sp->prec = 0;
        if (*f == '*') {
            sp->prec = va_arg(*ap, int);
            f++;
        } else {
            while (*f >= '0' && *f <= '9')
                sp->prec = sp->prec * 10 + (*f++ - '0');
        }
    }
    for (;; f++) {
        if (*f == 'l' || *f == 'z' || *f == 't' || *f == 'j')
            sp->lng = 1;
        else if (*f == 'h')
            sp->narrow++;
        else
            break;
    }
    return f;
}

/* %d %i %u %x %X. */
static void put_int(struct out *o, const struct spec *sp, char conv, va_list *ap)
{
    char tmp[40], *end = tmp + sizeof(tmp), *s;
    char pad = (sp->zero && !sp->left) ? '0' : ' ';
    if (conv == 'd' || conv == 'i') {
        int64_t v = sp->lng ? va_arg(*ap, int64_t) : va_arg(*ap, int);
        if (sp->narrow == 1)
            v = (short)v;
        else if (sp->narrow >= 2)
            v = (signed char)v;
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        s = utoa(end, mag, 10, 0);
        if (v < 0)
            *--s = '-';
    } else {
        uint64_t v = sp->lng ? va_arg(*ap, uint64_t) : va_arg(*ap, unsigned);
        if (sp->narrow == 1)
            v = (unsigned short)v;
        else if (sp->narrow >= 2)
            v = (unsigned char)v;
        s = utoa(end, v, conv == 'u' ? 10 : 16, conv == 'X');
    }
    put_padded(o, s, (size_t)(end - s), sp->width, sp->left, pad);
}

/* %p %s %c. */
static void put_other(struct out *o, const struct spec *sp, char conv, va_list *ap)
{
    char tmp[40], *end = tmp + sizeof(tmp), *s;
    if (conv == 'p') {
        s = utoa(end, (uint64_t)(uintptr_t)va_arg(*ap, void *), 16, 0);
        while (end - s < 16)
            *--s = '0';
        *--s = 'x';
        *--s = '0';
        put_padded(o, s, (size_t)(end - s), sp->width, sp->left, ' ');
    } else if (conv == 's') {
        const char *str = va_arg(*ap, const char *);
        if (!str)
            str = "(null)";
        size_t n = 0;
        while (str[n] && (sp->prec < 0 || n < (size_t)sp->prec))
            n++;
        put_padded(o, str, n, sp->width, sp->left, ' ');
    } else {
        tmp[0] = (char)va_arg(*ap, int);
        put_padded(o, tmp, 1, sp->width, sp->left, ' ');
    }
}

size_t vsnprintk(char *buf, size_t size, const char *fmt, va_list ap_in)
{
    struct out o = { buf, size, 0 };
    va_list ap;
    va_copy(ap, ap_in); /* helpers take a va_list * (a parameter's may be an array) */

    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&o, *f);
            continue;
        }
        const char *start = f++;
        struct spec sp;
        f = parse_spec(f, &ap, &sp);
        switch (*f) {
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
            put_int(&o, &sp, *f, &ap);
            break;
        case 'p':
        case 's':
        case 'c':
            put_other(&o, &sp, *f, &ap);
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            /* unknown conversion: show the directive itself */
            for (const char *p = start; p <= f && *p; p++)
                put(&o, *p);
            if (!*f)
                f--;
            break;
        }
    }
    va_end(ap);
    if (size)
        buf[o.len < size ? o.len : size - 1] = 0;
    return o.len;
}

size_t snprintk(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = vsnprintk(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

void console_init(void)
{
    serial_init();
}

void console_panic_mode(unsigned long spins)
{
    spin_lock_bounded(&console_lock, spins);  /* taken or not, we go on */
    __atomic_store_n(&panic_console, 1, __ATOMIC_RELEASE);
}

void printk(const char *fmt, ...)
{
    char line[PRINTK_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t n = vsnprintk(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n >= sizeof(line)) {
        /* cut, but keep the line a line so the next printk starts fresh */
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }

    if (__atomic_load_n(&panic_console, __ATOMIC_ACQUIRE)) {
        serial_write(line, n);
        return;
    }
    uint64_t flags = spin_lock_irqsave(&console_lock);
    serial_write(line, n);
    spin_unlock_irqrestore(&console_lock, flags);
}
