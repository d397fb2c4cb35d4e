// ReLU and 2x2 max pooling with their backward passes, for the Fashion-MNIST classifier (src/models/classifier.c).
// PyTorch semantics: F.relu, F.max_pool2d(kernel 2, stride 2); finite-difference tests in tests/test_classifier.c.
#include <stdint.h>

#include "ops/conv.h"

void relu_forward(float *y, const float *x, int64_t n) {
    #pragma omp parallel for schedule(guided) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(float *dx, const float *dy, const float *y, int64_t n) {
    #pragma omp parallel for schedule(guided) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void maxpool2x2_forward(float *out, const float *x, int N, int H, int W) {
    const int OH = H / 2, OW = W / 2;
    #pragma omp parallel for schedule(guided) if ((int64_t)N * H * W > 65536)
    for (int n = 0; n < N; n++) {
        const float *plane = x + (int64_t)n * H * W;
        float *o = out + (int64_t)n * OH * OW;
        for (int i = 0; i < OH; i++) {
            const float *r0 = plane + (int64_t)2 * i * W, *r1 = r0 + W;
            for (int j = 0; j < OW; j++) {
                float m = r0[2 * j];
                if (r0[2 * j + 1] > m) m = r0[2 * j + 1];
                if (r1[2 * j] > m) m = r1[2 * j];
                if (r1[2 * j + 1] > m) m = r1[2 * j + 1];
                o[(int64_t)i * OW + j] = m;
            }
        }
    }
}

void maxpool2x2_backward(float *dx, const float *dout, const float *x, int N, int H, int W) {
    const int OH = H / 2, OW = W / 2;
    #pragma omp parallel for schedule(guided) if ((int64_t)N * H * W > 65536)
    for (int n = 0; n < N; n++) {
        const float *plane = x + (int64_t)n * H * W;
        float *d = dx + (int64_t)n * H * W;
        const float *g = dout + (int64_t)n * OH * OW;
        for (int64_t k = 0; k < (int64_t)H * W; k++) d[k] = 0.0f;
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                // the window in row-major order; strict > keeps the first of equal maxima
                const int64_t idx[4] = {(int64_t)2 * i * W + 2 * j, (int64_t)2 * i * W + 2 * j + 1,
                                        (int64_t)(2 * i + 1) * W + 2 * j, (int64_t)(2 * i + 1) * W + 2 * j + 1};
                int best = 0;
                for (int q = 1; q < 4; q++)
                    if (plane[idx[q]] > plane[idx[best]]) best = q;
                d[idx[best]] = g[(int64_t)i * OW + j];
            }
    }
}
