/*
 * leaky_threads.c: the program of issue 21 for the leak check at exit
 * (KMALLOC_LEAK_CHECK=1 under the shim, tests/preload/check-leaks; also
 * built with -fsanitize=leak to compare with LeakSanitizer). main drops
 * one 48-byte object (plant_leak) and returns while 4 other threads are
 * alive, each holding a list of 1,000 nodes reachable only from its own
 * stack (workers 0 and 2) or a thread-local (1 and 3). Workers 0 and 1
 * then wait in a system call (read on a pipe nobody writes); workers 2
 * and 3 keep allocating and freeing nodes of their lists until the
 * process ends. The one true leak is plant_leak's object.
 *
 * `leaky_threads N` runs N workers instead of 4 (the 1,000-thread case),
 * each with a list of 1,000 / N nodes at least 10; workers 2 and 3
 * allocate, the others wait in read. `leaky_threads N all`: every worker
 * allocates (the allocation storm). `leaky_threads N worker`: worker 1
 * also drops a 64-byte object (worker_leak, called by leaky_worker), a
 * second true leak whose backtrace runs through a thread's start. Built
 * with -rdynamic so the report can name plant_leak and the workers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
	struct node *next;
	long payload[3];
};

static __thread struct node *tls_list; /* workers 1 and 3 */
static int nodes = 1000;
static int all_churn; /* every worker allocates */
static int never[2];  /* a pipe nobody writes */
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready; /* ready_lock: workers with their list built */

__attribute__((noinline)) void plant_leak(void)
{
	char *p = malloc(48);
	strcpy(p, "nobody points to me");
}

__attribute__((noinline)) static struct node *build(int n)
{
	struct node *head = NULL;
	for (int i = 0; i < n; i++) {
		struct node *x = malloc(sizeof *x);
		x->next = head;
		x->payload[0] = i;
		head = x;
	}
	return head;
}

/* Replace the list's second node by a new one, forever: the list stays
 * whole and the thread is inside malloc or free much of the time. */
__attribute__((noinline)) static void churn(struct node *volatile *headp)
{
	for (;;) {
		struct node *h = *headp, *old = h->next, *x = malloc(sizeof *x);
		x->next = old->next;
		x->payload[0] = old->payload[0];
		h->next = x;
		free(old);
	}
}

static int worker_leaks; /* leaky_threads N worker */

__attribute__((noinline)) void worker_leak(void)
{
	char *p = malloc(64);
	strcpy(p, "nor to me");
}

/* A scan reads a stopped thread's stack from its stack pointer up, and a
 * conservative scan cannot tell a dead slot there from a live one: the
 * frames under a blocked read keep what worker_leak's call chain wrote. */
__attribute__((noinline)) static void scrub_below(void)
{
	volatile char pad[16384];
	for (size_t i = 0; i < sizeof pad; i++)
		pad[i] = 0;
}

void *leaky_worker(void *arg)
{
	long k = (long)arg;
	struct node *volatile head = NULL; /* on this stack only */
	if (k % 2 == 0)
		head = build(nodes);
	else
		tls_list = build(nodes);
	if (k == 1 && worker_leaks) {
		worker_leak();
		scrub_below(); /* the calls below would not overwrite every
		                  old slot that still holds its address */
	}
	pthread_mutex_lock(&ready_lock);
	ready++;
	pthread_cond_signal(&ready_cond);
	pthread_mutex_unlock(&ready_lock);
	if (k == 2 || k == 3 || all_churn)
		churn(k % 2 == 0 ? &head : (struct node *volatile *)&tls_list);
	char c;
	while (read(never[0], &c, 1) != 0)
		;
	return head;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4;
	all_churn = argc > 2 && strcmp(argv[2], "all") == 0;
	worker_leaks = argc > 2 && strcmp(argv[2], "worker") == 0;
	if (n < 1 || (argc > 2 && !all_churn && !worker_leaks) || (worker_leaks && n < 2)) {
		fprintf(stderr, "usage: leaky_threads [threads [all|worker]]\n");
		return 2;
	}
	if (n > 4)
		nodes = 1000 / n > 10 ? 1000 / n : 10;
	if (pipe(never) != 0)
		return 1;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, 128 << 10);
	for (long k = 0; k < n; k++) {
		pthread_t t;
		if (pthread_create(&t, &a, leaky_worker, (void *)k) != 0) {
			fprintf(stderr, "leaky_threads: pthread_create failed\n");
			return 1;
		}
	}
	pthread_mutex_lock(&ready_lock);
	while (ready < n)
		pthread_cond_wait(&ready_cond, &ready_lock);
	pthread_mutex_unlock(&ready_lock);
	plant_leak();
	printf("leaky_threads: %d workers ready\n", n);
	return 0;
}
