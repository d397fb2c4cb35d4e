// The bf16 matrix path against float64 loops over the same bf16-rounded inputs, on every path this CPU has
// (AMX tiles, AVX512-BF16); paths the CPU lacks are reported as skipped. Shapes are chosen not to be
// multiples of the 32 x 32 blocks, and every operand layout (plain, transposed) and epilogue is exercised.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "dit_vae.h"
#include "base/bf16_bits.h"
#include "base/threads.h"
#include "base/error.h"
#include "models/dit_model.h"
#include "ops/bf16.h"
#include "ops/conv.h"
#include "ops/dispatch.h"
#include "ops/cpu/cpu_features.h"
#include "ops/ops.h"
#include "test.h"

static uint32_t rng_state = 777;

// GELU-tanh's u = sqrt(2/pi) (v + 0.044715 v^3): gelu(v) = 0.5 v (1 + tanh u).
static double gelu_u(double v) { return 0.7978845608028654 * (v + 0.044715 * v * v * v); }
static double gelu_ref(double v) { return 0.5 * v * (1.0 + tanh(gelu_u(v))); }

// want[m, n] = alpha * sum_k bf16(A[m, k]) bf16(B[n, k]) in float64, A (M, K) and B (N, K) row-major.
static void reference(double *want, const float *A, const float *B, int M, int K, int N, double alpha) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)bf16_round(A[m * K + k]) * bf16_round(B[n * K + k]);
            want[m * N + n] = alpha * s;
        }
}

static void check_shape(const char *path, int M, int K, int N, int transposed_a, int transposed_b, int serial) {
    float *A = test_random_floats(&rng_state, (size_t)M * K, 1.0f), *B = test_random_floats(&rng_state, (size_t)N * K, 1.0f);
    float *At = malloc((size_t)M * K * sizeof *At), *Bt = malloc((size_t)N * K * sizeof *Bt);
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) At[k * M + m] = A[m * K + k];
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) Bt[k * N + n] = B[n * K + k];
    double *want = malloc((size_t)M * N * sizeof *want);
    reference(want, A, B, M, K, N, 1.0);
    bf16_packed P = {0};
    if (transposed_b) bf16_pack(&P, Bt, N, K, 1, N);
    else bf16_pack(&P, B, N, K, K, 1);
    float *got = malloc((size_t)M * N * sizeof *got), *wantf = malloc((size_t)M * N * sizeof *wantf);
    const float *a = transposed_a ? At : A;
    const int64_t sm = transposed_a ? 1 : K, sk = transposed_a ? M : 1;
    // with the row sums of A onto a start value of 1 (the bias gradient of a weight-gradient product)
    float *sums = malloc((size_t)M * sizeof *sums), *want_sums = malloc((size_t)M * sizeof *want_sums);
    for (int m = 0; m < M; m++) {
        double s = 1.0;
        for (int k = 0; k < K; k++) s += A[m * K + k];
        sums[m] = 1.0f, want_sums[m] = (float)s;
    }
    const gemm_epilogue with_sums = {.a_row_sums = sums};
    if (serial) gemm_bf16_serial(got, N, a, sm, sk, &P, M, &with_sums);
    else gemm_bf16(got, N, a, sm, sk, &P, M, &with_sums);
    for (int i = 0; i < M * N; i++) wantf[i] = (float)want[i];
    // The inputs are the same bf16 values on both sides; what differs is float32 accumulation of K
    // products of size <= 1: a few ulp of sqrt(K)-sized sums -> 2e-6 * K absolute is generous and tight.
    char what[160];
    snprintf(what, sizeof what, "%s gemm %dx%d @ (%dx%d)^T%s%s%s vs float64 on bf16 inputs", path, M, K, N, K,
             transposed_a ? " A^T" : "", transposed_b ? " B^T" : "", serial ? " serial" : "");
    CHECK_CLOSE(what, got, wantf, (size_t)M * N, 2e-6 * K, 1e-5);
    snprintf(what, sizeof what, "%s gemm %dx%d%s%s: the row sums of A (float32) vs float64", path, M, K,
             transposed_a ? " A^T" : "", serial ? " serial" : "");
    CHECK_CLOSE(what, sums, want_sums, (size_t)M, 1e-6 * K, 1e-6);
    free(sums); free(want_sums);
    free(A); free(B); free(At); free(Bt); free(want); free(got); free(wantf);
    bf16_packed_free(&P);
}

// The split of a GEMM's blocks over threads changes nothing: 3 threads, every unit of work run by a thread other
// than its owner (gemm_bf16_steal_first) against the usual order, bit for bit; with several chunks of rows and K
// blocks, a narrow output (split by rows), and the GELU and gated-residual epilogues.
static void check_stealing(const char *path) {
    // the last: a B of more than 4 MB whole along K (slabs of two panels)
    const int shapes[][3] = {{1100, 400, 200}, {600, 100, 40}, {70, 1152, 300}, {200, 1100, 1950}};
    const int threads = dit_max_threads();
    dit_set_threads(3);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *A = test_random_floats(&rng_state, (size_t)M * K, 1.0f), *B = test_random_floats(&rng_state, (size_t)N * K, 1.0f);
        float *bias = test_random_floats(&rng_state, N, 1.0f), *gate = test_random_floats(&rng_state, N, 1.0f);
        float *base = test_random_floats(&rng_state, (size_t)M * N, 1.0f);
        bf16_packed P = {0};
        bf16_pack(&P, B, N, K, K, 1);
        float *got[2][3];
        for (int order = 0; order < 2; order++) {
            for (int e = 0; e < 3; e++) got[order][e] = malloc((size_t)M * N * sizeof(float));
            gemm_bf16_steal_first(order);
            gemm_bf16(got[order][0], N, A, K, 1, &P, M, NULL);
            const gemm_epilogue gelu = {.bias = bias, .gelu = 1};
            gemm_bf16(got[order][1], N, A, K, 1, &P, M, &gelu);
            const gemm_epilogue gated = {.bias = bias, .gate = gate, .gate_stride = N, .gate_rows = M};
            memcpy(got[order][2], base, (size_t)M * N * sizeof(float));
            gemm_bf16(got[order][2], N, A, K, 1, &P, M, &gated);
        }
        gemm_bf16_steal_first(0);
        int same = 1;
        for (int e = 0; e < 3; e++) same &= !memcmp(got[0][e], got[1][e], (size_t)M * N * sizeof(float));
        CHECK(same, "%s gemm %dx%d @ (%dx%d)^T on 3 threads: units taken by other threads give the same bits (plain, "
              "bias + GELU, gated residual)", path, M, K, N, K);
        for (int order = 0; order < 2; order++)
            for (int e = 0; e < 3; e++) free(got[order][e]);
        free(A); free(B); free(bias); free(gate); free(base);
        bf16_packed_free(&P);
    }
    dit_set_threads(threads);
}

// A row's result does not depend on the rows around it: the first 48 and the first 2 rows of a 64-row product
// (a last row block of 16 rows and of 2: on AMX the 16-row kernel, on AVX-512 the half kernels) give the same
// bits as the 64-row one, K in two blocks (partial sums waiting in the scratch) and an edge panel, plain and
// with the bias and GELU.
static void check_rows_invariance(const char *path) {
    const int M = 64, K = 2100, N = 70, sizes[] = {48, 2};
    float *A = test_random_floats(&rng_state, (size_t)M * K, 1.0f), *B = test_random_floats(&rng_state, (size_t)N * K, 1.0f);
    float *bias = test_random_floats(&rng_state, N, 1.0f);
    bf16_packed P = {0};
    bf16_pack(&P, B, N, K, K, 1);
    float *whole = malloc((size_t)M * N * sizeof *whole), *part = malloc((size_t)M * N * sizeof *part);
    for (int e = 0; e < 2; e++) {
        const gemm_epilogue gelu = {.bias = bias, .gelu = 1};
        const gemm_epilogue *ep = e ? &gelu : NULL;
        gemm_bf16(whole, N, A, K, 1, &P, M, ep);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            gemm_bf16(part, N, A, K, 1, &P, sizes[s], ep);
            CHECK(!memcmp(whole, part, (size_t)sizes[s] * N * sizeof(float)),
                  "%s gemm %dx%d @ (%dx%d)^T%s: the first %d rows alone give the bits of the %d-row product", path, M, K,
                  N, K, e ? " + bias + GELU" : "", sizes[s], M);
        }
    }
    free(A); free(B); free(bias); free(whole); free(part);
    bf16_packed_free(&P);
}

// The AMX kernels loading B's tiles, or both operands', with the hint of no reuse (amx_loads: gemm_bf16.c takes
// them for blocks of 12 or more K steps) give the bits of plain loads, from zero and accumulating, 32 and 16 rows.
static void check_stream_kernels(void) {
    enum { KSTEPS = 13 };
    uint16_t *A = aligned_alloc(64, 32 * KSTEPS * 32 * sizeof *A), *B = aligned_alloc(64, KSTEPS * 1024 * sizeof *B);
    float *start = test_random_floats(&rng_state, 32 * 32, 1.0f);
    float plain[32 * 32] __attribute__((aligned(64))), streamed[32 * 32] __attribute__((aligned(64)));
    for (int i = 0; i < 32 * KSTEPS * 32; i++) A[i] = bf16_bits_from_float((float)(i % 61) / 30.0f - 1.0f);
    for (int i = 0; i < KSTEPS * 1024; i++) B[i] = bf16_bits_from_float((float)(i % 53) / 26.0f - 1.0f);
    const a_layout at = a_layout_tiles(KSTEPS * 32);
    amx_configure();
    int same = 1;
    for (int rows = 16; rows <= 32; rows += 16)
        for (int accumulate = 0; accumulate < 2; accumulate++)
            for (int loads = AMX_LOADS_STREAM_B; loads <= AMX_LOADS_STREAM_BOTH; loads++) {
                memcpy(plain, start, sizeof plain);
                memcpy(streamed, start, sizeof streamed);
                (rows == 32 ? amx_kernel_32x32 : amx_kernel_16x32)(plain, 32, plain, 32, A, &at, B, KSTEPS, NULL,
                                                                  accumulate, NULL, AMX_LOADS_CACHED);
                (rows == 32 ? amx_kernel_32x32 : amx_kernel_16x32)(streamed, 32, streamed, 32, A, &at, B, KSTEPS, NULL,
                                                                  accumulate, NULL, (amx_loads)loads);
                same &= !memcmp(plain, streamed, sizeof plain);
            }
    CHECK(same, "amx kernels with B's or both operands' tiles loaded streamed == plain loads, bit for bit (32 and 16 "
          "rows, %d K steps, from zero and accumulating)", KSTEPS);
    free(A), free(B), free(start);
}

