/*
 * test_sizeclasses.c: the size-class table is Go's, every column, then
 * our four classes above 32 KiB; size -> class lookups are right for
 * every size 0..65536 (smallest class that
 * fits and keeps kmalloc's 16-byte alignment from 16 bytes up); the divMul object index
 * is exact for every byte offset of every span; the one-multiply slot
 * test kfree relies on (slot_exact with slot_magic) accepts exactly the
 * multiples of the class size at every offset of every span; the
 * generator's output is the checked-in header and its --print table is
 * Go's.
 */
#include <check.h>
#include "../lib/check_runner.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Go's table (golang/go src/internal/runtime/gc/sizeclasses.go, same
 * numbers since Go 1.16): class, bytes/obj, bytes/span, objects, tail
 * waste, max waste in hundredths of a percent. */
/* clang-format off */
static const struct {
	unsigned cls, size, span, objs, tail, maxwaste;
} go_table[] = {
	{1, 8, 8192, 1024, 0, 8750},
	{2, 16, 8192, 512, 0, 4375},
	{3, 24, 8192, 341, 8, 2924},
	{4, 32, 8192, 256, 0, 2188},
	{5, 48, 8192, 170, 32, 3152},
	{6, 64, 8192, 128, 0, 2344},
	{7, 80, 8192, 102, 32, 1907},
	{8, 96, 8192, 85, 32, 1595},
	{9, 112, 8192, 73, 16, 1356},
	{10, 128, 8192, 64, 0, 1172},
	{11, 144, 8192, 56, 128, 1182},
	{12, 160, 8192, 51, 32, 973},
	{13, 176, 8192, 46, 96, 959},
	{14, 192, 8192, 42, 128, 925},
	{15, 208, 8192, 39, 80, 812},
	{16, 224, 8192, 36, 128, 815},
	{17, 240, 8192, 34, 32, 662},
	{18, 256, 8192, 32, 0, 586},
	{19, 288, 8192, 28, 128, 1216},
	{20, 320, 8192, 25, 192, 1180},
	{21, 352, 8192, 23, 96, 988},
	{22, 384, 8192, 21, 128, 951},
	{23, 416, 8192, 19, 288, 1071},
	{24, 448, 8192, 18, 128, 837},
	{25, 480, 8192, 17, 32, 682},
	{26, 512, 8192, 16, 0, 605},
	{27, 576, 8192, 14, 128, 1233},
	{28, 640, 8192, 12, 512, 1548},
	{29, 704, 8192, 11, 448, 1393},
	{30, 768, 8192, 10, 512, 1394},
	{31, 896, 8192, 9, 128, 1552},
	{32, 1024, 8192, 8, 0, 1240},
	{33, 1152, 8192, 7, 128, 1241},
	{34, 1280, 8192, 6, 512, 1555},
	{35, 1408, 16384, 11, 896, 1400},
	{36, 1536, 8192, 5, 512, 1400},
	{37, 1792, 16384, 9, 256, 1557},
	{38, 2048, 8192, 4, 0, 1245},
	{39, 2304, 16384, 7, 256, 1246},
	{40, 2688, 8192, 3, 128, 1559},
	{41, 3072, 24576, 8, 0, 1247},
	{42, 3200, 16384, 5, 384, 622},
	{43, 3456, 24576, 7, 384, 883},
	{44, 4096, 8192, 2, 0, 1560},
	{45, 4864, 24576, 5, 256, 1665},
	{46, 5376, 16384, 3, 256, 1092},
	{47, 6144, 24576, 4, 0, 1248},
	{48, 6528, 32768, 5, 128, 623},
	{49, 6784, 40960, 6, 256, 436},
	{50, 6912, 49152, 7, 768, 337},
	{51, 8192, 8192, 1, 0, 1561},
	{52, 9472, 57344, 6, 512, 1428},
	{53, 9728, 49152, 5, 512, 364},
	{54, 10240, 40960, 4, 0, 499},
	{55, 10880, 32768, 3, 128, 624},
	{56, 12288, 24576, 2, 0, 1145},
	{57, 13568, 40960, 3, 256, 999},
	{58, 14336, 57344, 4, 0, 535},
	{59, 16384, 16384, 1, 0, 1249},
	{60, 18432, 73728, 4, 0, 1111},
	{61, 19072, 57344, 3, 128, 357},
	{62, 20480, 40960, 2, 0, 687},
	{63, 21760, 65536, 3, 256, 625},
	{64, 24576, 24576, 1, 0, 1145},
	{65, 27264, 81920, 3, 128, 1000},
	{66, 28672, 57344, 2, 0, 491},
	{67, 32768, 32768, 1, 0, 1250},
	/* ours after Go's (scripts/mksizeclasses: EXTRA): one object a span */
	{68, 40960, 40960, 1, 0, 2000},
	{69, 49152, 49152, 1, 0, 1666},
	{70, 57344, 57344, 1, 0, 1428},
	{71, 65536, 65536, 1, 0, 1250},
};
/* clang-format on */
#define NROWS (sizeof go_table / sizeof go_table[0])

