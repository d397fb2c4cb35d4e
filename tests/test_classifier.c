// The Fashion-MNIST classifier of `dit eval --fmnist`: finite differences of its new ops (conv2d, ReLU and
// max-pool backward, the cross-entropy) and of the whole model, the shipped weights' test accuracy and speed,
// the Frechet distance on known Gaussian cases, and `dit eval --fmnist` on real images and on bad inputs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dit_eval.h"
#include "io/tensors.h"
#include "models/classifier.h"
#include "ops/conv.h"
#include "test.h"
#include "train/classifier_train.h"

static uint32_t rng_state = 777;
static float *random_floats(size_t n, float scale) { return test_random_floats(&rng_state, n, scale); }

// CPU seconds of the whole process (all threads): unlike wall time, not inflated by other work on the machine.
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Central differences of a scalar loss (float32 forward, double sums) against the analytic gradient, as
// tests/test_backward.c: the step taken is (float)(v + h) - v. The ops here are piecewise linear, so the only
// truncation error comes from crossing a kink (ReLU at 0, a max-pool tie), which the inputs keep h away from;
// what remains is float32 rounding of the outputs (~1e-7 |y| over a few dozen terms) / 2h. Bound: worst
// |fd - analytic| <= 1e-3 * max |analytic|; an index or sign error gives O(1).
#define FD_H 1e-2
#define FD_REL_TOL 1e-3

typedef test_loss_fn loss_fn;

static void fd_check(const char *what, loss_fn loss, void *ctx, float *input, const float *analytic, int64_t n) {
    test_fd_check(what, loss, ctx, input, analytic, n, FD_H, FD_REL_TOL);
}

// ---- conv2d_backward --------------------------------------------------------------------------------------

typedef struct {
    int B, Cin, H, W, Cout, KH, KW, stride, pt, pl, pb, pr, OH, OW;
    float *x, *w, *b, *out, *R;
} conv_ctx;
static double conv_loss(void *p) {
    conv_ctx *c = p;
    conv2d_forward(c->out, c->x, c->w, c->b, c->B, c->Cin, c->H, c->W, c->Cout, c->KH, c->KW, c->stride, c->pt,
                   c->pl, c->pb, c->pr);
    return test_dot_double(c->R, c->out, (int64_t)c->B * c->Cout * c->OH * c->OW);
}

static void conv_case(const char *what, conv_ctx c) {
    c.OH = conv2d_out_size(c.H, c.KH, c.stride, c.pt, c.pb), c.OW = conv2d_out_size(c.W, c.KW, c.stride, c.pl, c.pr);
    const int nx = c.B * c.Cin * c.H * c.W, nw = c.Cout * c.Cin * c.KH * c.KW, no = c.B * c.Cout * c.OH * c.OW;
    c.x = random_floats(nx, 1), c.w = random_floats(nw, 1), c.b = random_floats(c.Cout, 1);
    c.out = malloc(no * sizeof(float)), c.R = random_floats(no, 1);
    float *dx = malloc(nx * sizeof(float)), *dw = calloc(nw, sizeof(float)), *db = calloc(c.Cout, sizeof(float));
    for (int i = 0; i < nx; i++) dx[i] = 99;   // overwritten, never accumulated
    conv2d_backward(dx, dw, db, c.R, c.x, c.w, c.B, c.Cin, c.H, c.W, c.Cout, c.KH, c.KW, c.stride, c.pt, c.pl, c.pb,
                    c.pr);
    char name[200];
    snprintf(name, sizeof name, "conv2d_backward dx (%s)", what);
    fd_check(name, conv_loss, &c, c.x, dx, nx);
    snprintf(name, sizeof name, "conv2d_backward dweight (%s)", what);
    fd_check(name, conv_loss, &c, c.w, dw, nw);
    snprintf(name, sizeof name, "conv2d_backward dbias (%s)", what);
    fd_check(name, conv_loss, &c, c.b, db, c.Cout);
    // parameter gradients accumulate; dx = NULL skips the input gradient
    float *dw2 = malloc(nw * sizeof(float)), *db2 = malloc(c.Cout * sizeof(float));
    for (int i = 0; i < nw; i++) dw2[i] = 2 * dw[i];
    for (int i = 0; i < c.Cout; i++) db2[i] = 2 * db[i];
    conv2d_backward(NULL, dw, db, c.R, c.x, c.w, c.B, c.Cin, c.H, c.W, c.Cout, c.KH, c.KW, c.stride, c.pt, c.pl, c.pb,
                    c.pr);
    snprintf(name, sizeof name, "conv2d_backward accumulates dweight, dx NULL (%s)", what);
    CHECK_CLOSE(name, dw, dw2, nw, 1e-5, 1e-5);
    CHECK_CLOSE("conv2d_backward accumulates dbias", db, db2, c.Cout, 1e-5, 1e-5);
    free(c.x), free(c.w), free(c.b), free(c.out), free(c.R), free(dx), free(dw), free(db), free(dw2), free(db2);
}

