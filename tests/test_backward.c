// Backward passes: every op's backward against central finite differences of its own float32 forward
// (losses summed in double), the whole model's gradients against our PyTorch reference's autograd
// (tests/golden/grad/, tests/ref/make_grad_golden.py), and finite differences of the whole model.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "base/error.h"
#include "base/threads.h"
#include "io/tensors.h"
#include "models/dit_model.h"
#include "ops/ops.h"
#include "test.h"

static uint32_t rng_state = 2024;
static float *random_floats(size_t n, float scale) { return test_random_floats(&rng_state, n, scale); }

// ---- finite differences of the ops ------------------------------------------------------------------

// Central differences of a scalar loss L(input) = sum(R * forward(input)), evaluated in float32 and summed
// in double, against the analytic gradient. The step actually taken is (float)(v + h) - v, so float32
// rounding of the perturbed input does not bias the quotient. Error budget at h = 1e-2: truncation
// h^2 f''' / 6 ~ 1e-5 for these O(1) smooth functions, plus float32 rounding of the affected outputs
// (~6e-8 |y| each, over <= ~50 outputs) / 2h ~ 1e-5; fast_expf's 2e-7 relative steps add as much. A sign
// or index error gives O(1). Bound: worst |fd - analytic| <= 1e-3 * max |analytic|.
#define FD_H 1e-2
#define FD_REL_TOL 1e-3

typedef test_loss_fn loss_fn;

static void fd_check(const char *what, loss_fn loss, void *ctx, float *input, const float *analytic, int64_t n) {
    test_fd_check(what, loss, ctx, input, analytic, n, FD_H, FD_REL_TOL);
}

typedef struct {
    int M, K, N;
    float *inp, *weight, *bias, *out, *R;
} linear_ctx;
static double linear_loss(void *p) {
    linear_ctx *c = p;
    linear_forward(c->out, c->inp, c->weight, c->bias, c->M, c->K, c->N);
    return test_dot_double(c->R, c->out, (int64_t)c->M * c->N);
}

static void test_linear_backward(void) {
    linear_ctx c = {.M = 7, .K = 5, .N = 6};
    c.inp = random_floats(c.M * c.K, 1), c.weight = random_floats(c.N * c.K, 1), c.bias = random_floats(c.N, 1);
    c.out = malloc(c.M * c.N * sizeof(float)), c.R = random_floats(c.M * c.N, 1);
    float *dinp = malloc(c.M * c.K * sizeof(float)), *dw = calloc(c.N * c.K, sizeof(float));
    float *db = calloc(c.N, sizeof(float));
    linear_backward(dinp, dw, db, c.R, c.inp, c.weight, c.M, c.K, c.N);
    fd_check("linear_backward dinp (7x5 -> 6)", linear_loss, &c, c.inp, dinp, c.M * c.K);
    fd_check("linear_backward dweight", linear_loss, &c, c.weight, dw, c.N * c.K);
    fd_check("linear_backward dbias", linear_loss, &c, c.bias, db, c.N);
    // parameter gradients accumulate: a second call doubles them
    float *dw2 = malloc(c.N * c.K * sizeof(float)), *db2 = malloc(c.N * sizeof(float));
    for (int i = 0; i < c.N * c.K; i++) dw2[i] = 2 * dw[i];
    for (int i = 0; i < c.N; i++) db2[i] = 2 * db[i];
    linear_backward(NULL, dw, db, c.R, c.inp, c.weight, c.M, c.K, c.N);
    CHECK_CLOSE("linear_backward accumulates dweight (+=)", dw, dw2, c.N * c.K, 1e-6, 1e-6);
    CHECK_CLOSE("linear_backward accumulates dbias (+=)", db, db2, c.N, 1e-6, 1e-6);
    free(c.inp); free(c.weight); free(c.bias); free(c.out); free(c.R); free(dinp); free(dw); free(db);
    free(dw2); free(db2);
}

