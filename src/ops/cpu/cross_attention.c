// Multi-head cross-attention from T image tokens to a short context of S tokens: the cross-attention block
// of reference.md §1.13 attends to the S = 2 tokens [t_emb, y_emb]. softmax(Q K^T / sqrt(hd)) V per head,
// heads concatenated, as the self-attention of attention.c; the backward recomputes the S probabilities.
#include <math.h>

#include "base/error.h"
#include "ops/ops.h"

enum { MAX_KEYS = CROSS_ATTENTION_MAX_KEYS };

// p[j] = softmax_j(scale * q . k_j) over the S keys of one head; q: hd floats, kv: (S, 2D) rows [k | v].
static void probabilities(float *p, const float *q, const float *kv, int S, int D, int head_offset, int hd,
                          float scale) {
    float top = -INFINITY;
    for (int j = 0; j < S; j++) {
        const float *k = kv + (int64_t)j * 2 * D + head_offset;
        float s = 0.0f;
        for (int i = 0; i < hd; i++) s += q[i] * k[i];
        p[j] = s * scale;
        top = p[j] > top ? p[j] : top;
    }
    float sum = 0.0f;
    for (int j = 0; j < S; j++) sum += p[j] = expf(p[j] - top);
    for (int j = 0; j < S; j++) p[j] /= sum;
}

void cross_attention_forward(float *out, const float *q, const float *kv, int B, int T, int S, int D, int H) {
    DIT_CHECK(S >= 1 && S <= MAX_KEYS && D % H == 0);
    const int hd = D / H;
    const float scale = 1.0f / sqrtf((float)hd);
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *qr = q + ((int64_t)b * T + t) * D, *kvb = kv + (int64_t)b * S * 2 * D;
            float *o = out + ((int64_t)b * T + t) * D;
            float p[MAX_KEYS];
            for (int h = 0; h < H; h++) {
                probabilities(p, qr + h * hd, kvb, S, D, h * hd, hd, scale);
                for (int i = 0; i < hd; i++) {
                    float acc = 0.0f;
                    for (int j = 0; j < S; j++) acc += p[j] * kvb[(int64_t)j * 2 * D + D + h * hd + i];
                    o[h * hd + i] = acc;
                }
            }
        }
    }
}

// Per (batch, head), one thread owning dkv's columns of that head: for every query token,
//   dv_j += p_j dout,  dp_j = dout . v_j,  ds_j = p_j (dp_j - sum_i p_i dp_i),
//   dq = scale sum_j ds_j k_j,  dk_j += scale ds_j q.
void cross_attention_backward(float *dq, float *dkv, const float *dout, const float *q, const float *kv, int B, int T,
                              int S, int D, int H) {
    DIT_CHECK(S >= 1 && S <= MAX_KEYS && D % H == 0);
    const int hd = D / H;
    const float scale = 1.0f / sqrtf((float)hd);
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const float *kvb = kv + (int64_t)b * S * 2 * D;
            float *dkvb = dkv + (int64_t)b * S * 2 * D;
            for (int j = 0; j < S; j++)
                for (int i = 0; i < hd; i++) dkvb[(int64_t)j * 2 * D + h * hd + i] = dkvb[(int64_t)j * 2 * D + D + h * hd + i] = 0.0f;
            for (int t = 0; t < T; t++) {
                const int64_t row = ((int64_t)b * T + t) * D + h * hd;
                const float *qr = q + row, *dor = dout + row;
                float *dqr = dq + row;
                float p[MAX_KEYS], dp[MAX_KEYS], weighted = 0.0f;
                probabilities(p, qr, kvb, S, D, h * hd, hd, scale);
                for (int j = 0; j < S; j++) {
                    const float *v = kvb + (int64_t)j * 2 * D + D + h * hd;
                    float *dv = dkvb + (int64_t)j * 2 * D + D + h * hd;
                    float s = 0.0f;
                    for (int i = 0; i < hd; i++) {
                        s += dor[i] * v[i];
                        dv[i] += p[j] * dor[i];
                    }
                    dp[j] = s;
                    weighted += p[j] * s;
                }
                for (int i = 0; i < hd; i++) dqr[i] = 0.0f;
                for (int j = 0; j < S; j++) {
                    const float ds = p[j] * (dp[j] - weighted) * scale;
                    const float *k = kvb + (int64_t)j * 2 * D + h * hd;
                    float *dk = dkvb + (int64_t)j * 2 * D + h * hd;
                    for (int i = 0; i < hd; i++) {
                        dqr[i] += ds * k[i];
                        dk[i] += ds * qr[i];
                    }
                }
            }
        }
    }
}
