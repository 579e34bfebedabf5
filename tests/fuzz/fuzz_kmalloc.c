/*
 * fuzz_kmalloc.c: libFuzzer harness for the allocator core (mm/ plus the
 * host port), built with clang, ASan and UBSan by tests/fuzz.mk.
 *
 * Each input is a program: a sequence of operations decoded byte by byte
 * (format below), executed against kmalloc.h and checked against a shadow
 * model. The shadow remembers, per slot, the pointer, the requested size,
 * the alignment asked for, a fill byte and a sampling seed. An object's
 * fill covers its first and last 64 bytes and SAMPLE_WORDS words at
 * seed-chosen offsets (every byte in thorough mode), so an overlap
 * between two objects, a write by the allocator into a live object or
 * lost realloc content shows up when the object is checked (on every
 * free/realloc and at the end of the input) at a cost that does not grow
 * with the object. Every result is also checked for what the API
 * promises: alignment, ksize >= size, zeroed memory for kzalloc/kcalloc
 * (at the same samples), NULL only for sizes no heap can hold, and NULL
 * (not a crash) for bad alignments.
 *
 * Misuse is fuzzed too: at most once per input (and outside thorough mode
 * once per MISUSE_EVERY inputs: a fork costs milliseconds), a forked child frees a
 * pointer the contract says is not the start of a live object (the same
 * object twice, an interior pointer, a pointer to its last word, or an
 * address outside the heap) and must die of SIGABRT after printing
 * exactly "kmalloc: double free: 0x<p>" or "kmalloc: invalid free: 0x<p>";
 * the parent checks both and goes on with its heap untouched.
 *
 * Cost per input (the CI run must reach >= 1000 inputs a second): live
 * bytes are bounded to LIVE_LIMIT_FAST (4 MiB) with objects up to 256 KiB
 * and a rare 1-3 MiB one (kcalloc, which zeroes all of it, up to 1 MiB); the whole-heap validator (mheap_valid) runs every
 * VALIDATE_EVERY inputs and at exit, and at most one misuse child forks
 * per MISUSE_EVERY inputs. FUZZ_THOROUGH=1 in the environment
 * (make fuzz FUZZ_THOROUGH=1, for nightly runs) restores the slow checks:
 * 256 MiB of live bytes, every byte filled and checked, the validator
 * after every input.
 *
 * "Thread switches": the operations run on one of three real threads,
 * one at a time (a synchronous hand-off), so objects are freed and
 * reallocated by threads other than the one that allocated them (the
 * remote-free path) and each thread has its own mcache. The decoded
 * program stays deterministic because only one thread runs at a time.
 *
 * At the end of every input all objects are checked and freed; every
 * VALIDATE_EVERY inputs each thread also flushes its mcache and the heap
 * must account for zero live objects (kmalloc_stats).
 *
 * Input format, repeated until the input runs out:
 *   op byte: low 3 bits = operation, high 5 bits = slot (0..31)
 *   0 malloc   size(2) (one in 32 of up to 4 KiB: a guarded sample)
 *   1 free
 *   2 realloc  size(2)          3 memalign  align(1) size(2)
 *   4 zalloc   size(2)          5 calloc    n(1) size(2)
 *   6 slot % 8 == 0: kmalloc_trim; == 5: misuse, kind slot / 8 (double,
 *     interior, last word, outside the heap; for a typed cache's object
 *     the last kind frees it to another cache: "wrong cache") on the
 *     object in slot byte(1) % 32; == 3: let time pass (the fake clock
 *     moves (slot / 8 + 1) * 300 ms, then background steps until none is
 *     due and a safe point: caches age, aged pages go back, meshing's
 *     paced step runs); == 4: kmalloc_mesh (the heap is a meshing one:
 *     KMALLOC_MESH=1 is set before it exists; every object is checked at
 *     the input's end); == 6: typed
 *     cache alloc, byte(1): slot (low 5 bits), cache (next 2 bits mod
 *     NCACHES), KM_ZERO (top bit); == 7: typed cache life, byte(1): cache
 *     (mod NCACHES), then shrink it (bit 2 clear) or, when no slot holds
 *     one of its objects, destroy it and create it again with a size and
 *     flags from byte(1); else kmalloc_flush_cpu
 * A create may return NULL: a destroyed cache's class is reused only once
 * every thread that used it drained, and the worker threads here drain
 * only when told to (every VALIDATE_EVERY inputs); until then that cache
 * is absent and its ops are skipped. After the workers flushed, every
 * absent cache must be created again.
 * A slot's typed cache object is freed with kmem_cache_free, or kfree
 * when its seed is odd (both must work).
 *   7 switch to thread (slot % 3)
 * size(2): a 16-bit value v mapped to small (< 1 KiB), medium (< 32 KiB),
 * large (< 256 KiB; 1 in 256 of them 1-3 MiB) or absurd (> the arena) sizes
 * by its top 2 bits.
 */
