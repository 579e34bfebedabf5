/*
 * acpi.c: RSDP -> XSDT/RSDT -> MADT (see acpi.h). Runs on the bootstrap
 * CPU before any other CPU starts, reads firmware tables only, writes only
 * the caller's acpi_madt_info: no lock, no allocation.
 *
 * Validate before touching: every physical range is checked against the
 * direct map's size before it is dereferenced, a table's length is
 * checked against what we may read before its checksum is summed, and an
 * entry's length before its fields are read.
 */
#include <stddef.h>
#include "acpi.h"
#include "memlayout.h"

struct __attribute__((packed)) acpi_rsdp {
    char signature[8];        /* "RSD PTR " */
    uint8_t checksum;         /* first 20 bytes (ACPI 1.0 part) */
    char oem_id[6];
    uint8_t revision;         /* 0: ACPI 1.0 (RSDT only); >= 2: XSDT fields valid */
    uint32_t rsdt_phys;
    uint32_t length;          /* whole structure, revision >= 2 */
    uint64_t xsdt_phys;
    uint8_t ext_checksum;     /* all `length` bytes */
    uint8_t reserved[3];
};

struct __attribute__((packed)) acpi_madt {
    struct acpi_sdt_header h; /* signature "APIC" */
    uint32_t lapic_phys;
    uint32_t flags;
    /* entries: type (1 byte), length (1 byte), body */
};

enum {
    MADT_LAPIC = 0,           /* u8 acpi uid, u8 apic id, u32 flags */
    MADT_LAPIC_OVERRIDE = 5,  /* u16 reserved, u64 address */
    MADT_X2APIC = 9,          /* u16 reserved, u32 x2apic id, u32 flags, u32 uid */
};
#define MADT_CPU_ENABLED 1u

int acpi_checksum_ok(const void *p, uint64_t len)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    for (uint64_t i = 0; i < len; i++)
        sum += b[i];
    return sum == 0;
}

static int range_ok(uint64_t phys, uint64_t len, uint64_t limit)
{
    return phys != 0 && len <= limit && phys <= limit - len;
}

static int sig_is(const char *s, const char *want, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (s[i] != want[i])
            return 0;
    return 1;
}

/* Map and validate one system description table at phys. */
static const char *sdt_at(uint64_t phys, uint64_t limit, const struct acpi_sdt_header **out)
{
    if (!range_ok(phys, sizeof(struct acpi_sdt_header), limit))
        return "table address outside physical memory";
    const struct acpi_sdt_header *h = PHYS_TO_VIRT(phys);
    if (h->length < sizeof(*h) || !range_ok(phys, h->length, limit))
        return "table length invalid";
    if (!acpi_checksum_ok(h, h->length))
        return "table checksum mismatch";
    *out = h;
    return NULL;
}

const char *acpi_find_madt(uint64_t rsdp_phys, uint64_t phys_limit,
                           const struct acpi_sdt_header **madt, uint64_t *madt_len)
{
    if (!rsdp_phys)
        return "no RSDP from the firmware";
    if (!range_ok(rsdp_phys, sizeof(struct acpi_rsdp), phys_limit))
        return "RSDP address outside physical memory";
    const struct acpi_rsdp *r = PHYS_TO_VIRT(rsdp_phys);
    if (!sig_is(r->signature, "RSD PTR ", 8))
        return "RSDP signature wrong";
    if (!acpi_checksum_ok(r, 20))
        return "RSDP checksum mismatch";

    /* Prefer the XSDT (64-bit entries) when the RSDP is 2.0 and valid. */
    int use_xsdt = r->revision >= 2 && r->xsdt_phys != 0;
    if (use_xsdt && (r->length < sizeof(*r) || r->length > 4096 || !acpi_checksum_ok(r, r->length)))
        return "RSDP extended checksum mismatch";

    const struct acpi_sdt_header *root;
    const char *err = sdt_at(use_xsdt ? r->xsdt_phys : r->rsdt_phys, phys_limit, &root);
    if (err)
        return use_xsdt ? "XSDT invalid (address, length or checksum)" : "RSDT invalid (address, length or checksum)";
    if (!sig_is(root->signature, use_xsdt ? "XSDT" : "RSDT", 4))
        return "root table signature wrong";

    unsigned esz = use_xsdt ? 8 : 4;
    uint64_t n = (root->length - sizeof(*root)) / esz;
    const uint8_t *ents = (const uint8_t *)(root + 1);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t phys = 0;
        for (unsigned k = 0; k < esz; k++)  /* entries are unaligned in the XSDT */
            phys |= (uint64_t)ents[i * esz + k] << (8 * k);
        if (!range_ok(phys, sizeof(struct acpi_sdt_header), phys_limit))
            continue;
        const struct acpi_sdt_header *h = PHYS_TO_VIRT(phys);
        if (!sig_is(h->signature, "APIC", 4))
            continue;
        const struct acpi_sdt_header *m;
        if (sdt_at(phys, phys_limit, &m))
            return "MADT invalid (address, length or checksum)";
        *madt = m;
        *madt_len = m->length;
        return NULL;
    }
    return "no MADT in the root table";
}

