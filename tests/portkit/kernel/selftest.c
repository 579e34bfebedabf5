/*
 * selftest.c: what a kernel relies on from the library, checked through
 * its public header only (built with KMALLOC_PREFIX=gok_, so the calls
 * are gok_kmalloc etc., next to this kernel's old kmalloc).
 *
 * Each test prints "kit: <name> ok" or "kit: <name> FAILED: <line>: <what>";
 * then "kit: N passed, M failed". With no failure the run ends in a
 * deliberate double free, which must stop the kernel through sys_fault
 * with the one line "kmalloc: double free: <pointer>";
 * tests/portkit/boot-case checks those lines and QEMU's exit status.
 */
#include "kernel.h"
#include "kmalloc.h"
#include "x86.h"
/* The tests' one generator: header-only, <stdint.h> only, so freestanding. */
#include "../../lib/xorshift.h"

static int failed_line;
static const char *failed_what;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			failed_line = __LINE__;                                                    \
			failed_what = #cond;                                                       \
			return;                                                                    \
		}                                                                                  \
	} while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull; /* xorshift64 state */

/* Objects carry a pattern in their first and last 256 bytes (all of it
 * when smaller): enough to see overlap and corruption without filling
 * megabytes under emulation. Not tests/lib/fill.h: that one is for hosted
 * programs (<string.h>), and this kernel has no C library. */
static void fill(void *p, size_t n, uint8_t tag)
{
	size_t h = n < 512 ? n : 256;
	memset(p, tag, h);
	if (n > h)
		memset((uint8_t *)p + n - 256, tag, 256);
}

static int intact(const void *p, size_t n, uint8_t tag)
{
	const uint8_t *b = p;
	size_t h = n < 512 ? n : 256;
	for (size_t i = 0; i < h; i++)
		if (b[i] != tag || (n > h && b[n - 1 - i] != tag))
			return 0;
	return 1;
}

static int all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

static size_t frames_in_use_by_heap(void)
{
	return frames_total - frames_free - pt_frames;
}

/* Every size class up to 32 KiB, walked through the public API (the
 * next size asked for is one more than ksize gave), 8 objects each, all
 * live at once: sizes, alignment, no overlap. */
static void t_sizes(void)
{
	static void *p[KMALLOC_NUM_CLASSES][8];
	size_t sizes[KMALLOC_NUM_CLASSES];
	unsigned n = 0;
	size_t c = 0;
	for (size_t s = 1; s <= KMALLOC_MAX_SMALL; n++) {
		CHECK(n < KMALLOC_NUM_CLASSES);
		sizes[n] = s;
		for (unsigned j = 0; j < 8; j++) {
			p[n][j] = gok_kmalloc(s, 0);
			CHECK(p[n][j] != NULL);
			CHECK(gok_ksize(p[n][j]) == gok_ksize(p[n][0]));
			CHECK(s < 16 || (uintptr_t)p[n][j] % 16 == 0);
			CHECK((s & (s - 1)) != 0 || s > 8192 || (uintptr_t)p[n][j] % s == 0);
			fill(p[n][j], s, (uint8_t)(n * 8 + j));
		}
		c = gok_ksize(p[n][0]);
		CHECK(c >= s && c <= KMALLOC_MAX_SMALL);
		s = c + 1;
	}
	CHECK(n >= 32);
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = 0; j < 8; j++) {
			CHECK(intact(p[i][j], sizes[i], (uint8_t)(i * 8 + j)));
			gok_kfree(p[i][j]);
		}
	kprintf("kit: sizes: %u size classes, the largest %zu B\n", n, c);
}

