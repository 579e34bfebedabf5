/*
 * fuzz_kmalloc.c: libFuzzer harness for the allocator core (mm/ plus the
 * host port), built with clang, ASan and UBSan by tests/fuzz.mk.
 *
 * Each input is a program: a sequence of operations decoded byte by byte
 * (format below), executed against kmalloc.h and checked against a shadow
 * model. The shadow remembers, per slot, the pointer, the requested size,
 * the alignment asked for and a fill byte; every live object is filled
 * with its byte, so any overlap between two objects, any write by the
 * allocator into a live object and any lost realloc content shows up when
 * the object is checked (on every free/realloc and at the end of the
 * input). Every result is also checked for what the API promises:
 * alignment, ksize >= size, zeroed memory for kzalloc/kcalloc, NULL only
 * for sizes no heap can hold, and NULL (not a crash) for bad alignments.
 *
 * "Thread switches": the operations run on one of three real threads,
 * one at a time (a synchronous hand-off), so objects are freed and
 * reallocated by threads other than the one that allocated them (the
 * remote-free path) and each thread has its own mcache. The decoded
 * program stays deterministic because only one thread runs at a time.
 *
 * At the end of every input all objects are checked and freed, each
 * thread flushes its mcache, and the heap must account for zero live
 * objects (kmalloc_stats) and pass the whole-heap validator mheap_valid.
 *
 * Input format, repeated until the input runs out:
 *   op byte: low 3 bits = operation, high 5 bits = slot (0..31)
 *   0 malloc   size(2)          1 free
 *   2 realloc  size(2)          3 memalign  align(1) size(2)
 *   4 zalloc   size(2)          5 calloc    n(1) size(2)
 *   6 trim (every 4th: kmalloc_trim, else kmalloc_flush_cpu)
 *   7 switch to thread (slot % 3)
 * size(2): a 16-bit value v mapped to small (< 1 KiB), medium (< 32 KiB),
 * large (< 1 MiB) or absurd (> the arena) sizes by its top 2 bits.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kmalloc.h"

#define SLOTS 32
#define THREADS 3
#define LIVE_LIMIT ((size_t)256 << 20) /* keep ASan's RSS bounded */

struct shadow {
	unsigned char *p;
	size_t size;
	size_t align;
	unsigned char fill;
};

static struct shadow slot[SLOTS];
static size_t live_bytes;

static void fail(const char *what, const void *p, size_t a, size_t b)
{
	fprintf(stderr, "fuzz_kmalloc: %s: %p (%zu, %zu)\n", what, p, a, b);
	abort();
}

static size_t decode_size(const uint8_t **d, const uint8_t *end)
{
	unsigned v = 0;
	for (int i = 0; i < 2; i++)
		v = v << 8 | (*d < end ? *(*d)++ : 0);
	switch (v >> 14) {
	case 0: return v & 1023;                       /* 0 .. 1023 */
	case 1: return (v & 16383) * 2;                /* .. 32 KiB */
	case 2: return (size_t)(v & 16383) * 64;       /* .. 1 MiB */
	default:                                       /* no arena holds it */
		return SIZE_MAX - (v & 16383) * 4096;
	}
}

/* The byte loops over object contents are checks, not program logic to
 * explore: without coverage instrumentation they run ~20x faster. */
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))

/* Index of the first byte of p[0..n) that is not v, or n. */
NO_COVERAGE static size_t first_not(const unsigned char *p, size_t n, unsigned char v)
{
	size_t i = 0;
	uint64_t w = 0x0101010101010101ull * v;
	for (; i + 8 <= n; i += 8) {
		uint64_t x;
		memcpy(&x, p + i, 8);
		if (x != w)
			break;
	}
	for (; i < n; i++)
		if (p[i] != v)
			break;
	return i;
}

static int absurd(size_t size)
{
	return size > ((size_t)1 << 48);
}

static void check_fill(const struct shadow *s)
{
	size_t i = first_not(s->p, s->size, s->fill);
	if (i != s->size)
		fail("object contents changed", s->p + i, i, s->size);
}

static void check_new(unsigned char *p, size_t size, size_t align, int zero)
{
	if (((uintptr_t)p & (align - 1)) != 0)
		fail("misaligned result", p, align, size);
	if (size >= 16 && ((uintptr_t)p & 15) != 0 && size % 16 == 0)
		fail("16-byte object not 16-byte aligned", p, size, 0);
	size_t ks = ksize(p);
	if (ks < size)
		fail("ksize below requested size", p, ks, size);
	size_t i;
	if (zero && (i = first_not(p, size, 0)) != size)
		fail("zeroed allocation not zero", p + i, i, size);
}

