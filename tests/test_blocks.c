// The block designs of reference.md §1.13 (adaLN, cross-attention, in-context; adaLN-Zero is covered by the
// dit and backward units): sizes and Gflops, the new ops' backward against finite differences, forward and
// gradients against our PyTorch reference (tests/golden/blocks/, tests/ref/make_blocks_golden.py), bf16 against
// fp32, files and training checkpoints that keep the design, and the initialisation.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "base/error.h"
#include "models/dit_model.h"
#include "ops/ops.h"
#include "test.h"
#include "train/train.h"

static uint32_t rng_state = 4242;
static float *random_floats(size_t n, float scale) { return test_random_floats(&rng_state, n, scale); }

typedef struct {
    dit_block_kind block;
    const char *file;   // the golden files' prefix
} design;
static const design designs[] = {
    {DIT_BLOCK_ADALN, "adaln"}, {DIT_BLOCK_CROSS_ATTENTION, "cross"}, {DIT_BLOCK_IN_CONTEXT, "incontext"},
};

// The "tiny" config of tests/golden/dit/ (its x, t, y; synthetic weights seed 1) in another block design.
static dit_config tiny_config(dit_block_kind block) {
    return (dit_config){.input_size = 8, .patch_size = 2, .in_channels = 4, .hidden_size = 64, .depth = 2,
                        .num_heads = 4, .mlp_ratio = 4.0f, .num_classes = 10, .class_dropout_prob = 0.1f,
                        .learn_sigma = 1, .block = block};
}

// ---- sizes ----------------------------------------------------------------------------------------

static void test_sizes(void) {
    // DiT-XL/2 at 256 px in the four designs against the legend of the paper's Fig. 5 (Gflops as multiply-adds).
    // The paper's own count of adaLN-Zero is 118.64 in its Table 4 and ours is 118.62 (reference.md §1.11): the
    // paper does not publish its counting, so 0.03 is the agreement to expect.
    const struct { dit_block_kind block; double paper; } fig5[] = {
        {DIT_BLOCK_ADALN_ZERO, 118.60}, {DIT_BLOCK_ADALN, 118.56}, {DIT_BLOCK_CROSS_ATTENTION, 137.62},
        {DIT_BLOCK_IN_CONTEXT, 119.37},
    };
    for (size_t i = 0; i < sizeof fig5 / sizeof fig5[0]; i++) {
        dit_config c;
        DIT_CHECK(dit_config_named(&c, "DiT-XL/2", 256) == DIT_OK);
        c.block = fig5[i].block;
        const double g = dit_config_gmacs(&c);
        CHECK(fabs(g - fig5[i].paper) <= 0.03, "DiT-XL/2 %s: %.2f Gflops (paper Fig. 5: %.2f; bound 0.03)",
              dit_block_name(c.block), g, fig5[i].paper);
    }
    // names round-trip; an unknown one is refused with the accepted names
    int names_ok = 1;
    for (int b = 0; b <= DIT_BLOCK_IN_CONTEXT; b++) {
        dit_block_kind got;
        names_ok &= dit_block_parse(dit_block_name((dit_block_kind)b), &got) == DIT_OK && got == (dit_block_kind)b;
    }
    dit_block_kind got;
    const int refused = dit_block_parse("adaLN", &got) == DIT_ERR;
    CHECK(names_ok && refused && strstr(dit_last_error(), "in-context"), "block names round-trip; 'adaLN' refused: %s",
          dit_last_error());
    dit_config bad = tiny_config((dit_block_kind)7);
    CHECK(dit_config_validate(&bad) == DIT_ERR && strstr(dit_last_error(), "block"),
          "a config with block 7 is refused: %s", dit_last_error());
}

// ---- the new ops against finite differences ------------------------------------------------------

// Error budget as tests/test_backward.c: h = 1e-2, truncation ~1e-5 for these smooth O(1) functions, float32
// rounding of the outputs over 2h ~1e-5; a sign or index error gives O(1). Bound 1e-3 of the largest gradient.
#define FD_H 1e-2
#define FD_REL_TOL 1e-3

