// A small test harness: each unit exposes `void test_<unit>(void)`; tests/main.c runs them and ends with
// "N passed, N failed, N skipped". Every comparison prints what it compared and the worst error found.
#ifndef DIT_TESTS_TEST_H
#define DIT_TESTS_TEST_H

#include <stddef.h>
#include <stdint.h>

// Record one check. Prints "ok  <what>" or "FAIL <what>" (with file:line); returns the outcome.
#define CHECK(cond, ...) test_check_at(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
int test_check_at(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// Record a skipped check: prints "SKIP <why>" (with file:line) and counts it in the final line's
// "N skipped". A skip is never a pass: use it only for what this machine cannot run, and say why.
#define SKIP(...) test_skip_at(__FILE__, __LINE__, __VA_ARGS__)
void test_skip_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Compare n floats: passes when |got - want| <= atol + rtol * |want| everywhere; prints the worst error.
#define CHECK_CLOSE(what, got, want, n, atol, rtol) \
    test_close_at(__FILE__, __LINE__, (what), (got), (want), (n), (atol), (rtol))
int test_close_at(const char *file, int line, const char *what, const float *got, const float *want,
                  size_t n, double atol, double rtol);

// Uniform floats in [-1, 1) from a xorshift32 state (each test file keeps its own state, so units
// do not disturb each other's sequences); test_random_floats returns n of them times scale (malloc'd).
float test_uniform(uint32_t *state);
float *test_random_floats(uint32_t *state, size_t n, float scale);

// sum of a[i] * b[i] in double (the scalar losses of the backward checks).
double test_dot_double(const float *a, const float *b, int64_t n);
// max |got - want| / max |want| and the relative L2 error ||got - want|| / ||want|| (the bf16-vs-fp32 checks).
void test_relative_errors(const float *got, const float *want, size_t n, double *max_rel, double *l2_rel);

// Finite-difference check of an analytic gradient: central differences of the scalar loss(ctx) over every
// element of input (the step taken is (float)(v +- h) - v, exact in float32), compared with analytic;
// passes when the worst |fd - analytic| <= rel_tol * max |analytic|. Prints what, the worst error, its index.
typedef double (*test_loss_fn)(void *ctx);
int test_fd_check(const char *what, test_loss_fn loss, void *ctx, float *input, const float *analytic, int64_t n,
                  double h, double rel_tol);

// A golden .npy (float32, float64 or int64) as doubles; NULL after a failed check when unreadable.
double *golden_read_doubles(const char *name, int64_t *count);
// n doubles narrowed to a new float array.
float *doubles_to_floats(const double *v, int64_t n);

// Path of a file of the repository (DIT_ROOT or cwd), e.g. the shipped models/.
const char *repo_path(const char *name);
// Path of a golden file: tests/golden/<name> relative to the repository root (DIT_ROOT or cwd).
const char *golden_path(const char *name);
// A scratch directory for the test run (created once, under $TMPDIR).
const char *scratch_path(const char *name);
// The number of checks passed, failed and skipped so far (for the runner's final line).
void test_counts(int *passed, int *failed, int *skipped);
// Record a check that could not run here (e.g. no MPI): the same as SKIP (kept for the dist unit).
#define test_skip(...) SKIP(__VA_ARGS__)
// Run a shell command, return its exit status; its stderr+stdout go to *output (malloc'd) when non-NULL.
int run_command(const char *cmd, char **output);

#endif
