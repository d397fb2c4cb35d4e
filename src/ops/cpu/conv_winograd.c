// The autoencoder's stride-1 3x3 convolutions on the bf16 path by Winograd's minimal filtering F(2x2, 3x3)
// (docs/precision.md, "The autoencoder on the bf16 path"): each 2 x 2 block of outputs ("tile") comes from the
// 4 x 4 input patch around it through
//     Y = A^T [ (G g G^T) . (B^T d B) ] A      (. elementwise, 16 products per tile and channel pair)
// so a tile costs 16 multiply-adds per (Cin, Cout) pair where the direct form spends 4 x 9 = 36: 2.25x fewer.
// The 16 elementwise products, summed over Cin, are 16 independent GEMMs (xi = 0..15):
//     M_xi (tiles, Cout) = V_xi (tiles, Cin) @ U_xi^T,   V_xi = (B^T d B)[xi],  U_xi = (G g G^T)[xi] (Cout, Cin)
// run on the bf16 GEMM's kernels (fp32 accumulation). U is made once per weight in float64 and rounded to bf16;
// V is made in float32 from a float32 grid of the input (conv3x3_pad_cl_f32: the direct form's grid before its
// rounding) and rounded to bf16 once; the output transform and everything after it are float32. So each
// product meets two rounded operands, as in the direct form, but rounded after the transforms, whose sums
// make V and U larger than d and g: the error bound is 2^-8 of sum |V| |U| (tests/test_bf16.c checks it) and
// on the SD autoencoder the error against fp32 is ~1.3x the direct form's (docs/precision.md).
//
// An Upsample2D's conv (the grid holds an input repeated 2 x 2) needs only 9 of the 16 products: every patch
// starts at an odd padded line and position, so its lines 1 and 2 are the same source line (and its columns 1
// and 2 the same source column), which makes row 2 and column 2 of B^T d B exactly zero. Skipping those seven
// products changes no bit, and such a conv costs 9 multiply-adds per (Cin, Cout) pair and tile (direct: 36).
//
// Work is split in bands of tiles (a run of tiles along the tile rows): a thread transforms a band's input into
// the sixteen V_xi, runs the sixteen products into a scratch M (band, 16, Cout) and transforms M into the
// band's output rows, so V and M stay in its caches. Each output depends only on its own tile: the same
// values whatever the band size or thread count. Compiled with AVX512-BF16 enabled; only entered when the CPU
// has a bf16 path.
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/thread_exit.h"
#include "ops/bf16.h"
#include "ops/cpu/cpu_features.h"

enum { XI = 16 };   // the transformed tile: 4 x 4

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

int conv3x3_winograd_fits(int Cin, int Cout, int H, int W) {
    return Cin % 32 == 0 && Cout % 32 == 0 && H % 2 == 0 && W % 2 == 0 && H > 0 && W > 0;
}

// U_xi[co][ci] = (G g G^T)[xi] for g = w[co][ci] (3 x 3), G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2],
// [0, 0, 1]], in float64, then kept as float32 and rounded to bf16 by the packing (the float32 step's 2^-24
// is far below bf16's 2^-9); packed as one B of 16 Cout rows, row xi Cout + co, so U_xi is the run of panels
// from xi Cout / 32 on.
dit_status conv3x3_winograd_pack_bf16(bf16_packed *dst, const float *w, int Cout, int Cin) {
    DIT_CHECK(Cout % 32 == 0);
    float *u = dit_malloc((size_t)XI * Cout * Cin * sizeof *u);
    if (!u) return DIT_ERR;
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    #pragma omp parallel for schedule(static)
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++) {
            const float *g = w + ((int64_t)co * Cin + ci) * 9;
            double gg[4][3];   // G g
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 3; j++) gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    u[((int64_t)(i * 4 + j) * Cout + co) * Cin + ci] =
                        (float)(gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2]);
        }
    const dit_status st = bf16_pack(dst, u, XI * Cout, Cin, Cin, 1);
    free(u);
    return st;
}

// Per-thread scratch: V, 16 x (band rows padded to 32, Cin) bf16 (each V_xi in a_layout_tiles(Cin)), and the
// products M, (band, 16, Cout) floats.
static _Thread_local grow_buffer v_buffer, m_buffer;

// B^T applied down one column of a patch: e = B^T (d0, d1, d2, d3), the column's 16 channels at p + i line.
static inline void column_stage(__m512 e[4], const float *p, int64_t line) {
    const __m512 d0 = _mm512_loadu_ps(p), d1 = _mm512_loadu_ps(p + line), d2 = _mm512_loadu_ps(p + 2 * line);
    const __m512 d3 = _mm512_loadu_ps(p + 3 * line);
    e[0] = _mm512_sub_ps(d0, d2);
    e[1] = _mm512_add_ps(d1, d2);
    e[2] = _mm512_sub_ps(d2, d1);
    e[3] = _mm512_sub_ps(d1, d3);
}