typedef struct {
    int N, D;
    float *x, *w, *b, *y, *R;
} ln_ctx;
static double ln_loss(void *p) {
    ln_ctx *c = p;
    layernorm_affine_forward(c->y, NULL, NULL, c->x, c->w, c->b, c->N, c->D);
    return test_dot_double(c->R, c->y, (int64_t)c->N * c->D);
}

static void test_layernorm_affine_backward(void) {
    ln_ctx c = {.N = 5, .D = 37};   // D > 16 columns: two and a part of the backward's column blocks
    const int n = c.N * c.D;
    c.x = random_floats(n, 2), c.w = random_floats(c.D, 1), c.b = random_floats(c.D, 1);
    c.y = malloc(n * sizeof(float)), c.R = random_floats(n, 1);
    for (int i = 0; i < n; i++) c.x[i] += 0.3f;
    float *mean = malloc(c.N * sizeof(float)), *rstd = malloc(c.N * sizeof(float));
    layernorm_affine_forward(c.y, mean, rstd, c.x, c.w, c.b, c.N, c.D);
    // against the formula in double: (x - mean) / sqrt(var + 1e-6) * w + b
    double worst = 0;
    for (int r = 0; r < c.N; r++) {
        double mu = 0, var = 0;
        for (int d = 0; d < c.D; d++) mu += c.x[r * c.D + d];
        mu /= c.D;
        for (int d = 0; d < c.D; d++) var += (c.x[r * c.D + d] - mu) * (c.x[r * c.D + d] - mu);
        var /= c.D;
        for (int d = 0; d < c.D; d++)
            worst = fmax(worst, fabs(c.y[r * c.D + d] - ((c.x[r * c.D + d] - mu) / sqrt(var + 1e-6) * c.w[d] + c.b[d])));
    }
    // float32 normalisation of O(1) values: a few ulps
    CHECK(worst <= 1e-5, "layernorm_affine_forward vs the formula in double (5 x 37): worst abs err %.2g (bound 1e-5)",
          worst);
    float *dx = calloc(n, sizeof(float)), *dw = calloc(c.D, sizeof(float)), *db = calloc(c.D, sizeof(float));
    layernorm_affine_backward(dx, dw, db, c.R, c.x, mean, rstd, c.w, c.N, c.D);
    test_fd_check("layernorm_affine_backward dx (5 x 37)", ln_loss, &c, c.x, dx, n, FD_H, FD_REL_TOL);
    test_fd_check("layernorm_affine_backward dweight", ln_loss, &c, c.w, dw, c.D, FD_H, FD_REL_TOL);
    test_fd_check("layernorm_affine_backward dbias", ln_loss, &c, c.b, db, c.D, FD_H, FD_REL_TOL);
    // everything accumulates: a second call doubles dx, dweight and dbias
    float *want = malloc(n * sizeof(float)), *wantw = malloc(c.D * sizeof(float));
    for (int i = 0; i < n; i++) want[i] = 2 * dx[i];
    for (int i = 0; i < c.D; i++) wantw[i] = 2 * dw[i];
    layernorm_affine_backward(dx, dw, db, c.R, c.x, mean, rstd, c.w, c.N, c.D);
    CHECK_CLOSE("layernorm_affine_backward accumulates dx (+=)", dx, want, n, 1e-6, 1e-6);
    CHECK_CLOSE("layernorm_affine_backward accumulates dweight (+=)", dw, wantw, c.D, 1e-6, 1e-6);
    free(c.x); free(c.w); free(c.b); free(c.y); free(c.R); free(mean); free(rstd); free(dx); free(dw); free(db);
    free(want); free(wantw);
}

typedef struct {
    int B, T, S, D, H;
    float *q, *kv, *out, *R;
} cross_ctx;
static double cross_loss(void *p) {
    cross_ctx *c = p;
    cross_attention_forward(c->out, c->q, c->kv, c->B, c->T, c->S, c->D, c->H);
    return test_dot_double(c->R, c->out, (int64_t)c->B * c->T * c->D);
}

