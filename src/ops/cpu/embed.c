// Token layout and embeddings of the reference DiT: patchify (Conv2d kernel = stride = P seen as a GEMM),
// unpatchify (einsum nhwpqc->nchpwq), the GLIDE timestep embedding and the MAE 2-D sin-cos table.
// See docs/reference.md §1.2-1.4 and §1.8 for the exact orders.
#include <math.h>

#include "ops/ops.h"

void patchify_forward(float *patches, const float *x, int B, int C, int S, int P) {
    const int G = S / P, T = G * G, K = C * P * P;
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int tok = 0; tok < T; tok++) {
            int row = tok / G, col = tok % G;
            float *dst = patches + ((int64_t)b * T + tok) * K;
            for (int c = 0; c < C; c++)
                for (int pi = 0; pi < P; pi++)
                    for (int qi = 0; qi < P; qi++)
                        *dst++ = x[(((int64_t)b * C + c) * S + row * P + pi) * S + col * P + qi];
        }
    }
}

// The forward is a permutation (kernel = stride = P), so its backward is the inverse permutation.
void patchify_backward(float *dx, const float *dpatches, int B, int C, int S, int P) {
    const int G = S / P, T = G * G, K = C * P * P;
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int tok = 0; tok < T; tok++) {
            int row = tok / G, col = tok % G;
            const float *src = dpatches + ((int64_t)b * T + tok) * K;
            for (int c = 0; c < C; c++)
                for (int pi = 0; pi < P; pi++)
                    for (int qi = 0; qi < P; qi++)
                        dx[(((int64_t)b * C + c) * S + row * P + pi) * S + col * P + qi] = *src++;
        }
    }
}

void unpatchify_forward(float *img, const float *tokens, int B, int C, int S, int P) {
    const int G = S / P, T = G * G, K = C * P * P;
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int tok = 0; tok < T; tok++) {
            int row = tok / G, col = tok % G;
            const float *src = tokens + ((int64_t)b * T + tok) * K;
            for (int pi = 0; pi < P; pi++)
                for (int qi = 0; qi < P; qi++)
                    for (int c = 0; c < C; c++)
                        img[(((int64_t)b * C + c) * S + row * P + pi) * S + col * P + qi] = *src++;
        }
    }
}

void unpatchify_backward(float *dtokens, const float *dimg, int B, int C, int S, int P) {
    const int G = S / P, T = G * G, K = C * P * P;
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int tok = 0; tok < T; tok++) {
            int row = tok / G, col = tok % G;
            float *dst = dtokens + ((int64_t)b * T + tok) * K;
            for (int pi = 0; pi < P; pi++)
                for (int qi = 0; qi < P; qi++)
                    for (int c = 0; c < C; c++)
                        *dst++ = dimg[(((int64_t)b * C + c) * S + row * P + pi) * S + col * P + qi];
        }
    }
}

void timestep_embedding_forward(float *out, const float *t, int B, int dim) {
    const int half = dim / 2;
    // Same float32 steps as the reference: exp(-ln(max_period) * arange(half) / half).
    const float neg_log_period = (float)(-log(10000.0));
    for (int b = 0; b < B; b++) {
        float *o = out + (int64_t)b * dim;
        for (int i = 0; i < half; i++) {
            float freq = expf(neg_log_period * (float)i / (float)half);
            float arg = t[b] * freq;
            o[i] = cosf(arg);
            o[half + i] = sinf(arg);
        }
        if (dim % 2) o[dim - 1] = 0.0f;
    }
}

// One axis of the table: E values per position, [sin(pos w_k) for k < E/2, cos(pos w_k) for k < E/2].
static void sincos_1d(float *dst, int E, double pos) {
    const int F = E / 2;
    for (int k = 0; k < F; k++) {
        double omega = 1.0 / pow(10000.0, (double)k / F);
        dst[k] = (float)sin(pos * omega);
        dst[F + k] = (float)cos(pos * omega);
    }
}

void pos_embed_2d_sincos(float *out, int D, int G) {
    // The reference's meshgrid makes the first half encode the column, the second half the row.
    for (int row = 0; row < G; row++) {
        for (int col = 0; col < G; col++) {
            float *dst = out + ((int64_t)row * G + col) * D;
            sincos_1d(dst, D / 2, col);
            sincos_1d(dst + D / 2, D / 2, row);
        }
    }
}