/* kmalloc(0), krealloc, kmemalign, kcalloc, the NULL cases. */
static void t_api(void)
{
	void *z1 = gok_kmalloc(0, 0), *z2 = gok_kmalloc(0, 0);
	CHECK(z1 != NULL && z2 != NULL && z1 != z2); /* real, distinct objects */
	gok_kfree(z1);
	gok_kfree(z2);
	gok_kfree(NULL);
	CHECK(gok_ksize(NULL) == 0);

	uint8_t *r = gok_krealloc(NULL, 100, 0);
	CHECK(r != NULL);
	fill(r, 100, 0x11);
	r = gok_krealloc(r, 5000, 0);
	CHECK(r != NULL && intact(r, 100, 0x11));
	r = gok_krealloc(r, 300000, 0);
	CHECK(r != NULL && intact(r, 100, 0x11));
	gok_kfree(r);

	void *a = gok_kmemalign(4096, 100, 0), *b = gok_kmemalign(65536, 70000, 0);
	CHECK(a != NULL && (uintptr_t)a % 4096 == 0);
	CHECK(b != NULL && (uintptr_t)b % 65536 == 0);
	CHECK(gok_kmemalign(48, 8, 0) == NULL);
	gok_kfree(a);
	gok_kfree(b);

	CHECK(gok_kcalloc((size_t)1 << 40, (size_t)1 << 40, 0) == NULL);
	void *c = gok_kcalloc(10, 100, 0);
	CHECK(c != NULL && all_zero(c, 1000));
	gok_kfree(c);
}

/* Zeroed allocations stay zero after the memory was dirtied, freed,
 * released to the frame allocator (which poisons frames) and committed
 * again: the port zeroes what it commits. */
static void t_zeroing(void)
{
	size_t big = 1 << 20;
	void *p = gok_kmalloc(big, 0);
	CHECK(p != NULL);
	memset(p, 0xa5, big);
	gok_kfree(p);
	gok_kmalloc_trim();
	p = gok_kzalloc(big, 0);
	CHECK(p != NULL && all_zero(p, big));
	gok_kfree(p);

	static void *s[100];
	for (int i = 0; i < 100; i++) {
		s[i] = gok_kmalloc(200, 0);
		CHECK(s[i] != NULL);
		memset(s[i], 0xff, 200);
	}
	for (int i = 0; i < 100; i++)
		gok_kfree(s[i]);
	for (int i = 0; i < 100; i++) {
		s[i] = gok_kmalloc(200, KM_ZERO);
		CHECK(s[i] != NULL && all_zero(s[i], 200));
	}
	for (int i = 0; i < 100; i++)
		gok_kfree(s[i]);
}

/* kmalloc must give interrupts back as it found them: on in a thread,
 * off in a handler (the template's pushf/popf and the lock's saved flags). */
static void t_irq_state(void)
{
	CHECK(read_rflags() & RFLAGS_IF);
	void *p = gok_kmalloc(64, 0), *q = gok_kmalloc(100000, 0);
	CHECK(p != NULL && q != NULL);
	gok_kfree(p);
	gok_kfree(q);
	CHECK(read_rflags() & RFLAGS_IF);
	unsigned long f = irq_off();
	p = gok_kmalloc(64, 0);
	q = gok_kmalloc(100000, 0);
	gok_kfree(p);
	gok_kfree(q);
	int still_off = !(read_rflags() & RFLAGS_IF);
	irq_restore(f);
	CHECK(p != NULL && q != NULL && still_off);
}

/* Out of memory gives NULL (the port's sys_commit fails all or nothing)
 * and the heap serves again after frees. The arena (256 MiB) is larger
 * than the machine, so the frames run out first. */
static void t_oom(void)
{
	static void *p[1024];
	unsigned n = 0, m = 0;
	while (n < 1024 && (p[n] = gok_kmalloc(1 << 20, 0)) != NULL)
		n++;
	CHECK(n >= 8 && n < 1024);
	CHECK(gok_kmalloc(1 << 20, 0) == NULL);
	for (unsigned i = 0; i < n; i++)
		gok_kfree(p[i]);
	gok_kmalloc_trim();
	while (m < 1024 && (p[m] = gok_kmalloc(1 << 20, 0)) != NULL)
		m++;
	for (unsigned i = 0; i < m; i++)
		gok_kfree(p[i]);
	gok_kmalloc_trim();
	kprintf("kit: oom: %u MiB objects until NULL, %u again after freeing\n", n, m);
	CHECK(m + 1 >= n);
	CHECK(frames_in_use_by_heap() * PAGE == port_committed);
}

/* ---- allocation from the timer interrupt ---- */

