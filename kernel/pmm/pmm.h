/*
 * pmm.h: the physical frame allocator (a binary buddy allocator over 4 KiB
 * frames), built from the boot memory map. The kernel uses it underneath
 * paging and mm/sys.h; the host tests build it on synthetic maps. It is
 * not part of the kmalloc library: the rest of kernel/pmm/ implements it, and
 * pmm_internal.h says which file does what.
 *
 * Data flow:
 *   boot memory map (any order, overlaps, odd edges)
 *     -> pmm_init resolves overlaps (the more restrictive type wins), trims
 *        usable memory inward to whole frames, groups it into sections,
 *        carves each section's per-frame metadata from usable memory, and
 *        puts every usable frame on the buddy free lists
 *     -> pmm_alloc / pmm_free hand out and take back contiguous, aligned
 *        runs of frames; freed blocks coalesce with their buddies
 *     -> pmm_reclaim, once the kernel is done with boot data, turns the
 *        PMM_RECLAIMABLE frames into free frames.
 *
 * Glossary: a *frame* is 4 KiB of physical memory; a *block* of order k is
 * 2^k frames whose first frame number is a multiple of 2^k; a *section* is
 * a stretch of physical memory with one per-frame metadata array.
 *
 * Frames are reached through a direct map: virtual = physical + dmap_offset.
 * The allocator writes into free frames (free-list links) and into its
 * metadata frames, never into allocated or reserved frames.
 *
 * Frame 0 is never handed out, so physical address 0 never names an
 * allocation.
 *
 * Locking: none inside. The caller serializes every call on one struct pmm
 * (the kernel takes a spinlock with interrupts off around each call).
 * Functions only read and write the struct pmm, its metadata and the free
 * frames, and they never call out except to the log callback, which must
 * not call back into the same struct pmm.
 *
 * Failure: nothing here panics. Running out of frames returns PMM_ENOMEM
 * and leaves the state as it was; bad arguments and bad frees are reported
 * as one line through the log callback, naming the fault and the address,
 * and return an error without modifying anything (the kernel then panics).
 */
#ifndef MM_PMM_H
#define MM_PMM_H

#include <stddef.h>
#include <stdint.h>

#define PMM_FRAME_SHIFT 12
#define PMM_FRAME_SIZE  ((uint64_t)1 << PMM_FRAME_SHIFT)

/* Largest block: 2^18 frames = 1 GiB, so 2 MiB and 1 GiB pages can be
 * backed by one block. More orders only cost one list head each. */
#define PMM_MAX_ORDER 18

/* At most this many sections (runs of memory sharing one metadata array).
 * Sections only break at large holes, so real maps need a handful. */
#define PMM_MAX_SECTIONS 32

/* Physical addresses at or above this are dropped (x86-64's architectural
 * limit is 52 bits); it also keeps base + length from wrapping. */
#define PMM_PHYS_LIMIT ((uint64_t)1 << 52)

/*
 * Region types. The numeric values are shared with boot/bootinfo.h
 * (enum boot_mem_type) and must not change. On overlap the type with the
 * higher precedence wins (see map.c, type_rank): anything that is not free
 * memory beats PMM_USABLE and PMM_RECLAIMABLE.
 */
enum pmm_type {
    PMM_USABLE = 1,       /* free now */
    PMM_RECLAIMABLE = 2,  /* boot services / loader scratch: free after pmm_reclaim */
    PMM_ACPI_RECLAIM = 3, /* ACPI tables: kept reserved */
    PMM_ACPI_NVS = 4,     /* firmware's across sleep: never touched */
    PMM_RESERVED = 5,     /* firmware, MMIO, and any unknown type */
    PMM_KERNEL = 6,       /* the kernel image */
    PMM_LOADER = 7,       /* page tables, boot info, trampoline: kept */
    PMM_BAD = 8,          /* failing memory */
    PMM_METADATA = 9,     /* our own per-frame metadata; never in an input map */
    PMM_NTYPES = 10
};

/* Short name of a type ("usable", "kernel", ...), "unknown" otherwise. */
const char *pmm_type_name(uint32_t type);