static void check_epilogues(const char *path) {
    const int M = 45, K = 70, N = 50, rows_per_gate = 15, gate_stride = 3 * N;
    float *A = test_random_floats(&rng_state, (size_t)M * K, 1.0f), *B = test_random_floats(&rng_state, (size_t)N * K, 1.0f);
    float *bias = test_random_floats(&rng_state, N, 1.0f), *gate = test_random_floats(&rng_state, 3 * gate_stride, 1.0f);
    float *base = test_random_floats(&rng_state, (size_t)M * N, 1.0f);
    double *prod = malloc((size_t)M * N * sizeof *prod);
    const double alpha = 0.37;
    reference(prod, A, B, M, K, N, alpha);
    bf16_packed P = {0};
    bf16_pack(&P, B, N, K, K, 1);
    float *got = malloc((size_t)M * N * sizeof *got), *pre = malloc((size_t)M * N * sizeof *pre);
    float *want = malloc((size_t)M * N * sizeof *want), *want_pre = malloc((size_t)M * N * sizeof *want_pre);
    char what[160];

    gemm_epilogue gelu = {.alpha = (float)alpha, .bias = bias, .gelu = 1, .pre_gelu = pre};
    gemm_bf16(got, N, A, K, 1, &P, M, &gelu);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double v = prod[m * N + n] + bias[n];
            want_pre[m * N + n] = (float)v;
            want[m * N + n] = (float)gelu_ref(v);
        }
    snprintf(what, sizeof what, "%s epilogue alpha + bias, value before GELU", path);
    CHECK_CLOSE(what, pre, want_pre, (size_t)M * N, 2e-6 * K, 1e-5);
    // GELU-tanh through the fast exp (2e-7 rel) on top of the product's error
    snprintf(what, sizeof what, "%s epilogue alpha + bias + GELU-tanh", path);
    CHECK_CLOSE(what, got, want, (size_t)M * N, 2e-6 * K, 1e-5);

    float *kept = malloc((size_t)M * N * sizeof *kept);   // the product before the bias, as training keeps it
    gemm_epilogue gated = {.alpha = (float)alpha, .bias = bias, .gate = gate + 1, .gate_stride = gate_stride,
                           .gate_rows = rows_per_gate, .product = kept};
    memcpy(got, base, (size_t)M * N * sizeof *got);
    gemm_bf16(got, N, A, K, 1, &P, M, &gated);
    for (int i = 0; i < M * N; i++) want_pre[i] = (float)prod[i];
    snprintf(what, sizeof what, "%s epilogue gated residual: the product kept before the bias", path);
    CHECK_CLOSE(what, kept, want_pre, (size_t)M * N, 2e-6 * K, 1e-5);
    free(kept);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
            want[m * N + n] = (float)(base[m * N + n] + gate[1 + (m / rows_per_gate) * gate_stride + n] *
                                                            (prod[m * N + n] + bias[n]));
    snprintf(what, sizeof what, "%s epilogue gated residual out += gate[m / 15] * (v + bias)", path);
    CHECK_CLOSE(what, got, want, (size_t)M * N, 2e-6 * K, 1e-5);

    gemm_epilogue acc = {.alpha = (float)alpha, .accumulate = 1};
    memcpy(got, base, (size_t)M * N * sizeof *got);
    gemm_bf16(got, N, A, K, 1, &P, M, &acc);
    for (int i = 0; i < M * N; i++) want[i] = (float)(base[i] + prod[i]);
    snprintf(what, sizeof what, "%s epilogue accumulate out += alpha v", path);
    CHECK_CLOSE(what, got, want, (size_t)M * N, 2e-6 * K, 1e-5);

    // The backward through a GELU: out = v * gelu_tanh'(x[m, n]), x in out's layout.
    float *x = test_random_floats(&rng_state, (size_t)M * N, 3.0f);
    gemm_epilogue slope = {.alpha = (float)alpha, .gelu_grad_of = x};
    gemm_bf16(got, N, A, K, 1, &P, M, &slope);
    for (int i = 0; i < M * N; i++) {
        const double v = x[i], h = 1e-4;   // the exact slope by a central difference of the exact GELU (1e-8 rel)
        want[i] = (float)(prod[i] * (gelu_ref(v + h) - gelu_ref(v - h)) / (2 * h));
    }
    // the slope through the fast exp (1e-6 rel) on top of the product's error; |slope| <= 1.13
    snprintf(what, sizeof what, "%s epilogue v * gelu_tanh'(x) (the backward through a GELU)", path);
    CHECK_CLOSE(what, got, want, (size_t)M * N, 3e-6 * K, 1e-5);
    free(x);

    // Row independence: the first 7 rows computed alone equal the same rows of the whole product, bit for bit.
    float *part = malloc((size_t)7 * N * sizeof *part);
    gemm_bf16(got, N, A, K, 1, &P, M, NULL);
    gemm_bf16_serial(part, N, A, K, 1, &P, 7, NULL);
    CHECK(!memcmp(part, got, (size_t)7 * N * sizeof *part), "%s gemm rows are independent of M (7 of 45 rows bit-identical)",
          path);
    free(part);
    free(A); free(B); free(bias); free(gate); free(base); free(prod); free(got); free(pre); free(want); free(want_pre);
    bf16_packed_free(&P);
}

// GELU-tanh and its slope in double without 1 + tanh(u)'s cancellation (exact far below zero, where gelu_ref
// rounds to 0): 0.5 (1 + tanh u) = sigmoid(2u).
static double gelu_sigmoid(double v) { return 1.0 / (1.0 + exp(-2.0 * gelu_u(v))); }
static double gelu_exact(double v) { return v * gelu_sigmoid(v); }
static double gelu_slope_exact(double v) {
    const double s = gelu_sigmoid(v);
    return s + v * s * (1.0 - s) * 2.0 * 0.7978845608028654 * (1.0 + 3 * 0.044715 * v * v);
}

// GELU far below zero (pre-activations -5 .. -200, where 2u reaches the exp's clamp): the epilogue (edge and
// whole blocks, into floats and into a bf16 operand) and the backward's slope against the exact values, which
// are tiny: relative 1e-5 (the fast exp), 4e-3 in bf16, and where the exact value is below the sigmoid's floor
// (its argument clamped at -80 in fast_exp512.h, so that no subnormal arises on the way) absolute 1e-30 (1e-25
// for the slope, which grows as v^3 there). A clamp of the wrong sign would give -v.
static void check_gelu_far_negative(const char *path) {
    const int M = 40, K = 32, N = 64;
    float *A = calloc((size_t)M * K, sizeof *A), *B = test_random_floats(&rng_state, (size_t)N * K, 1.0f);
    float *bias = malloc(N * sizeof *bias), *x = malloc((size_t)M * N * sizeof *x);
    for (int n = 0; n < N; n++) bias[n] = -5.0f - 195.0f * n / (N - 1);   // A = 0: every value is its bias
    for (int i = 0; i < M * N; i++) x[i] = bias[i % N];
    bf16_packed P = {0};
    bf16_pack(&P, B, N, K, K, 1);
    float *got = malloc((size_t)M * N * sizeof *got), *want = malloc((size_t)M * N * sizeof *want);
    for (int i = 0; i < M * N; i++) want[i] = (float)gelu_exact(x[i]);
    char what[160];
    const gemm_epilogue gelu = {.bias = bias, .gelu = 1};
    gemm_bf16(got, N, A, K, 1, &P, M, &gelu);
    snprintf(what, sizeof what, "%s GELU epilogue at -5 .. -200", path);
    CHECK_CLOSE(what, got, want, (size_t)M * N, 1e-30, 1e-5);

    const a_layout layout = a_layout_tiles(P.Np);
    uint16_t *out16 = calloc((size_t)64 * P.Np, sizeof *out16);   // rows padded to 32
    const gemm_epilogue to16 = {.bias = bias, .gelu = 1, .out16 = out16, .out16_layout = &layout};
    gemm_bf16(NULL, N, A, K, 1, &P, M, &to16);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) got[m * N + n] = float_from_bf16_bits(out16[a_offset(&layout, m, n)]);
    snprintf(what, sizeof what, "%s GELU epilogue into bf16 at -5 .. -200", path);
    CHECK_CLOSE(what, got, want, (size_t)M * N, 1e-30, 4e-3);

    // the slope: out = v * gelu_tanh'(x) with v = 1 exactly (rows of ones against rows of 1/32)
    for (int i = 0; i < M * K; i++) A[i] = 1.0f;
    for (int i = 0; i < N * K; i++) B[i] = 1.0f / 32;
    bf16_pack(&P, B, N, K, K, 1);
    const gemm_epilogue slope = {.gelu_grad_of = x};
    gemm_bf16(got, N, A, K, 1, &P, M, &slope);
    for (int i = 0; i < M * N; i++) want[i] = (float)gelu_slope_exact(x[i]);
    snprintf(what, sizeof what, "%s GELU slope epilogue at -5 .. -200", path);
    CHECK_CLOSE(what, got, want, (size_t)M * N, 1e-25, 1e-5);
    free(A), free(B), free(bias), free(x), free(got), free(want), free(out16);
    bf16_packed_free(&P);
}

// Stores past the caches (out with stream_out; the kept product and pre-GELU values wherever their rows start
// cache lines) write the same bits as plain stores: each epilogue run into 64-byte aligned buffers (streamed)
// and into buffers one float off (plain), on a shape with whole blocks and edge rows (70 = 2 x 32 + 6).
static void check_streamed_stores(const char *path) {
    const int M = 70, K = 70, N = 96;
    const size_t n = (size_t)M * N, bytes = (n + 16) * sizeof(float);
    float *A = test_random_floats(&rng_state, (size_t)M * K, 1.0f), *B = test_random_floats(&rng_state, (size_t)N * K, 1.0f);
    float *bias = test_random_floats(&rng_state, N, 1.0f), *gate = test_random_floats(&rng_state, 3 * N, 1.0f);
    float *base = test_random_floats(&rng_state, n, 1.0f);
    bf16_packed P = {0};
    bf16_pack(&P, B, N, K, K, 1);
    float *buf[4];   // out and kept, aligned (streamed); out and kept, one float off (plain)
    for (int i = 0; i < 4; i++) buf[i] = aligned_alloc(64, (bytes + 63) / 64 * 64);
    float *out_s = buf[0], *kept_s = buf[1], *out_p = buf[2] + 1, *kept_p = buf[3] + 1;
    int ok = 1;
    const gemm_epilogue plain_s = {.bias = bias, .stream_out = 1}, plain_p = {.bias = bias};
    ok &= gemm_bf16(out_s, N, A, K, 1, &P, M, &plain_s) == DIT_OK && gemm_bf16(out_p, N, A, K, 1, &P, M, &plain_p) == DIT_OK;
    ok &= !memcmp(out_s, out_p, n * sizeof(float));
    const gemm_epilogue gelu_s = {.bias = bias, .gelu = 1, .pre_gelu = kept_s}, gelu_p = {.bias = bias, .gelu = 1, .pre_gelu = kept_p};
    ok &= gemm_bf16(out_s, N, A, K, 1, &P, M, &gelu_s) == DIT_OK && gemm_bf16(out_p, N, A, K, 1, &P, M, &gelu_p) == DIT_OK;
    ok &= !memcmp(out_s, out_p, n * sizeof(float)) && !memcmp(kept_s, kept_p, n * sizeof(float));
    const gemm_epilogue gated_s = {.bias = bias, .gate = gate, .gate_stride = N, .gate_rows = 32, .product = kept_s};
    const gemm_epilogue gated_p = {.bias = bias, .gate = gate, .gate_stride = N, .gate_rows = 32, .product = kept_p};
    memcpy(out_s, base, n * sizeof(float)), memcpy(out_p, base, n * sizeof(float));
    ok &= gemm_bf16(out_s, N, A, K, 1, &P, M, &gated_s) == DIT_OK && gemm_bf16(out_p, N, A, K, 1, &P, M, &gated_p) == DIT_OK;
    ok &= !memcmp(out_s, out_p, n * sizeof(float)) && !memcmp(kept_s, kept_p, n * sizeof(float));
    // the pre-GELU values kept by op_mlp's fc1, whose GELU output goes to fc2's bf16 operand (the streamed form)
    linear_layer fc1 = {0}, fc2 = {0};
    float *w2 = test_random_floats(&rng_state, (size_t)64 * N, 0.3f);
    linear_layer_init(&fc1, B, bias, N, K);
    linear_layer_init(&fc2, w2, NULL, 64, N);
    ops_context ctx = {.precision = OPS_BF16, .weights_version = 1};
    const op_operand in = {.f32 = A};
    ok &= op_mlp(&ctx, &fc1, &fc2, out_s, NULL, &in, M, 0, kept_s, NULL) == DIT_OK;
    ok &= op_mlp(&ctx, &fc1, &fc2, out_p, NULL, &in, M, 0, kept_p, NULL) == DIT_OK;
    ok &= !memcmp(out_s, out_p, (size_t)M * 64 * sizeof(float)) && !memcmp(kept_s, kept_p, n * sizeof(float));
    linear_layer_free(&fc1), linear_layer_free(&fc2);
    free(w2);
    CHECK(ok, "%s streamed stores (out with stream_out, the kept product, op_mlp's kept pre-GELU) == plain stores, bit "
          "for bit (%dx%d -> %d: whole blocks and edge rows)", path, M, K, N);
    for (int i = 0; i < 4; i++) free(buf[i]);
    free(A), free(B), free(bias), free(gate), free(base);
    bf16_packed_free(&P);
}