START_TEST(table_equals_go)
{
	ck_assert_int_eq(_GoNumSizeClasses, 68);
	ck_assert_int_eq(_NumSizeClasses, 72);
	ck_assert_int_eq(KMALLOC_NUM_CLASSES, _NumSizeClasses);
	ck_assert_int_eq(NROWS, 71);
	ck_assert_int_eq(class_to_size[0], 0);
	ck_assert_int_eq(class_to_allocnpages[0], 0);
	unsigned prev = 0;
	for (unsigned i = 0; i < NROWS; i++) {
		unsigned c = go_table[i].cls;
		ck_assert_uint_eq(c, i + 1);
		ck_assert_uint_eq(class_to_size[c], go_table[i].size);
		unsigned span = class_to_allocnpages[c] * 8192u;
		ck_assert_uint_eq(span, go_table[i].span);
		unsigned objs = span / class_to_size[c];
		ck_assert_uint_eq(objs, go_table[i].objs);
		ck_assert_uint_eq(span - objs * class_to_size[c], go_table[i].tail);
		/* max waste, rounded to hundredths of a percent */
		uint64_t num = ((uint64_t)(class_to_size[c] - prev - 1) * objs +
		                (span - objs * class_to_size[c])) * 1000000;
		uint64_t bp = (num / span + 50) / 100;
		ck_assert_uint_eq(bp, go_table[i].maxwaste);
		ck_assert_uint_eq(class_to_divmagic[c], (uint32_t)(0xffffffffu / class_to_size[c] + 1));
		prev = class_to_size[c];
	}
	ck_assert_int_eq(_MaxSmallSize, KMALLOC_MAX_SMALL);
	ck_assert_int_eq(class_to_size[_GoNumSizeClasses - 1], 32768);
	ck_assert_int_eq(class_to_size[_NumSizeClasses - 1], 65536);
	ck_assert_int_eq(_MaxObjsPerSpan, 1024);
}
END_TEST

START_TEST(lookup_every_size)
{
	ck_assert_uint_eq(size_to_class(0), 0);
	for (size_t n = 1; n <= _MaxSmallSize; n++) {
		/* smallest class that holds n and keeps the alignment promise
		 * of kmalloc.h (16 bytes from 16 bytes up) */
		unsigned want = 1;
		while (class_to_size[want] < n || (n > 16 && class_to_size[want] % 16 != 0))
			want++;
		ck_assert_msg(size_to_class(n) == want, "size %zu: class %u, want %u",
		              n, size_to_class(n), want);
	}
}
END_TEST

/* kmemalign's class for every size and alignment up to a heap page: the
 * smallest class from size's own whose size the alignment divides (so
 * every slot is aligned), or none (the large path). */
START_TEST(align_class_every_size)
{
	for (size_t n = 0; n <= _MaxSmallSize; n++) {
		unsigned from = size_to_class(n ? n : 1);
		for (unsigned k = 0; k < alignClassShifts; k++) {
			unsigned want = from;
			while (want < _NumSizeClasses && class_to_size[want] % (16u << k) != 0)
				want++;
			if (want == _NumSizeClasses)
				want = 0;
			ck_assert_msg(class_align_up[from][k] == want,
			              "size %zu align %u: class %u, want %u", n, 16u << k,
			              class_align_up[from][k], want);
			if (want != 0)
				ck_assert_uint_ge(class_to_size[want], n);
		}
	}
}
END_TEST

START_TEST(divmul_every_slot)
{
	for (unsigned c = 1; c < _NumSizeClasses; c++) {
		unsigned size = class_to_size[c];
		uintptr_t span = (uintptr_t)class_to_allocnpages[c] * 8192;
		for (uintptr_t off = 0; off <= span; off++)
			ck_assert_msg(obj_index(class_to_divmagic[c], off) == off / size,
			              "class %u off %lu", c, (unsigned long)off);
	}
}
END_TEST