const char *acpi_parse_madt(const void *t, uint64_t avail, struct acpi_madt_info *out)
{
    const struct acpi_madt *m = t;
    if (avail < sizeof(*m))
        return "MADT shorter than its header";
    if (!sig_is(m->h.signature, "APIC", 4))
        return "MADT signature wrong";
    if (m->h.length < sizeof(*m) || m->h.length > avail)
        return "MADT length field invalid";
    if (!acpi_checksum_ok(m, m->h.length))
        return "MADT checksum mismatch";

    out->lapic_phys = m->lapic_phys;
    out->flags = m->flags;
    out->listed = out->ncpus = out->dropped = out->n_lapic = out->n_x2apic = 0;
    out->max_id = 0;
    const uint8_t *base = t;
    for (uint64_t off = sizeof(*m); off < m->h.length;) {
        if (m->h.length - off < 2)
            return "MADT entry header cut off by the table end";
        uint8_t type = base[off], len = base[off + 1];
        if (len < 2 || len > m->h.length - off)
            return "MADT entry length invalid";
        const uint8_t *e = base + off;
        uint32_t id = 0, flags = 0;
        int is_cpu = 0;
        if (type == MADT_LAPIC) {
            if (len < 8)
                return "MADT local APIC entry too short";
            id = e[3];
            flags = e[4] | (uint32_t)e[5] << 8 | (uint32_t)e[6] << 16 | (uint32_t)e[7] << 24;
            is_cpu = 1;
        } else if (type == MADT_X2APIC) {
            if (len < 16)
                return "MADT x2APIC entry too short";
            for (unsigned k = 0; k < 4; k++) {
                id |= (uint32_t)e[4 + k] << (8 * k);
                flags |= (uint32_t)e[8 + k] << (8 * k);
            }
            is_cpu = 1;
        } else if (type == MADT_LAPIC_OVERRIDE) {
            if (len < 12)
                return "MADT APIC address override too short";
            uint64_t a = 0;
            for (unsigned k = 0; k < 8; k++)
                a |= (uint64_t)e[4 + k] << (8 * k);
            out->lapic_phys = a;
        }
        if (is_cpu && (flags & MADT_CPU_ENABLED)) {
            for (unsigned i = 0; i < out->ncpus; i++)
                if (out->apic_id[i] == id)
                    return "MADT lists one APIC id twice";
            out->listed++;
            if (type == MADT_X2APIC)
                out->n_x2apic++;
            else
                out->n_lapic++;
            if (id > out->max_id)
                out->max_id = id;
            if (out->ncpus < MAX_CPUS)
                out->apic_id[out->ncpus++] = id;
            else
                out->dropped++;
        }
        off += len;
    }
    if (out->listed == 0)
        return "MADT lists no enabled CPU";
    if (!out->lapic_phys || (out->lapic_phys & 0xfff))
        return "MADT local APIC address invalid";
    return NULL;
}