static void test_rounding(void) {
    // Round to nearest even at the 16-bit boundary, NaN kept, infinities kept.
    const float in[] = {1.0f, 1.00390625f, 1.005859375f, -3.99609375f, 65504.0f, INFINITY, -INFINITY};
    const float want[] = {1.0f, 1.0f, 1.0078125f, -4.0f, 65536.0f, INFINITY, -INFINITY};
    int ok = 1;
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) ok &= bf16_round(in[i]) == want[i];
    CHECK(ok, "bf16_round: nearest even on 7 edge values (ties, carries into the exponent, infinities)");
    CHECK(isnan(bf16_round(NAN)), "bf16_round keeps NaN a NaN");
}


// The whole network in bf16 against its float32 self: same synthetic weights, same inputs. The bound is
// the quality bar for a random-weight DiT (2e-2 of the output's scale); bf16 keeps 8 bits of
// mantissa (relative rounding 2^-9 = 2e-3 per input), and the errors of independent roundings average out
// over K-long sums, so a healthy kernel lands near 1e-3 to 5e-3.
static void check_model(const char *path, const char *name, dit_config cfg, int batch) {
    dit_model *m = dit_model_synthetic(&cfg, 3);
    if (!CHECK(m != NULL, "%s synthetic model %s", path, name)) return;
    const int S = cfg.input_size, C = cfg.in_channels, OUT = dit_config_out_channels(&cfg);
    const size_t in_n = (size_t)batch * C * S * S, out_n = (size_t)batch * OUT * S * S;
    float *x = test_random_floats(&rng_state, in_n, 1.0f), *t = malloc(batch * sizeof *t);
    int *y = malloc(batch * sizeof *y);
    for (int b = 0; b < batch; b++) {
        t[b] = (float)((b * 397 + 11) % 1000);
        y[b] = (b * 131 + 7) % cfg.num_classes;
    }
    float *ref = malloc(out_n * sizeof *ref), *got = malloc(out_n * sizeof *got), *one = malloc(out_n * sizeof *one);
    dit_model_set_precision(m, DIT_PRECISION_FP32);
    dit_model_forward(m, x, t, y, batch, ref);
    CHECK(dit_model_set_precision(m, DIT_PRECISION_BF16) == DIT_OK, "%s set precision bf16", path);
    CHECK(dit_model_precision(m) == DIT_PRECISION_BF16, "%s model reports bf16", path);
    dit_model_forward(m, x, t, y, batch, got);
    double max_rel, l2_rel;
    test_relative_errors(got, ref, out_n, &max_rel, &l2_rel);
    CHECK(max_rel <= 2e-2, "%s %s forward bf16 vs fp32: max error %.2e of max |out|, relative L2 %.2e (bound 2e-2)",
          path, name, max_rel, l2_rel);
    // qkv kept in bf16 between its linear and the attention (op_qkv) == kept in float32, bit for bit
    const qkv_form form = ops_qkv_form(&m->ops, dit_config_tokens(&cfg), cfg.hidden_size, cfg.num_heads);
    ops_qkv_bf16(0);
    dit_model_forward(m, x, t, y, batch, one);
    ops_qkv_bf16(1);
    CHECK(form != QKV_F32 && !memcmp(one, got, out_n * sizeof *one),
          "%s %s bf16 forward with qkv in bf16 (%s) == with qkv in float32, bit for bit", path, name,
          form == QKV_BF16_HEADS ? "head by head" : "row-major");
    // Batch invariance within bf16: each sample alone gives the bits it had in the batch.
    int same = 1;
    const size_t in_one = (size_t)C * S * S, out_one = (size_t)OUT * S * S;
    for (int b = 0; b < batch; b++) {
        dit_model_forward(m, x + b * in_one, t + b, y + b, 1, one);
        same &= !memcmp(one, got + b * out_one, out_one * sizeof *one);
    }
    CHECK(same, "%s %s bf16 forward is batch-invariant (%d samples alone == in one batch, bit for bit)", path, name,
          batch);
    // Thread invariance: one thread gives the same bits.
    const int threads = dit_max_threads();
    dit_set_threads(1);
    dit_model_forward(m, x, t, y, batch, one);
    dit_set_threads(threads);
    CHECK(!memcmp(one, got, out_n * sizeof *one), "%s %s bf16 forward: 1 thread == %d threads, bit for bit", path, name,
          threads);
    // The training forward (which keeps its activations) runs the same bf16 kernels and epilogues: the same bits.
    dit_train_activations *a = dit_train_activations_create(m, batch);
    CHECK(a && dit_forward_train(m, a, x, t, y, one) == DIT_OK && !memcmp(one, got, out_n * sizeof *one),
          "%s %s bf16 training forward == inference forward, bit for bit", path, name);
    dit_train_activations_free(a);
    free(x); free(t); free(y); free(ref); free(got); free(one);
    dit_model_free(m);
}

// Mixed-precision gradients against fp32 ones: the same training forward and backward (L = 0.5 |out|^2),
// whole-model gradient vector compared in relative L2, and the worst tensor. bf16 rounding of every product
// input (2^-9 relative) through the backward's chains: the bound 3e-2 is loose enough for the worst tensor
// (small gradients of early layers) and tight enough to catch a wrong operand or layout (errors of order 1).
static void check_gradients(const char *path, int input_size, int hidden, int heads) {
    const dit_config cfg = {.input_size = input_size, .patch_size = 2, .in_channels = 3, .hidden_size = hidden, .depth = 2,
                            .num_heads = heads, .mlp_ratio = 4.0f, .num_classes = 5, .class_dropout_prob = 0.1f,
                            .learn_sigma = 1};
    const int B = 3, S = cfg.input_size, C = cfg.in_channels, OUT = dit_config_out_channels(&cfg);
    dit_model *m = dit_model_synthetic(&cfg, 9);
    // adaLN-Zero gates are not zero in the synthetic weights, so every layer gets a gradient.
    float *x = test_random_floats(&rng_state, (size_t)B * C * S * S, 1.0f), t[3] = {5, 400, 999};
    int y[3] = {0, 4, 5};
    float *out = malloc((size_t)B * OUT * S * S * sizeof *out);
    float *g32 = calloc(m->total_floats, sizeof *g32), *g16 = calloc(m->total_floats, sizeof *g16);
    float *g16_f32_qkv = calloc(m->total_floats, sizeof *g16_f32_qkv), *out16 = malloc((size_t)B * OUT * S * S * sizeof *out);
    float *g16_repacked = calloc(m->total_floats, sizeof *g16_repacked);
    dit_train_activations *a = dit_train_activations_create(m, B);
    // fp32; bf16; bf16 with qkv kept in float32; bf16 with the forward's W^T packs dropped (the weights' version
    // bumped between forward and backward, so the backward packs W^T itself, from float32)
    for (int pass = 0; pass < 4; pass++) {
        dit_model_set_precision(m, pass ? DIT_PRECISION_BF16 : DIT_PRECISION_FP32);
        ops_qkv_bf16(pass != 2);
        DIT_CHECK(dit_forward_train(m, a, x, t, y, pass == 1 ? out16 : out) == DIT_OK);
        if (pass == 3) dit_model_weights_changed(m);
        float *grads[] = {g32, g16, g16_f32_qkv, g16_repacked};
        dit_backward(m, a, pass == 1 ? out16 : out, grads[pass]);
    }
    ops_qkv_bf16(1);
    CHECK(!memcmp(g16, g16_repacked, m->total_floats * sizeof *g16), "%s bf16 gradients with W^T packed by the "
          "forward (one read of each weight) == packed by the backward, bit for bit", path);
    const int T = dit_config_tokens(&cfg);
    const qkv_form form = ops_qkv_form(&m->ops, T, cfg.hidden_size, cfg.num_heads);
    CHECK(form != QKV_F32 && !memcmp(out, out16, (size_t)B * OUT * S * S * sizeof *out) &&
          !memcmp(g16, g16_f32_qkv, m->total_floats * sizeof *g16),
          "%s bf16 training forward and gradients (T %d, heads of %d) with qkv kept in bf16 (%s) == kept in float32, "
          "bit for bit", path, T, hidden / heads, form == QKV_BF16_HEADS ? "head by head" : "row-major");
    double max_rel, l2_rel, worst_l2 = 0;
    const char *worst = "";
    test_relative_errors(g16, g32, m->total_floats, &max_rel, &l2_rel);
    for (int i = 0; i < m->num_params; i++) {
        const param_entry *e = &m->table[i];
        if (!strcmp(e->name, "pos_embed")) continue;
        double mr, lr;
        test_relative_errors(g16 + e->offset, g32 + e->offset, e->numel, &mr, &lr);
        if (lr > worst_l2) worst_l2 = lr, worst = e->name;
    }
    CHECK(l2_rel <= 3e-2 && worst_l2 <= 3e-2, "%s bf16 gradients (T %d) vs fp32: relative L2 %.2e over all parameters, "
          "worst tensor %s %.2e (bound 3e-2)", path, T, l2_rel, worst, worst_l2);
    dit_train_activations_free(a);
    free(x); free(out); free(out16); free(g32); free(g16); free(g16_f32_qkv); free(g16_repacked);
    dit_model_free(m);
}

// op_linear_backward_gelu in bf16 (GELU output packed straight from its input, the slope in the product's
// epilogue) against the fp32 oracle (gelu_tanh_forward, linear_backward, gelu_tanh_backward), awkward sizes:
// both results within bf16 rounding of the inputs (2^-9 relative per input, averaging out over the sums).
static void check_linear_backward_gelu(const char *path) {
    const int M = 45, K = 83, N = 50;   // tokens, fc2's inputs (the GELU's width), fc2's outputs
    float *w = test_random_floats(&rng_state, (size_t)N * K, 0.3f), *bias = test_random_floats(&rng_state, N, 0.5f);
    float *pre = test_random_floats(&rng_state, (size_t)M * K, 2.0f), *dout = test_random_floats(&rng_state, (size_t)M * N, 1.0f);
    float *dpre32 = malloc((size_t)M * K * sizeof *dpre32), *dpre16 = malloc((size_t)M * K * sizeof *dpre16);
    float *dw32 = calloc((size_t)N * K, sizeof *dw32), *dw16 = calloc((size_t)N * K, sizeof *dw16);
    float *db32 = calloc(N, sizeof *db32), *db16 = calloc(N, sizeof *db16);
    float *gelu32 = malloc((size_t)M * K * sizeof *gelu32), *gelu16 = malloc((size_t)M * K * sizeof *gelu16);
    linear_layer L = {0};
    linear_layer_init(&L, w, bias, N, K);
    ops_context fp32 = {.precision = OPS_FP32, .weights_version = 1}, bf16 = {.precision = OPS_BF16, .weights_version = 1};
    int ok = op_linear_backward_gelu(&fp32, &L, dpre32, dw32, db32, dout, pre, gelu32, M) == DIT_OK;
    ops_fuse_backward_dout(0);   // d pre in float32 (fused, it goes to the next backward's operands instead)
    ok &= op_linear_backward_gelu(&bf16, &L, dpre16, dw16, db16, dout, pre, gelu16, M) == DIT_OK;
    ops_fuse_backward_dout(1);
    double max_d, l2_d, max_w, l2_w, max_b, l2_b;
    test_relative_errors(dpre16, dpre32, (size_t)M * K, &max_d, &l2_d);
    test_relative_errors(dw16, dw32, (size_t)N * K, &max_w, &l2_w);
    test_relative_errors(db16, db32, N, &max_b, &l2_b);
    // d bias: float32 sums of the same float32 values in another order: 1e-6
    CHECK(ok && l2_d <= 1e-2 && l2_w <= 1e-2 && max_b <= 1e-6, "%s op_linear_backward_gelu bf16 vs fp32 (%dx%d -> %d): "
          "d pre relative L2 %.2e, d weight %.2e (bound 1e-2), d bias %.1e of max (bound 1e-6)", path, M, K, N, l2_d,
          l2_w, max_b);
    linear_layer_free(&L);
    free(w), free(bias), free(pre), free(dout), free(dpre32), free(dpre16), free(dw32), free(dw16), free(db32);
    free(db16), free(gelu32), free(gelu16);
}

