/*
 * check_runner.h: the one main() of the Check test binaries. A test file
 * lists its tests in a table and ends with
 *
 *     CHECK_MAIN("mspan", 60,
 *                CHECK_TEST(init_fields),
 *                CHECK_TEST_SIGNAL(dies_cleanly, SIGABRT))
 *
 * which runs them as one suite of one test case with that timeout (in
 * seconds) and exits non-zero if any failed. CHECK_MAIN_SETUP(name,
 * timeout, setup, ...) runs setup() in each test's process before the
 * test (a Check checked fixture). A binary that reads options
 * first calls check_run from its own main; one with several suites
 * defines each with CHECK_SUITE (or builds it, for fixtures or several
 * test cases) and calls check_run_suites.
 */
#ifndef TESTS_CHECK_RUNNER_H
#define TESTS_CHECK_RUNNER_H

#include <check.h>
#include <stddef.h>
#include <stdlib.h>

struct check_test {
	const TTest *test; /* START_TEST's name */
	int signal;        /* the signal it must die of, 0 = must pass */
	int loop_end;      /* > 0: run with _i = 0 .. loop_end - 1 */
};
#define CHECK_TEST(fn)   \
	{                \
		fn, 0, 0 \
	}
#define CHECK_TEST_SIGNAL(fn, sig) \
	{                          \
		fn, sig, 0         \
	}
#define CHECK_TEST_LOOP(fn, n)  \
	{                       \
		fn, 0, (int)(n) \
	}

/* Run every suite in one runner; main's exit status. */
static inline int check_run_suites(Suite *const *suites, size_t n)
{
	SRunner *sr = srunner_create(suites[0]);
	for (size_t i = 1; i < n; i++)
		srunner_add_suite(sr, suites[i]);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* A suite named `name` of one test case holding tests[0..n), each run
 * after setup() (NULL: none) in its own process. */
static inline Suite *check_suite_setup(const char *name, unsigned timeout, void (*setup)(void),
                                       const struct check_test *tests, size_t n)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, timeout);
	if (setup != NULL)
		tcase_add_checked_fixture(tc, setup, NULL);
	for (size_t i = 0; i < n; i++) {
		if (tests[i].loop_end > 0)
			tcase_add_loop_test_raise_signal(tc, tests[i].test, tests[i].signal, 0,
			                                 tests[i].loop_end);
		else
			tcase_add_test_raise_signal(tc, tests[i].test, tests[i].signal);
	}
	suite_add_tcase(s, tc);
	return s;
}

static inline Suite *check_suite(const char *name, unsigned timeout, const struct check_test *tests,
                                 size_t n)
{
	return check_suite_setup(name, timeout, NULL, tests, n);
}

static inline int check_run_setup(const char *name, unsigned timeout, void (*setup)(void),
                                  const struct check_test *tests, size_t n)
{
	Suite *s = check_suite_setup(name, timeout, setup, tests, n);
	return check_run_suites(&s, 1);
}

static inline int check_run(const char *name, unsigned timeout, const struct check_test *tests,
                            size_t n)
{
	return check_run_setup(name, timeout, NULL, tests, n);
}

/* The table is built inside the function: START_TEST's names are
 * pointers, not constants, so they cannot initialise a static array.
 * CHECK_SUITE defines `Suite *fn(void)` for a binary with several suites
 * (one a file), CHECK_MAIN a main that runs its one suite. */
#define CHECK_SUITE(fn, name, timeout, ...)                                                        \
	Suite *fn(void)                                                                            \
	{                                                                                          \
		const struct check_test tests_[] = { __VA_ARGS__ };                                \
		return check_suite((name), (timeout), tests_, sizeof(tests_) / sizeof(tests_[0])); \
	}

#define CHECK_MAIN_SETUP(name, timeout, setup, ...)                         \
	int main(void)                                                      \
	{                                                                   \
		const struct check_test tests_[] = { __VA_ARGS__ };         \
		return check_run_setup((name), (timeout), (setup), tests_,  \
		                       sizeof(tests_) / sizeof(tests_[0])); \
	}
#define CHECK_MAIN(name, timeout, ...) CHECK_MAIN_SETUP(name, timeout, NULL, __VA_ARGS__)

#endif /* TESTS_CHECK_RUNNER_H */