/* One memory map entry. Same layout as boot/bootinfo.h's struct
 * boot_mem_region, so the kernel can pass the loader's array as is. */
struct pmm_region {
    uint64_t base;   /* bytes; need not be frame aligned */
    uint64_t length; /* bytes; 0 entries are ignored */
    uint32_t type;   /* enum pmm_type; other values count as PMM_RESERVED */
    uint32_t reserved;
};
_Static_assert(sizeof(struct pmm_region) == 24, "struct pmm_region must match boot/bootinfo.h");

/* Return codes. 0 is success. */
enum pmm_err {
    PMM_OK = 0,
    PMM_ENOMEM = 1,   /* no free block large (and aligned) enough */
    PMM_EINVAL = 2,   /* bad argument (count 0, alignment not a power of two, ...) */
    PMM_EBADFREE = 3, /* pmm_free of frames that are not an allocation */
    PMM_ECORRUPT = 4  /* a free frame was written to after it was freed */
};

/* Why bytes of the map did not become allocatable memory. Filled by
 * pmm_init, read with pmm_stats; the same figures go to the log. */
struct pmm_dropped {
    uint64_t overlap_bytes;    /* bytes covered by more than one entry (resolved by precedence) */
    uint64_t downgraded_bytes; /* usable/reclaimable bytes an overlapping entry took over */
    uint64_t unaligned_bytes;  /* usable/reclaimable bytes lost trimming to whole frames */
    uint64_t frame0_bytes;     /* frame 0 is never handed out */
    uint64_t limit_bytes;      /* at or above the limit (PMM_PHYS_LIMIT or pmm_init_limit's) */
    uint64_t unknown_bytes;    /* entries of unknown type (kept as PMM_RESERVED) */
    uint64_t section_bytes;    /* usable memory lost for lack of a section or metadata room */
    uint32_t unsorted_entries; /* entries whose base was below the previous entry's */
    uint32_t empty_entries;    /* zero-length entries */
};

struct pmm_stats {
    uint64_t managed_frames; /* usable + reclaimable frames the allocator owns, metadata included */
    uint64_t free_frames;    /* on the free lists now */
    uint64_t used_frames;    /* handed out by pmm_alloc and not freed */
    uint64_t reclaimable_frames; /* waiting for pmm_reclaim */
    uint64_t metadata_frames;    /* carved for the per-frame metadata */
    uint64_t metadata_bytes;     /* bytes of those frames actually holding metadata */
    uint64_t overhead_bytes;     /* metadata frames plus sizeof(struct pmm) */
    uint64_t reserved_bytes;     /* map bytes of every type that is never handed out (3..8) */
    uint64_t free_blocks[PMM_MAX_ORDER + 1]; /* free blocks per order */
    uint64_t type_bytes[PMM_NTYPES]; /* bytes of each type in the resolved map (index = type) */
    uint32_t sections;
    struct pmm_dropped dropped;
};

/* Free-list link, stored in the first bytes of each free block. */
struct pmm_node {
    struct pmm_node *next;
    struct pmm_node *prev;
    uint64_t check; /* frame number ^ order ^ a constant: catches writes after free */
};

struct pmm_section {
    uint64_t base_pfn; /* first frame covered */
    uint64_t npfn;     /* frames covered, holes included */
    uint8_t *meta;     /* npfn bytes, one per frame (see pmm_internal.h), via the direct map */
};

/* One frame allocator. "caller's lock" is whatever serializes calls on
 * this instance (the kernel's pmm spinlock, interrupts off). */