static void test_conv2d_backward(void) {
    // 11 samples: more than one group of 8 (the partial weight gradients are summed across groups)
    conv_case("B 11, 3->4 ch, 6x5, 3x3, pad 1", (conv_ctx){.B = 11, .Cin = 3, .H = 6, .W = 5, .Cout = 4, .KH = 3,
                                                           .KW = 3, .stride = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1});
    conv_case("B 2, 2->3 ch, 7x6, 3x2, stride 2, pad (0, 1, 1, 0)",
              (conv_ctx){.B = 2, .Cin = 2, .H = 7, .W = 6, .Cout = 3, .KH = 3, .KW = 2, .stride = 2, .pt = 0, .pl = 1,
                         .pb = 1, .pr = 0});
}

// ---- relu and maxpool -----------------------------------------------------------------------------------

typedef struct {
    int N, H, W;
    float *x, *y, *R;
} pool_ctx;
static double relu_loss(void *p) {
    pool_ctx *c = p;
    relu_forward(c->y, c->x, (int64_t)c->N * c->H * c->W);
    return test_dot_double(c->R, c->y, (int64_t)c->N * c->H * c->W);
}
static double pool_loss(void *p) {
    pool_ctx *c = p;
    maxpool2x2_forward(c->y, c->x, c->N, c->H, c->W);
    return test_dot_double(c->R, c->y, (int64_t)c->N * (c->H / 2) * (c->W / 2));
}

static void test_relu_maxpool_backward(void) {
    pool_ctx c = {.N = 3, .H = 6, .W = 4};
    const int n = c.N * c.H * c.W;
    // distinct values 0.05 apart in a shuffled order: h = 0.01 never crosses 0 or reorders a window
    c.x = malloc(n * sizeof(float)), c.y = malloc(n * sizeof(float)), c.R = random_floats(n, 1);
    for (int i = 0; i < n; i++) c.x[i] = 0.05f * (i - n / 2) + 0.025f;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)((test_uniform(&rng_state) + 1) * 0.5f * (i + 1)) % (i + 1);
        float t = c.x[i];
        c.x[i] = c.x[j], c.x[j] = t;
    }
    float *dx = malloc(n * sizeof(float));
    relu_forward(c.y, c.x, n);
    relu_backward(dx, c.R, c.y, n);
    fd_check("relu_backward (72 values, none within h of 0)", relu_loss, &c, c.x, dx, n);
    maxpool2x2_backward(dx, c.R, c.x, c.N, c.H, c.W);
    fd_check("maxpool2x2_backward (3 planes of 6x4)", pool_loss, &c, c.x, dx, n);
    // ties: the first maximum of the window in row-major order takes the gradient
    float tie_x[4] = {1, 2, 2, 0}, tie_g[1] = {5}, tie_dx[4], want[4] = {0, 5, 0, 0};
    maxpool2x2_backward(tie_dx, tie_g, tie_x, 1, 2, 2);
    CHECK_CLOSE("maxpool2x2_backward sends a tie's gradient to the first maximum", tie_dx, want, 4, 0, 0);
    free(c.x), free(c.y), free(c.R), free(dx);
}

// ---- the whole model and the loss -----------------------------------------------------------------------

