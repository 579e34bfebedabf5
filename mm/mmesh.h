/*
 * mmesh.h: what meshing's two files share (mm/mmesh.c: the mesh itself,
 * copy, remap, settle, reap; mm/mmeshpick.c: which spans pair up, and
 * the scratch of its rounds). The picker hands mmesh.c a round's pairs,
 * each already step 1 of a mesh (src off the lists, dst holding src's
 * slots); mmesh.c copies, remaps and settles them.
 */
#ifndef MM_MMESH_H
#define MM_MMESH_H

#include "internal.h"

/* Spans looked at per round. kmalloc_mesh and trim look at many, so that
 * segments come out long (the host's mappings go furthest), and hold the
 * class's lock for up to a millisecond or two a round while they pick
 * (matching segments grows with the square of the count, a word per 64
 * candidates, mmeshpick.c longest_match: up to 0.9-2.1 ms, host, the
 * fragmentation workloads of make bench). The paced background work,
 * which meshes while the program allocates, looks at fewer. */
#define MESH_CANDIDATES       1024
#define MESH_CANDIDATES_PACED 128
#define MESH_MAX_ALIAS        7  /* aliases per dst (a group of 8 spans) */
#define MESH_BATCH            32 /* spans of a run meshed as one range */
/* bitmap words of the largest span: 8 B objects in one 8 KiB page */
#define MESH_MAX_WORDS 16

/* One mesh of a round: written by the picker under the class's lock,
 * then the mesher's alone (the background gate) until it settles. */
struct mesh_pair {
	struct mspan *src, *dst;
	uint64_t s0[MESH_MAX_WORDS];         /* src's out slots when picked (its
	                                        aliases' included) */
	struct mspan *moved[MESH_MAX_ALIAS]; /* src's aliases, which move
	                                        to dst's frames with it */
	unsigned nmoved;
};

/* The mesher's scratch: a round's pairs, and its candidates sorted by
 * address with what the picker knows of them, for rounds of up to cap
 * candidates. The background gate's (one mesher at a time), the
 * candidates written under the class's lock. The arrays lie in a
 * metadata area of their own (m_mesh, mmesh.c work_ready), committed
 * as far as the rounds need (21 KiB for the paced work's 128
 * candidates, 280 KiB for kmalloc_mesh's 1024, of which 128 KiB the
 * matcher's rows) and given back after
 * kmalloc_mesh; not static: a port that never meshes has none of it in
 * its .bss, and a kernel stack is no place for it. */
struct mesh_work {
	unsigned cap;
	struct mesh_pair *pairs; /* cap / 2 */
	struct mspan **cand;     /* cap each, from here on */
	uint16_t *ahead;         /* cand[j, j + ahead[j]) adjacent */
	uint16_t *cnt;           /* cand[j]'s allocCount (pair_fit) */
	bool *grown;             /* a dst of this round (pair_fit) */
	/* cand[i]'s first two allocBits words (past nelems cleared) and
	 * aliases, side by side: the test that rejects most pairs reads
	 * these 17 bytes, not two span records (mmeshpick.c) */
	uint64_t *sig;
	uint8_t *nal;
	/* The matcher's bitsets over the round's candidates, words (cap / 64
	 * at most) words each (mmeshpick.c longest_match): rows[a] has bit b
	 * where cand[a] and cand[b] may mesh (computed on first use, rowok),
	 * cols[s] where slot s of the first two words is out, nal_le[t]
	 * where a span has at most t aliases, adj where cand[b + 1] starts
	 * where cand[b] ends, ubits those in a pair of this round already
	 * (mmeshpick.c is_used); dbuf two sets of scratch. */
	unsigned words, ncand, nw; /* this round's: set words, candidates,
	                              bitmap words of its class's spans */
	uint64_t *rows, *cols, *nal_le, *adj, *ubits, *dbuf;
	uint8_t *rowok;
};
/* bitset words of a work for cap candidates, per row or column */
#define MESH_WORDS(cap) (((cap) + 63) / 64)

/* Scratch for rounds of cap candidates: commit as much of m_mesh and lay
 * w's arrays out (a round's contents do not outlive it, so a new layout
 * loses nothing). Returns false if the port could not commit it.
 * pre: the background gate, no mm lock. */
bool mesh_work_ready(struct mesh_work *w, unsigned cap);
/* Give the scratch back (kmalloc_mesh's end: trim's meshing is done,
 * and the paced work commits what it needs again when it next finds a
 * class to mesh). pre: the background gate, no mm lock. */
void mesh_work_release(struct mesh_work *w);

/* Up to max pairs of class c, picked (step 1) into w->pairs, among the spans pass has
 * not looked at; *seen: how many it looked at (< 2: the class is done
 * for this pass). min_run: only segments of at least that many adjacent
 * spans onto adjacent spans; 0: segments of 2 or more, then any pairs.
 * cands: at most that many spans looked at (<= w->cap).
 * pre: c->lock, the background gate. */
unsigned mesh_find_pairs(struct mesh_work *w, struct mcentral *c, unsigned max, unsigned *seen,
                         uint8_t pass, unsigned min_run, unsigned cands);

#endif
