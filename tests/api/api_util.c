/*
 * api_util.c: the helpers declared in api_util.h (stats identities, class
 * lookup, fill patterns, a thread handshake, environment knobs; the
 * forked-child checks are in child_util.c). Plain hosted C; it uses
 * glibc's malloc for nothing, so the allocator's stats only count what a
 * test asked for.
 */
#define _GNU_SOURCE
#include "api_util.h"

#include <stdlib.h>
#include <string.h>

/* The two identities that split the heap's bytes differ only in their
 * third term: total == heap_inuse + heap_free + extra. Writes the message
 * naming all four figures and returns 1 when it does not hold. */
static int heap_split_broken(char *msg, size_t cap, const struct kmalloc_stats *st,
			     const char *total_name, uint64_t total,
			     const char *extra_name, uint64_t extra)
{
	if (total == st->heap_inuse + st->heap_free + extra)
		return 0;
	snprintf(msg, cap, "%s %llu != inuse %llu + free %llu + %s %llu", total_name,
		 (unsigned long long)total, (unsigned long long)st->heap_inuse,
		 (unsigned long long)st->heap_free, extra_name, (unsigned long long)extra);
	return 1;
}

const char *stats_inconsistency(const struct kmalloc_stats *st)
{
	static char msg[256];

	for (int c = 0; c < KMALLOC_NUM_CLASSES; c++) {
		const struct kmalloc_class_stats *k = &st->cls[c];
		if (k->allocs < k->frees || k->live != k->allocs - k->frees) {
			snprintf(msg, sizeof msg,
				 "class %d (size %llu): allocs %llu frees %llu live %llu",
				 c, (unsigned long long)k->size,
				 (unsigned long long)k->allocs,
				 (unsigned long long)k->frees,
				 (unsigned long long)k->live);
			return msg;
		}
		/* guarded samples count in their class but live in no span */
		if (k->live && !k->spans && st->kfence_allocs == st->kfence_frees) {
			snprintf(msg, sizeof msg,
				 "class %d: %llu live objects in 0 spans", c,
				 (unsigned long long)k->live);
			return msg;
		}
	}
	if (st->large_allocs < st->large_frees ||
	    st->large_live != st->large_allocs - st->large_frees) {
		snprintf(msg, sizeof msg,
			 "large: allocs %llu frees %llu live %llu",
			 (unsigned long long)st->large_allocs,
			 (unsigned long long)st->large_frees,
			 (unsigned long long)st->large_live);
		return msg;
	}
	if (heap_split_broken(msg, sizeof msg, st, "heap_sys", st->heap_sys, "released",
	                      st->heap_released) ||
	    heap_split_broken(msg, sizeof msg, st, "committed + mesh_bytes - kfence_bytes",
	                      st->committed + st->mesh_bytes - st->kfence_bytes, "meta",
	                      st->meta_sys))
		return msg;
	if (st->committed != host_committed_bytes()) {
		snprintf(msg, sizeof msg,
			 "stats say %llu bytes committed, the port counts %zu",
			 (unsigned long long)st->committed, host_committed_bytes());
		return msg;
	}
	if (st->large_bytes > st->heap_inuse) {
		snprintf(msg, sizeof msg, "large_bytes %llu > heap_inuse %llu",
			 (unsigned long long)st->large_bytes,
			 (unsigned long long)st->heap_inuse);
		return msg;
	}
	return NULL;
}

uint64_t stats_live_objects(const struct kmalloc_stats *st)
{
	uint64_t n = st->large_live;
	for (int c = 0; c < KMALLOC_NUM_CLASSES; c++)
		n += st->cls[c].live;
	return n;
}

/* The class table never changes after init, so read it once. */
static size_t class_sizes[KMALLOC_NUM_CLASSES];

static void load_classes(void)
{
	struct kmalloc_stats st;

	if (class_sizes[1])
		return;
	kmalloc_stats(&st);
	for (int c = 0; c < KMALLOC_NUM_CLASSES; c++)
		class_sizes[c] = (size_t)st.cls[c].size;
}

size_t class_size(int c)
{
	load_classes();
	return (c > 0 && c < KMALLOC_NUM_CLASSES) ? class_sizes[c] : 0;
}

int class_of_size(size_t size)
{
	load_classes();
	for (int c = 1; c < KMALLOC_NUM_CLASSES; c++)
		if (class_sizes[c] >= size)
			return c;
	return 0;
}

void handshake_set(struct handshake *h, int step)
{
	pthread_mutex_lock(&h->lock);
	h->step = step;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

void handshake_wait(struct handshake *h, int step)
{
	pthread_mutex_lock(&h->lock);
	while (h->step != step)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
}

uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return dflt;
	v = strtoull(s, &end, 0);
	if (*end) {
		fprintf(stderr, "%s=%s is not a number\n", name, s);
		exit(2);
	}
	return v;
}