// op_linear_backward in bf16 rounds dout once into both left operands (bf16_convert_both): the same bits as
// converting it separately for each product (gemm_bf16 reading it by rows, then transposed), bias gradient
// included. Awkward sizes, start values in dweight and dbias.
static void check_linear_backward(const char *path) {
    const int M = 45, K = 83, N = 50;   // tokens, inputs, outputs
    float *w = test_random_floats(&rng_state, (size_t)N * K, 0.3f), *inp = test_random_floats(&rng_state, (size_t)M * K, 1.0f);
    float *dout = test_random_floats(&rng_state, (size_t)M * N, 1.0f);
    float *dinp1 = malloc((size_t)M * K * sizeof *dinp1), *dinp2 = malloc((size_t)M * K * sizeof *dinp2);
    float *dw1 = test_random_floats(&rng_state, (size_t)N * K, 1.0f), *dw2 = malloc((size_t)N * K * sizeof *dw2);
    float *db1 = test_random_floats(&rng_state, N, 1.0f), *db2 = malloc(N * sizeof *db2);
    memcpy(dw2, dw1, (size_t)N * K * sizeof *dw2), memcpy(db2, db1, N * sizeof *db2);
    linear_layer L = {0};
    linear_layer_init(&L, w, NULL, N, K);
    ops_context bf16 = {.precision = OPS_BF16, .weights_version = 1};
    int ok = op_linear_backward(&bf16, &L, dinp1, dw1, db1, dout, inp, M) == DIT_OK;
    bf16_packed wt = {0}, act = {0};
    ok &= bf16_pack(&wt, w, K, N, 1, K) == DIT_OK && bf16_pack(&act, inp, K, M, 1, K) == DIT_OK;
    ok &= gemm_bf16(dinp2, K, dout, N, 1, &wt, M, NULL) == DIT_OK;
    const gemm_epilogue acc = {.accumulate = 1, .a_row_sums = db2};
    ok &= gemm_bf16(dw2, K, dout, 1, N, &act, N, &acc) == DIT_OK;
    ok &= !memcmp(dinp1, dinp2, (size_t)M * K * sizeof *dinp1) && !memcmp(dw1, dw2, (size_t)N * K * sizeof *dw1) &&
          !memcmp(db1, db2, N * sizeof *db1);
    CHECK(ok, "%s op_linear_backward (dout rounded once for both products, %dx%d -> %d) == a conversion per product, "
          "bit for bit (d input, d weight, d bias)", path, M, K, N);
    linear_layer_free(&L);
    bf16_packed_free(&wt), bf16_packed_free(&act);
    free(w), free(inp), free(dout), free(dinp1), free(dinp2), free(dw1), free(dw2), free(db1), free(db2);
}

// The MLP's backward in bf16: fc2's backward makes its d input (through the GELU) directly as fc1's backward's
// two bf16 operands and column sums (gemm_epilogue.both, then bf16_both_finish for the edge blocks), which fc1's
// backward takes instead of converting d_mlp: bit for bit what the unfused pair computes, every gradient. d_mlp
// itself is then written only in its edge blocks (the same values as unfused there), the rest left as it was.
// Shapes with edge rows and columns (finish does part of it), and with whole blocks only.
static void check_mlp_backward_fused(const char *path, int M, int D, int F) {
    float *x = test_random_floats(&rng_state, (size_t)M * D, 1.0f), *pre = test_random_floats(&rng_state, (size_t)M * F, 2.0f);
    float *w1 = test_random_floats(&rng_state, (size_t)F * D, 0.3f), *w2 = test_random_floats(&rng_state, (size_t)D * F, 0.3f);
    float *dres = test_random_floats(&rng_state, (size_t)M * D, 1.0f);
    float *out[2][7];   // d_mlp, d_x, dW1, db1, dW2, db2, gelu scratch
    const size_t sizes[7] = {(size_t)M * F, (size_t)M * D, (size_t)F * D, F, (size_t)D * F, D, (size_t)M * F};
    linear_layer fc1 = {0}, fc2 = {0};
    linear_layer_init(&fc1, w1, NULL, F, D);
    linear_layer_init(&fc2, w2, NULL, D, F);
    ops_context bf16 = {.precision = OPS_BF16, .weights_version = 1};
    int ok = 1;
    for (int fused = 0; fused < 2; fused++) {
        for (int i = 0; i < 7; i++) out[fused][i] = calloc(sizes[i], sizeof(float));
        ops_fuse_backward_dout(fused);
        ok &= op_linear_backward_gelu(&bf16, &fc2, out[fused][0], out[fused][4], out[fused][5], dres, pre, out[fused][6],
                                      M) == DIT_OK;
        ok &= op_linear_backward(&bf16, &fc1, out[fused][1], out[fused][2], out[fused][3], out[fused][0], x, M) == DIT_OK;
    }
    ops_fuse_backward_dout(1);
    for (int i = 1; i < 6; i++) ok &= !memcmp(out[0][i], out[1][i], sizes[i] * sizeof(float));
    int edges_same = 1, whole_untouched = 1;   // out[1][0] started as zeros (calloc)
    for (int m = 0; m < M; m++)
        for (int f = 0; f < F; f++) {
            const float fused = out[1][0][(size_t)m * F + f], unfused = out[0][0][(size_t)m * F + f];
            if (m < M / 32 * 32 && f < F / 32 * 32) whole_untouched &= fused == 0.0f;
            else edges_same &= !memcmp(&fused, &unfused, sizeof fused);
        }
    CHECK(ok && edges_same && whole_untouched, "%s MLP backward (M %d, D %d, hidden %d): d_mlp made as fc1's bf16 "
          "operands by fc2's epilogue == converted by fc1's backward, bit for bit (d x, d W1, d b1, d W2, d b2); d_mlp "
          "written only in its edge blocks, as unfused there", path, M, D, F);
    linear_layer_free(&fc1), linear_layer_free(&fc2);
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 7; i++) free(out[f][i]);
    free(x), free(pre), free(w1), free(w2), free(dres);
}

// The attention's backward in bf16 makes d qkv directly as the qkv linear backward's two bf16 operands and
// column sums (attention_backward_fills_both: heads of 32, tokens a multiple of 16; with tokens a multiple of 32,
// in whole 32 x 32 blocks stored past the caches), which that backward takes
// instead of converting d qkv: bit for bit what the unfused pair computes (d x, d W, d b), and d qkv itself is
// not written (it keeps the 7.0 it started with).
static void check_attention_backward_fused(const char *path, int T) {
    const int B = 2, D = 64, H = 2, BT = B * T, N = 3 * D;
    float *qkv = test_random_floats(&rng_state, (size_t)BT * N, 1.0f), *dout = test_random_floats(&rng_state, (size_t)BT * D, 1.0f);
    float *w = test_random_floats(&rng_state, (size_t)N * D, 0.3f), *x = test_random_floats(&rng_state, (size_t)BT * D, 1.0f);
    float *out[2][4];   // d qkv, d x, d W, d b
    const size_t sizes[4] = {(size_t)BT * N, (size_t)BT * D, (size_t)N * D, N};
    linear_layer L = {0};
    linear_layer_init(&L, w, NULL, N, D);
    ops_context bf16 = {.precision = OPS_BF16, .weights_version = 1};
    float *stored = malloc((size_t)BT * N * sizeof *stored);   // qkv as op_qkv leaves it
    ops_qkv_store(&bf16, stored, qkv, B, T, D, H);
    float *dout_stored = malloc((size_t)BT * D * sizeof *dout_stored);   // dout as the projection's backward leaves it
    ops_attention_dout_store(&bf16, dout_stored, dout, B, T, D, H);
    int ok = attention_backward_fills_both(B, T, D, H);
    for (int fused = 0; fused < 2; fused++) {
        for (int i = 0; i < 4; i++) out[fused][i] = calloc(sizes[i], sizeof(float));
        for (size_t i = 0; i < sizes[0]; i++) out[fused][0][i] = 7.0f;
        ops_fuse_backward_dout(fused);
        ok &= op_attention_backward(&bf16, out[fused][0], dout_stored, stored, NULL, NULL, B, T, D, H) == DIT_OK;
        ok &= op_linear_backward(&bf16, &L, out[fused][1], out[fused][2], out[fused][3], out[fused][0], x, BT) == DIT_OK;
    }
    ops_fuse_backward_dout(1);
    for (int i = 1; i < 4; i++) ok &= !memcmp(out[0][i], out[1][i], sizes[i] * sizeof(float));
    int untouched = 1;
    for (size_t i = 0; i < sizes[0]; i++) untouched &= out[1][0][i] == 7.0f;
    CHECK(ok && untouched, "%s attention backward (B %d, T %d, %d heads of %d): d qkv made as the qkv linear's bf16 "
          "operands == converted by its backward, bit for bit (d x, d W, d b); d qkv not written", path, B, T, H, D / H);
    linear_layer_free(&L);
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 4; i++) free(out[f][i]);
    free(qkv), free(stored), free(dout), free(dout_stored), free(w), free(x);
}

// op_linear_backward_modulated in bf16 (the LayerNorm rows recomputed from the forward's statistics straight
// into the weight gradient's operand) == op_layernorm_modulate into rows, then op_linear_backward, bit for bit.
static void check_linear_backward_modulated(const char *path) {
    const int B = 3, T = 7, D = 45, N = 50, A = 3 * D, M = B * T;
    float *x = test_random_floats(&rng_state, (size_t)M * D, 2.0f), *mod = test_random_floats(&rng_state, (size_t)B * A, 1.0f);
    float *w = test_random_floats(&rng_state, (size_t)N * D, 0.3f), *dout = test_random_floats(&rng_state, (size_t)M * N, 1.0f);
    float *mean = malloc(M * sizeof *mean), *rstd = malloc(M * sizeof *rstd), *h = malloc((size_t)M * D * sizeof *h);
    float *dinp1 = malloc((size_t)M * D * sizeof *dinp1), *dinp2 = malloc((size_t)M * D * sizeof *dinp2);
    float *dw1 = calloc((size_t)N * D, sizeof *dw1), *dw2 = calloc((size_t)N * D, sizeof *dw2);
    float *db1 = calloc(N, sizeof *db1), *db2 = calloc(N, sizeof *db2);
    ops_context bf16 = {.precision = OPS_BF16, .weights_version = 1};
    linear_layer L = {0};
    linear_layer_init(&L, w, NULL, N, D);
    op_layernorm_modulate(&bf16, h, mean, rstd, x, mod, mod + D, A, B, T, D);   // the forward, keeping statistics
    const modulated_rows rows = {.x = x, .mean = mean, .rstd = rstd, .shift = mod, .scale = mod + D, .row_stride = A,
                                 .B = B, .T = T, .D = D};
    int ok = op_linear_backward_modulated(&bf16, &L, dinp1, dw1, db1, dout, &rows, NULL) == DIT_OK;
    ok &= op_linear_backward(&bf16, &L, dinp2, dw2, db2, dout, h, M) == DIT_OK;
    ok &= !memcmp(dinp1, dinp2, (size_t)M * D * sizeof *dinp1) && !memcmp(dw1, dw2, (size_t)N * D * sizeof *dw1) &&
          !memcmp(db1, db2, N * sizeof *db1);
    CHECK(ok, "%s op_linear_backward_modulated (LayerNorm rows packed from x, %d rows of %d -> %d) == LayerNorm rows "
          "then op_linear_backward, bit for bit", path, M, D, N);
    linear_layer_free(&L);
    free(x), free(mod), free(w), free(dout), free(mean), free(rstd), free(h), free(dinp1), free(dinp2), free(dw1);
    free(dw2), free(db1), free(db2);
}