struct pmm {
    uint64_t dmap_offset;          /* immutable after init */
    uint64_t limit;                /* immutable after init: frames at or above are ignored */
    void (*log)(const char *line); /* immutable after init; may be NULL */
    struct pmm_node
        *free[PMM_MAX_ORDER + 1];      /* caller's lock: free blocks per order, doubly linked */
    uint64_t nfree[PMM_MAX_ORDER + 1]; /* caller's lock: blocks on each list */
    struct pmm_section
        section[PMM_MAX_SECTIONS];   /* immutable after init (meta[] bytes: caller's lock) */
    uint32_t nsections;              /* immutable after init */
    uint64_t managed_frames;         /* immutable after init */
    uint64_t free_frames;            /* caller's lock */
    uint64_t used_frames;            /* caller's lock */
    uint64_t reclaimable_frames;     /* caller's lock */
    uint64_t metadata_frames;        /* immutable after init */
    uint64_t metadata_bytes;         /* immutable after init */
    uint64_t type_bytes[PMM_NTYPES]; /* immutable after init */
    struct pmm_dropped dropped;      /* immutable after init */
};

/*
 * Build the allocator from a memory map of n entries. log may be NULL (no
 * messages); it receives one NUL-terminated line per call, without '\n'.
 * dmap_offset: virtual = physical + dmap_offset for every frame in the map.
 * Neither p nor the regions array may lie in memory the map calls usable
 * (init writes there); the loader keeps its map in PMM_LOADER memory.
 * Returns PMM_OK (even if the map holds no usable memory: every
 * allocation then fails with PMM_ENOMEM) or PMM_EINVAL (p NULL, regions
 * NULL with n > 0, or either lying in usable memory; logged). The regions
 * array is not kept. Cost: O(n^2) in map entries, O(frames) in memory.
 */
int pmm_init(struct pmm *p, const struct pmm_region *regions, size_t n, uint64_t dmap_offset,
             void (*log)(const char *line));

/* pmm_init for a direct map that covers only physical [0, limit): memory
 * at or above limit is left alone and counted in dropped.limit_bytes.
 * The kernel passes boot_info's direct_map_size. */
int pmm_init_limit(struct pmm *p, const struct pmm_region *regions, size_t n, uint64_t dmap_offset,
                   uint64_t limit, void (*log)(const char *line));

/*
 * Allocate nframes physically contiguous frames whose address is a multiple
 * of align_frames frames (a power of two; 0 and 1 mean no constraint), and
 * store the first frame's physical address in *phys_out (never 0).
 * nframes is rounded up to a power of two internally, and the unused tail
 * goes straight back to the free lists, so a 5-frame request costs 5
 * frames. The block found has order max(log2(nframes), log2(align)), so a
 * large alignment needs a free block that large. Contents are not zeroed.
 * Returns PMM_OK, PMM_ENOMEM (nothing changed), PMM_EINVAL (nframes 0 or
 * above 2^PMM_MAX_ORDER, bad alignment, phys_out NULL; logged), or
 * PMM_ECORRUPT (a free block was overwritten; logged).
 */
int pmm_alloc(struct pmm *p, size_t nframes, size_t align_frames, uint64_t *phys_out);

/*
 * Give back nframes frames starting at phys. The range must be made of
 * whole allocations or whole pieces of one (a range pmm_alloc returned
 * always is). Everything is validated before anything changes: a frame
 * that is unmanaged, reserved, already free, or inside a block that the
 * range does not cover completely is reported through the log as
 * "pmm_free: <fault>: <address>" and PMM_EBADFREE is returned.
 */
int pmm_free(struct pmm *p, uint64_t phys, size_t nframes);

/* Turn every PMM_RECLAIMABLE frame into a free frame. Call once the kernel
 * no longer reads loader/boot-services memory. Returns frames reclaimed
 * (0 on a second call). */
uint64_t pmm_reclaim(struct pmm *p);

void pmm_stats(const struct pmm *p, struct pmm_stats *out);

/* A readable summary (sections, per-type bytes, free/used/reserved frames,
 * free blocks per order, dropped bytes, overhead) through the log. */
void pmm_dump(const struct pmm *p);

/*
 * Check every invariant (MM_VALIDATE grade, O(frames)): each free list
 * links valid free blocks of its order, every section's metadata parses
 * into blocks, free blocks are fully coalesced, and the counters match.
 * Returns 0, or the number of faults found; the first few are logged.
 */
int pmm_validate(const struct pmm *p);

#endif /* MM_PMM_H */