static void test_cross_attention(void) {
    cross_ctx c = {.B = 2, .T = 5, .S = 2, .D = 6, .H = 2};
    const int nq = c.B * c.T * c.D, nkv = c.B * c.S * 2 * c.D;
    c.q = random_floats(nq, 1.5f), c.kv = random_floats(nkv, 1.5f), c.out = malloc(nq * sizeof(float));
    c.R = random_floats(nq, 1);
    // forward against the definition in double: softmax over the S keys of each head, then the values
    cross_attention_forward(c.out, c.q, c.kv, c.B, c.T, c.S, c.D, c.H);
    const int hd = c.D / c.H;
    double worst = 0;
    for (int b = 0; b < c.B; b++)
        for (int t = 0; t < c.T; t++)
            for (int h = 0; h < c.H; h++) {
                double s[2], z = 0;
                for (int j = 0; j < c.S; j++) {
                    s[j] = 0;
                    for (int i = 0; i < hd; i++)
                        s[j] += (double)c.q[(b * c.T + t) * c.D + h * hd + i] * c.kv[(b * c.S + j) * 2 * c.D + h * hd + i];
                    s[j] = exp(s[j] / sqrt((double)hd));
                    z += s[j];
                }
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int j = 0; j < c.S; j++) o += s[j] / z * c.kv[(b * c.S + j) * 2 * c.D + c.D + h * hd + i];
                    worst = fmax(worst, fabs(o - c.out[(b * c.T + t) * c.D + h * hd + i]));
                }
            }
    CHECK(worst <= 1e-6, "cross_attention_forward (B2 T5 S2 H2 hd3) vs the definition in double: worst abs err %.2g "
          "(bound 1e-6: float32 sums of 3 products)", worst);
    float *dq = malloc(nq * sizeof(float)), *dkv = malloc(nkv * sizeof(float));
    cross_attention_backward(dq, dkv, c.R, c.q, c.kv, c.B, c.T, c.S, c.D, c.H);
    test_fd_check("cross_attention_backward dq", cross_loss, &c, c.q, dq, nq, FD_H, FD_REL_TOL);
    test_fd_check("cross_attention_backward dkv (keys and values of 2 tokens)", cross_loss, &c, c.kv, dkv, nkv, FD_H,
                  FD_REL_TOL);
    free(c.q); free(c.kv); free(c.out); free(c.R); free(dq); free(dkv);
}

// ---- the whole model against the PyTorch reference ------------------------------------------------

static cJSON *golden_meta(dit_block_kind block) {
    static char text[1 << 14];
    FILE *f = fopen(golden_path("blocks/configs.json"), "rb");
    if (!f) return NULL;
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    cJSON *root = cJSON_Parse(text), *c, *found = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "configs")) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(c, "block");
        if (cJSON_IsString(b) && !strcmp(b->valuestring, dit_block_name(block))) found = cJSON_Duplicate(c, 1);
    }
    cJSON_Delete(root);
    return found;
}

static double model_loss(dit_model *m, dit_train_activations *a, const float *x, const float *t, const int *y,
                         const float *R, float *out, int64_t n_out) {
    DIT_CHECK(dit_forward_train(m, a, x, t, y, out) == DIT_OK);
    return test_dot_double(R, out, n_out);
}

// The reference's float32 gradients differ from its float64 ones by up to 2.5e-5 of a tensor's largest
// gradient (tests/golden/blocks/README.md); ours take other float32 paths, so 1e-4 as tests/test_backward.c.
#define GRAD_TOL 1e-4