typedef struct {
    int B, T, D, stride;
    float *x, *ada, *y, *R;
} ln_ctx;
static double ln_loss(void *p) {
    ln_ctx *c = p;
    layernorm_modulate_forward(c->y, NULL, NULL, c->x, c->ada, c->ada + c->D, c->stride, c->B, c->T, c->D);
    return test_dot_double(c->R, c->y, (int64_t)c->B * c->T * c->D);
}

static void test_layernorm_modulate_backward(void) {
    ln_ctx c = {.B = 2, .T = 3, .D = 7};
    c.stride = 2 * c.D + 1;   // one unused column: its gradient must stay 0
    const int n = c.B * c.T * c.D;
    c.x = random_floats(n, 2), c.ada = random_floats(c.B * c.stride, 0.5f), c.y = malloc(n * sizeof(float));
    c.R = random_floats(n, 1);
    for (int i = 0; i < n; i++) c.x[i] += 0.3f;
    float *mean = malloc(c.B * c.T * sizeof(float)), *rstd = malloc(c.B * c.T * sizeof(float));
    layernorm_modulate_forward(c.y, mean, rstd, c.x, c.ada, c.ada + c.D, c.stride, c.B, c.T, c.D);
    float *dx = calloc(n, sizeof(float)), *dada = calloc(c.B * c.stride, sizeof(float));
    layernorm_modulate_backward(dx, dada, dada + c.D, c.R, c.x, mean, rstd, c.ada + c.D, c.stride, c.B, c.T, c.D);
    fd_check("layernorm_modulate_backward dx (2,3,7)", ln_loss, &c, c.x, dx, n);
    fd_check("layernorm_modulate_backward dshift, dscale (row stride 2D+1)", ln_loss, &c, c.ada, dada,
             c.B * c.stride);
    // dx accumulates: a second call doubles it
    float *dx2 = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) dx2[i] = 2 * dx[i];
    layernorm_modulate_backward(dx, dada, dada + c.D, c.R, c.x, mean, rstd, c.ada + c.D, c.stride, c.B, c.T, c.D);
    CHECK_CLOSE("layernorm_modulate_backward accumulates dx (+=)", dx, dx2, n, 1e-6, 1e-6);
    free(c.x); free(c.ada); free(c.y); free(c.R); free(mean); free(rstd); free(dx); free(dada); free(dx2);
}

typedef struct {
    int64_t n;
    int gelu;
    float *x, *y, *R;
} pointwise_ctx;
static double pointwise_loss(void *p) {
    pointwise_ctx *c = p;
    if (c->gelu) gelu_tanh_forward(c->y, c->x, c->n);
    else silu_forward(c->y, c->x, c->n);
    return test_dot_double(c->R, c->y, c->n);
}

static void test_pointwise_backward(void) {
    pointwise_ctx c = {.n = 97};
    c.x = random_floats(c.n, 6), c.y = malloc(c.n * sizeof(float)), c.R = random_floats(c.n, 1);
    float *dx = malloc(c.n * sizeof(float)), *inplace = malloc(c.n * sizeof(float));
    for (c.gelu = 0; c.gelu <= 1; c.gelu++) {
        if (c.gelu) gelu_tanh_backward(dx, c.R, c.x, c.n);
        else silu_backward(dx, c.R, c.x, c.n);
        fd_check(c.gelu ? "gelu_tanh_backward on [-6, 6]" : "silu_backward on [-6, 6]", pointwise_loss, &c, c.x, dx,
                 c.n);
        memcpy(inplace, c.R, c.n * sizeof(float));
        if (c.gelu) gelu_tanh_backward(inplace, inplace, c.x, c.n);
        else silu_backward(inplace, inplace, c.x, c.n);
        CHECK_CLOSE(c.gelu ? "gelu_tanh_backward in place (dx = dy)" : "silu_backward in place (dx = dy)", inplace, dx,
                    c.n, 0, 0);
    }
    free(c.x); free(c.y); free(c.R); free(dx); free(inplace);
}