// One 3x3 convolution (pad 1, stride 1; upsample: the input repeated 2 x 2 first) on the bf16 path, read in
// place (the direct form, Cin % 32 == 0) and through banded row copies: the same bits, since every output meets
// the same bf16 products in the same order. Both against a float64 sum of the rounded inputs, to 1e-5 of the sum
// of |terms| (float32 accumulation over 9 Cin <= 576 terms). Line widths off the 32-row blocks, so that blocks
// straddle lines and drop their two junk positions mid-block.
static void check_conv(const char *path, int Cin, int H, int W, int Cout, int upsample, int with_residual) {
    const int sh = upsample ? H / 2 : H, sw = upsample ? W / 2 : W;
    float *x = test_random_floats(&rng_state, (size_t)Cin * sh * sw, 1.0f);
    float *w = test_random_floats(&rng_state, (size_t)Cout * Cin * 9, 0.2f);
    float *bias = test_random_floats(&rng_state, (size_t)Cout, 0.5f);
    float *res = with_residual ? test_random_floats(&rng_state, (size_t)Cout * H * W, 1.0f) : NULL;
    float *direct = malloc(sizeof(float) * (size_t)Cout * H * W), *banded = malloc(sizeof(float) * (size_t)Cout * H * W);
    bf16_packed packed = {0};
    DIT_CHECK(conv3x3_pack_bf16(&packed, w, Cout, Cin) == DIT_OK);
    conv3x3_bf16_allow_direct(1);
    DIT_CHECK(conv3x3_bf16(direct, x, &packed, bias, res, upsample, Cin, H, W, Cout) == DIT_OK);
    conv3x3_bf16_allow_direct(0);
    DIT_CHECK(conv3x3_bf16(banded, x, &packed, bias, res, upsample, Cin, H, W, Cout) == DIT_OK);
    conv3x3_bf16_allow_direct(1);
    // channel-major in, rows out (the autoencoder's first conv; no residual or upsample there)
    float *first_rows = NULL;
    if (!upsample && !res) {
        first_rows = malloc(sizeof(float) * (size_t)Cout * H * W);
        DIT_CHECK(conv3x3_bf16_rows(first_rows, x, &packed, bias, Cin, H, W, Cout) == DIT_OK);
    }
    // the channels-last form (Cin % 32 == 0): x and the residual as rows, the grid built by conv3x3_pad_cl_bf16,
    // out as rows (H W, Cout)
    float *rows_out = NULL;
    if (Cin % 32 == 0) {
        float *x_rows = malloc(sizeof(float) * (size_t)Cin * sh * sw);
        rows_out = malloc(sizeof(float) * (size_t)Cout * H * W);
        uint16_t *grid = malloc(sizeof(uint16_t) * (size_t)conv3x3_padded_elems(Cin, H, W));
        for (int ci = 0; ci < Cin; ci++)
            for (int i = 0; i < sh * sw; i++) x_rows[(int64_t)i * Cin + ci] = x[(int64_t)ci * sh * sw + i];
        for (int co = 0; co < Cout; co++)
            for (int i = 0; i < H * W; i++) rows_out[(int64_t)i * Cout + co] = res ? res[(int64_t)co * H * W + i] : 0;
        conv3x3_pad_cl_bf16(grid, x_rows, Cin, H, W, upsample, NULL, NULL, 0);
        DIT_CHECK(conv3x3_bf16_padded(rows_out, grid, &packed, bias, res != NULL, 0, Cin, H, W) == DIT_OK);
        free(x_rows), free(grid);
    }
    double worst = 0, worst_rows = 0, worst_first = 0;
    for (int co = 0; co < Cout; co++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                double sum = bias[co] + (res ? res[((int64_t)co * H + y) * W + xx] : 0), mag = fabs(sum);
                for (int ci = 0; ci < Cin; ci++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            const int iy = y + ky - 1, ix = xx + kx - 1;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            const int sy = upsample ? iy / 2 : iy, sx = upsample ? ix / 2 : ix;
                            const double term = (double)bf16_round(w[((int64_t)co * Cin + ci) * 9 + ky * 3 + kx]) *
                                                 bf16_round(x[((int64_t)ci * sh + sy) * sw + sx]);
                            sum += term, mag += fabs(term);
                        }
                const double err = fabs(direct[((int64_t)co * H + y) * W + xx] - sum) / (mag + 1e-30);
                if (err > worst) worst = err;
                if (rows_out) {
                    const double e = fabs(rows_out[((int64_t)y * W + xx) * Cout + co] - sum) / (mag + 1e-30);
                    if (e > worst_rows) worst_rows = e;
                }
                if (first_rows) {
                    const double e = fabs(first_rows[((int64_t)y * W + xx) * Cout + co] - sum) / (mag + 1e-30);
                    if (e > worst_first) worst_first = e;
                }
            }
    CHECK(!memcmp(direct, banded, sizeof(float) * (size_t)Cout * H * W) && worst <= 1e-5,
          "%s conv3x3 Cin %d, %dx%d%s -> %d%s: in place = banded rows bit for bit, vs float64 %.1e of sum |terms| "
          "(bound 1e-5)", path, Cin, H, W, upsample ? " (upsampled)" : "", Cout, res ? ", + residual" : "", worst);
    if (rows_out)
        CHECK(worst_rows <= 1e-5, "%s conv3x3 channels-last rows, Cin %d, %dx%d%s -> %d%s: vs float64 %.1e of sum "
              "|terms| (bound 1e-5)", path, Cin, H, W, upsample ? " (upsampled)" : "", Cout, res ? ", + residual" : "",
              worst_rows);
    if (first_rows)
        CHECK(worst_first <= 1e-5, "%s conv3x3 channel-major in, rows out, Cin %d, %dx%d -> %d: vs float64 %.1e of sum "
              "|terms| (bound 1e-5)", path, Cin, H, W, Cout, worst_first);
    free(rows_out), free(first_rows);
    bf16_packed_free(&packed);
    free(x); free(w); free(bias); free(res); free(direct); free(banded);
}

// Downsample2D's conv on the bf16 path (3x3, stride 2, zero padding right and bottom only) from channels-last
// rows, against a float64 sum of the rounded inputs (bound as check_conv). Widths whose output lines do not
// fill 32-row blocks, so kept and dropped rows share blocks.
static void check_conv_down(const char *path, int Cin, int H, int W, int Cout) {
    const int OH = H / 2, OW = W / 2;
    float *x = test_random_floats(&rng_state, (size_t)H * W * Cin, 1.0f);   // rows (H W, Cin)
    float *w = test_random_floats(&rng_state, (size_t)Cout * Cin * 9, 0.2f);
    float *bias = test_random_floats(&rng_state, (size_t)Cout, 0.5f), *out = malloc(sizeof(float) * (size_t)OH * OW * Cout);
    uint16_t *grid = malloc(sizeof(uint16_t) * (size_t)conv3x3_padded_elems(Cin, H, W));
    bf16_packed packed = {0};
    DIT_CHECK(conv3x3_pack_bf16(&packed, w, Cout, Cin) == DIT_OK);
    conv3x3_pad_cl_bf16_down(grid, x, Cin, H, W);
    DIT_CHECK(conv3x3_bf16_down(out, grid, &packed, bias, Cin, H, W) == DIT_OK);
    double worst = 0;
    for (int co = 0; co < Cout; co++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                double sum = bias[co], mag = fabs(sum);
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        const int iy = 2 * oy + ky, ix = 2 * ox + kx;
                        if (iy >= H || ix >= W) continue;
                        for (int ci = 0; ci < Cin; ci++) {
                            const double term = (double)bf16_round(w[((int64_t)co * Cin + ci) * 9 + ky * 3 + kx]) *
                                                 bf16_round(x[((int64_t)iy * W + ix) * Cin + ci]);
                            sum += term, mag += fabs(term);
                        }
                    }
                const double err = fabs(out[((int64_t)oy * OW + ox) * Cout + co] - sum) / (mag + 1e-30);
                if (err > worst) worst = err;
            }
    CHECK(worst <= 1e-5, "%s conv3x3 stride 2 (Downsample2D) rows, Cin %d, %dx%d -> %d: vs float64 %.1e of sum |terms| "
          "(bound 1e-5)", path, Cin, H, W, Cout, worst);
    bf16_packed_free(&packed);
    free(x), free(w), free(bias), free(out), free(grid);
}

// The stride-1 conv by Winograd's F(2x2, 3x3) on channels-last rows (ops/cpu/conv_winograd.c) against a float64
// conv of the unrounded input and weights. Its error comes from rounding the transformed
// input V = B^T d B and filters U = G g G^T to bf16 (2^-9 relative each) before the products, so for an output y
// = sum over the transform's terms c_xi sum_ci V U (c = +-1), |error| <= (2^-8 + 2^-18) S with S = sum |c_xi|
// sum_ci |V| |U| in float64; the float32 sums (at most 2^-24 Cin S) and the bias and residual additions add
// less than 1% of that: bound 1.01 x 2^-8 S + 1e-6 (|bias| + |residual|). A wrong transform or layout gives
// errors of order S. Also: the same bits for bands of 32 and 96 tiles and on one thread (each output depends
// only on its tile). Tile rows of 3 to 35 tiles, so that bands start mid-row and rows straddle 32-row blocks.
static void check_conv_winograd(const char *path, int Cin, int H, int W, int Cout, int upsample, int with_residual) {
    const int sh = upsample ? H / 2 : H, sw = upsample ? W / 2 : W, T = H * W;
    float *x = test_random_floats(&rng_state, (size_t)sh * sw * Cin, 1.0f);   // rows (sh sw, Cin)
    float *w = test_random_floats(&rng_state, (size_t)Cout * Cin * 9, 0.2f);
    float *bias = test_random_floats(&rng_state, (size_t)Cout, 0.5f);
    float *res = with_residual ? test_random_floats(&rng_state, (size_t)T * Cout, 1.0f) : NULL;
    float *out[3];
    float *grid = malloc(sizeof(float) * (size_t)conv3x3_padded_elems(Cin, H, W));
    bf16_packed U = {0};
    DIT_CHECK(conv3x3_winograd_fits(Cin, Cout, H, W) && conv3x3_winograd_pack_bf16(&U, w, Cout, Cin) == DIT_OK);
    conv3x3_pad_cl_f32(grid, x, Cin, H, W, upsample, NULL, NULL, 0);
    const int threads = dit_max_threads(), bands[3] = {32, 96, 32};
    for (int r = 0; r < 3; r++) {
        out[r] = malloc(sizeof(float) * (size_t)T * Cout);
        for (size_t i = 0; i < (size_t)T * Cout; i++) out[r][i] = res ? res[i] : 0.0f;
        conv3x3_winograd_band(bands[r]);
        if (r == 2) dit_set_threads(1);
        DIT_CHECK(conv3x3_winograd_bf16(out[r], grid, &U, bias, res != NULL, upsample, Cin, H, W) == DIT_OK);
    }
    dit_set_threads(threads);
    conv3x3_winograd_band(0);
    const int same = !memcmp(out[0], out[1], sizeof(float) * (size_t)T * Cout) &&
                     !memcmp(out[0], out[2], sizeof(float) * (size_t)T * Cout);
    // float64 U and V of every tile; the reference from the grid's values (d, exact bf16) and w
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    static const double BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
    static const double AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
    double *u = malloc(sizeof(double) * 16 * (size_t)Cout * Cin), *v = malloc(sizeof(double) * 16 * (size_t)Cin);
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    double sum = 0;
                    for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++) sum += G[i][a] * w[((int64_t)co * Cin + ci) * 9 + a * 3 + b] * G[j][b];
                    u[((int64_t)(i * 4 + j) * Cout + co) * Cin + ci] = sum;
                }
    double worst = 0, worst_of_s = 0;
    int64_t outside = 0;
    for (int ty = 0; ty < H / 2; ty++)
        for (int tx = 0; tx < W / 2; tx++) {
            for (int ci = 0; ci < Cin; ci++) {   // V of this tile
                double d[4][4];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        const int iy = 2 * ty + i - 1, ix = 2 * tx + j - 1;
                        const int inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
                        const int sy = upsample ? iy / 2 : iy, sx = upsample ? ix / 2 : ix;
                        d[i][j] = inside ? x[((int64_t)sy * sw + sx) * Cin + ci] : 0.0;
                    }
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        double sum = 0;
                        for (int a = 0; a < 4; a++)
                            for (int b = 0; b < 4; b++) sum += BT[i][a] * d[a][b] * BT[j][b];
                        v[(i * 4 + j) * Cin + ci] = sum;
                    }
            }
            for (int co = 0; co < Cout; co++)
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) {
                        const int64_t o = ((int64_t)(2 * ty + a) * W + 2 * tx + b) * Cout + co;
                        double want = bias[co] + (res ? res[o] : 0), S = 0;
                        for (int xi = 0; xi < 16; xi++) {
                            const double c = AT[a][xi / 4] * AT[b][xi % 4];
                            if (c == 0) continue;
                            for (int ci = 0; ci < Cin; ci++) {
                                const double vu = v[xi * Cin + ci] * u[((int64_t)xi * Cout + co) * Cin + ci];
                                want += c * vu, S += fabs(vu);
                            }
                        }
                        const double err = fabs(out[0][o] - want);
                        if (err > 1.01 * ldexp(S, -8) + 1e-6 * (fabs(bias[co]) + (res ? fabs(res[o]) : 0))) outside++;
                        if (err > worst) worst = err;
                        if (err / (S + 1e-30) > worst_of_s) worst_of_s = err / (S + 1e-30);
                    }
        }
    CHECK(same && outside == 0, "%s conv3x3 Winograd F(2x2,3x3) rows, Cin %d, %dx%d%s -> %d%s: vs float64 worst %.1e "
          "(%.1e of S = sum |V U|, bound 1.01 x 2^-8 = 3.9e-3 of S), %lld outside; bands of 32 and 96 tiles and 1 "
          "thread give the same bits: %s", path, Cin, H, W, upsample ? " (upsampled)" : "", Cout,
          res ? ", + residual" : "", worst, worst_of_s, (long long)outside, same ? "yes" : "no");
    bf16_packed_free(&U);
    for (int r = 0; r < 3; r++) free(out[r]);
    free(x), free(w), free(bias), free(res), free(grid), free(u), free(v);
}

