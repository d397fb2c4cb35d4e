// CPU ops against naive loops written straight from the formulas (float64 accumulation), on odd sizes.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>

#include "base/thread_exit.h"
#include "base/threads.h"
#include "ops/cpu/blas_core.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/fast_exp.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/ops.h"
#include "test.h"

static uint32_t rng_state = 12345;
static float *random_floats(size_t n) { return test_random_floats(&rng_state, n, 1.0f); }

static void test_linear(void) {
    const int M = 37, K = 29, N = 23;
    float *x = random_floats(M * K), *w = random_floats(N * K), *b = random_floats(N);
    float *got = malloc(M * N * sizeof *got), *want = malloc(M * N * sizeof *want);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b[n];
            for (int k = 0; k < K; k++) s += (double)x[m * K + k] * w[n * K + k];
            want[m * N + n] = (float)s;
        }
    linear_forward(got, x, w, b, M, K, N);
    // 1e-5: float32 sums of 29 products of values in [-1, 1], reassociated by sgemm
    CHECK_CLOSE("linear_forward 37x29 -> 23 vs naive", got, want, M * N, 1e-5, 1e-5);
    free(x); free(w); free(b); free(got); free(want);
}

// Our float32 product (AVX-512 only) against float64 sums, with the bound of a sequential float32 sum of K
// products: |error| <= gamma_K * sum_k |x_k w_k| + |bias| u, gamma_K = K u / (1 - K u), u = 2^-24 (an FMA chain
// rounds once per step, so this is loose by about 2x). Then what makes it batch-invariant, bit for bit: a row
// gives the same bits alone, in any sub-batch at any offset, and on 1, 2 or 3 threads.
static void check_gemm_f32_shape(int M, int K, int N, int with_bias) {
    float *x = random_floats((size_t)M * K), *w = random_floats((size_t)N * K), *b = with_bias ? random_floats(N) : NULL;
    float *got = malloc((size_t)M * N * sizeof *got), *part = malloc((size_t)M * N * sizeof *part);
    float *blas = malloc((size_t)M * N * sizeof *blas);
    CHECK(gemm_f32_linear(got, x, w, b, M, K, N, NULL) == DIT_OK, "gemm_f32_linear %dx%d -> %d runs", M, K, N);
    const double u = 1.0 / 16777216.0, gamma = K * u / (1.0 - K * u);
    double worst = 0, worst_blas = 0;   // largest |error| / bound
    linear_forward(blas, x, w, b, M, K, N);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b ? b[n] : 0.0, a = 0.0;
            for (int k = 0; k < (int)K; k++) {
                const double p = (double)x[(size_t)m * K + k] * w[(size_t)n * K + k];
                s += p;
                a += fabs(p);
            }
            const double bound = gamma * a + (b ? fabs(b[n]) + fabs(s) : 0.0) * u + 1e-30;
            const double e = fabs(got[(size_t)m * N + n] - s) / bound, eb = fabs(got[(size_t)m * N + n] - blas[(size_t)m * N + n]) / (2 * bound);
            if (e > worst) worst = e;
            if (eb > worst_blas) worst_blas = eb;
        }
    CHECK(worst <= 1.0, "gemm_f32 %dx%d -> %d%s vs float64: worst error %.3f of the float32 sum bound", M, K, N,
          b ? " + bias" : "", worst);
    CHECK(worst_blas <= 1.0, "gemm_f32 %dx%d -> %d vs OpenBLAS sgemm: worst difference %.3f of twice the bound", M, K,
          N, worst_blas);
    // sub-batches: [0, 1), [1, 1 + M/3), the rest
    const int cuts[] = {0, 1, 1 + M / 3, M};
    for (int c = 0; c < 3; c++)
        if (cuts[c + 1] > cuts[c])
            gemm_f32_linear(part + (size_t)cuts[c] * N, x + (size_t)cuts[c] * K, w, b, cuts[c + 1] - cuts[c], K, N, NULL);
    CHECK(memcmp(part, got, (size_t)M * N * sizeof *got) == 0,
          "gemm_f32 %dx%d -> %d: rows split into sub-batches [0,1), [1,%d), [%d,%d) give the same bits", M, K, N,
          1 + M / 3, 1 + M / 3, M);
    const int threads = dit_max_threads();
    for (int t = 1; t <= 3; t += 2) {
        dit_set_threads(t);
        gemm_f32_linear(part, x, w, b, M, K, N, NULL);
        CHECK(memcmp(part, got, (size_t)M * N * sizeof *got) == 0, "gemm_f32 %dx%d -> %d on %d thread(s): the same bits",
              M, K, N, t);
    }
    dit_set_threads(threads);
    // the GELU epilogue: the same bits as gelu_tanh_forward after the plain product
    gelu_tanh_forward(blas, got, (int64_t)M * N);
    gemm_f32_linear(part, x, w, b, M, K, N, &(gemm_f32_epilogue){.gelu = 1});
    CHECK(memcmp(part, blas, (size_t)M * N * sizeof *got) == 0,
          "gemm_f32 %dx%d -> %d with the GELU epilogue = product, then gelu_tanh_forward, bit for bit", M, K, N);
    // the gated-residual epilogue: the same bits as gated_residual_forward after the product (no bias in it)
    int gate_rows = M / 3 > 1 ? M / 3 : 1;   // the largest divisor of M up to M / 3: gates change inside blocks
    while (M % gate_rows) gate_rows--;
    const int gate_stride = N + 3, groups = M / gate_rows;
    float *gate = random_floats((size_t)groups * gate_stride), *residual = random_floats((size_t)M * N);
    {
        memcpy(blas, residual, (size_t)M * N * sizeof *blas);
        gemm_f32_linear(got, x, w, NULL, M, K, N, NULL);
        gated_residual_forward(blas, got, b, gate, gate_stride, M / gate_rows, gate_rows, N);
        memcpy(part, residual, (size_t)M * N * sizeof *part);
        gemm_f32_linear(part, x, w, b, M, K, N,
                        &(gemm_f32_epilogue){.gate = gate, .gate_stride = gate_stride, .gate_rows = gate_rows});
        CHECK(memcmp(part, blas, (size_t)M * N * sizeof *got) == 0,
              "gemm_f32 %dx%d -> %d with the gated-residual epilogue (gates every %d rows) = product, then "
              "gated_residual_forward, bit for bit", M, K, N, gate_rows);
    }
    free(gate); free(residual);
    free(x); free(w); free(b); free(got); free(part); free(blas);
}

