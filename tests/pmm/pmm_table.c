/*
 * pmm_table.c: table-driven buddy tests. Each row starts from one free
 * 16-frame block (a 17-frame region at 1 MiB; its top frame holds the
 * metadata), applies a few allocations and frees, and states the frame
 * every allocation must land on and the free blocks per order afterwards.
 * The rows pin down the exact split, carve and merge behaviour: lowest
 * order that fits, upper halves back on the lists, tails given back,
 * most recently freed block first.
 */
#include "pmm_harness.h"

#define BASE (1 * MiB)
#define NOMEM (-1)

struct op {
    char kind;     /* 'a': pmm_alloc(n, align); 'f': pmm_free(result of op ref + at frames, n) */
    uint64_t n, align;
    int64_t want;  /* 'a': frame offset from BASE, or NOMEM */
    int ref;
    uint64_t at;
};

struct row {
    const char *name;
    struct op ops[8];
    uint64_t after[5]; /* free blocks of order 0..4 */
};

#define A(n, al, w) {'a', (n), (al), (w), 0, 0}
#define F(r, at, n) {'f', (n), 0, 0, (r), (at)}

static const struct row rows[] = {
    {"one frame splits every order", {A(1, 1, 0)}, {1, 1, 1, 1, 0}},
    {"and merges back", {A(1, 1, 0), F(0, 0, 1)}, {0, 0, 0, 0, 1}},
    {"5 frames give back 3", {A(5, 1, 0)}, {1, 1, 0, 1, 0}},
    {"alignment takes a bigger block", {A(1, 1, 0), A(1, 8, 8)}, {2, 2, 2, 0, 0}},
    {"threes until only singles are left",
     {A(3, 1, 0), A(3, 1, 4), A(3, 1, 8), A(3, 1, 12), A(3, 1, NOMEM), A(1, 1, 15)},
     {3, 0, 0, 0, 0}},
    {"frees in any order merge fully",
     {A(4, 1, 0), A(4, 1, 4), A(8, 1, 8), F(1, 0, 4), F(0, 0, 4), F(2, 0, 8)},
     {0, 0, 0, 0, 1}},
    {"an odd allocation freed in two pieces", {A(6, 1, 0), F(0, 4, 2)}, {0, 0, 1, 1, 0}},
    {"second piece completes the merge", {A(6, 1, 0), F(0, 4, 2), F(0, 0, 4)}, {0, 0, 0, 0, 1}},
    {"alignment beyond every free block", {A(1, 32, NOMEM), A(16, 16, 0), A(1, 1, NOMEM)}, {0, 0, 0, 0, 0}},
};
#define NROWS ((int)(sizeof rows / sizeof rows[0]))

START_TEST(row)
{
    const struct row *r = &rows[_i];
    struct pmm_region rg[] = {{BASE, 17 * FRAME, PMM_USABLE, 0}};
    struct pmm p;
    build(&p, rg, 1, 2 * MiB);
    uint64_t res[8] = {0};
    for (int i = 0; i < 8 && r->ops[i].kind; i++) {
        const struct op *o = &r->ops[i];
        if (o->kind == 'a') {
            int rc = pmm_alloc(&p, o->n, o->align, &res[i]);
            if (o->want == NOMEM) {
                ck_assert_msg(rc == PMM_ENOMEM, "%s: op %d: want ENOMEM, got %d", r->name, i, rc);
            } else {
                ck_assert_msg(rc == PMM_OK, "%s: op %d: alloc failed %d", r->name, i, rc);
                ck_assert_msg(res[i] == BASE + (uint64_t)o->want * FRAME, "%s: op %d: at frame %lld, want %lld",
                              r->name, i, (long long)((res[i] - BASE) / FRAME), (long long)o->want);
            }
        } else {
            ck_assert_msg(pmm_free(&p, res[o->ref] + o->at * FRAME, o->n) == PMM_OK, "%s: op %d: %s", r->name, i,
                          log_last());
        }
        ck_valid(&p);
    }
    struct pmm_stats st;
    pmm_stats(&p, &st);
    for (int k = 0; k <= PMM_MAX_ORDER; k++)
        ck_assert_msg(st.free_blocks[k] == (k < 5 ? r->after[k] : 0), "%s: order %d: %llu free blocks, want %llu",
                      r->name, k, (unsigned long long)st.free_blocks[k],
                      (unsigned long long)(k < 5 ? r->after[k] : 0));
    arena_unmap();
}
END_TEST

Suite *pmm_table_suite(void)
{
    Suite *s = suite_create("pmm table");
    TCase *tc = tcase_create("buddy");
    tcase_add_loop_test(tc, row, 0, NROWS);
    suite_add_tcase(s, tc);
    return s;
}