// Whether V_xi, xi = 4 i + j, is zero for an upsampled input (row 2 or column 2; see the top of this file).
static inline int zero_when_upsampled(int i, int j) { return i == 2 || j == 2; }

// Row i of (B^T d) B from the column stages of the patch's four columns.
static inline void row_stage(__m512 r[4], __m512 col[4][4], int i) {
    r[0] = _mm512_sub_ps(col[0][i], col[2][i]);
    r[1] = _mm512_add_ps(col[1][i], col[2][i]);
    r[2] = _mm512_sub_ps(col[2][i], col[1][i]);
    r[3] = _mm512_sub_ps(col[1][i], col[3][i]);
}

// V_xi rows [0, n) for tiles t0 .. t0 + n - 1: d is the 4 x 4 patch of the padded float32 grid at (2 ty, 2 tx),
// V = B^T d B with B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], rounded to bf16 once.
// Tiles are walked along each tile row, so the two patch columns a tile shares with the next are transformed
// once (the column stage, B^T down a column, is carried over); 32 channels at a time, two halves of 16. With
// upsampled, the seven V_xi of row 2 or column 2 (zeros, see above) are neither made nor stored.
static void input_transform(uint16_t *v, int64_t v_stride, const a_layout *at, const float *grid, int t0, int n,
                            int Cin, int W, int upsampled) {
    const int tiles_x = W / 2;
    const int64_t line = (int64_t)(W + 2) * Cin;
    for (int m = 0; m < n;) {
        const int t = t0 + m, ty = t / tiles_x, tx0 = t % tiles_x;
        const int run = n - m < tiles_x - tx0 ? n - m : tiles_x - tx0;   // tiles of this tile row in the band
        for (int c = 0; c < Cin; c += 32) {
            const float *base = grid + 2 * ty * line + ((int64_t)2 * tx0 * Cin + c);
            __m512 lo[4][4], hi[4][4];   // [j]: the column stage of patch column j, channels c.. and c + 16..
            column_stage(lo[0], base, line), column_stage(hi[0], base + 16, line);
            column_stage(lo[1], base + Cin, line), column_stage(hi[1], base + Cin + 16, line);
            for (int s = 0; s < run; s++) {
                const float *p = base + (int64_t)(2 * s + 2) * Cin;
                column_stage(lo[2], p, line), column_stage(hi[2], p + 16, line);
                column_stage(lo[3], p + Cin, line), column_stage(hi[3], p + Cin + 16, line);
                uint16_t *dst = v + a_offset(at, m + s, c);
                for (int i = 0; i < 4; i++) {
                    if (upsampled && zero_when_upsampled(i, 0)) continue;   // zeros, never read (below)
                    __m512 r_lo[4], r_hi[4];
                    row_stage(r_lo, lo, i), row_stage(r_hi, hi, i);
                    for (int j = 0; j < 4; j++)
                        if (!upsampled || !zero_when_upsampled(i, j))
                            _mm512_storeu_si512(dst + (i * 4 + j) * v_stride,
                                                (__m512i)_mm512_cvtne2ps_pbh(r_hi[j], r_lo[j]));
                }
                for (int i = 0; i < 4; i++) {   // patch columns 2 and 3 are the next tile's 0 and 1
                    lo[0][i] = lo[2][i], lo[1][i] = lo[3][i];
                    hi[0][i] = hi[2][i], hi[1][i] = hi[3][i];
                }
            }
        }
        m += run;
    }
    for (int m = n; m < round_up(n, 32); m++)   // the last row block's rows past the band: zeros, never read back
        for (int xi = 0; xi < XI; xi++)
            for (int c = 0; c < Cin; c += 32) memset(v + xi * v_stride + a_offset(at, m, c), 0, 32 * sizeof *v);
}

// Output rows of tiles t0 .. t0 + n - 1 from their products M (n, 16, Cout): Y = A^T M A with
// A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], + bias, + out (accumulate), 16 channels at a time.
static void output_transform(float *out, const float *m_buf, const float *bias, int accumulate, int upsampled,
                             int t0, int n, int Cout, int W) {
    const int tiles_x = W / 2;
    for (int m = 0; m < n; m++) {
        const int t = t0 + m, ty = t / tiles_x, tx = t % tiles_x;
        float *y0 = out + ((int64_t)2 * ty * W + 2 * tx) * Cout, *y1 = y0 + (int64_t)W * Cout;
        const float *mt = m_buf + (int64_t)m * XI * Cout;
        for (int c = 0; c < Cout; c += 16) {
            __m512 p[4][4], s[2][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    p[i][j] = upsampled && zero_when_upsampled(i, j) ? _mm512_setzero_ps()
                                                                     : _mm512_loadu_ps(mt + (i * 4 + j) * Cout + c);
            for (int j = 0; j < 4; j++) {   // A^T M
                s[0][j] = _mm512_add_ps(_mm512_add_ps(p[0][j], p[1][j]), p[2][j]);
                s[1][j] = _mm512_sub_ps(_mm512_sub_ps(p[1][j], p[2][j]), p[3][j]);
            }
            const __m512 b = bias ? _mm512_loadu_ps(bias + c) : _mm512_setzero_ps();
            float *dst[2][2] = {{y0 + c, y0 + Cout + c}, {y1 + c, y1 + Cout + c}};
            for (int i = 0; i < 2; i++) {   // (A^T M) A
                __m512 y[2] = {_mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]),
                               _mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3])};
                for (int j = 0; j < 2; j++) {
                    y[j] = _mm512_add_ps(y[j], b);
                    if (accumulate) y[j] = _mm512_add_ps(_mm512_loadu_ps(dst[i][j]), y[j]);
                    _mm512_storeu_ps(dst[i][j], y[j]);
                }
            }
        }
    }
}