static void test_gemm_f32(void) {
    const cpu_path saved = cpu_path_active();
    if (cpu_path_force(CPU_PATH_AVX512) != 0) {
        SKIP("gemm_f32 (the float32 product on AVX-512): this CPU has no AVX-512 path");
        return;
    }
    check_gemm_f32_shape(37, 29, 23, 1);     // nothing a multiple of the 12 x 32 block
    check_gemm_f32_shape(1, 64, 96, 1);      // one row
    check_gemm_f32_shape(13, 256, 33, 0);    // no bias; one column past a panel
    check_gemm_f32_shape(50, 1152, 17, 1);   // a panel with one full vector and one lane of the second
    check_gemm_f32_shape(25, 7, 5, 1);       // narrower than a vector
    check_gemm_f32_shape(300, 384, 97, 1);   // rows split into chunks (few panels for the threads)
    check_gemm_f32_shape(64, 4608, 40, 0);   // long sums
    cpu_path_force(saved);
}

static void test_layernorm_modulate_at(int D) {
    const int B = 3, T = 5, stride = 2 * D + 3;
    float *x = random_floats(B * T * D), *ada = random_floats(B * stride);
    float *got = malloc(B * T * D * sizeof *got), *want = malloc(B * T * D * sizeof *want);
    for (int i = 0; i < B * T * D; i++) x[i] = 3.0f * x[i] + 0.5f;   // offset mean, larger spread
    const float *shift = ada + 1, *scale = ada + 2 + D;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *r = x + (b * T + t) * D;
            double mu = 0, var = 0;
            for (int d = 0; d < D; d++) mu += r[d];
            mu /= D;
            for (int d = 0; d < D; d++) var += (r[d] - mu) * (r[d] - mu);
            var /= D;
            for (int d = 0; d < D; d++)
                want[(b * T + t) * D + d] = (float)((r[d] - mu) / sqrt(var + 1e-6) * (1.0 + scale[b * stride + d]) +
                                                    shift[b * stride + d]);
        }
    layernorm_modulate_forward(got, NULL, NULL, x, shift, scale, stride, B, T, D);
    // 1e-5: single float32 rounding of (x - mean) * rstd and the modulation
    char what[96];
    snprintf(what, sizeof what, "layernorm_modulate_forward (3,5,%d) vs naive", D);
    CHECK_CLOSE(what, got, want, B * T * D, 1e-5, 1e-5);
    free(x); free(ada); free(got); free(want);
}

// D = 5 (shorter than the statistics' 8 lanes), 19 (two rounds and a tail), 1157 (XL's width and a tail)
static void test_layernorm_modulate(void) {
    test_layernorm_modulate_at(5);
    test_layernorm_modulate_at(19);
    test_layernorm_modulate_at(1157);
}

