// The autoencoder's 3x3 stride-1 convolutions on the bf16 path, as an implicit GEMM: out^T (H W, Cout) =
// rows (H W, 9 Cin) @ W^T, where a row holds the 3 x 3 x Cin neighbourhood of one output position. The input
// is converted once into a zero-padded channels-last bf16 copy, so each row is three contiguous runs of 3 Cin
// values; rows are built a band of output lines at a time, straight into the GEMM's tile layout; the weights
// are packed once, in (ky, kx, ci) order; the output is written back channel-major by the GEMM's transposed
// epilogue. Compiled with AVX512-BF16 enabled; only entered when the CPU has a bf16 path.
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "ops/bf16.h"

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

dit_status conv3x3_pack_bf16(bf16_packed *dst, const float *w, int Cout, int Cin) {
    const int K = 9 * Cin;
    float *reordered = dit_malloc((size_t)Cout * K * sizeof *reordered);
    if (!reordered) return DIT_ERR;
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++)
            for (int tap = 0; tap < 9; tap++)
                reordered[(int64_t)co * K + tap * Cin + ci] = w[((int64_t)co * Cin + ci) * 9 + tap];
    dit_status st = bf16_pack(dst, reordered, Cout, K, K, 1);
    free(reordered);
    return st;
}

typedef struct {
    uint16_t *padded;   // (H + 2, W + 2, Cin) bf16
    uint16_t *rows;     // (band positions, Kp) bf16, in tiles (a_layout in ops/bf16.h)
    size_t padded_cap, rows_cap;
} conv_workspace;

static _Thread_local conv_workspace ws;

static uint16_t *grow(uint16_t **buf, size_t *cap, size_t elems) {
    if (*cap < elems) {
        free(*buf);
        *cap = 0;
        if (!(*buf = dit_malloc(elems * sizeof **buf))) return NULL;
        *cap = elems;
    }
    return *buf;
}

// padded[y + 1][x + 1][ci] = bf16(x[ci][y][x]) (or of x[ci][y/2][x/2] with upsample); the border is zero.
// 16 channels of one pixel at a time: a gather down the channel planes, one rounding, one 32-byte store.
static void pad_channels_last(uint16_t *padded, const float *x, int upsample, int Cin, int H, int W) {
    const int Wp = W + 2, sh = upsample ? H / 2 : H, sw = upsample ? W / 2 : W;
    const int64_t plane = (int64_t)sh * sw;
    memset(padded, 0, (size_t)Wp * Cin * sizeof *padded);
    memset(padded + (int64_t)(H + 1) * Wp * Cin, 0, (size_t)Wp * Cin * sizeof *padded);
    const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    #pragma omp parallel for schedule(static)
    for (int y = 0; y < H; y++) {
        uint16_t *line = padded + (int64_t)(y + 1) * Wp * Cin;
        memset(line, 0, (size_t)Cin * sizeof *line);
        memset(line + (int64_t)(W + 1) * Cin, 0, (size_t)Cin * sizeof *line);
        const int sy = upsample ? y / 2 : y;
        for (int xx = 0; xx < W; xx++) {
            const int sx = upsample ? xx / 2 : xx;
            const float *src = x + (int64_t)sy * sw + sx;
            uint16_t *dst = line + (int64_t)(xx + 1) * Cin;
            int ci = 0;
            for (; ci + 16 <= Cin; ci += 16) {
                const __m512i idx = _mm512_mullo_epi32(_mm512_add_epi32(lanes, _mm512_set1_epi32(ci)),
                                                       _mm512_set1_epi32((int)plane));
                const __m512 v = _mm512_i32gather_ps(idx, src, 4);
                _mm256_storeu_si256((__m256i *)(dst + ci), (__m256i)_mm512_cvtneps_pbh(v));
            }
            for (; ci < Cin; ci++) {
                const __m512 v = _mm512_set1_ps(src[(int64_t)ci * plane]);
                __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
                dst[ci] = (uint16_t)_mm256_extract_epi16(h, 0);
            }
        }
    }
}

// Elements [k0, k0 + len) of row m of A's bf16 copy from src, in the pieces the layout keeps contiguous (up to
// the next multiple of 32 along K).
static void copy_run(uint16_t *rows, const a_layout *at, int m, int k0, const uint16_t *src, int len) {
    while (len > 0) {
        const int piece = 32 - (k0 & 31) < len ? 32 - (k0 & 31) : len;
        memcpy(rows + a_offset(at, m, k0), src, (size_t)piece * sizeof *src);
        k0 += piece, src += piece, len -= piece;
    }
}

dit_status conv3x3_bf16(float *out, const float *x, const bf16_packed *Wt, const float *bias,
                        const float *residual, int upsample, int Cin, int H, int W, int Cout) {
    const int Wp = W + 2, K = 9 * Cin, Kp = Wt->Kp;
    DIT_CHECK(Wt->K == K && Wt->N == Cout && Kp == round_up(K, 32));
    const int64_t plane = (int64_t)H * W;
    uint16_t *padded = grow(&ws.padded, &ws.padded_cap, (size_t)(H + 2) * Wp * Cin);
    if (!padded) return DIT_ERR;
    pad_channels_last(padded, x, upsample, Cin, H, W);
    // A band of output lines whose rows take ~4 MB: big enough to keep the panels busy, small enough for L2/L3.
    int band = (int)((4 << 20) / ((int64_t)W * Kp * 2));
    band = band < 1 ? 1 : band > H ? H : band;
    uint16_t *rows = grow(&ws.rows, &ws.rows_cap, (size_t)round_up(band * W, 32) * Kp);
    if (!rows) return DIT_ERR;
    if (residual) memcpy(out, residual, (size_t)Cout * plane * sizeof *out);
    const gemm_epilogue ep = {.bias = bias, .accumulate = residual != NULL, .transpose_out = 1};
    const a_layout at = a_layout_tiles(Kp);
    for (int y0 = 0; y0 < H; y0 += band) {
        const int lines = H - y0 < band ? H - y0 : band, M = lines * W;
        #pragma omp parallel for schedule(static)
        for (int m = 0; m < round_up(M, 32); m++) {
            if (m >= M) {
                for (int k = 0; k < Kp; k += 32) memset(rows + a_offset(&at, m, k), 0, 32 * sizeof *rows);
                continue;
            }
            const int oy = y0 + m / W, ox = m % W;
            for (int ky = 0; ky < 3; ky++)   // the three padded lines oy..oy+2, columns ox..ox+2: 3 Cin contiguous
                copy_run(rows, &at, m, ky * 3 * Cin, padded + ((int64_t)(oy + ky) * Wp + ox) * Cin, 3 * Cin);
            for (int k = K; k < Kp; k++) rows[a_offset(&at, m, k)] = 0;
        }
        DIT_TRY(gemm_bf16_a16(out + (int64_t)y0 * W, plane, rows, &at, Wt, M, &ep));
    }
    return DIT_OK;
}
