// The test harness behind tests/test.h: counts checks, prints each result with its worst error, and
// provides golden/scratch paths and a shell-command runner for the CLI tests.
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "io/tensors.h"

#include "test.h"

static int checks_passed, checks_failed, checks_skipped;

void test_counts(int *passed, int *failed, int *skipped) {
    *passed = checks_passed;
    *failed = checks_failed;
    *skipped = checks_skipped;
}

void test_skip_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP ");
    vprintf(fmt, ap);
    va_end(ap);
    printf("  (%s:%d)\n", file, line);
    fflush(stdout);
    checks_skipped++;
}


int test_check_at(int ok, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    va_end(ap);
    if (!ok) printf("  (%s:%d)", file, line);
    printf("\n");
    fflush(stdout);
    if (ok) checks_passed++;
    else checks_failed++;
    return ok;
}

int test_close_at(const char *file, int line, const char *what, const float *got, const float *want, size_t n,
                  double atol, double rtol) {
    double worst = 0;
    size_t worst_index = 0, bad_index = 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        int same_special = (isnan(g) && isnan(w)) || (isinf(g) && g == w);
        double err = same_special ? 0 : fabs(g - w);
        if (isnan(err)) err = INFINITY;   // one side NaN: as bad as it gets
        if (i == 0 || err > worst) worst = err, worst_index = i;
        if (!same_special && !(err <= atol + rtol * fabs(w))) {
            if (ok) bad_index = i;
            ok = 0;
        }
    }
    if (ok)
        test_check_at(1, file, line, "%s  (worst abs err %.3g at index %zu)", what, worst, worst_index);
    else
        test_check_at(0, file, line, "%s  (worst abs err %.3g at index %zu; first failure at %zu: got %.9g, want %.9g)",
                      what, worst, worst_index, bad_index, (double)got[bad_index], (double)want[bad_index]);
    return ok;
}

// Paths are returned from a ring of static buffers so a few can be used in one expression.
static char *next_path_buffer(void) {
    static char buffers[16][PATH_MAX];
    static int next;
    char *b = buffers[next];
    next = (next + 1) % 16;
    return b;
}

const char *repo_path(const char *name) {
    const char *root = getenv("DIT_ROOT");
    if (!root || !*root) root = ".";
    char *b = next_path_buffer();
    if (snprintf(b, PATH_MAX, "%s/%s", root, name) >= PATH_MAX) {
        fprintf(stderr, "test: path too long: %s/%s\n", root, name);
        exit(2);
    }
    return b;
}

const char *golden_path(const char *name) {
    char relative[PATH_MAX];
    if (snprintf(relative, sizeof relative, "tests/golden/%s", name) >= (int)sizeof relative) {
        fprintf(stderr, "test: golden name too long: %s\n", name);
        exit(2);
    }
    return repo_path(relative);
}

static char scratch_dir[PATH_MAX];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

// Remove the scratch directory at exit unless DIT_KEEP_SCRATCH is set (to inspect what a test wrote).
static void remove_scratch_dir(void) {
    if (scratch_dir[0] && !getenv("DIT_KEEP_SCRATCH")) nftw(scratch_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *scratch_path(const char *name) {
    if (!scratch_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(scratch_dir, sizeof scratch_dir, "%s/dit-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(scratch_dir)) {
            fprintf(stderr, "test: cannot create scratch directory %s: %s\n", scratch_dir, strerror(errno));
            exit(2);
        }
        atexit(remove_scratch_dir);
    }
    char *b = next_path_buffer();
    snprintf(b, PATH_MAX, "%.*s/%s", PATH_MAX / 2, scratch_dir, name);
    return b;
}

int run_command(const char *cmd, char **output) {
    size_t cmd_len = strlen(cmd) + 8;
    char *full = malloc(cmd_len);
    if (!full) return -1;
    snprintf(full, cmd_len, "%s 2>&1", cmd);
    fflush(stdout);
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t length = 0, capacity = 4096;
    char *text = malloc(capacity);
    if (!text) exit(2);
    size_t got;
    while ((got = fread(text + length, 1, capacity - length - 1, p)) > 0) {
        length += got;
        if (capacity - length < 2) {
            capacity *= 2;
            char *bigger = realloc(text, capacity);
            if (!bigger) exit(2);
            text = bigger;
        }
    }
    text[length] = '\0';
    int status = pclose(p);
    if (output) *output = text;
    else free(text);
    if (status == -1) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

float test_uniform(uint32_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

double test_dot_double(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

void test_relative_errors(const float *got, const float *want, size_t n, double *max_rel, double *l2_rel) {
    double worst = 0, peak = 0, diff2 = 0, ref2 = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        worst = fmax(worst, d), peak = fmax(peak, fabs(want[i]));
        diff2 += d * d, ref2 += (double)want[i] * want[i];
    }
    *max_rel = worst / (peak > 0 ? peak : 1);
    *l2_rel = sqrt(diff2 / (ref2 > 0 ? ref2 : 1));
}

float *test_random_floats(uint32_t *state, size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = scale * test_uniform(state);
    return p;
}

int test_fd_check(const char *what, test_loss_fn loss, void *ctx, float *input, const float *analytic, int64_t n,
                  double h, double rel_tol) {
    double worst = 0, scale = 0;
    int64_t worst_i = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(analytic[i]));
    for (int64_t i = 0; i < n; i++) {
        const float v = input[i];
        const float vp = (float)(v + h), vm = (float)(v - h);
        input[i] = vp;
        double lp = loss(ctx);
        input[i] = vm;
        double lm = loss(ctx);
        input[i] = v;
        double fd = (lp - lm) / ((double)vp - (double)vm);
        double err = fabs(fd - analytic[i]);
        if (err > worst) worst = err, worst_i = i;
    }
    return CHECK(scale > 0 && worst <= rel_tol * scale,
                 "%s vs finite differences: worst |fd - analytic| %.3g at %lld (max |grad| %.3g, bound %.0e rel)",
                 what, worst, (long long)worst_i, scale, rel_tol);
}

double *golden_read_doubles(const char *name, int64_t *count) {
    npy_array a;
    if (npy_read(golden_path(name), &a) != DIT_OK) {
        CHECK(0, "read %s: %s", name, dit_last_error());
        return NULL;
    }
    int64_t n = 1;
    for (int i = 0; i < a.ndim; i++) n *= a.shape[i];
    double *out = malloc((n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        switch (a.dtype) {
        case DT_F32: out[i] = ((const float *)a.data)[i]; break;
        case DT_F64: out[i] = ((const double *)a.data)[i]; break;
        case DT_I64: out[i] = (double)((const int64_t *)a.data)[i]; break;
        default: out[i] = NAN; break;
        }
    }
    npy_free(&a);
    *count = n;
    return out;
}

float *doubles_to_floats(const double *v, int64_t n) {
    float *f = malloc((n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    return f;
}