static void test_design(const design *dz) {
    const char *name = dit_block_name(dz->block);
    char path[256], what[256];
    const dit_config cfg = tiny_config(dz->block);
    dit_model *m = dit_model_synthetic(&cfg, 1);
    cJSON *meta = golden_meta(dz->block);
    if (!CHECK(m && meta, "%s: synthetic model and blocks/configs.json entry", name)) {
        dit_model_free(m);
        cJSON_Delete(meta);
        return;
    }
    const int B = 3, S = cfg.input_size, OUT = dit_config_out_channels(&cfg);
    const int64_t n_out = (int64_t)B * OUT * S * S;
    CHECK(cJSON_GetObjectItemCaseSensitive(meta, "params")->valuedouble == (double)dit_config_param_count(&cfg) &&
          m->total_floats == (size_t)dit_config_param_count(&cfg),
          "%s: %lld parameters, as the reference's state_dict", name, (long long)dit_config_param_count(&cfg));
    int64_t nx, nt, ny, nr, n_want, n_stats, n_idx, n_sample;
    double *xd = golden_read_doubles("dit/tiny_x.npy", &nx), *td = golden_read_doubles("dit/tiny_t.npy", &nt);
    double *yd = golden_read_doubles("dit/tiny_y.npy", &ny), *Rd = golden_read_doubles("grad/tiny_R.npy", &nr);
    snprintf(path, sizeof path, "blocks/%s_out.npy", dz->file);
    double *want_d = golden_read_doubles(path, &n_want);
    snprintf(path, sizeof path, "blocks/%s_stats.npy", dz->file);
    double *stats = golden_read_doubles(path, &n_stats);
    snprintf(path, sizeof path, "blocks/%s_sample_idx.npy", dz->file);
    double *idx = golden_read_doubles(path, &n_idx);
    snprintf(path, sizeof path, "blocks/%s_sample.npy", dz->file);
    double *sample = golden_read_doubles(path, &n_sample);
    if (!xd || !td || !yd || !Rd || !want_d || !stats || !idx || !sample || nt != B || nr != n_out || n_want != n_out ||
        n_stats != 3 * m->num_params || n_idx != n_sample) {
        CHECK(0, "%s: golden files have the expected sizes", name);
        goto done;
    }
    float *x = doubles_to_floats(xd, nx), *t = doubles_to_floats(td, nt), *R = doubles_to_floats(Rd, nr);
    float *want = doubles_to_floats(want_d, n_want);
    int y[3];
    for (int b = 0; b < B; b++) y[b] = (int)yd[b];
    float *out = malloc(n_out * sizeof(float)), *out_train = malloc(n_out * sizeof(float));
    float *one = malloc(n_out / B * sizeof(float));
    float *grads = calloc(m->total_floats, sizeof(float));

    // forward: the reference's float32 output is within ~8e-7 of its float64 one (README); ours differs in
    // summation order only: 1e-5 of max |out| + 1e-5 relative
    DIT_CHECK(dit_model_forward(m, x, t, y, B, out) == DIT_OK);
    double peak = 0;
    for (int64_t i = 0; i < n_out; i++) peak = fmax(peak, fabs(want[i]));
    snprintf(what, sizeof what, "%s: forward vs PyTorch reference (max |out| %.3f)", name, peak);
    CHECK_CLOSE(what, out, want, n_out, 1e-5 * peak, 1e-5);
    // batch invariance: each sample alone gives its bits in the batch (the in-context sequence is per sample)
    int same = 1;
    for (int b = 0; b < B; b++) {
        DIT_CHECK(dit_model_forward(m, x + b * nx / B, t + b, y + b, 1, one) == DIT_OK);
        same &= !memcmp(one, out + b * n_out / B, n_out / B * sizeof(float));
    }
    CHECK(same, "%s: fp32 forward is batch-invariant (each of %d samples alone == in the batch, bit for bit)", name, B);

    // training forward = inference forward up to sgemm order (whole-batch products): 1e-5 as test_backward.c
    dit_train_activations *a = dit_train_activations_create(m, B);
    DIT_CHECK(dit_forward_train(m, a, x, t, y, out_train) == DIT_OK);
    snprintf(what, sizeof what, "%s: dit_forward_train output = dit_model_forward output (up to sgemm order)", name);
    CHECK_CLOSE(what, out_train, out, n_out, 1e-5 * peak, 1e-5);
    const double loss = test_dot_double(R, out_train, n_out);
    const double want_loss = cJSON_GetObjectItemCaseSensitive(meta, "loss")->valuedouble;
    CHECK(fabs(loss - want_loss) <= 1e-4 * fabs(want_loss) + 1e-6, "%s: loss sum(out * R) = %.7f, reference %.7f",
          name, loss, want_loss);

    dit_backward(m, a, R, grads);
    double worst_sq = 0, worst_sum = 0, worst_max = 0;
    const char *worst_name = "";
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
        const double rel_sq = fabs(sq - st[1]) / st[1], rel_sum = fabs(s - st[0]) / sqrt((double)e->numel * st[1]);
        if (rel_sq > worst_sq) worst_sq = rel_sq, worst_name = e->name;
        worst_sum = fmax(worst_sum, rel_sum);
        worst_max = fmax(worst_max, fabs(mx - st[2]) / st[2]);
    }
    CHECK(pos_zero, "%s: pos_embed (fixed) gets no gradient", name);
    CHECK(worst_sq <= 2 * GRAD_TOL && worst_sum <= GRAD_TOL && worst_max <= GRAD_TOL,
          "%s: %d tensors' gradient sum / sum of squares / max |g| vs reference: worst rel %.2g / %.2g (%s) / %.2g "
          "(bounds %.0e, %.0e, %.0e)", name, m->num_params, worst_sum, worst_sq, worst_name, worst_max, GRAD_TOL,
          2 * GRAD_TOL, GRAD_TOL);
    double worst = 0;
    for (int64_t j = 0; j < n_idx; j++) {
        const size_t off = (size_t)idx[j];
        int k = 0;
        while (k + 1 < m->num_params && m->table[k + 1].offset <= off) k++;
        worst = fmax(worst, fabs(grads[off] - sample[j]) / stats[3 * k + 2]);
    }
    CHECK(worst <= GRAD_TOL, "%s: %lld sampled gradients (every tensor) vs reference: worst |err| / max|g of tensor| "
          "%.2g (bound %.0e)", name, (long long)n_idx, worst, GRAD_TOL);

    // Central differences of the whole float32 model on the largest gradient of the design's own tensors and
    // of the paths into them (as tests/test_backward.c: h = 1e-2, bound 1e-2 rel + 2e-3 abs).
    static const char *const probe[] = {
        "blocks.0.adaLN_modulation.1.weight", "blocks.1.adaLN_modulation.1.bias", "blocks.0.norm1.weight",
        "blocks.1.norm2.bias", "blocks.0.norm_cross.weight", "blocks.1.cross_attn.q.weight",
        "blocks.0.cross_attn.kv.weight", "blocks.1.cross_attn.kv.bias", "blocks.0.cross_attn.proj.weight",
        "final_layer.norm_final.weight", "final_layer.norm_final.bias", "y_embedder.embedding_table.weight",
        "t_embedder.mlp.0.weight", "x_embedder.proj.weight", "blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.bias",
    };
    double worst_fd = 0;
    const char *worst_fd_name = "";
    int fd_ok = 1, probed = 0;
    for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        const param_entry *e = dit_param_find(m, probe[i]);
        if (!e) continue;
        size_t best = 0;
        for (size_t j = 1; j < e->numel; j++)
            if (fabsf(grads[e->offset + j]) > fabsf(grads[e->offset + best])) best = j;
        float *w = m->params + e->offset + best;
        const float v = *w, vp = (float)(v + 1e-2), vm = (float)(v - 1e-2);
        *w = vp;
        const double lp = model_loss(m, a, x, t, y, R, out_train, n_out);
        *w = vm;
        const double lm = model_loss(m, a, x, t, y, R, out_train, n_out);
        *w = v;
        const double fd = (lp - lm) / ((double)vp - (double)vm), g = grads[e->offset + best];
        if (fabs(fd - g) > 1e-2 * fabs(g) + 2e-3) fd_ok = 0;
        if (fabs(fd - g) / fabs(g) > worst_fd) worst_fd = fabs(fd - g) / fabs(g), worst_fd_name = probe[i];
        probed++;
    }
    CHECK(fd_ok && probed >= 7, "%s: whole-model central differences on the largest gradient of %d tensors: worst rel "
          "err %.2g (%s; bound 1e-2 rel + 2e-3 abs)", name, probed, worst_fd, worst_fd_name);

    // gradients accumulate
    float *twice = malloc(m->total_floats * sizeof(float));
    for (size_t i = 0; i < m->total_floats; i++) twice[i] = 2 * grads[i];
    DIT_CHECK(dit_forward_train(m, a, x, t, y, out_train) == DIT_OK);
    dit_backward(m, a, R, grads);
    snprintf(what, sizeof what, "%s: dit_backward accumulates (+=): two calls give twice the gradient", name);
    CHECK_CLOSE(what, grads, twice, m->total_floats, 1e-6, 1e-6);

    free(twice);
    dit_train_activations_free(a);
    free(x); free(t); free(R); free(want); free(out); free(out_train); free(one); free(grads);
