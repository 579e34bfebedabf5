/*
 * acpi.h: the ACPI tables SMP bring-up needs, read-only, parsed once.
 *
 * Data flow: the loader hands over the RSDP's physical address
 * (boot_info.rsdp_phys). acpi_find_madt follows RSDP -> XSDT (revision >= 2,
 * else RSDT) -> the table with signature "APIC" (the MADT), validating
 * every checksum and length before it reads a field, and only through the
 * direct map of addresses below `phys_limit`. acpi_parse_madt then walks
 * the MADT's entries (Processor Local APIC, Processor Local x2APIC, Local
 * APIC Address Override) into the local APIC ids of the enabled CPUs.
 *
 * Every function returns NULL on success or a static string naming what is
 * wrong ("MADT checksum mismatch"); smp.c prints it and continues on one CPU.
 */
#ifndef ARCH_X86_64_ACPI_H
#define ARCH_X86_64_ACPI_H

#include <stdint.h>
#include "percpu.h"

struct __attribute__((packed)) acpi_sdt_header {
    char signature[4];
    uint32_t length;          /* whole table, header included */
    uint8_t revision;
    uint8_t checksum;         /* all `length` bytes sum to 0 mod 256 */
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    uint32_t creator_id;
    uint32_t creator_revision;
};

struct acpi_madt_info {
    uint64_t lapic_phys;      /* local APIC MMIO base (override applied) */
    uint32_t flags;           /* MADT flags; bit 0: dual 8259 PICs present */
    unsigned listed;          /* enabled CPUs the MADT lists (all of them) */
    unsigned ncpus;           /* of those, recorded in apic_id[] (<= MAX_CPUS) */
    unsigned dropped;         /* listed - ncpus: beyond MAX_CPUS, not recorded */
    unsigned n_lapic;         /* enabled CPUs from Processor Local APIC entries */
    unsigned n_x2apic;        /* enabled CPUs from Processor Local x2APIC entries */
    uint32_t max_id;          /* highest APIC id listed */
    uint32_t apic_id[MAX_CPUS];
};

/* 1 if the `len` bytes at p sum to 0 mod 256 (the ACPI checksum rule). */
int acpi_checksum_ok(const void *p, uint64_t len);

/* Find the MADT from the RSDP; *madt and *madt_len are valid on success. */
const char *acpi_find_madt(uint64_t rsdp_phys, uint64_t phys_limit,
                           const struct acpi_sdt_header **madt, uint64_t *madt_len);

/*
 * Parse a MADT copy of `avail` readable bytes at t: header length within
 * avail, checksum, every entry's length >= 2 and inside the table.
 * Duplicate APIC ids are rejected (two CPUs cannot share one). Type 0
 * (8-bit ids) and type 9 (x2APIC, 32-bit ids; firmware uses it for ids
 * of 255 and up) entries are both CPUs; entries without the Enabled flag
 * (absent or hot-pluggable CPUs) are skipped.
 */
const char *acpi_parse_madt(const void *t, uint64_t avail, struct acpi_madt_info *out);

#endif
