// dit side of the forward benchmark: a named DiT with synthetic weights (docs/testing.md, seed 0), timed
// over --repeats forwards after --warmup; prints one JSON line like bench/ref_forward.py.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

#include "bench_util.h"
#include "dit.h"
#include "ops/cpu/blas_core.h"

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    const char *name = "DiT-S/2";
    const char *precision_name = "auto";
    int image_size = 256, batch = 1, threads = 0, repeats = 3, warmup = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) name = argv[i + 1];
        else if (!strcmp(argv[i], "--image-size")) image_size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeats")) repeats = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision")) precision_name = argv[i + 1];
        else {
            fprintf(stderr, "bench_forward: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1 || repeats < 1 || repeats > 1000) {
        fprintf(stderr, "bench_forward: --batch and --repeats must be positive\n");
        return 2;
    }
    dit_set_threads(threads);
    dit_config cfg;
    if (dit_config_named(&cfg, name, image_size) != DIT_OK) {
        fprintf(stderr, "bench_forward: %s\n", dit_last_error());
        return 1;
    }
    double t0 = now_seconds();
    dit_model *m = dit_model_synthetic(&cfg, 0);
    double build_s = now_seconds() - t0;
    dit_precision precision;
    if (dit_precision_parse(precision_name, &precision) != DIT_OK || dit_model_set_precision(m, precision) != DIT_OK) {
        fprintf(stderr, "bench_forward: %s\n", dit_last_error());
        return 1;
    }
    const int S = cfg.input_size, C = cfg.in_channels, OUT = dit_config_out_channels(&cfg);
    float *x = malloc((size_t)batch * C * S * S * sizeof(float)), *t = malloc(batch * sizeof(float));
    float *out = malloc((size_t)batch * OUT * S * S * sizeof(float));
    int *y = malloc(batch * sizeof(int));
    uint32_t state = 1;
    for (size_t i = 0; i < (size_t)batch * C * S * S; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
    }
    for (int b = 0; b < batch; b++) {
        t[b] = (float)((b * 397 + 11) % 1000);
        y[b] = (b * 131 + 7) % cfg.num_classes;
    }
    double *times = malloc((warmup + repeats) * sizeof(double));
    for (int r = 0; r < warmup + repeats; r++) {
        double start = now_seconds();
        if (dit_model_forward(m, x, t, y, batch, out) != DIT_OK) {
            fprintf(stderr, "bench_forward: %s\n", dit_last_error());
            return 1;
        }
        times[r] = now_seconds() - start;
    }
    double median = bench_median(times + warmup, repeats);
    double checksum = 0;
    for (size_t i = 0; i < (size_t)batch * OUT * S * S; i++) checksum += fabs(out[i]);
    double g = dit_config_gmacs(&cfg);
    int used_threads = dit_max_threads();
    printf("{\"impl\": \"dit\", \"model\": \"%s\", \"image_size\": %d, \"batch\": %d, \"threads\": %d, "
           "\"seconds_per_forward\": %.6f, \"seconds_min\": %.6f, \"repeats\": %d, \"gmacs\": %.4f, "
           "\"gmacs_total\": %.4f, \"gmacs_per_second\": %.3f, \"params\": %lld, \"build_seconds\": %.2f, "
           "\"out_checksum\": %.6g, \"precision\": \"%s\", \"path\": \"%s\"}\n",
           name, image_size, batch, used_threads, median, times[warmup], repeats, g, g * batch, g * batch / median,
           (long long)dit_config_param_count(&cfg), build_s, checksum,
           dit_precision_name(dit_model_precision(m)), dit_compute_path(dit_model_precision(m)));
    free(x); free(t); free(out); free(y); free(times);
    dit_model_free(m);
    return 0;
}