done:
    free(xd); free(td); free(yd); free(Rd); free(want_d); free(stats); free(idx); free(sample);
    cJSON_Delete(meta);
    dit_model_free(m);
}

// ---- bf16 against fp32 ----------------------------------------------------------------------------


// As tests/test_bf16.c: the forward within 2e-2 of max |out| (bf16 keeps 8 mantissa bits: a healthy path lands
// near 1e-3..5e-3), the gradients within 3e-2 in relative L2 overall and for the worst tensor (a wrong operand
// or layout gives errors of order 1). An odd shape: 25 tokens (27 in-context), 3 heads of 32, no learned sigma.
static void test_bf16_design(dit_block_kind block) {
    const char *name = dit_block_name(block);
    const dit_config cfg = {.input_size = 10, .patch_size = 2, .in_channels = 3, .hidden_size = 96, .depth = 2,
                            .num_heads = 3, .mlp_ratio = 4.0f, .num_classes = 7, .class_dropout_prob = 0.1f,
                            .learn_sigma = 0, .block = block};
    const int B = 3, S = cfg.input_size, C = cfg.in_channels, OUT = dit_config_out_channels(&cfg);
    const size_t n_in = (size_t)B * C * S * S, n_out = (size_t)B * OUT * S * S;
    dit_model *m = dit_model_synthetic(&cfg, 9);
    float *x = random_floats(n_in, 1.0f), t[3] = {5, 400, 999};
    int y[3] = {0, 6, 7};   // 7: the null class
    float *ref = malloc(n_out * sizeof(float)), *got = malloc(n_out * sizeof(float));
    float *g32 = calloc(m->total_floats, sizeof(float)), *g16 = calloc(m->total_floats, sizeof(float));
    dit_model_set_precision(m, DIT_PRECISION_FP32);
    DIT_CHECK(dit_model_forward(m, x, t, y, B, ref) == DIT_OK);
    DIT_CHECK(dit_model_set_precision(m, DIT_PRECISION_BF16) == DIT_OK);
    DIT_CHECK(dit_model_forward(m, x, t, y, B, got) == DIT_OK);
    double max_rel, l2_rel;
    test_relative_errors(got, ref, n_out, &max_rel, &l2_rel);
    CHECK(max_rel <= 2e-2, "%s forward bf16 vs fp32: max error %.2e of max |out|, relative L2 %.2e (bound 2e-2)", name,
          max_rel, l2_rel);
    dit_train_activations *a = dit_train_activations_create(m, B);
    for (int pass = 0; pass < 2; pass++) {   // L = 0.5 |out|^2
        dit_model_set_precision(m, pass ? DIT_PRECISION_BF16 : DIT_PRECISION_FP32);
        DIT_CHECK(dit_forward_train(m, a, x, t, y, got) == DIT_OK);
        dit_backward(m, a, got, pass ? g16 : g32);
    }
    double worst_l2 = 0;
    const char *worst = "";
    test_relative_errors(g16, g32, m->total_floats, &max_rel, &l2_rel);
    for (int i = 0; i < m->num_params; i++) {
        const param_entry *e = &m->table[i];
        if (!strcmp(e->name, "pos_embed")) continue;
        double mr, lr;
        test_relative_errors(g16 + e->offset, g32 + e->offset, e->numel, &mr, &lr);
        if (lr > worst_l2) worst_l2 = lr, worst = e->name;
    }
    CHECK(l2_rel <= 3e-2 && worst_l2 <= 3e-2, "%s bf16 gradients vs fp32: relative L2 %.2e over all parameters, worst "
          "tensor %s %.2e (bound 3e-2)", name, l2_rel, worst, worst_l2);
    dit_train_activations_free(a);
    free(x); free(ref); free(got); free(g32); free(g16);
    dit_model_free(m);
}