typedef struct {
    classifier *c;
    classifier_acts *a;
    float *x;
    uint8_t *labels;
    int B;
} model_ctx;
static double model_loss(void *p) {
    model_ctx *m = p;
    classifier_forward(m->c, m->a, m->x, m->B);
    return classifier_cross_entropy(m->a->logits, m->labels, m->B, m->c->cfg.num_classes, NULL, NULL);
}

static void test_model_backward(void) {
    classifier_config cfg = {.image_size = 8, .in_channels = 1, .conv1 = 3, .conv2 = 4, .features = 6,
                             .num_classes = 5};
    model_ctx m = {.B = 3};
    m.c = classifier_create(&cfg);
    classifier_train_init_weights(m.c, 5);
    for (int i = 0; i < CLASSIFIER_PARAMS; i += 2) {   // non-zero biases, so every path carries a gradient
        const classifier_param *p = &m.c->table[i + 1];
        for (int64_t k = 0; k < p->numel; k++) m.c->params[p->offset + k] = 0.3f * test_uniform(&rng_state);
    }
    m.a = classifier_acts_create(&cfg, m.B, 1);
    m.x = random_floats((size_t)m.B * 64, 1);
    uint8_t labels[3] = {0, 3, 4};
    m.labels = labels;
    float *grads = calloc(m.c->total_floats, sizeof(float)), *dlogits = malloc(m.B * 5 * sizeof(float));
    classifier_forward(m.c, m.a, m.x, m.B);
    classifier_cross_entropy(m.a->logits, labels, m.B, 5, dlogits, NULL);
    classifier_backward(m.c, m.a, m.x, dlogits, grads, m.B);
    // A ReLU kink or max-pool reordering within h of an input makes a finite difference of this composite
    // meaningless for that weight; a smaller step keeps them rare: 1e-3 and the bound 2e-2 of max |grad|.
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < m.c->total_floats; i++) scale = fmax(scale, fabs(grads[i]));
    int bad = 0;
    for (int64_t i = 0; i < m.c->total_floats; i++) {
        float *w = &m.c->params[i], v = *w, vp = (float)(v + 1e-3), vm = (float)(v - 1e-3);
        *w = vp;
        double lp = model_loss(&m);
        *w = vm;
        double lm = model_loss(&m);
        *w = v;
        double err = fabs((lp - lm) / ((double)vp - vm) - grads[i]);
        worst = fmax(worst, err);
        bad += err > 2e-2 * scale;
    }
    CHECK(bad == 0 && scale > 0, "classifier_backward (8x8 input, 3/4 channels, 6 features, 5 classes, B 3) vs "
          "finite differences of the cross-entropy: worst %.3g over %lld weights (max |grad| %.3g, bound 2e-2 rel)",
          worst, (long long)m.c->total_floats, scale);
    // the cross-entropy: log(5) for equal logits, gradient (1/5 - onehot) / B
    float logits[10] = {0}, dl[10];
    uint8_t y[2] = {1, 4};
    double ce = classifier_cross_entropy(logits, y, 2, 5, dl, NULL);
    float want[10] = {0.1f, -0.4f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, -0.4f};
    CHECK(fabs(ce - log(5.0)) < 1e-12, "cross-entropy of equal logits = log 5: got %.15f", ce);
    CHECK_CLOSE("cross-entropy gradient (softmax - onehot) / B", dl, want, 10, 1e-7, 0);
    free(grads), free(dlogits), free(m.x);
    classifier_acts_free(m.a);
    classifier_free(m.c);
}

// ---- the shipped classifier ---------------------------------------------------------------------------------

static const char *shipped_path(void) {
    static char path[4096];
    const char *root = getenv("DIT_ROOT");
    snprintf(path, sizeof path, "%s/models/fmnist-classifier.safetensors", root && *root ? root : ".");
    return path;
}