#define _GNU_SOURCE /* setenv under -std=c11 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "kmalloc.h"
#include "../lib/child_util.h"

/* The byte loops over object contents are checks, not program logic to
 * explore: without coverage instrumentation they run ~20x faster. */
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))
#define FILL_ATTR   NO_COVERAGE
#include "../lib/fill.h"

#define SLOTS 32
#define THREADS 3
#define LIVE_LIMIT_FAST ((size_t)4 << 20)
#define LIVE_LIMIT_THOROUGH ((size_t)256 << 20) /* keep ASan's RSS bounded */
#define CALLOC_LIMIT_FAST ((size_t)1 << 20) /* kcalloc zeroes it all */
#define EDGE 64          /* bytes filled and checked at each end */
#define SAMPLE_WORDS 4   /* 8-byte words at seed-chosen offsets */
#define VALIDATE_EVERY 256

struct shadow {
	unsigned char *p;
	size_t size;
	size_t align;
	unsigned char fill;
	uint64_t seed;   /* chooses the sampled offsets */
	int cache;       /* index in caches[] of its typed cache, or -1 */
};

/* Typed caches the programs allocate from; an op may destroy one and
 * create it anew with another size (no constructor: the shadow fills
 * every object, so nothing would stay constructed). */
#define NCACHES 3
static struct kmem_cache *caches[NCACHES];
static size_t cache_size[NCACHES];

static struct shadow slot[SLOTS];
static size_t live_bytes;
static int thorough;          /* FUZZ_THOROUGH=1: every byte, every input */
static size_t live_limit = LIVE_LIMIT_FAST;
static int misuse_done;       /* this input already forked its misuse child */
static unsigned long inputs;  /* inputs run so far */
/* A fork costs ~8 ms under ASan: outside thorough mode, at most one
 * misuse child per MISUSE_EVERY inputs (the others skip their misuse op). */
#define MISUSE_EVERY 64
static unsigned long last_misuse = (unsigned long)-MISUSE_EVERY;

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
	case 2:                                        /* .. 256 KiB, rarely 1-3 MiB */
		if ((v & 255) == 255)
			return ((size_t)1 << 20) + (size_t)(v >> 8 & 63) * 32768;
		return (size_t)(v & 16383) * 16;
	default:                                       /* no arena holds it */
		return SIZE_MAX - (v & 16383) * 4096;
	}
}

static int absurd(size_t size)
{
	return size > ((size_t)1 << 48);
}

/* ---- sampled contents ----
 * The bytes of an object that carry its fill: [0, EDGE), [size - EDGE,
 * size) and SAMPLE_WORDS words at offsets hashed from the seed; in
 * thorough mode all of them. Both fill and checks go through here. */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

/* Calls fn(p + off, n) for each sampled range of an object of `size`
 * bytes, clipped to `limit` bytes (realloc keeps only a prefix). */
#define FOR_SAMPLES(size, limit, seed, off, n, body)                          \
	do {                                                                  \
		size_t lim_ = (limit) < (size) ? (limit) : (size);            \
		if (thorough || (size) <= 2 * EDGE) {                         \
			off = 0; n = lim_; body;                              \
			break;                                                \
		}                                                             \
		off = 0; n = EDGE < lim_ ? EDGE : lim_; body;                 \
		if ((size) - EDGE < lim_) {                                   \
			off = (size) - EDGE; n = lim_ - off; body;            \
		}                                                             \
		for (unsigned w_ = 0; w_ < SAMPLE_WORDS; w_++) {              \
			off = (size_t)(mix((seed) + w_) % ((size) / 8)) * 8;  \
			if (off + 8 <= lim_) { n = 8; body; }                 \
		}                                                             \
	} while (0)

