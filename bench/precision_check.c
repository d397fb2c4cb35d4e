// bf16 against fp32 on a whole named DiT (synthetic weights, seed 0): the same inputs through both
// precisions, and the error of the bf16 output relative to the fp32 one (max |diff| / max |fp32| and
// relative L2). This is the quality bar for random weights (DiT-XL/2 within 2e-2); too slow and too
// big (2.7 GB of weights) for the test suite, which checks the XL width at depth 2 instead.
// Usage: build/precision_check [--model DiT-XL/2] [--image-size 256] [--batch 2]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "dit.h"
#include "ops/cpu/blas_core.h"

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    const char *name = "DiT-XL/2";
    int image_size = 256, batch = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) name = argv[i + 1];
        else if (!strcmp(argv[i], "--image-size")) image_size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "precision_check: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    dit_config cfg;
    if (batch < 1 || dit_config_named(&cfg, name, image_size) != DIT_OK) {
        fprintf(stderr, "precision_check: %s\n", batch < 1 ? "--batch must be positive" : dit_last_error());
        return 2;
    }
    dit_model *m = dit_model_synthetic(&cfg, 0);
    if (!m || !dit_compute_path(DIT_PRECISION_BF16)) {
        fprintf(stderr, "precision_check: %s\n", dit_last_error());
        return 1;
    }
    const int S = cfg.input_size, C = cfg.in_channels, OUT = dit_config_out_channels(&cfg);
    const size_t in_n = (size_t)batch * C * S * S, out_n = (size_t)batch * OUT * S * S;
    float *x = malloc(in_n * sizeof *x), *t = malloc(batch * sizeof *t), *ref = malloc(out_n * sizeof *ref);
    float *got = malloc(out_n * sizeof *got);
    int *y = malloc(batch * sizeof *y);
    uint32_t state = 1;
    for (size_t i = 0; i < in_n; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
    }
    for (int b = 0; b < batch; b++) t[b] = (float)((b * 397 + 11) % 1000), y[b] = (b * 131 + 7) % cfg.num_classes;
    dit_model_set_precision(m, DIT_PRECISION_FP32);
    double t0 = now_seconds();
    dit_model_forward(m, x, t, y, batch, ref);
    const double s32 = now_seconds() - t0;
    dit_model_set_precision(m, DIT_PRECISION_BF16);
    t0 = now_seconds();
    dit_model_forward(m, x, t, y, batch, got);
    const double s16 = now_seconds() - t0;
    double worst = 0, peak = 0, d2 = 0, r2 = 0;
    for (size_t i = 0; i < out_n; i++) {
        const double d = fabs((double)got[i] - ref[i]);
        worst = d > worst ? d : worst;
        peak = fabs(ref[i]) > peak ? fabs(ref[i]) : peak;
        d2 += d * d, r2 += (double)ref[i] * ref[i];
    }
    printf("{\"model\": \"%s\", \"image_size\": %d, \"batch\": %d, \"path\": \"%s\", \"max_error_of_max\": %.3e, "
           "\"relative_l2\": %.3e, \"fp32_seconds\": %.3f, \"bf16_seconds_incl_packing\": %.3f}\n",
           name, image_size, batch, dit_compute_path(DIT_PRECISION_BF16), worst / peak, sqrt(d2 / r2), s32, s16);
    free(x); free(t); free(ref); free(got); free(y);
    dit_model_free(m);
    return 0;
}