// ---- files, initialisation, checkpoints -----------------------------------------------------------

static void test_file(dit_block_kind block) {
    const char *name = dit_block_name(block);
    const dit_config cfg = tiny_config(block);
    dit_model *m = dit_model_synthetic(&cfg, 5);
    char path[512];
    snprintf(path, sizeof path, "%s", scratch_path("block-model.safetensors"));
    DIT_CHECK(dit_model_save(m, path) == DIT_OK);
    dit_model *back = dit_model_load(path, NULL);
    CHECK(back && dit_model_config(back)->block == block && back->total_floats == m->total_floats &&
          !memcmp(back->params, m->params, m->total_floats * sizeof(float)),
          "%s: saved and loaded back with its block design and every parameter bit for bit", name);
    dit_model_free(back);
    // bf16 storage leaves pos_embed out (recomputed): the design must survive that too
    DIT_CHECK(dit_model_save_as(m, path, "bf16") == DIT_OK);
    back = dit_model_load(path, NULL);
    CHECK(back && dit_model_config(back)->block == block, "%s: a bf16 file loads back as %s", name,
          back ? dit_block_name(dit_model_config(back)->block) : dit_last_error());
    dit_model_free(back);
    dit_model_free(m);
}

static void test_config_json(void) {
    dit_config c = tiny_config(DIT_BLOCK_IN_CONTEXT), back;
    char json[512];
    DIT_CHECK(dit_config_to_json(&c, json, sizeof json) == DIT_OK);
    CHECK(dit_config_from_json(&back, json, "test") == DIT_OK && back.block == DIT_BLOCK_IN_CONTEXT &&
          strstr(json, "\"block\": \"in-context\""), "config JSON carries the block: %s", json);
    // a file written before the block designs has no "block": it holds adaLN-Zero
    const char *old = "{\"input_size\": 8, \"patch_size\": 2, \"in_channels\": 4, \"hidden_size\": 64, \"depth\": 2, "
                      "\"num_heads\": 4, \"mlp_ratio\": 4, \"num_classes\": 10, \"class_dropout_prob\": 0.1, "
                      "\"learn_sigma\": 1}";
    back.block = DIT_BLOCK_ADALN;
    CHECK(dit_config_from_json(&back, old, "old.safetensors") == DIT_OK && back.block == DIT_BLOCK_ADALN_ZERO,
          "config JSON without \"block\" reads as adaln-zero");
    const char *unknown = "{\"input_size\": 8, \"patch_size\": 2, \"in_channels\": 4, \"hidden_size\": 64, \"depth\": 2, "
                          "\"num_heads\": 4, \"mlp_ratio\": 4, \"num_classes\": 10, \"class_dropout_prob\": 0.1, "
                          "\"learn_sigma\": 1, \"block\": \"gated\"}";
    CHECK(dit_config_from_json(&back, unknown, "x.safetensors") == DIT_ERR &&
              strstr(dit_last_error(), "x.safetensors") && strstr(dit_last_error(), "cross-attention"),
          "an unknown block is refused, naming the file and the designs: %s", dit_last_error());
}