typedef struct {
    int B, T, D, stride;
    float *x0, *x, *y, *bias, *gate, *R;
} gated_ctx;
static double gated_loss(void *p) {
    gated_ctx *c = p;
    const int64_t n = (int64_t)c->B * c->T * c->D;
    memcpy(c->x, c->x0, n * sizeof(float));
    gated_residual_forward(c->x, c->y, c->bias, c->gate + 4, c->stride, c->B, c->T, c->D);
    return test_dot_double(c->R, c->x, n);
}

static void test_gated_residual_backward(void) {
    gated_ctx c = {.B = 2, .T = 3, .D = 5, .stride = 11};
    const int n = c.B * c.T * c.D;
    c.x0 = random_floats(n, 1), c.x = malloc(n * sizeof(float)), c.y = random_floats(n, 1);
    c.bias = random_floats(c.D, 1), c.gate = random_floats(c.B * c.stride, 1), c.R = random_floats(n, 1);
    float *dy = malloc(n * sizeof(float)), *dbias = calloc(c.D, sizeof(float));
    float *dgate = calloc(c.B * c.stride, sizeof(float));
    gated_residual_backward(dy, dbias, dgate + 4, c.R, c.y, c.bias, c.gate + 4, c.stride, c.B, c.T, c.D);
    fd_check("gated_residual_backward dy (2,3,5)", gated_loss, &c, c.y, dy, n);
    fd_check("gated_residual_backward dbias", gated_loss, &c, c.bias, dbias, c.D);
    fd_check("gated_residual_backward dgate (row stride 11, offset 4)", gated_loss, &c, c.gate, dgate,
             c.B * c.stride);
    // A sample per thread (1 thread) and the split over rows and column blocks (more threads than samples): the
    // same bits.
    float *dy2 = malloc(n * sizeof(float)), *dbias2 = calloc(c.D, sizeof(float)), *dgate2 = calloc(c.B * c.stride, sizeof(float));
    memset(dbias, 0, c.D * sizeof(float));
    const int threads = dit_max_threads();
    dit_set_threads(1);
    gated_residual_backward(dy, dbias, dgate + 4, c.R, c.y, c.bias, c.gate + 4, c.stride, c.B, c.T, c.D);
    dit_set_threads(c.B + 1);
    gated_residual_backward(dy2, dbias2, dgate2 + 4, c.R, c.y, c.bias, c.gate + 4, c.stride, c.B, c.T, c.D);
    dit_set_threads(threads);
    CHECK(!memcmp(dy, dy2, n * sizeof(float)) && !memcmp(dbias, dbias2, c.D * sizeof(float)) &&
          !memcmp(dgate + 4, dgate2 + 4, (c.B * c.stride - 4) * sizeof(float)),
          "gated_residual_backward by sample (1 thread) == split over rows and columns (%d threads), bit for bit", c.B + 1);
    free(dy2), free(dbias2), free(dgate2);
    free(c.x0); free(c.x); free(c.y); free(c.bias); free(c.gate); free(c.R); free(dy); free(dbias); free(dgate);
}

typedef struct {
    int B, T, D, H;
    float *qkv, *out, *R, *scratch;
} attention_ctx;
static double attention_loss(void *p) {
    attention_ctx *c = p;
    attention_forward(c->out, c->qkv, c->scratch, c->B, c->T, c->D, c->H);
    return test_dot_double(c->R, c->out, (int64_t)c->B * c->T * c->D);
}

// T = 5: a row shorter than the softmax's 8 lanes; T = 19: two full vectors and a tail of 3.
static void test_attention_backward(void) {
    for (int T = 5; T <= 19; T += 14) {
        attention_ctx c = {.B = 2, .T = T, .H = 2, .D = 6};
        const int n_qkv = c.B * c.T * 3 * c.D, n_out = c.B * c.T * c.D;
        c.qkv = random_floats(n_qkv, 1.5f), c.out = malloc(n_out * sizeof(float)), c.R = random_floats(n_out, 1);
        c.scratch = malloc(attention_backward_scratch_floats(c.T, 256) * sizeof(float));   // any thread count <= 256
        float *dqkv = malloc(n_qkv * sizeof(float));
        attention_backward(dqkv, c.R, c.qkv, c.scratch, c.B, c.T, c.D, c.H);
        char what[64];
        snprintf(what, sizeof what, "attention_backward dqkv (B2 T%d H2 hd3)", T);
        fd_check(what, attention_loss, &c, c.qkv, dqkv, n_qkv);
        free(c.qkv); free(c.out); free(c.R); free(c.scratch); free(dqkv);
    }
}

