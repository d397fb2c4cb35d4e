// The autoencoder's 3x3 convolutions on the bf16 path, as an implicit GEMM: out (H W, Cout) = rows (H W, 9 Cin)
// @ W^T, where a row holds the 3 x 3 x Cin neighbourhood of one output position, in (ky, kx, ci) order as the
// weights are packed. The input lives in a zero-padded channels-last bf16 grid, where each row is three
// contiguous runs of 3 Cin values. With Cin a multiple of 32 the GEMM reads its rows straight from the grid
// (the direct form below; stride 1, and stride 2 for Downsample2D); otherwise rows are copied a band of output
// lines at a time into the GEMM's tile layout. conv3x3_bf16 takes and gives channel-major (C, H W) planes (the
// transposed epilogue writes them); the channels-last decoder and encoder (models/vae.c) build the grid from
// rows themselves (channels_last.c) and take rows back. Compiled with AVX512-BF16 enabled; only entered when
// the CPU has a bf16 path.
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/thread_exit.h"
#include "ops/bf16.h"
#include "ops/cpu/mask16.h"
#include "ops/cpu/transpose16.h"

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

// Per-thread scratch (base/thread_exit.h): the padded input, (H + 2, W + 2, Cin) bf16, and a band's rows of A,
// (band positions, Kp) bf16 in tiles (a_layout in ops/bf16.h).
static _Thread_local grow_buffer padded_buffer, rows_buffer;

// padded[y + 1][x + 1][ci] = bf16(x[ci][y][x]) (or of x[ci][y/2][x/2] with upsample); the border is zero.
// 16 channels x 16 pixels at a time: sixteen runs along the channel planes' lines, transposed in registers,
// rounded once, and stored as sixteen 32-byte runs of channels. With upsample each source line gives two
// equal padded lines and each source pixel two equal pixels.
static void pad_channels_last(uint16_t *padded, const float *x, int upsample, int Cin, int H, int W) {
    const int Wp = W + 2, sh = upsample ? H / 2 : H, sw = upsample ? W / 2 : W, repeat = upsample ? 2 : 1;
    const int64_t plane = (int64_t)sh * sw, line_elems = (int64_t)Wp * Cin;
    memset(padded, 0, (size_t)line_elems * sizeof *padded);
    memset(padded + (int64_t)(H + 1) * line_elems, 0, (size_t)line_elems * sizeof *padded);
    #pragma omp parallel for schedule(guided)
    for (int sy = 0; sy < sh; sy++) {
        uint16_t *line = padded + (int64_t)(sy * repeat + 1) * line_elems;
        memset(line, 0, (size_t)Cin * sizeof *line);
        memset(line + (int64_t)(W + 1) * Cin, 0, (size_t)Cin * sizeof *line);
        const float *src = x + (int64_t)sy * sw;
        for (int sx0 = 0; sx0 < sw; sx0 += 16) {
            const int pixels = sw - sx0 < 16 ? sw - sx0 : 16;
            const __mmask16 along = mask16(pixels);
            for (int c0 = 0; c0 < Cin; c0 += 16) {
                const int channels = Cin - c0 < 16 ? Cin - c0 : 16;
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < channels ? _mm512_maskz_loadu_ps(along, src + (int64_t)(c0 + i) * plane + sx0)
                                        : _mm512_setzero_ps();
                transpose_16x16(r);   // r[j]: the 16 channels of pixel sx0 + j
                for (int j = 0; j < pixels; j++) {
                    const __m256i h = (__m256i)_mm512_cvtneps_pbh(r[j]);
                    for (int k = 0; k < repeat; k++) {
                        uint16_t *dst = line + (int64_t)((sx0 + j) * repeat + k + 1) * Cin + c0;
                        if (channels == 16) _mm256_storeu_si256((__m256i *)dst, h);
                        else _mm256_mask_storeu_epi16(dst, mask16(channels), h);
                    }
                }
            }
        }
        if (upsample) memcpy(line + line_elems, line, (size_t)line_elems * sizeof *line);
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

// The direct form, for Cin a multiple of 32: A is the padded input itself. Output rows walk the padded grid,
// row m' = oy (W + 2) + ox, so the neighbourhood of every row starts at padded + m' Cin and tap (ky, kx) lies a
// fixed (ky (W + 2) + kx) Cin further on: rows Cin apart, K steps (32 channels of one tap) at the offsets koff.
// The two positions past each line's end (ox = W, W + 1) are computed and dropped by the epilogue (line,
// line_keep). Every row meets the same bf16 values in the same K order as a row built by the banded path.
// In general: rows of lines grid_w positions long, the first OW of each kept, and tap t at tap_pos[t] positions
// from a row's start.
static dit_status direct_conv(float *out, const uint16_t *grid, const bf16_packed *Wt, const float *bias,
                              int accumulate, int transpose_out, int Cin, int grid_w, const int64_t tap_pos[9], int OH,
                              int OW) {
    const int steps_per_tap = Cin / 32, M = OH * grid_w;
    DIT_CHECK(Cin % 32 == 0 && Wt->K == 9 * Cin && Wt->Kp == Wt->K);
    int64_t *koff = dit_malloc(sizeof(int64_t) * 9 * (size_t)steps_per_tap);
    if (!koff) return DIT_ERR;
    for (int tap = 0; tap < 9; tap++)
        for (int c = 0; c < steps_per_tap; c++) koff[tap * steps_per_tap + c] = tap_pos[tap] * Cin + c * 32;
    const a_layout at = {.block = 32 * (int64_t)Cin, .half = 16 * (int64_t)Cin, .row = Cin, .kstep = 32, .koff = koff};
    const gemm_epilogue ep = {.bias = bias, .accumulate = accumulate, .transpose_out = transpose_out, .line = grid_w,
                              .line_keep = OW};
    const dit_status st = gemm_bf16_a16(out, transpose_out ? (int64_t)OH * OW : Wt->N, grid, &at, Wt, M, &ep);
    free(koff);
    return st;
}

dit_status conv3x3_bf16_padded(float *out, const uint16_t *padded, const bf16_packed *Wt, const float *bias,
                               int accumulate, int transpose_out, int Cin, int H, int W) {
    int64_t tap_pos[9];
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) tap_pos[ky * 3 + kx] = (int64_t)ky * (W + 2) + kx;
    return direct_conv(out, padded, Wt, bias, accumulate, transpose_out, Cin, W + 2, tap_pos, H, W);
}

// Stride 2 over the four parity planes (conv3x3_pad_cl_bf16_down): output (oy, ox) reads input (2 oy + ky,
// 2 ox + kx), which is plane (ky % 2, kx % 2) at line oy + ky / 2, position ox + kx / 2. So with rows
// m' = oy R + ox (R = OW + 1, one dropped row a line) every tap lies a fixed distance from a row's start, and
// rows are Cin apart as in the stride-1 form. (Before: one grid, rows 2 Cin apart, half of them dropped.)
dit_status conv3x3_bf16_down(float *out, const uint16_t *grid, const bf16_packed *Wt, const float *bias, int Cin,
                             int H, int W) {
    DIT_CHECK(H % 2 == 0 && W % 2 == 0);
    const int OH = H / 2, OW = W / 2, R = OW + 1;
    const int64_t plane = (int64_t)(OH + 1) * R;
    int64_t tap_pos[9];
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++)
            tap_pos[ky * 3 + kx] = (ky % 2 * 2 + kx % 2) * plane + (int64_t)(ky / 2) * R + kx / 2;
    return direct_conv(out, grid, Wt, bias, 0, 0, Cin, R, tap_pos, OH, OW);
}