// T = 7: rows shorter than the softmax's 8 lanes; T = 21: two full vectors and a tail of 5.
static void test_attention_at(int T) {
    const int B = 2, H = 3, hd = 5, D = H * hd;
    float *qkv = random_floats(B * T * 3 * D);
    for (int i = 0; i < B * T * 3 * D; i++) qkv[i] *= 2.0f;
    float *got = malloc(B * T * D * sizeof *got), *want = malloc(B * T * D * sizeof *want);
    float *scratch = malloc(attention_scratch_floats(T, 64) * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double s[64], mx = -1e300, sum = 0;
                for (int j = 0; j < T; j++) {
                    double dot = 0;
                    for (int e = 0; e < hd; e++)
                        dot += (double)qkv[(b * T + i) * 3 * D + h * hd + e] * qkv[(b * T + j) * 3 * D + D + h * hd + e];
                    s[j] = dot / sqrt((double)hd);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < T; j++) sum += (s[j] = exp(s[j] - mx));
                for (int e = 0; e < hd; e++) {
                    double o = 0;
                    for (int j = 0; j < T; j++) o += s[j] / sum * qkv[(b * T + j) * 3 * D + 2 * D + h * hd + e];
                    want[(b * T + i) * D + h * hd + e] = (float)o;
                }
            }
    attention_forward(got, qkv, scratch, B, T, D, H);
    // 1e-5: float32 softmax and two short float32 dot products
    char what[64];
    snprintf(what, sizeof what, "attention_forward B2 T%d H3 hd5 vs naive", T);
    CHECK_CLOSE(what, got, want, B * T * D, 1e-5, 1e-5);
    free(qkv); free(got); free(want); free(scratch);
}

static void test_attention(void) {
    test_attention_at(7);
    test_attention_at(21);
}

static void test_pointwise(void) {
    const int n = 1001;
    float *x = random_floats(n), *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    for (int i = 0; i < n; i++) x[i] *= 6.0f;
    for (int i = 0; i < n; i++) want[i] = (float)(x[i] / (1.0 + exp(-(double)x[i])));
    silu_forward(got, x, n);
    CHECK_CLOSE("silu_forward vs x*sigmoid(x) in double", got, want, n, 1e-6, 1e-6);
    for (int i = 0; i < n; i++) {
        double v = x[i];
        want[i] = (float)(0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
    }
    gelu_tanh_forward(got, x, n);
    CHECK_CLOSE("gelu_tanh_forward vs the tanh formula in double", got, want, n, 1e-6, 1e-6);
    free(x); free(got); free(want);
}

static void test_patchify_roundtrip(void) {
    // unpatchify(patchify(x)) is the identity only when C = 1 (the two orders differ otherwise): check both
    // the identity at C = 1 and the exact index placement at C = 3.
    const int B = 2, S = 6, P = 3, G = S / P, T = G * G;
    float *x = random_floats(B * S * S), *tok = malloc(B * T * P * P * sizeof(float)), *back = malloc(B * S * S * sizeof(float));
    patchify_forward(tok, x, B, 1, S, P);
    unpatchify_forward(back, tok, B, 1, S, P);
    CHECK_CLOSE("unpatchify(patchify(x)) = x at C=1", back, x, B * S * S, 0, 0);
    const int C = 3;
    float *x3 = random_floats(B * C * S * S), *t3 = malloc(B * T * C * P * P * sizeof(float));
    patchify_forward(t3, x3, B, C, S, P);
    int b = 1, row = 1, col = 0, c = 2, pi = 1, qi = 2;
    float in_order = t3[((b * T) + row * G + col) * C * P * P + (c * P + pi) * P + qi];
    CHECK(in_order == x3[((b * C + c) * S + row * P + pi) * S + col * P + qi], "patchify uses (c, pi, qi) order");
    float *img = malloc(B * C * S * S * sizeof(float));
    unpatchify_forward(img, t3, B, C, S, P);
    float out_order = t3[((b * T) + row * G + col) * C * P * P + (pi * P + qi) * C + c];
    CHECK(img[((b * C + c) * S + row * P + pi) * S + col * P + qi] == out_order, "unpatchify uses (pi, qi, c) order");
    free(x); free(tok); free(back); free(x3); free(t3); free(img);
}

static void test_embeddings(void) {
    float t[2] = {0.0f, 999.0f}, emb[2 * 256];
    timestep_embedding_forward(emb, t, 2, 256);
    CHECK(emb[0] == 1.0f && emb[128] == 0.0f, "timestep embedding at t=0 is [cos 0 = 1 ..., sin 0 = 0 ...]");
    float f5 = expf((float)(-log(10000.0)) * 5.0f / 128.0f);
    CHECK(fabsf(emb[256 + 5] - cosf(999.0f * f5)) < 1e-6f && fabsf(emb[256 + 128 + 5] - sinf(999.0f * f5)) < 1e-6f,
          "timestep embedding: cos first, then sin, divisor 128");
    const int D = 16, G = 3;
    float pos[9 * 16];
    pos_embed_2d_sincos(pos, D, G);
    int row = 2, col = 1, k = 1;
    double omega = 1.0 / pow(10000.0, k / 4.0);
    const float *p = pos + (row * G + col) * D;
    CHECK(fabs(p[k] - sin(col * omega)) < 1e-7 && fabs(p[4 + k] - cos(col * omega)) < 1e-7 &&
          fabs(p[8 + k] - sin(row * omega)) < 1e-7 && fabs(p[12 + k] - cos(row * omega)) < 1e-7,
          "pos_embed: [sin col, cos col, sin row, cos row], omega_k = 10000^(-k/(D/4))");
}

static void test_gated_residual(void) {
    const int B = 2, T = 3, D = 5, stride = 11;
    float *x = random_floats(B * T * D), *y = random_floats(B * T * D), *bias = random_floats(D), *g = random_floats(B * stride);
    float *want = malloc(B * T * D * sizeof *want);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                int i = (b * T + t) * D + d;
                want[i] = x[i] + g[b * stride + 4 + d] * (y[i] + bias[d]);
            }
    gated_residual_forward(x, y, bias, g + 4, stride, B, T, D);
    CHECK_CLOSE("gated_residual_forward vs x + gate * (y + bias)", x, want, B * T * D, 1e-7, 1e-7);
    free(x); free(y); free(bias); free(g); free(want);
}

