// The parts of the bf16 path that any x86-64 CPU may run: freeing and sizing packed operands, the size of a
// conv's padded grid, and rounding to bf16 in scalar code. The kernel files (gemm_bf16.c, conv_bf16.c, ...) are
// compiled for AVX-512, so the compiler may use AVX-512 anywhere in them, even in a memset; model code frees
// and sizes bf16 buffers whatever the CPU, so those helpers live here, compiled for the x86-64-v3 floor.
#include <stdlib.h>
#include <string.h>

#include "base/bf16_bits.h"
#include "base/error.h"
#include "ops/bf16.h"

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

float bf16_round(float x) { return float_from_bf16_bits(bf16_bits_from_float(x)); }

void bf16_packed_free(bf16_packed *p) {
    free(p->data);
    memset(p, 0, sizeof *p);
}

dit_status bf16_packed_reserve(bf16_packed *dst, int N, int K) {
    const int Np = round_up(N, 32), Kp = round_up(K, 32);
    const size_t need = (size_t)Np * Kp;
    if (dst->capacity < need) {
        bf16_packed_free(dst);
        if (!(dst->data = dit_malloc(need * sizeof(uint16_t)))) return DIT_ERR;
        dst->capacity = need;
    }
    dst->N = N, dst->K = K, dst->Np = Np, dst->Kp = Kp;
    return DIT_OK;
}

void bf16_both_free(bf16_both *b) {
    free(b->rows16), free(b->cols16), free(b->chunk_sums);
    memset(b, 0, sizeof *b);
}

dit_status bf16_both_reserve(bf16_both *b, int M, int N) {
    const int Mp = round_up(M, 32), Np = round_up(N, 32);
    const size_t elems = (size_t)Mp * Np, sums = (size_t)Mp / 16 * Np;
    if (b->rows_capacity < elems) {
        free(b->rows16), free(b->cols16);
        b->rows16 = dit_malloc(elems * sizeof(uint16_t));
        b->cols16 = dit_malloc(elems * sizeof(uint16_t));
        b->rows_capacity = b->rows16 && b->cols16 ? elems : 0;
        if (!b->rows_capacity) return DIT_ERR;
    }
    if (b->sums_capacity < sums) {
        free(b->chunk_sums);
        if (!(b->chunk_sums = dit_malloc(sums * sizeof(float)))) return b->sums_capacity = 0, DIT_ERR;
        b->sums_capacity = sums;
    }
    b->M = M, b->N = N, b->Mp = Mp, b->Np = Np;
    return DIT_OK;
}

int64_t conv3x3_padded_elems(int C, int H, int W) { return ((int64_t)(H + 2) * (W + 2) + 2 * (W + 2) + 72) * C; }