// Direct (Cin % 32 == 0) unless turned off; the banded row copies otherwise (for tests and benchmarks).
static int direct_allowed = 1;
void conv3x3_bf16_allow_direct(int on) { direct_allowed = on; }

// conv3x3_bf16, its output channel-major (C, H W) or, with rows_out, channels-last rows (H W, C).
static dit_status conv3x3_bf16_to(float *out, int rows_out, const float *x, const bf16_packed *Wt, const float *bias,
                                  const float *residual, int upsample, int Cin, int H, int W, int Cout) {
    const int Wp = W + 2, K = 9 * Cin, Kp = Wt->Kp;
    DIT_CHECK(Wt->K == K && Wt->N == Cout && Kp == round_up(K, 32));
    const int64_t plane = (int64_t)H * W;
    const int direct = direct_allowed && Cin % 32 == 0;
    const int64_t grid = (int64_t)(H + 2) * Wp * Cin, elems = conv3x3_padded_elems(Cin, H, W);
    uint16_t *padded = grow_buffer_get(&padded_buffer, (size_t)elems * sizeof *padded);
    if (!padded) return DIT_ERR;
    pad_channels_last(padded, x, upsample, Cin, H, W);
    memset(padded + grid, 0, (size_t)(elems - grid) * sizeof *padded);   // the tail the direct form reads
    if (residual) memcpy(out, residual, (size_t)Cout * plane * sizeof *out);
    if (direct) return conv3x3_bf16_padded(out, padded, Wt, bias, residual != NULL, !rows_out, Cin, H, W);
    // A band of output lines whose rows take ~4 MB: big enough to keep the panels busy, small enough for L2/L3.
    int band = (int)((4 << 20) / ((int64_t)W * Kp * 2));
    band = band < 1 ? 1 : band > H ? H : band;
    uint16_t *rows = grow_buffer_get(&rows_buffer, (size_t)round_up(band * W, 32) * Kp * sizeof *rows);
    if (!rows) return DIT_ERR;
    const gemm_epilogue ep = {.bias = bias, .accumulate = residual != NULL, .transpose_out = !rows_out};
    const a_layout at = a_layout_tiles(Kp);
    for (int y0 = 0; y0 < H; y0 += band) {
        const int lines = H - y0 < band ? H - y0 : band, M = lines * W;
        #pragma omp parallel for schedule(guided)
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
        if (rows_out) DIT_TRY(gemm_bf16_a16(out + (int64_t)y0 * W * Cout, Cout, rows, &at, Wt, M, &ep));
        else DIT_TRY(gemm_bf16_a16(out + (int64_t)y0 * W, plane, rows, &at, Wt, M, &ep));
    }
    return DIT_OK;
}

dit_status conv3x3_bf16(float *out, const float *x, const bf16_packed *Wt, const float *bias,
                        const float *residual, int upsample, int Cin, int H, int W, int Cout) {
    return conv3x3_bf16_to(out, 0, x, Wt, bias, residual, upsample, Cin, H, W, Cout);
}

dit_status conv3x3_bf16_rows(float *out, const float *x, const bf16_packed *Wt, const float *bias, int Cin, int H,
                             int W, int Cout) {
    return conv3x3_bf16_to(out, 1, x, Wt, bias, NULL, 0, Cin, H, W, Cout);
}