static void test_fast_exp(void) {
    double worst = 0;
    float worst_x = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
        double rel = fabs(fast_expf(x) - exp((double)x)) / exp((double)x);
        if (rel > worst) worst = rel, worst_x = x;
    }
    CHECK(worst < 4e-7, "fast_expf on [-87, 88]: worst relative error %.3g at x = %g (bound 4e-7, ~3 ulp)", worst,
          worst_x);
    CHECK(fast_expf(-1000.0f) < 1e-37f && fast_expf(-1000.0f) >= 0.0f && isfinite(fast_expf(1000.0f)),
          "fast_expf clamps: exp(-1000) ~ 0, exp(1000) finite");
}

// The runner called blas_use_best_kernels first: on a CPU with AVX2, OpenBLAS must not be left on its generic
// SSE3 kernels (what 0.3.21 picks for CPUs newer than itself).
static void test_blas_kernels(void) {
    const char *core = blas_core_name();
    const int generic = !strcasecmp(core, "prescott");
    CHECK(!generic || !cpu_features_get()->avx2, "OpenBLAS runs %s kernels%s", core,
          generic ? " (the generic SSE3 set) on a CPU with AVX2" : "");
}

// thread_exit hooks: a thread registers two (one of them twice); both run once when it ends, the last
// registered first.
static _Thread_local thread_exit_hook hook_a, hook_b;
static int exit_order[4], exit_count;

static void record_exit(void *arg) { exit_order[exit_count++ % 4] = (int)(intptr_t)arg; }

static void *thread_with_hooks(void *unused) {
    (void)unused;
    hook_a = (thread_exit_hook){.run = record_exit, .arg = (void *)1};
    hook_b = (thread_exit_hook){.run = record_exit, .arg = (void *)2};
    thread_exit_register(&hook_a);
    thread_exit_register(&hook_b);
    thread_exit_register(&hook_a);
    return NULL;
}

static void test_thread_exit(void) {
    pthread_t t;
    exit_count = 0;
    const int started = pthread_create(&t, NULL, thread_with_hooks, NULL) == 0;
    if (started) pthread_join(t, NULL);
    CHECK(started && exit_count == 2 && exit_order[0] == 2 && exit_order[1] == 1,
          "thread_exit: a thread's two hooks run once each when it ends, the last registered first (ran %d)", exit_count);
}

void test_ops(void) {
    test_thread_exit();
    test_blas_kernels();
    test_fast_exp();
    test_linear();
    test_gemm_f32();
    test_layernorm_modulate();
    test_attention();
    test_pointwise();
    test_patchify_roundtrip();
    test_embeddings();
    test_gated_residual();
}