static void fill_obj(unsigned char *p, size_t size, unsigned char v, uint64_t seed)
{
	size_t off, n;
	FOR_SAMPLES(size, size, seed, off, n, memset(p + off, v, n));
}

/* Offset of the first sampled byte of p (of an object of `size` bytes,
 * the first `limit` of them) that is not v, or SIZE_MAX. */
static size_t check_obj(const unsigned char *p, size_t size, size_t limit, unsigned char v,
                        uint64_t seed)
{
	size_t off, n, i;
	FOR_SAMPLES(size, limit, seed, off, n,
	            if ((i = check_bytes(p + off, n, v)) != SIZE_MAX) return off + i);
	return SIZE_MAX;
}

static void check_fill(const struct shadow *s)
{
	size_t i = check_obj(s->p, s->size, s->size, s->fill, s->seed);
	if (i != SIZE_MAX)
		fail("object contents changed", s->p + i, i, s->size);
}

static void check_new(unsigned char *p, size_t size, size_t align, int zero, uint64_t seed)
{
	if (((uintptr_t)p & (align - 1)) != 0)
		fail("misaligned result", p, align, size);
	if (size >= 16 && ((uintptr_t)p & 15) != 0 && size % 16 == 0)
		fail("16-byte object not 16-byte aligned", p, size, 0);
	size_t ks = ksize(p);
	if (ks < size)
		fail("ksize below requested size", p, ks, size);
	size_t i;
	if (zero && (i = check_obj(p, size, size, 0, seed)) != SIZE_MAX)
		fail("zeroed allocation not zero", p + i, i, size);
}

static void slot_drop(struct shadow *s)
{
	if (s->p == NULL)
		return;
	check_fill(s);
	if (s->cache >= 0 && (s->seed & 1) == 0)
		kmem_cache_free(caches[s->cache], s->p);
	else
		kfree(s->p);
	live_bytes -= s->size;
	s->p = NULL;
	s->cache = -1;
}

static void slot_set(struct shadow *s, unsigned char *p, size_t size, size_t align,
                     unsigned char fill, uint64_t seed)
{
	s->p = p;
	s->size = size;
	s->align = align;
	s->fill = fill;
	s->seed = seed;
	s->cache = -1;
	live_bytes += size;
	fill_obj(p, size, fill, seed);
}

/* ---- typed caches ---- */

static void cache_make(unsigned c, unsigned v)
{
	static const size_t sizes[] = { 8, 24, 40, 72, 200, 1000, 4000, 9000, 32768 };
	cache_size[c] = sizes[v % 9] + (v / 9 % 4) * 8;
	if (cache_size[c] > 32768)
		cache_size[c] = 32768;
	unsigned flags = (v >> 5 & 1 ? KMC_NOSCAN : 0) | (v >> 6 & 1 ? KMC_HWALIGN : 0);
	caches[c] = kmem_cache_create("fuzz", cache_size[c], 0, flags, NULL);
	if (caches[c] == NULL)
		return; /* every class of its kind retired (see the top) */
	struct kmem_cache_stats st;
	kmem_cache_stats(caches[c], &st);
	if (st.objsize < cache_size[c] ||
	    st.objsize > cache_size[c] + (flags & KMC_HWALIGN ? 63 : 15))
		fail("typed cache object size", NULL, st.objsize, cache_size[c]);
}

static void cache_alloc(unsigned v, uint64_t seed, unsigned char fill)
{
	struct shadow *s = &slot[v % SLOTS];
	unsigned c = (v >> 5) % NCACHES, zero = v >> 7;
	slot_drop(s);
	if (caches[c] == NULL || live_bytes + cache_size[c] > live_limit)
		return;
	unsigned char *p = kmem_cache_alloc(caches[c], zero ? KM_ZERO : 0);
	if (p == NULL)
		fail("kmem_cache_alloc failed", NULL, cache_size[c], 0);
	if (ksize(p) < cache_size[c] || ksize(p) > cache_size[c] + 63)
		fail("typed cache object's ksize", p, ksize(p), cache_size[c]);
	check_new(p, cache_size[c], cache_size[c] % 16 == 0 ? 16 : 8, zero, seed);
	slot_set(s, p, cache_size[c], 1, fill, seed);
	s->cache = (int)c;
}