// GroupNorm on channels-last rows as a per-channel affine map (+ SiLU, folded into the bf16 grid a conv reads)
// against the float32 path's groupnorm_forward on the channel-major copy: every grid value within one bf16
// rounding (2^-8 relative) of that result, plus 1e-6 (1 + |offset|) absolute for values near zero (the statistics
// are summed in another order and the two SiLUs use different exp code, so a float32 value can fall on the
// other side of a bf16 rounding boundary); the zero border and tail stay zero.
static void check_groupnorm_cl(const char *path, int C, int H, int W, int G, float offset) {
    const int T = H * W;
    float *x = test_random_floats(&rng_state, (size_t)T * C, 3.0f), *xt = malloc(sizeof(float) * (size_t)T * C);
    float *gamma = test_random_floats(&rng_state, (size_t)C, 1.0f), *beta = test_random_floats(&rng_state, (size_t)C, 1.0f);
    float *ref = malloc(sizeof(float) * (size_t)T * C), *affine = malloc(sizeof(float) * 2 * (size_t)C);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            x[(int64_t)t * C + c] += offset + 0.5f * (float)(c % 5);   // channels off centre
            xt[(int64_t)c * T + t] = x[(int64_t)t * C + c];
        }
    groupnorm_forward(ref, xt, gamma, beta, 1, C, T, G, 1e-6f, 1);
    const int64_t elems = conv3x3_padded_elems(C, H, W);
    uint16_t *grid = malloc(sizeof(uint16_t) * (size_t)elems);
    memset(grid, 0xff, sizeof(uint16_t) * (size_t)elems);
    DIT_CHECK(groupnorm_cl_affine(affine, affine + C, x, T, C, G, gamma, beta, 1e-6f) == DIT_OK);
    // the map against float64 statistics of the same values (two-pass, exact to float64)
    double worst_map = 0;
    for (int g = 0; g < G; g++) {
        const int per = C / G;
        double sum = 0, sq = 0;
        for (int t = 0; t < T; t++)
            for (int c = g * per; c < (g + 1) * per; c++) sum += x[(int64_t)t * C + c];
        const double mean = sum / ((double)T * per);
        for (int t = 0; t < T; t++)
            for (int c = g * per; c < (g + 1) * per; c++) sq += (x[(int64_t)t * C + c] - mean) * (x[(int64_t)t * C + c] - mean);
        const double rstd = 1.0 / sqrt(sq / ((double)T * per) + 1e-6);
        for (int c = g * per; c < (g + 1) * per; c++) {
            const double scale = rstd * gamma[c], shift = beta[c] - mean * scale;
            const double e1 = fabs(affine[c] - scale) / fabs(scale);
            const double e2 = fabs(affine[C + c] - shift) / (fabs(beta[c]) + fabs(mean * scale));
            if (e1 > worst_map) worst_map = e1;
            if (e2 > worst_map) worst_map = e2;
        }
    }
    CHECK(worst_map <= 1e-5, "%s groupnorm on channels-last rows (C %d, %dx%d, %d groups, values offset by %g): scale and "
          "shift vs float64 statistics %.1e relative (bound 1e-5)", path, C, H, W, G, offset, worst_map);
    conv3x3_pad_cl_bf16(grid, x, C, H, W, 0, affine, affine + C, 1);
    int64_t outside = 0, border = 0;
    double worst = 0;
    for (int64_t i = 0; i < elems; i++) {
        const int64_t pos = i / C, c = i % C, py = pos / (W + 2), px = pos % (W + 2);
        if (!(py >= 1 && py <= H && px >= 1 && px <= W)) {
            border += grid[i] != 0;
            continue;
        }
        const uint32_t bits = (uint32_t)grid[i] << 16;
        float got;
        memcpy(&got, &bits, sizeof got);
        const double want = ref[c * T + (py - 1) * W + px - 1], err = fabs(got - want);
        // plus the float32 cancellation both sides share in x scale + shift when the mean is far from 0
        if (err > ldexp(fabs(want), -8) + 1e-6 + 1e-6 * fabs(offset)) outside++;
        if (err / (fabs(want) + 1e-6) > worst) worst = err / (fabs(want) + 1e-6);
    }
    CHECK(outside == 0 && border == 0, "%s groupnorm + SiLU on channels-last rows (C %d, %dx%d, %d groups) vs "
          "groupnorm_forward, values offset by %g: worst %.1e relative (bound one bf16 rounding, 2^-8 + 1e-6 (1 + "
          "offset) absolute), %lld "
          "border values not zero", path, C, H, W, G, offset, worst, (long long)border);
    free(x), free(xt), free(gamma), free(beta), free(ref), free(affine), free(grid);
}

// The autoencoder with its 3x3 convolutions on the bf16 path against its fp32 self (reduced SD widths
// 32/32/64/64, a 4 x 4 latent / 32 px image to stay quick): decode and encode. Each conv alone is within its
// bound of a float64 conv (check_conv, check_conv_winograd), but ~30 convs deep every layer's output is rounded
// to bf16 again: over 12 random latents the decode's relative L2 error is 2.0-2.8e-2 with the direct convs and
// 3.1-4.1e-2 with Winograd's (the default on this path; the encode's 1.1-1.8e-2 and 1.8-2.7e-2), its max error
// up to 5e-2 of max |out| (build/vae_precision measures the same at full width). Bounds: L2 6e-2, max 1e-1 (one
// draw's max is the noisier figure); both catch a wrong layout or tap (errors of order 1), and this error is
// why the autoencoder's AUTO stays fp32.
static void check_vae(const char *path, int winograd) {
    const char *form = winograd ? "Winograd" : "direct";
    conv3x3_winograd_enable(winograd);
    dit_vae_config c;
    dit_vae_config_sd(&c);
    c.block_out[0] = c.block_out[1] = 32;
    c.block_out[2] = c.block_out[3] = 64;
    dit_vae *v = dit_vae_synthetic(&c, 3);
    if (!CHECK(v != NULL, "%s synthetic VAE", path)) return;
    const int h = 4, S = 8 * h;
    float *z = test_random_floats(&rng_state, (size_t)4 * h * h, 2.0f);
    float *img = test_random_floats(&rng_state, (size_t)3 * S * S, 1.0f);
    float *ref = malloc((size_t)3 * S * S * sizeof *ref), *got = malloc((size_t)3 * S * S * sizeof *got);
    float mref[2 * 4 * 4 * 4], mgot[2 * 4 * 4 * 4];
    dit_vae_set_precision(v, DIT_PRECISION_FP32);
    DIT_CHECK(dit_vae_decode(v, z, 1, h, h, ref) == DIT_OK && dit_vae_encode_moments(v, img, 1, S, S, mref) == DIT_OK);
    CHECK(dit_vae_set_precision(v, DIT_PRECISION_BF16) == DIT_OK && dit_vae_precision(v) == DIT_PRECISION_BF16,
          "%s VAE set to bf16", path);
    DIT_CHECK(dit_vae_decode(v, z, 1, h, h, got) == DIT_OK && dit_vae_encode_moments(v, img, 1, S, S, mgot) == DIT_OK);
    // the channels-last decoder and encoder give the same bits on one thread as on several
    float *one_thread = malloc((size_t)3 * S * S * sizeof *one_thread), m_one[2 * 4 * 4 * 4];
    const int threads = dit_max_threads();
    dit_set_threads(1);
    DIT_CHECK(dit_vae_decode(v, z, 1, h, h, one_thread) == DIT_OK &&
              dit_vae_encode_moments(v, img, 1, S, S, m_one) == DIT_OK);
    dit_set_threads(threads);
    CHECK(!memcmp(one_thread, got, (size_t)3 * S * S * sizeof *got) && !memcmp(m_one, mgot, sizeof m_one),
          "%s VAE bf16 (%s 3x3 convs) decode and encode: 1 thread = %d threads bit for bit", path, form, threads);
    free(one_thread);
    double max_rel, l2_rel, emax, el2;
    test_relative_errors(got, ref, (size_t)3 * S * S, &max_rel, &l2_rel);
    test_relative_errors(mgot, mref, sizeof mref / sizeof mref[0], &emax, &el2);
    CHECK(l2_rel <= 6e-2 && el2 <= 6e-2 && max_rel <= 1e-1 && emax <= 1e-1, "%s VAE bf16 (%s 3x3 convs) vs fp32: "
          "decode L2 error %.2e (max %.2e of max |out|), encode moments L2 %.2e (max %.2e) (bounds: L2 6e-2, max 1e-1)",
          path, form, l2_rel,
          max_rel, el2, emax);
    free(z); free(img); free(ref); free(got);
    dit_vae_free(v);
    conv3x3_winograd_enable(-1);   // back to the default (DIT_WINOGRAD, or by path)
}

// The bf16 path's LayerNorm + modulate (float32 lane sums) against the exact double-sum version: D not a
// multiple of 16, rows offset by a constant so that the mean is large against the spread (the case where a
// careless float sum loses digits). Bound 1e-5 relative: float32 sums of ~1e3 terms, far below bf16's 4e-3.
static int operand_holds(const uint16_t *b16, int kp, const float *x, int rows, int D);