static void slot_drop(struct shadow *s)
{
	if (s->p == NULL)
		return;
	check_fill(s);
	kfree(s->p);
	live_bytes -= s->size;
	s->p = NULL;
}

static void slot_set(struct shadow *s, unsigned char *p, size_t size, size_t align,
                     unsigned char fill)
{
	s->p = p;
	s->size = size;
	s->align = align;
	s->fill = fill;
	live_bytes += size;
	memset(p, fill, size);
}

/* Run one decoded operation; `d` points past the op byte. */
static void run_op(unsigned op, unsigned k, const uint8_t **d, const uint8_t *end,
                   unsigned *switch_to)
{
	struct shadow *s = &slot[k];
	unsigned char fill = (unsigned char)(k * 37 + 11 + (uintptr_t)*d);
	size_t size, align, n;
	unsigned char *p;

	switch (op) {
	case 0: /* malloc */
	case 4: /* zalloc */
		size = decode_size(d, end);
		slot_drop(s);
		if (!absurd(size) && live_bytes + size > LIVE_LIMIT)
			return;
		p = op == 0 ? kmalloc(size, 0) : kzalloc(size, 0);
		if (p == NULL) {
			if (!absurd(size))
				fail("allocation failed", NULL, size, 0);
			return;
		}
		if (absurd(size))
			fail("absurd size allocated", p, size, 0);
		check_new(p, size, 1, op == 4);
		slot_set(s, p, size, 1, fill);
		return;
	case 1:
		slot_drop(s);
		return;
	case 2: /* realloc */
		size = decode_size(d, end);
		if (!absurd(size) && live_bytes + size > LIVE_LIMIT)
			return;
		p = krealloc(s->p, size, 0);
		if (p == NULL) {
			if (!absurd(size))
				fail("realloc failed", s->p, size, 0);
			if (s->p != NULL)
				check_fill(s); /* untouched on failure */
			return;
		}
		if (absurd(size))
			fail("absurd realloc succeeded", p, size, 0);
		if (s->p != NULL) {
			size_t keep = s->size < size ? s->size : size;
			size_t i = first_not(p, keep, s->fill);
			if (i != keep)
				fail("realloc lost contents", p + i, i, keep);
			live_bytes -= s->size;
		}
		/* realloc keeps kmemalign's alignment only when it resizes in
		 * place; the shadow asks no more than 1 afterwards. */
		check_new(p, size, 1, 0);
		s->p = NULL;
		slot_set(s, p, size, 1, fill);
		return;
	case 3: /* memalign */
		align = *d < end ? *(*d)++ : 0;
		size = decode_size(d, end);
		slot_drop(s);
		if (!absurd(size) && live_bytes + size > LIVE_LIMIT)
			return;
		/* Low 5 bits: log2 of a power of two up to 1 MiB; 0x20 set: a
		 * non-power-of-two, which must give NULL. */
		if (align & 0x20)
			align = (align & 0x1f) * 2 + 3;
		else
			align = (size_t)1 << (align % 21);
		p = kmemalign(align, size, 0);
		if ((align & (align - 1)) != 0) {
			if (p != NULL)
				fail("non-power-of-two alignment accepted", p, align, size);
			return;
		}
		if (p == NULL) {
			if (!absurd(size))
				fail("kmemalign failed", NULL, align, size);
			return;
		}
		check_new(p, size, align, 0);
		slot_set(s, p, size, align, fill);
		return;
	case 5: /* calloc */
		n = *d < end ? *(*d)++ : 0;
		size = decode_size(d, end);
		slot_drop(s);
		{
			size_t total;
			int ovf = __builtin_mul_overflow(n, size, &total);
			if (!ovf && !absurd(total) && live_bytes + total > LIVE_LIMIT)
				return;
			p = kcalloc(n, size, 0);
			if (p == NULL) {
				if (!ovf && !absurd(total))
					fail("kcalloc failed", NULL, n, size);
				return;
			}
			if (ovf || absurd(total))
				fail("overflowing kcalloc succeeded", p, n, size);
			check_new(p, total, 1, 1);
			slot_set(s, p, total, 1, fill);
		}
		return;
	case 6:
		if (k % 4 == 0)
			kmalloc_trim();
		else
			kmalloc_flush_cpu();
		return;
	case 7:
		*switch_to = k % THREADS;
		return;
	}
}