static void cache_life(unsigned v)
{
	unsigned c = v % NCACHES;
	if (caches[c] == NULL) {
		cache_make(c, v >> 3);
		return;
	}
	if ((v & 4) == 0) {
		(void)kmem_cache_shrink(caches[c]);
		return;
	}
	for (unsigned k = 0; k < SLOTS; k++)
		if (slot[k].p != NULL && slot[k].cache == (int)c)
			return; /* live objects: destroy would refuse (and print them) */
	if (kmem_cache_destroy(caches[c]) != 0)
		fail("kmem_cache_destroy of an empty cache failed", NULL, c, 0);
	cache_make(c, v >> 3);
}

/* ---- misuse in a forked child ---- */

static const char *const misuse_names[] = { "double free", "interior pointer", "last word",
                                            "outside the heap" };

struct bad_free {
	const void *first, *bad;
};

static struct kmem_cache *bad_cache; /* set: free `bad` to this cache */

static void do_bad_free(void *arg)
{
	const struct bad_free *b = arg;
	if (b->first != NULL)
		kfree(b->first);
	if (bad_cache != NULL)
		kmem_cache_free(bad_cache, (void *)b->bad);
	else
		kfree(b->bad);
}

/* Free `bad` in a child (after freeing `first`, if not NULL) and expect
 * it to die of SIGABRT having printed exactly "kmalloc: <fault>: 0x<bad>"
 * (run_in_child restores SIGABRT's default in the child: libFuzzer's
 * handler would report a crash and save the input). */
static void expect_fault(const void *first, const void *bad, const char *fault, const char *what)
{
	struct bad_free b = { first, bad };
	static struct child_result r; /* 9 KiB; one operation thread runs at a time */
	run_in_child(do_bad_free, &b, &r);
	const char *m = misuse_mismatch(&r, fault, bad);
	if (m != NULL) {
		fprintf(stderr, "fuzz_kmalloc: misuse (%s): %s\n", what, m);
		abort();
	}
}

static void misuse(unsigned kind, struct shadow *s)
{
	static char not_heap[64];
	if (misuse_done || (!thorough && inputs - last_misuse < MISUSE_EVERY))
		return;
	if (kind < 3 && s->p == NULL)
		return;
	misuse_done = 1;
	last_misuse = inputs;
	switch (kind) {
	case 0: /* the same live object freed twice in a row */
		expect_fault(s->p, s->p, "double free", misuse_names[kind]);
		return;
	case 1: /* a pointer inside a live object */
		if (s->size < 2)
			return;
		expect_fault(NULL, s->p + 1 + s->seed % (s->size - 1), "invalid free", misuse_names[kind]);
		return;
	case 2: /* its last 8-byte word (the tail a size class rounds up to) */
		if (ksize(s->p) < 16)
			return;
		expect_fault(NULL, s->p + ((ksize(s->p) - 8) & ~(size_t)7), "invalid free", misuse_names[kind]);
		return;
	default: /* memory the heap never handed out; or, for a typed
	          * cache's object, freed to another cache */
		if (s->p != NULL && s->cache >= 0 && caches[(s->cache + 1) % NCACHES] != NULL) {
			bad_cache = caches[(s->cache + 1) % NCACHES];
			expect_fault(NULL, s->p, "wrong cache", "wrong cache");
			bad_cache = NULL;
			return;
		}
		expect_fault(NULL, not_heap + 16, "invalid free", misuse_names[kind]);
		return;
	}
}

/* The heap's clock (sys_config.now_ns), moved only by let_time_pass, so
 * an input replays the same way whatever the machine's speed. */
static uint64_t fake_ns = 1;
static uint64_t fake_now(void) { return __atomic_load_n(&fake_ns, __ATOMIC_RELAXED); }

/* Time passes with the program idle: the steps a background thread
 * would take (releasing aged pages, aging the shared caches), then this
 * thread's safe point (its own caches). Live objects must come through
 * unchanged: the shadow checks at the end of the input see to that. */