// The training initialisation (reference.md §1.9, §1.13): the final linear is zero, so every design starts
// at output 0; LayerNorm affines start at (1, 0); adaLN's modulation is xavier (not zero), adaLN-Zero's zero.
static void test_init(dit_block_kind block) {
    const char *name = dit_block_name(block);
    const dit_config cfg = tiny_config(block);
    dit_model *m = dit_model_create(&cfg);
    train_init_weights(m, 3);
    const int B = 2, n_in = B * 4 * 8 * 8, n_out = B * 8 * 8 * 8;
    float *x = random_floats(n_in, 1), t[2] = {10, 900}, *out = malloc(n_out * sizeof(float));
    int y[2] = {1, 10};
    DIT_CHECK(dit_model_forward(m, x, t, y, B, out) == DIT_OK);
    float peak = 0;
    for (int i = 0; i < n_out; i++) peak = fmaxf(peak, fabsf(out[i]));
    const param_entry *mod = dit_param_find(m, "blocks.1.adaLN_modulation.1.weight");
    const param_entry *norm = dit_param_find(m, "blocks.1.norm2.weight");
    const param_entry *norm_bias = dit_param_find(m, "final_layer.norm_final.bias");
    double mod_abs = 0;
    for (size_t i = 0; mod && i < mod->numel; i++) mod_abs = fmax(mod_abs, fabs(m->params[mod->offset + i]));
    int norms_ok = 1;
    for (size_t i = 0; norm && i < norm->numel; i++) norms_ok &= m->params[norm->offset + i] == 1.0f;
    for (size_t i = 0; norm_bias && i < norm_bias->numel; i++) norms_ok &= m->params[norm_bias->offset + i] == 0.0f;
    const int mod_ok = block == DIT_BLOCK_ADALN ? mod_abs > 0 : block == DIT_BLOCK_ADALN_ZERO ? mod && mod_abs == 0 : !mod;
    CHECK(peak == 0 && mod_ok && norms_ok && (norm != NULL) == !dit_block_adaptive(&cfg),
          "%s: training init gives output exactly 0 (max |out| %g); block modulation max |w| %g; LayerNorm affines "
          "(1, 0)", name, peak, mod_abs);
    free(x); free(out);
    dit_model_free(m);
}