// patchify and unpatchify are permutations: their backward must be the adjoint, <f(x), r> = <x, f^T(r)>,
// and a permutation moves values without arithmetic, so both sides are the same products summed in another
// order (1e-12 rel: double summation of 144 products).
static void test_patch_backward(void) {
    const int B = 2, C = 3, S = 6, P = 2, n = B * C * S * S;
    float *x = random_floats(n, 1), *r = random_floats(n, 1), *fx = malloc(n * sizeof(float));
    float *ftr = malloc(n * sizeof(float));
    patchify_forward(fx, x, B, C, S, P);
    patchify_backward(ftr, r, B, C, S, P);
    double lhs = test_dot_double(fx, r, n), rhs = test_dot_double(x, ftr, n);
    CHECK(fabs(lhs - rhs) <= 1e-12 * fabs(lhs), "patchify_backward is the adjoint: <P x, r> = %.15g, <x, P^T r> = %.15g",
          lhs, rhs);
    unpatchify_forward(fx, x, B, C, S, P);
    unpatchify_backward(ftr, r, B, C, S, P);
    lhs = test_dot_double(fx, r, n), rhs = test_dot_double(x, ftr, n);
    CHECK(fabs(lhs - rhs) <= 1e-12 * fabs(lhs),
          "unpatchify_backward is the adjoint: <U x, r> = %.15g, <x, U^T r> = %.15g", lhs, rhs);
    patchify_forward(fx, x, B, C, S, P);
    patchify_backward(ftr, fx, B, C, S, P);
    CHECK_CLOSE("patchify_backward(patchify(x)) = x (an inverse permutation)", ftr, x, n, 0, 0);
    free(x); free(r); free(fx); free(ftr);
}

// ---- the whole model against the PyTorch reference ------------------------------------------------------

typedef struct {
    const char *name;
    dit_config cfg;
    int batch;
    uint32_t seed;
} grad_config;

static const grad_config grad_configs[] = {   // = tests/golden/dit/configs.json
    {"tiny", {.input_size = 8, .patch_size = 2, .in_channels = 4, .hidden_size = 64, .depth = 2, .num_heads = 4,
              .mlp_ratio = 4.0f, .num_classes = 10, .class_dropout_prob = 0.1f, .learn_sigma = 1}, 3, 1},
    {"odd", {.input_size = 12, .patch_size = 3, .in_channels = 3, .hidden_size = 96, .depth = 3, .num_heads = 6,
             .mlp_ratio = 4.0f, .num_classes = 7, .class_dropout_prob = 0.1f, .learn_sigma = 0}, 2, 2},
};


static double model_loss(dit_model *m, dit_train_activations *a, const float *x, const float *t, const int *y,
                         const float *R, float *out, int64_t n_out) {
    DIT_CHECK(dit_forward_train(m, a, x, t, y, out) == DIT_OK);
    return test_dot_double(R, out, n_out);
}

// The reference's float32 gradients differ from its float64 ones by up to 2.3e-5 of each tensor's largest
// gradient (tests/golden/grad/README.md); ours take other float32 paths (sgemm order, fast_expf), so allow
// 4x that: 1e-4 of the tensor's max |grad| (we observe ~1e-6). A wrong index, transpose or missing term
// gives O(1) there.
#define GRAD_TOL 1e-4