static struct {
	void *p;
	size_t n;
} tick_obj[16];
static volatile unsigned long ticks, tick_failures;

/* Replace one of the handler's objects with a new one of n bytes. */
static void tick_slot(unsigned i, size_t n)
{
	if (tick_obj[i].p != NULL) {
		if (!intact(tick_obj[i].p, tick_obj[i].n, (uint8_t)i))
			tick_failures++;
		gok_kfree(tick_obj[i].p);
	}
	tick_obj[i].p = gok_kmalloc(n, 0);
	tick_obj[i].n = n;
	if (tick_obj[i].p == NULL)
		tick_failures++;
	else
		fill(tick_obj[i].p, n, (uint8_t)i);
}

/* Every tick allocates and frees a small object (this CPU's mcache, which
 * the interrupted code may be using) and a large one (the mheap lock,
 * which the interrupted code may hold). */
static void tick_alloc(void)
{
	unsigned long t = ticks;
	tick_slot(t % 8, (size_t)16 << (t % 9));
	tick_slot(8 + t % 8, 32769 + (t * 4099) % 65536);
	ticks = t + 1;
}

struct slot {
	uint8_t *p;
	size_t n;
};

/* One random operation on one slot: allocate, free, or resize, checking
 * the pattern the object holds. Returns 0 on a failure. */
static int random_op(struct slot *s, uint8_t tag, uint64_t r)
{
	unsigned pick = (r >> 16) % 100;
	size_t n = pick < 60 ? 8 + (r >> 24) % 249 : pick < 88 ? 256 + (r >> 24) % 3841 :
	           pick < 95 ? 4096 + (r >> 24) % 28673 : 32769 + (r >> 24) % 491520;
	if (s->p != NULL && pick % 10 == 0) { /* grow or shrink, in place or by copy */
		size_t keep = n < s->n ? n : s->n;
		uint8_t *q = gok_krealloc(s->p, n, 0);
		if (q == NULL || !intact(q, keep < 256 ? keep : 256, tag))
			return 0;
		s->p = q;
		s->n = n;
		fill(q, n, tag);
	} else if (s->p != NULL) {
		if (!intact(s->p, s->n, tag))
			return 0;
		gok_kfree(s->p);
		s->p = NULL;
	} else {
		s->p = gok_kmalloc(n, 0);
		if (s->p == NULL)
			return 0;
		s->n = n;
		fill(s->p, n, tag);
	}
	return 1;
}

/* Random allocations, reallocations and frees of 8 B .. 512 KiB while the
 * timer interrupt (1 kHz) allocates and frees too: a lock that left
 * interrupts on would deadlock here, a broken irq_save would corrupt the
 * mcache. Runs until both have done enough work. */
static void t_interrupts(void)
{
	enum { SLOTS = 512 };
	struct slot *slot = kmalloc(SLOTS * sizeof *slot); /* the old allocator */
	CHECK(slot != NULL);
	memset(slot, 0, SLOTS * sizeof *slot);
	timer_hook = tick_alloc;
	timer_start();
	unsigned long ops = 0;
	int ok = 1;
	while (ok && (ops < 40000 || ticks < 300) && ops < 2000000) {
		uint64_t r = xorshift64(&rng);
		ok = random_op(&slot[r % SLOTS], (uint8_t)(r % SLOTS), r);
		ops++;
	}
	timer_stop();
	timer_hook = NULL;
	kprintf("kit: interrupts: %lu operations, %lu timer interrupts allocating\n", ops, ticks);
	CHECK(ok);
	CHECK(ticks >= 300 && tick_failures == 0);
	for (unsigned i = 0; i < 16; i++) {
		CHECK(tick_obj[i].p == NULL || intact(tick_obj[i].p, tick_obj[i].n, (uint8_t)i));
		gok_kfree(tick_obj[i].p);
		tick_obj[i].p = NULL;
	}
	for (unsigned i = 0; i < SLOTS; i++) {
		CHECK(slot[i].p == NULL || intact(slot[i].p, slot[i].n, (uint8_t)i));
		gok_kfree(slot[i].p);
	}
}