static void test_shipped_classifier(classifier_dataset *test) {
    classifier *c = classifier_load(shipped_path());
    if (!CHECK(c != NULL, "load %s", shipped_path())) return;
    const int n = 1000;
    uint8_t *canvases = classifier_dataset_canvases(test, NULL, n, c->cfg.image_size);
    int *pred = malloc(n * sizeof(int));
    const double t0 = cpu_seconds();
    classifier_run(c, canvases, n, pred, NULL, NULL);
    const double seconds = cpu_seconds() - t0;
    int right = 0;
    for (int i = 0; i < n; i++) right += pred[i] == test->labels[i];
    CHECK(right >= 900, "shipped classifier on the first 1000 Fashion-MNIST test images: accuracy %.3f (want >= "
          "0.9; recorded full-test accuracy %.4f)", right / 1000.0, c->test_accuracy);
    // ~11 MFLOP an image: 1000 images are ~0.1 s of CPU; 5 CPU seconds allow a sanitizer build. CPU time, not
    // wall time: under ASan on a loaded shared machine the wall clock read 6.4 s (a failure that said nothing).
    CHECK(seconds < 5, "1000 classifier forwards took %.2f s of CPU, all threads (< 5 s)", seconds);
    free(canvases), free(pred);
    classifier_free(c);
}

// ---- the Frechet distance on known cases ----------------------------------------------------------------

static void test_frechet(void) {
    const int n = 400, F = 3;
    float *x = random_floats((size_t)n * F, 1), *shifted = malloc((size_t)n * F * sizeof(float));
    const float delta[3] = {0.5f, -1.0f, 2.0f};
    for (int i = 0; i < n * F; i++) shifted[i] = x[i] + delta[i % F];
    double mu1[3], s1[9], mu2[3], s2[9], d_self, d_shift;
    dit_moments *m = dit_moments_create(F);
    dit_moments_add(m, x, n);
    dit_moments_finish(m, mu1, s1);
    dit_moments_free(m);
    m = dit_moments_create(F);
    dit_moments_add(m, shifted, n);
    dit_moments_finish(m, mu2, s2);
    dit_moments_free(m);
    dit_frechet_distance(mu1, s1, mu1, s1, F, &d_self);
    dit_frechet_distance(mu1, s1, mu2, s2, F, &d_shift);
    // same covariance: the distance is |delta|^2 = 5.25 (tolerances: float32 features, LAPACK eigenvalues)
    CHECK(fabs(d_self) < 1e-6, "Frechet distance of a set with itself: %.3g (want 0, tol 1e-6)", d_self);
    CHECK(fabs(d_shift - 5.25) < 1e-4, "Frechet distance to the set shifted by (0.5, -1, 2): %.8f (want 5.25, tol "
          "1e-4)", d_shift);
    // N(0, diag(1, 4, 9)) vs N((1, 0, 0), diag(4, 4, 1)): 1 + (1 - 2)^2 + 0 + (3 - 1)^2 = 6
    double a_mu[3] = {0, 0, 0}, a_s[9] = {1, 0, 0, 0, 4, 0, 0, 0, 9}, b_mu[3] = {1, 0, 0}, b_s[9] = {4, 0, 0, 0, 4, 0, 0, 0, 1};
    double d;
    dit_frechet_distance(a_mu, a_s, b_mu, b_s, 3, &d);
    CHECK(fabs(d - 6) < 1e-9, "Frechet distance of diagonal Gaussians: %.12f (want 6 = |dmu|^2 + sum (sqrt a - "
          "sqrt b)^2, tol 1e-9)", d);
    free(x), free(shifted);
}

// ---- dit eval --fmnist ---------------------------------------------------------------------------------

static void write_u8_npz(const char *path, const uint8_t *data, int n, int h, int w, int c) {
    npy_array a = {.dtype = DT_U8, .ndim = 4, .shape = {n, h, w, c}, .data = (void *)data,
                   .nbytes = (size_t)n * h * w * c};
    const char *names[] = {"arr_0"};
    npz_write(path, names, &a, 1);
}

// The number of lines of s; its last newline is removed so a CHECK message can quote it.
static int count_lines(char *s) {
    int lines = 0;
    for (char *p = s; *p; p++) lines += *p == '\n';
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') s[n - 1] = '\0';
    return lines;
}