static cJSON *grad_meta(const char *name) {
    static char text[1 << 14];
    FILE *f = fopen(golden_path("grad/configs.json"), "rb");
    if (!f) return NULL;
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    cJSON *root = cJSON_Parse(text), *configs = cJSON_GetObjectItemCaseSensitive(root, "configs"), *c;
    cJSON_ArrayForEach(c, configs) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) {
            cJSON *copy = cJSON_Duplicate(c, 1);
            cJSON_Delete(root);
            return copy;
        }
    }
    cJSON_Delete(root);
    return NULL;
}

static void test_model_gradients(const grad_config *gc) {
    char path[256], what[256];
    dit_model *m = dit_model_synthetic(&gc->cfg, gc->seed);
    cJSON *meta = grad_meta(gc->name);
    if (!CHECK(m && meta, "%s: synthetic model and grad/configs.json entry", gc->name)) {
        dit_model_free(m);
        cJSON_Delete(meta);
        return;
    }
    const int B = gc->batch, S = gc->cfg.input_size, OUT = dit_config_out_channels(&gc->cfg);
    const int64_t n_out = (int64_t)B * OUT * S * S;
    int64_t nx, nt, ny, nr, n_stats, n_idx, n_sample, n_full;
    snprintf(path, sizeof path, "dit/%s_x.npy", gc->name);
    double *xd = golden_read_doubles(path, &nx);
    snprintf(path, sizeof path, "dit/%s_t.npy", gc->name);
    double *td = golden_read_doubles(path, &nt);
    snprintf(path, sizeof path, "dit/%s_y.npy", gc->name);
    double *yd = golden_read_doubles(path, &ny);
    snprintf(path, sizeof path, "grad/%s_R.npy", gc->name);
    double *Rd = golden_read_doubles(path, &nr);
    snprintf(path, sizeof path, "grad/%s_stats.npy", gc->name);
    double *stats = golden_read_doubles(path, &n_stats);
    snprintf(path, sizeof path, "grad/%s_sample_idx.npy", gc->name);
    double *idx = golden_read_doubles(path, &n_idx);
    snprintf(path, sizeof path, "grad/%s_sample.npy", gc->name);
    double *sample = golden_read_doubles(path, &n_sample);
    snprintf(path, sizeof path, "grad/%s_full.npy", gc->name);
    double *full = golden_read_doubles(path, &n_full);
    if (!xd || !td || !yd || !Rd || !stats || !idx || !sample || !full || nt != B || ny != B || nr != n_out ||
        n_stats != 3 * m->num_params || n_idx != n_sample) {
        CHECK(0, "%s: golden gradient files have the expected sizes", gc->name);
        goto done;
    }
    float *x = doubles_to_floats(xd, nx), *t = doubles_to_floats(td, nt), *R = doubles_to_floats(Rd, nr);
    int *y = malloc(B * sizeof(int));
    for (int b = 0; b < B; b++) y[b] = (int)yd[b];
    float *out = malloc(n_out * sizeof(float)), *out_inf = malloc(n_out * sizeof(float));
    float *grads = calloc(m->total_floats, sizeof(float));
    dit_train_activations *a = dit_train_activations_create(m, B);

    // The training forward runs the inference forward's kernels in its order; only the GEMM shapes may differ
    // (inference multiplies per sample for batch invariance, training the whole batch at once), so the two
    // agree to float32 summation order: 1e-5 on outputs of size ~2 (observed ~5e-7).
    DIT_CHECK(dit_forward_train(m, a, x, t, y, out) == DIT_OK);
    DIT_CHECK(dit_model_forward(m, x, t, y, B, out_inf) == DIT_OK);
    snprintf(what, sizeof what, "%s: dit_forward_train output = dit_model_forward output (up to sgemm order)",
             gc->name);
    CHECK_CLOSE(what, out, out_inf, n_out, 1e-5, 1e-5);
    double loss = test_dot_double(R, out, n_out);
    double want_loss = cJSON_GetObjectItemCaseSensitive(meta, "loss")->valuedouble;
    // 1e-4 rel: the loss sums ~1500 outputs that match the reference to ~1e-6
    CHECK(fabs(loss - want_loss) <= 1e-4 * fabs(want_loss), "%s: loss sum(out * R) = %.7f, reference %.7f", gc->name,
          loss, want_loss);

    dit_backward(m, a, R, grads);
    CHECK(cJSON_GetObjectItemCaseSensitive(meta, "total_floats")->valuedouble == (double)m->total_floats,
          "%s: gradient buffer has the reference's %zu floats", gc->name, m->total_floats);

    // per tensor: sum, sum of squares, max |g| against the reference
    double worst_sq = 0, worst_sum = 0, worst_max = 0;
    const char *worst_sq_name = "", *worst_sum_name = "";
    int pos_zero = 1;
    for (int k = 0; k < m->num_params; k++) {
        const param_entry *e = &m->table[k];
        const float *g = grads + e->offset;
        double s = 0, sq = 0, mx = 0;
        for (size_t i = 0; i < e->numel; i++) s += g[i], sq += (double)g[i] * g[i], mx = fmax(mx, fabs(g[i]));
        if (!strcmp(e->name, "pos_embed")) {
            pos_zero = sq == 0;
            continue;
        }
        const double *st = stats + 3 * k;
        double rel_sq = fabs(sq - st[1]) / st[1];
        // the sum may cancel: measure it against sqrt(numel * sum of squares), its natural size
        double rel_sum = fabs(s - st[0]) / sqrt((double)e->numel * st[1]);
        double rel_max = fabs(mx - st[2]) / st[2];
        if (rel_sq > worst_sq) worst_sq = rel_sq, worst_sq_name = e->name;
        if (rel_sum > worst_sum) worst_sum = rel_sum, worst_sum_name = e->name;
        worst_max = fmax(worst_max, rel_max);
    }
    CHECK(pos_zero, "%s: pos_embed (fixed) gets no gradient", gc->name);
    // sum of squares ~ 2 |g| |dg|: twice the element tolerance
    CHECK(worst_sq <= 2 * GRAD_TOL && worst_sum <= GRAD_TOL && worst_max <= GRAD_TOL,
          "%s: per-tensor sum / sum of squares / max |g| vs reference: worst rel %.2g (%s) / %.2g (%s) / %.2g "
          "(bounds %.0e, %.0e, %.0e)", gc->name, worst_sum, worst_sum_name, worst_sq, worst_sq_name, worst_max,
          GRAD_TOL, 2 * GRAD_TOL, GRAD_TOL);

    // sampled elements of every tensor, each against its tensor's largest gradient
    double worst = 0;
    int64_t worst_j = 0;
    for (int64_t j = 0; j < n_idx; j++) {
        size_t off = (size_t)idx[j];
        int k = 0;
        while (k + 1 < m->num_params && m->table[k + 1].offset <= off) k++;
        double err = fabs(grads[off] - sample[j]) / stats[3 * k + 2];
        if (err > worst) worst = err, worst_j = j;
    }
    CHECK(worst <= GRAD_TOL, "%s: %lld sampled gradients (all tensors) vs reference: worst |err| / max|g of tensor| "
          "%.2g at sample %lld (bound %.0e)", gc->name, (long long)n_idx, worst, (long long)worst_j, GRAD_TOL);

    // full small tensors
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(meta, "full_tensors"), *nm;
    int64_t pos = 0;
    cJSON_ArrayForEach(nm, names) {
        const param_entry *e = dit_param_find(m, nm->valuestring);
        if (!CHECK(e && pos + (int64_t)e->numel <= n_full, "%s: full tensor %s", gc->name, nm->valuestring)) break;
        float *want = doubles_to_floats(full + pos, (int64_t)e->numel);
        double mx = 0;
        for (size_t i = 0; i < e->numel; i++) mx = fmax(mx, fabs(want[i]));
        snprintf(what, sizeof what, "%s: grad %s (%zu floats) vs reference, atol %.0e * max|g| = %.2g", gc->name,
                 e->name, e->numel, GRAD_TOL, GRAD_TOL * mx);
        CHECK_CLOSE(what, grads + e->offset, want, e->numel, GRAD_TOL * mx, 0);
        pos += (int64_t)e->numel;
        free(want);
    }

    // Direct central differences of the whole float32 model on a few parameters: the largest gradient of
    // some tensors along every path. L = sum(out * R) in double; h = 1e-2 on weights of size ~0.1..1.
    // Error: truncation h^2 L''' / 6 and the float32 noise of ~1500 outputs (~1e-7 each, partly cancelling)
    // over 2h: about 1e-3 of these gradients of size ~1; bound 1e-2 rel of the gradient + 2e-3 abs.
    static const char *const probe[] = {
        "x_embedder.proj.weight", "t_embedder.mlp.0.weight", "t_embedder.mlp.2.bias", "y_embedder.embedding_table.weight",
        "blocks.0.attn.qkv.weight", "blocks.0.adaLN_modulation.1.weight", "blocks.1.mlp.fc1.weight",
        "blocks.1.attn.proj.bias", "final_layer.adaLN_modulation.1.weight", "final_layer.linear.weight",
    };
    double worst_fd = 0;
    const char *worst_fd_name = "";
    int fd_ok = 1;
    for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        const param_entry *e = dit_param_find(m, probe[i]);
        if (!e) continue;
        size_t best = 0;
        for (size_t j = 1; j < e->numel; j++)
            if (fabsf(grads[e->offset + j]) > fabsf(grads[e->offset + best])) best = j;
        float *w = m->params + e->offset + best;
        const float v = *w, vp = (float)(v + 1e-2), vm = (float)(v - 1e-2);
        *w = vp;
        double lp = model_loss(m, a, x, t, y, R, out, n_out);
        *w = vm;
        double lm = model_loss(m, a, x, t, y, R, out, n_out);
        *w = v;
        double fd = (lp - lm) / ((double)vp - (double)vm), g = grads[e->offset + best];
        double err = fabs(fd - g);
        if (err > 1e-2 * fabs(g) + 2e-3) fd_ok = 0;
        if (err / fabs(g) > worst_fd) worst_fd = err / fabs(g), worst_fd_name = probe[i];
    }
    CHECK(fd_ok, "%s: whole-model central differences on the largest gradient of %zu tensors: worst rel err %.2g "
          "(%s; bound 1e-2 rel + 2e-3 abs)", gc->name, sizeof probe / sizeof probe[0], worst_fd, worst_fd_name);

    // gradients accumulate: a second backward doubles them
    float *twice = malloc(m->total_floats * sizeof(float));
    for (size_t i = 0; i < m->total_floats; i++) twice[i] = 2 * grads[i];
    DIT_CHECK(dit_forward_train(m, a, x, t, y, out) == DIT_OK);
    dit_backward(m, a, R, grads);
    snprintf(what, sizeof what, "%s: dit_backward accumulates (+=): two calls give twice the gradient", gc->name);
    CHECK_CLOSE(what, grads, twice, m->total_floats, 1e-6, 1e-6);

    free(twice);
    dit_train_activations_free(a);
    free(x); free(t); free(R); free(y); free(out); free(out_inf); free(grads);
done:
    free(xd); free(td); free(yd); free(Rd); free(stats); free(idx); free(sample); free(full);
    cJSON_Delete(meta);
    dit_model_free(m);
}

void test_backward(void) {
    test_linear_backward();
    test_layernorm_modulate_backward();
    test_pointwise_backward();
    test_gated_residual_backward();
    test_attention_backward();
    test_patch_backward();
    for (size_t i = 0; i < sizeof grad_configs / sizeof grad_configs[0]; i++) test_model_gradients(&grad_configs[i]);
    // the benchmark hook runs (one warm-up and one timed step of the tiny model)
    dit_model *m = dit_model_synthetic(&grad_configs[0].cfg, 1);
    double step = dit_train_step_seconds(m, 2, 1);
    CHECK(step > 0 && step < 10, "dit_train_step_seconds on tiny, batch 2: %.3g ms per forward + backward", 1e3 * step);
    dit_model_free(m);
}