/* kfree decides "slot start or invalid free" with slot_exact alone (plus
 * the bound off < nbytes), so a false positive would accept an interior
 * pointer and a false negative would reject a real object: check every
 * offset a span can produce, one past its end included. */
START_TEST(slot_exact_every_offset)
{
	for (unsigned c = 1; c < _NumSizeClasses; c++) {
		size_t size = class_to_size[c];
		uint64_t M = slot_magic(size);
		uintptr_t span = (uintptr_t)class_to_allocnpages[c] * 8192;
		unsigned starts = 0;
		for (uintptr_t off = 0; off <= span; off++) {
			bool want = off % size == 0;
			if (slot_exact(M, off) != want)
				ck_abort_msg("class %u (size %zu) off %lu: slot_exact says %d",
				             c, size, (unsigned long)off, !want);
			starts += want;
		}
		/* every slot start, and the span end when it is one */
		ck_assert_uint_eq(starts, span / size + 1);
	}
}
END_TEST

/* The magic is ceil(2^64 / size): for powers of two exactly 2^64 / size,
 * so an offset is exact iff its low bits are clear. */
START_TEST(slot_magic_values)
{
	for (unsigned c = 1; c < _NumSizeClasses; c++) {
		uint64_t size = class_to_size[c], M = slot_magic(size);
		/* M * size wraps to a value below size: M is the ceiling */
		ck_assert_uint_lt(M * size, size);
		ck_assert((unsigned __int128)M * size >= ((unsigned __int128)1 << 64));
		ck_assert((unsigned __int128)(M - 1) * size < ((unsigned __int128)1 << 64));
	}
	ck_assert_uint_eq(slot_magic(8), (uint64_t)1 << 61);
	ck_assert_uint_eq(slot_magic(32768), (uint64_t)1 << 49);
}
END_TEST

static char *slurp(FILE *f, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	size_t r;
	while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap)
			buf = realloc(buf, cap *= 2);
	}
	*len = n;
	return buf;
}

START_TEST(generator_matches_header)
{
	FILE *g = popen("python3 scripts/mksizeclasses", "r");
	ck_assert_ptr_nonnull(g);
	size_t glen, hlen;
	char *gen = slurp(g, &glen);
	ck_assert_int_eq(pclose(g), 0);
	FILE *h = fopen("mm/sizeclasses.h", "r");
	ck_assert_ptr_nonnull(h);
	char *hdr = slurp(h, &hlen);
	fclose(h);
	ck_assert_msg(glen == hlen && memcmp(gen, hdr, glen) == 0,
	              "mm/sizeclasses.h is stale: run `make sizeclasses`");
	free(gen);
	free(hdr);
}
END_TEST

START_TEST(generator_print_is_go_table)
{
	FILE *g = popen("python3 scripts/mksizeclasses --print", "r");
	ck_assert_ptr_nonnull(g);
	char line[256];
	ck_assert_ptr_nonnull(fgets(line, sizeof line, g));
	ck_assert_str_eq(line, "class bytes/obj bytes/span objects tail-waste max-waste\n");
	for (unsigned i = 0; i < NROWS; i++) {
		char want[128];
		ck_assert_ptr_nonnull(fgets(line, sizeof line, g));
		snprintf(want, sizeof want, "%u %u %u %u %u %u.%02u%%\n", go_table[i].cls,
		         go_table[i].size, go_table[i].span, go_table[i].objs,
		         go_table[i].tail, go_table[i].maxwaste / 100, go_table[i].maxwaste % 100);
		ck_assert_str_eq(line, want);
	}
	ck_assert_ptr_null(fgets(line, sizeof line, g));
	ck_assert_int_eq(pclose(g), 0);
}
END_TEST

/* clang-format off */
CHECK_MAIN("sizeclasses", 60,
	   CHECK_TEST(table_equals_go),
	   CHECK_TEST(lookup_every_size),
	   CHECK_TEST(align_class_every_size),
	   CHECK_TEST(divmul_every_slot),
	   CHECK_TEST(slot_exact_every_offset),
	   CHECK_TEST(slot_magic_values),
	   CHECK_TEST(generator_matches_header),
	   CHECK_TEST(generator_print_is_go_table))
/* clang-format on */