static void let_time_pass(uint64_t ms)
{
	__atomic_add_fetch(&fake_ns, ms * 1000000, __ATOMIC_RELAXED);
	for (int i = 0; i < 4096; i++) {
		__atomic_add_fetch(&fake_ns, 1000000, __ATOMIC_RELAXED);
		if (kmalloc_background() >= 100 * (uint64_t)1000000)
			break;
	}
	kmalloc_safepoint();
	/* this thread reaches no safe point regularly: a drain (another
	 * thread's trim) must not wait for it while it waits for its turn */
	kmalloc_cpu_idle();
	if (thorough && !mheap_valid())
		fail("mheap_valid failed after time passed", NULL, 0, 0);
}

/* Run one decoded operation; `d` points past the op byte. */
static void run_op(unsigned op, unsigned k, const uint8_t **d, const uint8_t *end,
                   unsigned *switch_to)
{
	struct shadow *s = &slot[k];
	unsigned char fill = (unsigned char)(k * 37 + 11 + (uintptr_t)*d);
	uint64_t seed = mix((uintptr_t)*d * 0x9e3779b97f4a7c15ull + k);
	size_t size, align, n;
	unsigned char *p;

	switch (op) {
	case 0: /* malloc */
	case 4: /* zalloc */
		size = decode_size(d, end);
		slot_drop(s);
		if (!absurd(size) && live_bytes + size > live_limit)
			return;
		/* one in 32 small ones a guarded sample (mm/mkfence.c): the
		 * same checks, misuse and lifetimes apply to it */
		if ((seed & 31) == 0 && size != 0 && size <= 4096)
			kfence_sample_next();
		p = op == 0 ? kmalloc(size, 0) : kzalloc(size, 0);
		if (p == NULL) {
			if (!absurd(size))
				fail("allocation failed", NULL, size, 0);
			return;
		}
		if (absurd(size))
			fail("absurd size allocated", p, size, 0);
		check_new(p, size, 1, op == 4, seed);
		slot_set(s, p, size, 1, fill, seed);
		return;
	case 1:
		slot_drop(s);
		return;
	case 2: /* realloc */
		size = decode_size(d, end);
		if (!absurd(size) && live_bytes + size > live_limit)
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
			size_t i = check_obj(p, s->size, size, s->fill, s->seed);
			if (i != SIZE_MAX)
				fail("realloc lost contents", p + i, i, s->size < size ? s->size : size);
			live_bytes -= s->size;
		}
		/* realloc keeps kmemalign's alignment only when it resizes in
		 * place; the shadow asks no more than 1 afterwards. */
		check_new(p, size, 1, 0, seed);
		{
			/* in place, a typed cache's object stays one */
			int cache = p == s->p ? s->cache : -1;
			s->p = NULL;
			slot_set(s, p, size, 1, fill, seed);
			s->cache = cache;
		}
		return;
	case 3: /* memalign */
		align = *d < end ? *(*d)++ : 0;
		size = decode_size(d, end);
		slot_drop(s);
		if (!absurd(size) && live_bytes + size > live_limit)
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
		check_new(p, size, align, 0, seed);
		slot_set(s, p, size, align, fill, seed);
		return;
	case 5: /* calloc */
		n = *d < end ? *(*d)++ : 0;
		size = decode_size(d, end);
		slot_drop(s);
		{
			size_t total;
			int ovf = __builtin_mul_overflow(n, size, &total);
			if (!ovf && !absurd(total) &&
			    (live_bytes + total > live_limit || (!thorough && total > CALLOC_LIMIT_FAST)))
				return;
			p = kcalloc(n, size, 0);
			if (p == NULL) {
				if (!ovf && !absurd(total))
					fail("kcalloc failed", NULL, n, size);
				return;
			}
			if (ovf || absurd(total))
				fail("overflowing kcalloc succeeded", p, n, size);
			check_new(p, total, 1, 1, seed);
			slot_set(s, p, total, 1, fill, seed);
		}
		return;
	case 6:
		if (k % 8 == 0)
			kmalloc_trim();
		else if (k % 8 == 5)
			misuse(k / 8, &slot[(*d < end ? *(*d)++ : 0) % SLOTS]);
		else if (k % 8 == 3)
			let_time_pass((k / 8 + 1) * 300);
		else if (k % 8 == 4)
			kmalloc_mesh();
		else if (k % 8 == 6)
			cache_alloc(*d < end ? *(*d)++ : 0, seed, fill);
		else if (k % 8 == 7)
			cache_life(*d < end ? *(*d)++ : 0);
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
static unsigned turn;      /* written under turn_lock; read atomically */
static int ended;          /* turn_lock: the program ran out */
static int flush_req;      /* turn_lock */
static const uint8_t *prog, *prog_end; /* owned by whoever has the turn */

/* `turn` is written under turn_lock (so a sleeper cannot miss the
 * broadcast) but read without it while waiting a little first: a
 * hand-off then usually costs a few microseconds instead of a futex
 * sleep and wake-up, which made thread switches most of an input's time.
 * The wait yields rather than spins (three threads, two cores) and is
 * not coverage-instrumented (it is not what is being fuzzed). */
#define SPIN_TRIES 64
#define YIELD_TRIES 32

static void give_turn(unsigned next)
{
	pthread_mutex_lock(&turn_lock);
	__atomic_store_n(&turn, next, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&turn_cond);
	pthread_mutex_unlock(&turn_lock);
}

NO_COVERAGE static void wait_turn(unsigned me)
{
	for (int i = 0; i < SPIN_TRIES + YIELD_TRIES; i++) {
		if (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) == me)
			return;
		if (i < SPIN_TRIES)
			__builtin_ia32_pause();
		else
			sched_yield();
	}
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

static void validate_at_exit(void)
{
	if (!mheap_valid()) {
		fprintf(stderr, "fuzz_kmalloc: mheap_valid failed at exit\n");
		_exit(1);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *t = getenv("FUZZ_THOROUGH");
	thorough = t != NULL && *t != '\0' && strcmp(t, "0") != 0;
	live_limit = thorough ? LIVE_LIMIT_THOROUGH : LIVE_LIMIT_FAST;
	sys_config.now_ns = fake_now;       /* before the heap exists */
	sys_config.now_coarse_ns = NULL;    /* every reading from the fake clock */
	sys_config.start_background = NULL; /* let_time_pass steps instead */
	setenv("KMALLOC_MESH", "1", 1);     /* read by sys_reserve */
	atexit(validate_at_exit);
	for (unsigned k = 0; k < SLOTS; k++)
		slot[k].cache = -1;
	for (unsigned c = 0; c < NCACHES; c++) {
		cache_make(c, c * 3 + 1);
		if (caches[c] == NULL)
			fail("kmem_cache_create failed", NULL, c, 0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct kmalloc_stats st;

	start_workers();
	prog = data;
	prog_end = data + len;
	ended = 0;
	misuse_done = 0;
	run_as(0);

	/* every object intact, then freed (by thread 0: some remote frees) */
	for (unsigned k = 0; k < SLOTS; k++)
		slot_drop(&slot[k]);
	if (live_bytes != 0)
		fail("shadow accounting", NULL, live_bytes, 0);

	/* Every VALIDATE_EVERY inputs (every input when thorough): every
	 * cache flushed, the heap must hold no live object and pass the
	 * whole-heap validator. In between, the threads keep their cached
	 * spans from one input to the next, as a long-running program does.
	 * A failure here may come from any input since the last check:
	 * replay the crash input's neighbours with FUZZ_THOROUGH=1. */
	if (!thorough && ++inputs % VALIDATE_EVERY != 0)
		return 0;
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
	for (unsigned c = 0; c < NCACHES; c++) {
		struct kmem_cache_stats cst;
		if (caches[c] == NULL) {
			cache_make(c, c * 3 + 1); /* every thread flushed: a class is free */
			if (caches[c] == NULL)
				fail("kmem_cache_create failed after every thread flushed", NULL, c,
				     0);
		}
		kmem_cache_stats(caches[c], &cst);
		if (cst.active_objs != 0)
			fail("typed cache objects still live after freeing all", NULL, c,
			     cst.active_objs);
	}
	if (!mheap_valid())
		fail("mheap_valid", NULL, 0, 0);
	return 0;
}