// Tiles per band: M (band, 16, Cout) floats within about 512 KB (half of a 1 MB L2), between 32 and 128
// tiles, a multiple of 32 (the kernels' row blocks).
static int band_tiles(int Cout) {
    int band = (512 << 10) / (XI * Cout * (int)sizeof(float)) / 32 * 32;
    return band < 32 ? 32 : band > 128 ? 128 : band;
}

// On AMX tiles the direct form already runs near the tiles' rate and Winograd's transforms cost what its
// fewer products save (twelfth sitting, docs/precision.md), so there it stays direct, which is also the
// more accurate form; on AVX512-BF16 Winograd is 1.5-1.8x faster.
enum { WINOGRAD_UNDECIDED = -1, WINOGRAD_OFF = 0, WINOGRAD_ON = 1, WINOGRAD_BY_PATH = 2 };
static int enabled = WINOGRAD_UNDECIDED;   // set by DIT_WINOGRAD=0|1 (read on first use) or by the call below
void conv3x3_winograd_enable(int on) { enabled = on < 0 ? WINOGRAD_UNDECIDED : on ? WINOGRAD_ON : WINOGRAD_OFF; }
int conv3x3_winograd_enabled(void) {
    if (enabled == WINOGRAD_UNDECIDED) {
        const char *env = getenv("DIT_WINOGRAD");
        enabled = !env                  ? WINOGRAD_BY_PATH
                  : !strcmp(env, "0") ? WINOGRAD_OFF
                  : !strcmp(env, "1") ? WINOGRAD_ON
                                      : WINOGRAD_BY_PATH;
    }
    return enabled == WINOGRAD_BY_PATH ? cpu_path_active() != CPU_PATH_AMX : enabled == WINOGRAD_ON;
}

static int band_override;
void conv3x3_winograd_band(int tiles) { band_override = tiles > 0 ? round_up(tiles, 32) : 0; }

dit_status conv3x3_winograd_bf16(float *out, const float *padded, const bf16_packed *U, const float *bias,
                                 int accumulate, int upsampled, int Cin, int H, int W) {
    const int Cout = U->N / XI, tiles = H / 2 * (W / 2);
    DIT_CHECK(U->N % XI == 0 && U->K == Cin && U->Kp == Cin && conv3x3_winograd_fits(Cin, Cout, H, W));
    const int band = band_override ? band_override : band_tiles(Cout), bands = (tiles + band - 1) / band;
    const int64_t v_stride = (int64_t)band * Cin;   // elements between V_xi and V_xi+1
    const a_layout at = a_layout_tiles(Cin);
    int failed = 0;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < bands; b++) {
        int stop;
        #pragma omp atomic read
        stop = failed;
        if (stop) continue;
        const int t0 = b * band, n = tiles - t0 < band ? tiles - t0 : band;
        uint16_t *v = grow_buffer_get(&v_buffer, (size_t)XI * v_stride * sizeof *v);
        float *m = grow_buffer_get(&m_buffer, (size_t)band * XI * Cout * sizeof *m);
        int ok = v && m;
        if (ok) input_transform(v, v_stride, &at, padded, t0, n, Cin, W, upsampled);
        for (int xi = 0; xi < XI && ok; xi++) {
            if (upsampled && zero_when_upsampled(xi / 4, xi % 4)) continue;   // V_xi = 0
            const bf16_packed u = {.N = Cout, .K = Cin, .Np = Cout, .Kp = Cin,
                                   .data = U->data + (int64_t)xi * Cout * Cin};
            ok = gemm_bf16_a16_serial(m + xi * Cout, (int64_t)XI * Cout, v + xi * v_stride, &at, &u, n, NULL) == DIT_OK;
        }
        if (ok) {
            output_transform(out, m, bias, accumulate, upsampled, t0, n, Cout, W);
        } else {
            #pragma omp atomic write
            failed = 1;
        }
    }
    return failed ? dit_set_error("out of memory allocating a thread's scratch for a Winograd convolution") : DIT_OK;
}