static void test_eval_cli(const classifier_dataset *test) {
    const char *bin = getenv("DIT_BIN") ? getenv("DIT_BIN") : "build/dit";
    // 2 test images of each class in class order (the layout of `dit sample --classes 0..9 -n 2`)
    const int per = 2, n = 10 * per, S = 32;
    uint8_t *images = calloc((size_t)n * S * S, 1);
    int32_t labels[20];
    for (int k = 0, filled = 0; k < 10; k++)
        for (int i = 0, got = 0; i < test->count && got < per; i++)
            if (test->labels[i] == k) {
                classifier_place_image(images + (size_t)filled * S * S, S, test->images + (size_t)i * 28 * 28, 28, 28,
                                       0, 0, 0);
                labels[filled++] = k, got++;
            }
    const char *npz = scratch_path("fmnist20.npz"), *lab = scratch_path("fmnist20_labels.npy");
    write_u8_npz(npz, images, n, S, S, 1);
    npy_array la = {.dtype = DT_I32, .ndim = 1, .shape = {n}, .data = labels, .nbytes = sizeof labels};
    npy_write(lab, &la);
    char cmd[8192], *out = NULL;
    const char *common = "--test-images 300 --ref-images 300 -t 1";
    snprintf(cmd, sizeof cmd, "%s eval --fmnist %s --per-class %d --classifier %s %s", bin, npz, per, shipped_path(),
             common);
    int rc = run_command(cmd, &out);
    const char *line = strstr(out, "Class agreement: ");
    double agreement = line ? atof(line + 17) : -1;
    const char *fd_line = strstr(out, "Frechet distance (classifier features): ");
    const char *floor_line = strstr(out, "Frechet distance, train vs test (floor): ");
    CHECK(rc == 0 && agreement >= 0.85 && fd_line && floor_line,
          "dit eval --fmnist on 20 real test images (--per-class 2): rc %d, class agreement %.3f (want >= 0.85), "
          "Frechet lines %s", rc, agreement, fd_line && floor_line ? "present" : "missing");
    if (rc != 0 || !line) printf("%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s eval --fmnist %s --labels %s --classifier %s %s", bin, npz, lab, shipped_path(),
             common);
    rc = run_command(cmd, &out);
    line = strstr(out, "Class agreement: ");
    double with_labels = line ? atof(line + 17) : -1;
    CHECK(rc == 0 && with_labels == agreement, "dit eval --fmnist --labels gives the same agreement: %.3f vs %.3f",
          with_labels, agreement);
    free(out);

    // bad inputs: one clear line each, non-zero status
    const char *bad_npz = scratch_path("fmnist_28.npz");
    write_u8_npz(bad_npz, images, 2, 28, 28, 1);
    snprintf(cmd, sizeof cmd, "%s eval --fmnist %s --per-class 1 --classifier %s", bin, bad_npz, shipped_path());
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && count_lines(out) == 1 && strstr(out, "arr_0 is U8 (2, 28, 28, 1), expected uint8 (N, 32, 32, 1)"),
          "a 28x28 npz is refused in one line: rc %d: %s", rc, out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s eval --fmnist %s --per-class 3 --classifier %s", bin, npz, shipped_path());
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && count_lines(out) == 1 && strstr(out, "20 images, but --per-class 3 means 10 classes x 3 = 30"),
          "--per-class that does not match the image count is refused in one line: rc %d: %s", rc, out);
    free(out);
    la.shape[0] = 7, la.nbytes = 7 * sizeof(int32_t);
    npy_write(lab, &la);
    snprintf(cmd, sizeof cmd, "%s eval --fmnist %s --labels %s --classifier %s", bin, npz, lab, shipped_path());
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && count_lines(out) == 1 && strstr(out, "7 labels for the 20 images"),
          "a labels file of the wrong length is refused in one line: rc %d: %s", rc, out);
    free(out);
    free(images);
}

void test_classifier(void) {
    test_conv2d_backward();
    test_relu_maxpool_backward();
    test_model_backward();
    test_frechet();
    classifier_dataset test;
    if (!CHECK(classifier_dataset_load(&test, "fashion-mnist", 1) == DIT_OK,
               "Fashion-MNIST test split at /usr/share/datasets/fashion-mnist (scripts/setup.sh installs it)"))
        return;
    test_shipped_classifier(&test);
    test_eval_cli(&test);
    classifier_dataset_free(&test);
}