/* With everything freed, flushed and trimmed: no live object in any
 * class, no span in use, and the heap's committed bytes are exactly the
 * frames the port mapped (only metadata remains). */
/* A typed cache as a kernel uses one: a constructed object type, from
 * the cache and back, counted, then destroyed (docs/porting.md). */
struct task {
	uint32_t magic;
	uint32_t pid;
	struct task *next;
	char comm[40];
};
static unsigned task_ctor_calls;
static void task_ctor(void *p)
{
	struct task *t = p;
	t->magic = 0x7a5c;
	t->next = NULL;
	task_ctor_calls++;
}

static void t_kmem_cache(void)
{
	struct kmem_cache *tasks =
	        gok_kmem_cache_create("task", sizeof(struct task), 0, KMC_HWALIGN, task_ctor);
	CHECK(tasks != NULL);
	static struct task *t[100];
	for (unsigned i = 0; i < 100; i++) {
		t[i] = gok_kmem_cache_alloc(tasks, 0);
		CHECK(t[i] != NULL && t[i]->magic == 0x7a5c && (uintptr_t)t[i] % 64 == 0);
		t[i]->pid = i;
	}
	struct kmem_cache_stats st;
	gok_kmem_cache_stats(tasks, &st);
	CHECK(st.objsize == 64 && st.active_objs == 100);
	CHECK(task_ctor_calls == st.slabs * st.objperslab); /* once per object, per span */
	CHECK(gok_kmem_cache_destroy(tasks) == -1);         /* 100 live: kept, listed */
	for (unsigned i = 0; i < 100; i++)
		gok_kmem_cache_free(tasks, t[i]);
	CHECK(gok_kmem_cache_destroy(tasks) == 0);
	kprintf("kit: kmem_cache: 100 tasks of %lu B, %lu per span, constructed %u times\n",
	        (unsigned long)st.objsize, (unsigned long)st.objperslab, task_ctor_calls);
}

static void t_accounting(void)
{
	gok_kmalloc_flush_cpu();
	gok_kmalloc_trim();
	static struct kmalloc_stats st;
	gok_kmalloc_stats(&st);
	for (unsigned c = 0; c < KMALLOC_NUM_CLASSES; c++)
		CHECK(st.cls[c].live == 0 && st.cls[c].allocs == st.cls[c].frees);
	CHECK(st.large_live == 0 && st.heap_inuse == 0);
	CHECK(st.committed == port_committed);
	CHECK(st.committed == st.meta_sys);
	CHECK(frames_in_use_by_heap() * PAGE == port_committed);
	kprintf("kit: after trim: %lu bytes committed (metadata), %zu page-table frames\n",
	        (unsigned long)st.committed, pt_frames);
	gok_kmalloc_dump();
}

void selftest(void)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{ "sizes", t_sizes },
		{ "api", t_api },
		{ "zeroing", t_zeroing },
		{ "irq_state", t_irq_state },
		{ "oom", t_oom },
		{ "interrupts", t_interrupts },
		{ "kmem_cache", t_kmem_cache },
		{ "accounting", t_accounting },
	};
	unsigned passed = 0, failed = 0;
	if (gok_kmalloc_init() != 0) {
		kprintf("kit: kmalloc_init failed\n");
		kernel_exit(KEXIT_FAIL);
	}
	for (unsigned i = 0; i < sizeof tests / sizeof tests[0]; i++) {
		failed_line = 0;
		tests[i].fn();
		if (failed_line == 0) {
			kprintf("kit: %s ok\n", tests[i].name);
			passed++;
		} else {
			kprintf("kit: %s FAILED: line %d: %s\n", tests[i].name, failed_line, failed_what);
			failed++;
		}
	}
	kprintf("kit: %u passed, %u failed\n", passed, failed);
	if (failed != 0)
		kernel_exit(KEXIT_FAIL);

	void *p = gok_kmalloc(64, 0);
	gok_kfree(p);
	kprintf("kit: double free of %p next\n", p);
	gok_kfree(p);
	kprintf("kit: the double free was not detected\n");
	kernel_exit(KEXIT_DONE);
}
