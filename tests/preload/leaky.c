/*
 * leaky.c: a small program for the leak check under the shim
 * (KMALLOC_LEAK_CHECK=1, tests/preload.mk). `leaky leak` drops exactly one
 * object, allocated in plant_leak, and keeps a list of others reachable
 * from a global and from main's stack; `leaky clean` frees the dropped
 * one too. Everything else it allocates stays reachable until exit (what
 * a program may do). Built with -rdynamic so the report can name
 * plant_leak.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
	struct node *next;
	char name[40];
};

static struct node *list; /* reachable: a global */
char *keep_big;           /* likewise (exported, so it stays) */

__attribute__((noinline)) void plant_leak(int drop)
{
	char *p = malloc(48);
	strcpy(p, "nobody points to me");
	if (!drop)
		free(p);
}

__attribute__((noinline)) static void build_list(int n)
{
	for (int i = 0; i < n; i++) {
		struct node *x = malloc(sizeof *x);
		x->next = list;
		snprintf(x->name, sizeof x->name, "node %d", i);
		list = x;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2 || (strcmp(argv[1], "leak") && strcmp(argv[1], "clean"))) {
		fprintf(stderr, "usage: leaky leak|clean\n");
		return 2;
	}
	build_list(100);
	keep_big = malloc(200000); /* large, reachable from a global */
	plant_leak(strcmp(argv[1], "leak") == 0);
	printf("leaky: %s, list head %s\n", argv[1], list->name);
	return 0;
}