static void check_layernorm(const char *path) {
    const int B = 2, T = 5, D = 1155, A = 3 * D;
    float *x = malloc((size_t)B * T * D * sizeof *x), *mod = malloc((size_t)B * A * sizeof *mod);
    float *want = malloc((size_t)B * T * D * sizeof *want), *got = malloc((size_t)B * T * D * sizeof *got);
    float wm[10], wr[10], gm[10], gr[10];
    for (int i = 0; i < B * T * D; i++) x[i] = 50.0f + (float)(((int64_t)i * 7919) % 1000) / 250.0f;
    for (int i = 0; i < B * A; i++) mod[i] = (float)(((int64_t)i * 104729) % 200) / 100.0f - 1.0f;
    layernorm_modulate_forward(want, wm, wr, x, mod, mod + D, A, B, T, D);
    layernorm_modulate_forward_avx512(got, NULL, 0, gm, gr, x, mod, mod + D, A, B, T, D);
    double worst = 0.0, stat = 0.0;
    for (int i = 0; i < B * T * D; i++) worst = fmax(worst, fabs(got[i] - want[i]) / (1.0 + fabs(want[i])));
    for (int r = 0; r < B * T; r++)
        stat = fmax(stat, fmax(fabs(gm[r] - wm[r]) / fabs(wm[r]), fabs(gr[r] - wr[r]) / fabs(wr[r])));
    CHECK(worst <= 1e-5 && stat <= 1e-5, "%s layernorm_modulate (float32 lanes, D %d) vs the double-sum version: "
          "%.1e of output, %.1e of mean/rstd (bound 1e-5)", path, D, worst, stat);
    // The operand form writes only the bf16 copy a product would make of y: the same bits, zeros past D.
    ops_context ctx = {.precision = OPS_BF16};
    op_operand y16 = {0};
    const int same = op_layernorm_modulate_operand(&ctx, &y16, NULL, NULL, NULL, x, mod, mod + D, A, B, T, D) == DIT_OK &&
                     y16.b16 && !y16.f32 && y16.kp == 1184 && operand_holds(y16.b16, 1184, got, B * T, D);
    CHECK(same, "%s layernorm_modulate as a bf16 operand (D %d, padded to 1184) == bf16 of the float32 output, bit for "
          "bit, zeros in the padding", path, D);
    // The backward, float32 lanes against the double-sum version: dx accumulated onto a start value, dshift and
    // dscale per sample. Bound 1e-5 of (1 + |value|), as the forward.
    float *dy = test_random_floats(&rng_state, (size_t)B * T * D, 1.0f);
    float *dx_want = test_random_floats(&rng_state, (size_t)B * T * D, 1.0f);
    float *dx_got = malloc((size_t)B * T * D * sizeof *dx_got), *dmod_want = calloc((size_t)B * A, sizeof *dmod_want);
    float *dmod_got = calloc((size_t)B * A, sizeof *dmod_got);
    memcpy(dx_got, dx_want, (size_t)B * T * D * sizeof *dx_got);
    layernorm_modulate_backward(dx_want, dmod_want, dmod_want + D, dy, x, wm, wr, mod + D, A, B, T, D);
    op_layernorm_modulate_backward(&ctx, dx_got, dmod_got, dmod_got + D, dy, x, wm, wr, mod + D, A, B, T, D);
    double worst_dx = 0.0, worst_dmod = 0.0;
    for (int i = 0; i < B * T * D; i++) worst_dx = fmax(worst_dx, fabs(dx_got[i] - dx_want[i]) / (1.0 + fabs(dx_want[i])));
    for (int i = 0; i < B * A; i++)
        worst_dmod = fmax(worst_dmod, fabs(dmod_got[i] - dmod_want[i]) / (1.0 + fabs(dmod_want[i])));
    CHECK(worst_dx <= 1e-5 && worst_dmod <= 1e-5, "%s layernorm_modulate backward (float32 lanes, D %d) vs the "
          "double-sum version: %.1e of dx, %.1e of dshift/dscale (bound 1e-5)", path, D, worst_dx, worst_dmod);
    // With a sample per thread (B >= threads) and with the rows and columns split (more threads than samples):
    // the same bits.
    float *dx_one = malloc((size_t)B * T * D * sizeof *dx_one), *dmod_one = calloc((size_t)B * A, sizeof *dmod_one);
    memcpy(dx_one, dx_want, (size_t)B * T * D * sizeof *dx_one);   // any start value: both add onto the same
    memcpy(dx_got, dx_want, (size_t)B * T * D * sizeof *dx_got);
    const int threads = dit_max_threads();
    dit_set_threads(1);
    op_layernorm_modulate_backward(&ctx, dx_one, dmod_one, dmod_one + D, dy, x, wm, wr, mod + D, A, B, T, D);
    dit_set_threads(B + 1);
    op_layernorm_modulate_backward(&ctx, dx_got, dmod_got, dmod_got + D, dy, x, wm, wr, mod + D, A, B, T, D);
    dit_set_threads(threads);
    CHECK(!memcmp(dx_one, dx_got, (size_t)B * T * D * sizeof *dx_got) && !memcmp(dmod_one, dmod_got, (size_t)B * A * sizeof *dmod_got),
          "%s layernorm_modulate backward by sample (1 thread) == by rows and columns (%d threads), bit for bit",
          path, B + 1);
    free(dx_one), free(dmod_one);
    free(dy), free(dx_want), free(dx_got), free(dmod_want), free(dmod_got);
    free(x), free(mod), free(want), free(got);
}

// bf16 attention, forward and backward, against the fp32 kernels: T = 45 (one block of query rows) and
// T = 300 (blocks of 192 and 108 rows, so dk and dv sum over blocks), head dim 20 (not a multiple of 32).
// Bound 2e-2 of max |ref|: q, k, v, P and dS are rounded to bf16 (relative 4e-3 each) before the products.
static void check_attention(const char *path, int T) {
    const int B = 2, H = 3, D = 60, n_qkv = B * T * 3 * D, n_out = B * T * D;
    const int threads = dit_max_threads();
    float *qkv = malloc(n_qkv * sizeof *qkv), *dout = malloc(n_out * sizeof *dout);
    float *want = malloc(n_out * sizeof *want), *got = malloc(n_out * sizeof *got);
    float *dwant = malloc(n_qkv * sizeof *dwant), *dgot = malloc(n_qkv * sizeof *dgot);
    float *scratch = malloc(attention_backward_scratch_floats(T, threads) * sizeof *scratch);
    for (int i = 0; i < n_qkv; i++) qkv[i] = (float)(((int64_t)i * 7919) % 1001) / 250.0f - 2.0f;
    for (int i = 0; i < n_out; i++) dout[i] = (float)(((int64_t)i * 104729) % 999) / 500.0f - 1.0f;
    attention_forward(want, qkv, scratch, B, T, D, H);
    float *stats = malloc((size_t)B * H * T * 2 * sizeof *stats);   // the softmax rows' max and 1 / sum
    attention_forward_bf16(got, NULL, 0, (qkv_rows){.f32 = qkv}, stats, B, T, D, H);
    attention_backward(dwant, dout, qkv, scratch, B, T, D, H);
    attention_backward_bf16(dgot, NULL, (attn_dout){.f32 = dout}, (qkv_rows){.f32 = qkv}, NULL, B, T, D, H);
    double max_rel, l2_rel, dmax_rel, dl2_rel;
    test_relative_errors(got, want, n_out, &max_rel, &l2_rel);
    test_relative_errors(dgot, dwant, n_qkv, &dmax_rel, &dl2_rel);
    CHECK(max_rel <= 2e-2 && dmax_rel <= 2e-2, "%s attention T %d (blocks of %d query rows) vs fp32: forward %.2e, "
          "backward %.2e of max |ref| (bound 2e-2)", path, T, T <= 218 ? T : 192, max_rel, dmax_rel);
    // from qkv already in bf16 (op_qkv's form): the same bits, forward and backward
    uint16_t *qkv16 = malloc(n_qkv * sizeof *qkv16);
    float *got16 = malloc(n_out * sizeof *got16), *dgot16 = malloc(n_qkv * sizeof *dgot16);
    for (int i = 0; i < n_qkv; i++) qkv16[i] = bf16_bits_from_float(qkv[i]);
    const int st = attention_forward_bf16(got16, NULL, 0, (qkv_rows){.b16 = qkv16}, NULL, B, T, D, H) |
                   attention_backward_bf16(dgot16, NULL, (attn_dout){.f32 = dout}, (qkv_rows){.b16 = qkv16}, NULL, B, T, D, H);
    CHECK(st == DIT_OK && !memcmp(got16, got, n_out * sizeof *got) && !memcmp(dgot16, dgot, n_qkv * sizeof *dgot),
          "%s attention T %d, head size %d, from bf16 qkv == from float32 qkv, bit for bit (forward, backward)", path, T,
          D / H);
    // the backward's P from the forward's softmax statistics == recomputed from scratch, bit for bit
    const int st2 = attention_backward_bf16(dgot16, NULL, (attn_dout){.f32 = dout}, (qkv_rows){.f32 = qkv}, stats, B, T, D, H);
    CHECK(st2 == DIT_OK && !memcmp(dgot16, dgot, n_qkv * sizeof *dgot), "%s attention T %d backward from the forward's "
          "softmax statistics == recomputing them, bit for bit", path, T);
    free(stats);
    free(qkv16), free(got16), free(dgot16);
    free(qkv), free(dout), free(want), free(got), free(dwant), free(dgot), free(scratch);
}

// bf16_pack_both == bf16_pack of W and of W^T, bit for bit, awkward shapes (rows and columns past the tiles).
static void check_pack_both(const char *path, int N, int K) {
    float *w = test_random_floats(&rng_state, (size_t)N * K, 1.0f);
    bf16_packed a = {0}, at = {0}, b = {0}, bt = {0};
    int ok = bf16_pack_both(&a, &at, w, N, K) == DIT_OK && bf16_pack(&b, w, N, K, K, 1) == DIT_OK &&
             bf16_pack(&bt, w, K, N, 1, K) == DIT_OK;
    ok = ok && a.Np == b.Np && a.Kp == b.Kp && at.Np == bt.Np && at.Kp == bt.Kp &&
         !memcmp(a.data, b.data, (size_t)a.Np * a.Kp * sizeof(uint16_t)) &&
         !memcmp(at.data, bt.data, (size_t)at.Np * at.Kp * sizeof(uint16_t));
    CHECK(ok, "%s bf16_pack_both (%d x %d) == bf16_pack of W and of W^T, bit for bit", path, N, K);
    bf16_packed_free(&a), bf16_packed_free(&at), bf16_packed_free(&b), bf16_packed_free(&bt);
    free(w);
}

// qkv stored head by head in bf16 (op_qkv's form where T and D are multiples of 32, heads at least 32 wide): attention
// forward (float32 output and bf16 operand) and backward the same bits as from the float32 qkv.
static void check_attention_head_major(const char *path, int T, int D, int H) {
    const int B = 2, n_qkv = B * T * 3 * D, n_out = B * T * D;
    ops_context ctx = {.precision = OPS_BF16};
    float *qkv = test_random_floats(&rng_state, n_qkv, 2.0f), *dout = test_random_floats(&rng_state, n_out, 1.0f);
    float *stored = malloc(n_qkv * sizeof *stored), *out[2], *dqkv[2];
    ops_qkv_store(&ctx, stored, qkv, B, T, D, H);
    const qkv_rows from[2] = {{.f32 = qkv}, {.b16 = (const uint16_t *)(const void *)stored, .head_major = 1}};
    float *dout_stored = malloc(n_out * sizeof *dout_stored);   // dout head by head too, as the model makes it
    ops_attention_dout_store(&ctx, dout_stored, dout, B, T, D, H);
    const attn_dout dout_from[2] = {{.f32 = dout}, {.b16 = (const uint16_t *)(const void *)dout_stored}};
    int st = ops_qkv_form(&ctx, T, D, H) == QKV_BF16_HEADS ? DIT_OK : DIT_ERR;
    for (int i = 0; i < 2; i++) {
        out[i] = malloc(n_out * sizeof(float)), dqkv[i] = malloc(n_qkv * sizeof(float));
        st |= attention_forward_bf16(out[i], NULL, 0, from[i], NULL, B, T, D, H);
        st |= attention_backward_bf16(dqkv[i], NULL, dout_from[i], from[i], NULL, B, T, D, H);
    }
    op_operand op = {0};
    float *unused = malloc(n_out * sizeof *unused);
    st |= op_attention_operand(&ctx, &op, unused, stored, NULL, B, T, D, H);
    CHECK(st == DIT_OK && !memcmp(out[0], out[1], n_out * sizeof(float)) &&
          !memcmp(dqkv[0], dqkv[1], n_qkv * sizeof(float)) && op.b16 && operand_holds(op.b16, op.kp, out[0], B * T, D),
          "%s attention (T %d, %d heads of %d) from qkv (and dout) in bf16 head by head == from float32, bit for bit "
          "(forward, its bf16 operand, backward)", path, T, H, D / H);
    for (int i = 0; i < 2; i++) free(out[i]), free(dqkv[i]);
    free(qkv), free(dout), free(stored), free(dout_stored), free(unused);
}

// 1 if b16 (a_layout_tiles(kp)) holds bf16(x (rows, D)) bit for bit, and zeros in columns D..kp.
static int operand_holds(const uint16_t *b16, int kp, const float *x, int rows, int D) {
    const a_layout tiles = a_layout_tiles(kp);
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < kp; k++) {
            const float v = k < D ? bf16_round(x[(int64_t)r * D + k]) : 0.0f;
            const uint32_t bits = (uint32_t)b16[a_offset(&tiles, r, k)] << 16;
            float held;
            memcpy(&held, &bits, sizeof held);
            if (memcmp(&held, &v, sizeof v) != 0) return 0;
        }
    return 1;
}