// A run resumed from a checkpoint continues bit for bit: 2 steps, save, load, 2 more, against 4 straight.
static void test_resume(dit_block_kind block) {
    const char *name = dit_block_name(block);
    enum { COUNT = 8, SIDE = 8 };
    float pixels[COUNT * SIDE * SIDE];
    int labels[COUNT];
    for (int i = 0; i < COUNT; i++) {
        labels[i] = i % 4;
        for (int k = 0; k < SIDE * SIDE; k++) pixels[i * SIDE * SIDE + k] = ((k / SIDE + k % SIDE * (i % 4)) / 2 % 2) ? 1.0f : -1.0f;
    }
    train_data data = {.kind = DATA_PIXELS, .source = "stripes", .count = COUNT, .channels = 1, .size = SIDE,
                       .num_classes = 4, .labels = labels, .pixels = pixels};
    const dit_config cfg = {.input_size = SIDE, .patch_size = 2, .in_channels = 1, .hidden_size = 32, .depth = 2,
                            .num_heads = 2, .mlp_ratio = 4.0f, .num_classes = 4, .class_dropout_prob = 0.1f,
                            .learn_sigma = 1, .block = block};
    train_hparams hp;
    train_hparams_default(&hp);
    hp.batch = 3, hp.lr = 1e-3, hp.ema_decay = 0.9;
    trainer *straight = trainer_create(&cfg, &hp, 5, &data), *half = trainer_create(&cfg, &hp, 5, &data);
    DIT_CHECK(straight && half);
    train_stats st;
    for (int s = 0; s < 4; s++) DIT_CHECK(trainer_step(straight, &st) == DIT_OK);
    for (int s = 0; s < 2; s++) DIT_CHECK(trainer_step(half, &st) == DIT_OK);
    char path[512];
    snprintf(path, sizeof path, "%s", scratch_path("block-ckpt.safetensors"));
    DIT_CHECK(checkpoint_save(half, path) == DIT_OK);
    trainer *resumed = checkpoint_load(path, &data, NULL);
    if (CHECK(resumed && resumed->model->cfg.block == block, "%s: checkpoint loads back as %s", name,
              resumed ? dit_block_name(resumed->model->cfg.block) : dit_last_error())) {
        for (int s = 0; s < 2; s++) DIT_CHECK(trainer_step(resumed, &st) == DIT_OK);
        const size_t bytes = straight->model->total_floats * sizeof(float);
        CHECK(resumed->step == 4 && !memcmp(resumed->model->params, straight->model->params, bytes) &&
              !memcmp(resumed->ema, straight->ema, bytes) && !memcmp(resumed->adam_v, straight->adam_v, bytes) &&
              isfinite(st.loss), "%s: 2 steps + checkpoint + 2 resumed steps == 4 straight steps, bit for bit (weights, "
              "EMA, Adam; loss %.4f)", name, st.loss);
    }
    trainer_free(resumed);
    trainer_free(straight);
    trainer_free(half);
}

void test_blocks(void) {
    test_sizes();
    test_layernorm_affine_backward();
    test_cross_attention();
    test_config_json();
    for (size_t i = 0; i < sizeof designs / sizeof designs[0]; i++) {
        test_design(&designs[i]);
        test_file(designs[i].block);
        test_init(designs[i].block);
        test_resume(designs[i].block);
    }
    test_init(DIT_BLOCK_ADALN_ZERO);
    if (!dit_compute_path(DIT_PRECISION_BF16)) {
        SKIP("bf16 vs fp32 for the block designs: %s", dit_last_error());
        return;
    }
    for (size_t i = 0; i < sizeof designs / sizeof designs[0]; i++) test_bf16_design(designs[i].block);
}
