// What the bf16 operands save: one DiT block's products fed by float32 activations (converted by each product)
// against the same products fed by bf16 operands written by the ops before them (op_layernorm_modulate_operand,
// op_mlp, op_attention_operand), interleaved in one process so that a slow phase of the machine falls on both.
// The results are bit-identical (tests/test_bf16.c); only the time differs. Prints one JSON line per variant:
// best and median seconds of the block's norm + qkv, attention + proj, and norm + MLP parts, and GFLOP/s of
// the best.
// Usage: bench_fusion [tokens D heads repeats threads]   (default: DiT-XL/2 x 2 at 256 px: 512 1152 16 15 all)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "ops/cpu/cpu_features.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

typedef struct {
    linear_layer qkv, proj, fc1, fc2;
    float *x, *ada, *h, *qkv_out, *attn, *mlp, *scratch;
    int M, D, H, T;
} block;

static float *filled(size_t n, float scale, unsigned seed) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = scale * ((float)((i * 2654435761u + seed) % 2001) / 1000.0f - 1.0f);
    return p;
}

// One block's bf16 work (without adaLN's small product), fed one way or the other; returns seconds.
static double run(const ops_context *ops, block *b, int fused) {
    const int M = b->M, D = b->D, A = 6 * D, B = M / b->T;
    const linear_epilogue msa = {.kind = LINEAR_GATED_RESIDUAL, .gate = b->ada + 2 * D, .gate_stride = A,
                                 .gate_rows = b->T, .scratch = b->scratch};
    const linear_epilogue mlp = {.kind = LINEAR_GATED_RESIDUAL, .gate = b->ada + 5 * D, .gate_stride = A,
                                 .gate_rows = b->T, .scratch = b->scratch};
    const linear_epilogue gelu = {.kind = LINEAR_GELU};
    const double t0 = now_seconds();
    dit_status st = DIT_OK;
    if (fused) {
        op_operand h, attn;
        st |= op_layernorm_modulate_operand(ops, &h, b->h, NULL, NULL, b->x, b->ada, b->ada + D, A, B, b->T, D);
        st |= op_qkv(ops, &b->qkv, b->qkv_out, &h, B, b->T, b->H, 0, 0);
        st |= op_attention_operand(ops, &attn, b->attn, b->qkv_out, NULL, B, b->T, D, b->H);
        st |= op_linear_from(ops, &b->proj, b->x, &attn, M, 0, &msa);
        st |= op_layernorm_modulate_operand(ops, &h, b->h, NULL, NULL, b->x, b->ada + 3 * D, b->ada + 4 * D, A, B, b->T, D);
        st |= op_mlp(ops, &b->fc1, &b->fc2, b->x, b->mlp, &h, M, 0, NULL, &mlp);
    } else {
        op_layernorm_modulate(ops, b->h, NULL, NULL, b->x, b->ada, b->ada + D, A, B, b->T, D);
        st |= op_qkv(ops, &b->qkv, b->qkv_out, &(op_operand){.f32 = b->h}, B, b->T, b->H, 0, 0);
        st |= op_attention(ops, b->attn, b->qkv_out, NULL, NULL, B, b->T, D, b->H);
        st |= op_linear(ops, &b->proj, b->x, b->attn, M, 0, &msa);
        op_layernorm_modulate(ops, b->h, NULL, NULL, b->x, b->ada + 3 * D, b->ada + 4 * D, A, B, b->T, D);
        st |= op_linear(ops, &b->fc1, b->mlp, b->h, M, 0, &gelu);
        st |= op_linear(ops, &b->fc2, b->x, b->mlp, M, 0, &mlp);
    }
    if (st != DIT_OK) {
        fprintf(stderr, "bench_fusion: %s\n", dit_last_error());
        exit(1);
    }
    return now_seconds() - t0;
}

int main(int argc, char **argv) {
    const int M = argc > 1 ? atoi(argv[1]) : 512, D = argc > 2 ? atoi(argv[2]) : 1152, H = argc > 3 ? atoi(argv[3]) : 16;
    const int repeats = argc > 4 ? atoi(argv[4]) : 15, threads = argc > 5 ? atoi(argv[5]) : 0;
    const int T = 256 < M ? 256 : M;
    if (M < 1 || D < 1 || H < 1 || D % H || M % T || repeats < 1) {
        fprintf(stderr, "usage: bench_fusion [tokens D heads repeats threads]: D a multiple of heads\n");
        return 2;
    }
    if (threads > 0) dit_set_threads(threads);
    if (cpu_path_active() < CPU_PATH_AVX512_BF16) {
        fprintf(stderr, "bench_fusion: this CPU has no bf16 path\n");
        return 1;
    }
    const int N = 4 * D, B = M / T;
    block b = {.M = M, .D = D, .H = H, .T = T};
    float *w[4] = {filled((size_t)3 * D * D, 0.03f, 1), filled((size_t)D * D, 0.03f, 2), filled((size_t)N * D, 0.03f, 3),
                   filled((size_t)D * N, 0.015f, 4)};
    float *bias = filled((size_t)N, 0.1f, 5);
    linear_layer_init(&b.qkv, w[0], bias, 3 * D, D);
    linear_layer_init(&b.proj, w[1], bias, D, D);
    linear_layer_init(&b.fc1, w[2], bias, N, D);
    linear_layer_init(&b.fc2, w[3], bias, D, N);
    b.x = filled((size_t)M * D, 1.0f, 6), b.ada = filled((size_t)B * 6 * D, 0.1f, 7);
    b.h = malloc((size_t)M * D * sizeof(float)), b.qkv_out = malloc((size_t)M * 3 * D * sizeof(float));
    b.attn = malloc((size_t)M * D * sizeof(float)), b.mlp = malloc((size_t)M * N * sizeof(float));
    b.scratch = malloc((size_t)M * D * sizeof(float));
    float *x0 = malloc((size_t)M * D * sizeof(float));
    memcpy(x0, b.x, (size_t)M * D * sizeof(float));
    const ops_context ops = {.precision = OPS_BF16, .weights_version = 1};
    double *times[2] = {malloc(repeats * sizeof(double)), malloc(repeats * sizeof(double))};
    double best[2] = {1e30, 1e30};
    for (int r = -1; r < repeats; r++)
        for (int fused = 0; fused < 2; fused++) {
            memcpy(b.x, x0, (size_t)M * D * sizeof(float));   // the same residual stream each time
            const double s = run(&ops, &b, fused);
            if (r < 0) continue;   // the first round packs the weights and grows the workspaces
            times[fused][r] = s;
            if (s < best[fused]) best[fused] = s;
        }
    const double flops = 2.0 * M * (12.0 * D * D) + 4.0 * B * (double)T * T * D;
    for (int fused = 0; fused < 2; fused++)
        printf("{\"variant\": \"%s\", \"tokens\": %d, \"D\": %d, \"heads\": %d, \"threads\": %d, \"path\": \"%s\", "
               "\"best_s\": %.6f, \"median_s\": %.6f, \"gflops_best\": %.1f}\n",
               fused ? "bf16 operands" : "float32 activations", M, D, H, dit_max_threads(),
               cpu_path_name(cpu_path_active()), best[fused], bench_median(times[fused], repeats),
               flops / best[fused] / 1e9);
    return 0;
}