// Attention's output as the projection's bf16 operand: heads written into their columns of it (head sizes
// 40 and 72 start heads off the 16-element runs; 64 keeps every block on whole 32-column runs), bit for bit the rounding of the float32 output, zeros in
// the padding; a head size that is not a multiple of 8 falls back to the float32 output.
static void check_attention_operand(const char *path, int T, int D, int H) {
    const int B = 2, n_qkv = B * T * 3 * D, n_out = B * T * D;
    float *qkv = malloc(n_qkv * sizeof *qkv), *want = malloc(n_out * sizeof *want), *got = calloc(n_out, sizeof *got);
    for (int i = 0; i < n_qkv; i++) qkv[i] = (float)(((int64_t)i * 7919) % 1001) / 250.0f - 2.0f;
    attention_forward_bf16(want, NULL, 0, (qkv_rows){.f32 = qkv}, NULL, B, T, D, H);
    ops_context ctx = {.precision = OPS_BF16};
    op_operand op = {0};
    float *stored = malloc(n_qkv * sizeof *stored);   // qkv as op_qkv leaves it
    ops_qkv_store(&ctx, stored, qkv, B, T, D, H);
    const int st = op_attention_operand(&ctx, &op, got, stored, NULL, B, T, D, H);
    free(stored);
    const int kp = (D + 31) / 32 * 32;
    if ((D / H) % 8 == 0)
        CHECK(st == DIT_OK && op.b16 && !op.f32 && op.kp == kp && operand_holds(op.b16, kp, want, B * T, D),
              "%s attention (D %d, %d heads of %d) as a bf16 operand == bf16 of its float32 output, bit for bit, zeros "
              "in columns %d..%d", path, D, H, D / H, D, kp);
    else
        CHECK(st == DIT_OK && op.f32 == got && !op.b16 && !memcmp(got, want, n_out * sizeof *got),
              "%s attention (head size %d, not a multiple of 8) as an operand: its float32 output", path, D / H);
    free(qkv), free(want), free(got);
}

// op_mlp keeps fc1's GELU output in bf16 where fc2 reads it: bit for bit what op_linear(GELU) followed by
// op_linear(fc2) computes through float32, on sizes off the 32-blocks (edge panels, padding columns), with
// the gated residual (inference), the kept product (training) and a plain store.
static void check_mlp(const char *path) {
    const int M = 45, K = 70, N1 = 83, N2 = 50, rows_per_gate = 15, gate_stride = 3 * N2;
    float *inp = test_random_floats(&rng_state, (size_t)M * K, 1.0f);
    float *w1 = test_random_floats(&rng_state, (size_t)N1 * K, 0.3f), *b1 = test_random_floats(&rng_state, N1, 0.5f);
    float *w2 = test_random_floats(&rng_state, (size_t)N2 * N1, 0.3f), *b2 = test_random_floats(&rng_state, N2, 0.5f);
    float *gate = test_random_floats(&rng_state, 3 * gate_stride, 1.0f);
    float *base = test_random_floats(&rng_state, (size_t)M * N2, 1.0f);
    float *hidden = calloc((size_t)M * N1, sizeof *hidden), *pre_want = calloc((size_t)M * N1, sizeof *pre_want);
    float *pre_got = calloc((size_t)M * N1, sizeof *pre_got);
    float *want = malloc((size_t)M * N2 * sizeof *want), *got = malloc((size_t)M * N2 * sizeof *got);
    float *prod_want = malloc((size_t)M * N2 * sizeof *prod_want), *prod_got = malloc((size_t)M * N2 * sizeof *prod_got);
    ops_context ctx = {.precision = OPS_BF16, .weights_version = 1};
    linear_layer fc1 = {0}, fc2 = {0};
    linear_layer_init(&fc1, w1, b1, N1, K);
    linear_layer_init(&fc2, w2, b2, N2, N1);
    const linear_epilogue gelu = {.kind = LINEAR_GELU, .pre = pre_want};
    int ok = 1;
    for (int kind = 0; kind < 3; kind++) {   // gated residual, gated residual keeping the product, plain
        linear_epilogue ep = {.kind = LINEAR_GATED_RESIDUAL, .gate = gate + 1, .gate_stride = gate_stride,
                              .gate_rows = rows_per_gate, .product = kind == 1 ? prod_want : NULL};
        memcpy(want, base, (size_t)M * N2 * sizeof *want);
        memcpy(got, base, (size_t)M * N2 * sizeof *got);
        ok &= op_linear(&ctx, &fc1, hidden, inp, M, 0, &gelu) == DIT_OK;
        ok &= op_linear(&ctx, &fc2, want, hidden, M, 0, kind == 2 ? NULL : &ep) == DIT_OK;
        ep.product = kind == 1 ? prod_got : NULL;
        ok &= op_mlp(&ctx, &fc1, &fc2, got, hidden, &(op_operand){.f32 = inp}, M, 0, pre_got, kind == 2 ? NULL : &ep) == DIT_OK;
        ok &= !memcmp(want, got, (size_t)M * N2 * sizeof *got) && !memcmp(pre_want, pre_got, (size_t)M * N1 * sizeof *got);
        if (kind == 1) ok &= !memcmp(prod_want, prod_got, (size_t)M * N2 * sizeof *got);
    }
    CHECK(ok, "%s op_mlp (bf16 hidden written by fc1's epilogue, %dx%d -> %d -> %d) == op_linear GELU then op_linear, "
          "bit for bit (gated, gated keeping the product, plain; and the value before GELU)", path, M, K, N1, N2);
    linear_layer_free(&fc1), linear_layer_free(&fc2);
    free(inp), free(w1), free(b1), free(w2), free(b2), free(gate), free(base), free(hidden), free(pre_want);
    free(pre_got), free(want), free(got), free(prod_want), free(prod_got);
}

void test_bf16(void) {
    const cpu_features *f = cpu_features_get();
    printf("cpu: %s; best path %s%s%s\n", f->brand, cpu_path_name(cpu_path_best()),
           f->amx_refusal ? "; AMX not used: " : "", f->amx_refusal ? f->amx_refusal : "");
    const cpu_path saved = cpu_path_active();
    const cpu_path paths[] = {CPU_PATH_AMX, CPU_PATH_AVX512_BF16};
    int ran = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        const char *name = cpu_path_name(paths[i]);
        if (cpu_path_force(paths[i]) != 0) {
            SKIP("bf16 gemm/model on the %s path: this CPU has no %s path", name, name);
            continue;
        }
        ran++;
        check_shape(name, 37, 29, 23, 0, 0, 0);
        check_shape(name, 1, 64, 96, 0, 0, 0);
        check_shape(name, 64, 256, 33, 0, 0, 1);
        check_shape(name, 70, 72, 130, 1, 0, 0);
        check_shape(name, 33, 150, 47, 0, 1, 0);
        check_shape(name, 50, 33, 40, 1, 1, 1);
        check_shape(name, 300, 1152, 97, 0, 0, 0);
        check_shape(name, 45, 1301, 16, 0, 0, 0);   // two K blocks, the last step's 11 pairs, one odd; 16 columns
        check_shape(name, 70, 1100, 1950, 0, 0, 0);  // a B of more than 4 MB in one K block: slabs of two panels
        check_rows_invariance(name);
        if (paths[i] == CPU_PATH_AMX) check_stream_kernels();
        check_epilogues(name);
        check_gelu_far_negative(name);
        check_streamed_stores(name);
        check_stealing(name);
        check_mlp(name);
        check_layernorm(name);
        check_attention(name, 45);
        check_attention(name, 300);
        check_attention_operand(name, 45, 120, 3);
        check_attention_operand(name, 37, 144, 2);
        check_attention_operand(name, 45, 60, 3);
        check_attention_operand(name, 64, 128, 2);   // heads of 64: every block a whole 32-column run
        check_pack_both(name, 45, 83);
        check_pack_both(name, 1, 33);
        check_pack_both(name, 384, 1152);
        check_attention_head_major(name, 64, 64, 2);
        check_attention_head_major(name, 96, 384, 6);
        check_attention_head_major(name, 64, 288, 4);   // heads of 72, as XL's: rows 144 bytes apart
        test_rounding();
        // The width, heads and tokens of DiT-XL/2 at 256 px with 2 blocks; and an odd little one (25 tokens,
        // head dim 32, 7 classes, no learned sigma).
        check_model(name, "XL-width (D 1152, 16 heads, T 256, depth 2)",
                    (dit_config){.input_size = 32, .patch_size = 2, .in_channels = 4, .hidden_size = 1152, .depth = 2,
                                 .num_heads = 16, .mlp_ratio = 4.0f, .num_classes = 1000, .class_dropout_prob = 0.1f,
                                 .learn_sigma = 1}, 2);
        check_model(name, "heads of 64 (D 128, 2 heads, T 64, depth 2)",
                    (dit_config){.input_size = 16, .patch_size = 2, .in_channels = 4, .hidden_size = 128, .depth = 2,
                                 .num_heads = 2, .mlp_ratio = 4.0f, .num_classes = 10, .class_dropout_prob = 0.1f,
                                 .learn_sigma = 1}, 2);
        check_model(name, "odd (D 96, 3 heads, T 25, depth 3)",
                    (dit_config){.input_size = 10, .patch_size = 2, .in_channels = 3, .hidden_size = 96, .depth = 3,
                                 .num_heads = 3, .mlp_ratio = 4.0f, .num_classes = 7, .class_dropout_prob = 0.1f,
                                 .learn_sigma = 0}, 3);
        check_gradients(name, 8, 64, 2);    // 16 tokens: qkv in bf16 row-major
        check_gradients(name, 16, 64, 2);   // 64 tokens, heads of 32: qkv in bf16 head by head
        check_gradients(name, 16, 96, 2);   // heads of 48: blocks split between two heads' parts
        check_linear_backward_gelu(name);
        check_linear_backward(name);
        check_attention_backward_fused(name, 48);   // 16 x 16 blocks
        check_attention_backward_fused(name, 64);   // whole 32 x 32 blocks, streamed
        check_mlp_backward_fused(name, 45, 70, 83);    // edge rows and columns
        check_mlp_backward_fused(name, 64, 64, 96);    // whole blocks only
        check_mlp_backward_fused(name, 100, 48, 130);  // several row blocks, an edge chunk of 4 rows
        check_linear_backward_modulated(name);
        check_conv(name, 32, 5, 7, 40, 0, 1);
        check_conv(name, 64, 6, 6, 33, 1, 0);
        check_conv(name, 32, 17, 37, 64, 0, 1);
        check_conv(name, 96, 8, 30, 32, 1, 1);
        check_conv(name, 96, 3, 70, 32, 0, 1);   // 3 K blocks, whole 32-row blocks inside a line
        check_conv(name, 4, 9, 9, 32, 0, 0);   // Cin not a multiple of 32: the banded form both times
        check_conv(name, 3, 10, 12, 40, 0, 0);   // an image's 3 channels: rows out with an edge panel
        check_conv(name, 32, 7, 9, 36, 0, 0);    // rows out through the direct form
        check_conv_down(name, 32, 10, 14, 40);
        check_conv_winograd(name, 32, 6, 10, 64, 0, 1);
        check_conv_winograd(name, 64, 8, 70, 32, 1, 1);   // 35 tiles a row: bands start mid-row
        check_conv_winograd(name, 96, 2, 2, 32, 0, 0);    // one tile
        check_conv_winograd(name, 32, 14, 22, 96, 1, 0);
        check_conv_down(name, 64, 6, 70, 33);
        check_groupnorm_cl(name, 64, 9, 13, 32, 0.0f);
        check_groupnorm_cl(name, 96, 40, 41, 8, 0.0f);
        check_groupnorm_cl(name, 32, 30, 31, 8, 300.0f);   // a mean ~170 standard deviations from 0
        check_vae(name, 1);
        check_vae(name, 0);
    }
    cpu_path_force(saved);
    if (!ran) SKIP("bf16 gemm: no bf16 path on this CPU");
}