/* ---- threads taking turns ----
 * Thread 0 is libFuzzer's; workers 1..THREADS-1 wait for their turn. The
 * thread whose turn it is runs ops until one switches away (it sets
 * `turn` and waits) or the program ends (turn goes back to 0 with
 * `ended`). A worker given the turn with `flush_req` flushes its mcache
 * instead. */

static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cond = PTHREAD_COND_INITIALIZER;
static unsigned turn;      /* turn_lock */
static int ended;          /* turn_lock: the program ran out */
static int flush_req;      /* turn_lock */
static const uint8_t *prog, *prog_end; /* owned by whoever has the turn */

static void give_turn(unsigned next)
{
	pthread_mutex_lock(&turn_lock);
	turn = next;
	pthread_cond_broadcast(&turn_cond);
	pthread_mutex_unlock(&turn_lock);
}

static void wait_turn(unsigned me)
{
	pthread_mutex_lock(&turn_lock);
	while (turn != me)
		pthread_cond_wait(&turn_cond, &turn_lock);
	pthread_mutex_unlock(&turn_lock);
}

/* Run ops as thread `me` until the program ends (returns) or switches to
 * another thread (hands over, waits for the turn to come back, goes on). */
static void run_as(unsigned me)
{
	static int trace = -1;
	if (trace < 0)
		trace = getenv("FUZZ_TRACE") != NULL;
	while (prog < prog_end) {
		uint8_t b = *prog++;
		unsigned next = me;
		run_op(b & 7, (unsigned)(b >> 3) % SLOTS, &prog, prog_end, &next);
		if (trace) /* FUZZ_TRACE=1: the decoded program, op by op */
			fprintf(stderr, "thread %u: op %u slot %u -> %p size %zu\n", me,
			        b & 7, (unsigned)(b >> 3) % SLOTS,
			        (void *)slot[(b >> 3) % SLOTS].p, slot[(b >> 3) % SLOTS].size);
		if (next != me) {
			give_turn(next);
			wait_turn(me);
			pthread_mutex_lock(&turn_lock);
			int done = ended || flush_req;
			pthread_mutex_unlock(&turn_lock);
			if (done)
				return;
		}
	}
	pthread_mutex_lock(&turn_lock);
	ended = 1;
	pthread_mutex_unlock(&turn_lock);
}

static void *worker_main(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	for (;;) {
		wait_turn(me);
		pthread_mutex_lock(&turn_lock);
		int flush = flush_req, done = ended;
		pthread_mutex_unlock(&turn_lock);
		if (!flush && !done) {
			/* returns when the program ends or, if this thread had
			 * switched away, when it is woken to flush */
			run_as(me);
			pthread_mutex_lock(&turn_lock);
			flush = flush_req;
			pthread_mutex_unlock(&turn_lock);
		}
		if (flush)
			kmalloc_flush_cpu();
		pthread_mutex_lock(&turn_lock);
		flush_req = 0;
		pthread_mutex_unlock(&turn_lock);
		give_turn(0);
	}
	return NULL;
}

static void start_workers(void)
{
	static int started;
	if (started)
		return;
	started = 1;
	for (uintptr_t i = 1; i < THREADS; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, worker_main, (void *)i) != 0)
			fail("pthread_create", NULL, i, 0);
		pthread_detach(t);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct kmalloc_stats st;

	start_workers();
	prog = data;
	prog_end = data + len;
	ended = 0;
	run_as(0);

	/* every object intact, then freed (by thread 0: some remote frees) */
	for (unsigned k = 0; k < SLOTS; k++)
		slot_drop(&slot[k]);
	if (live_bytes != 0)
		fail("shadow accounting", NULL, live_bytes, 0);

	/* every cache flushed: the heap must hold no live object */
	for (unsigned t = 1; t < THREADS; t++) {
		pthread_mutex_lock(&turn_lock);
		flush_req = 1;
		pthread_mutex_unlock(&turn_lock);
		give_turn(t);
		wait_turn(0);
	}
	kmalloc_flush_cpu();
	kmalloc_stats(&st);
	for (unsigned c = 1; c < KMALLOC_NUM_CLASSES; c++)
		if (st.cls[c].live != 0)
			fail("objects still live after freeing all", NULL, c, st.cls[c].live);
	if (st.large_live != 0)
		fail("large objects still live after freeing all", NULL, st.large_live, 0);
	if (!mheap_valid())
		fail("mheap_valid", NULL, 0, 0);
	return 0;
}
