// dit side of the autoencoder benchmark: the SD kl-f8 VAE at full width with synthetic weights
// (docs/vae.md, seed 0); times decode of (batch, 4, S, S) latents and encode of (batch, 3, 8S, 8S) images
// over --repeats runs after --warmup; prints one JSON line like bench/ref_vae.py.
// Usage: build/vae_bench [--latent 32] [--batch 1] [--threads N] [--repeats 3] [--warmup 1]
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
#include "dit_vae.h"
#include "ops/cpu/blas_core.h"

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    int latent = 32, batch = 1, threads = 0, repeats = 3, warmup = 1;
    const char *precision_name = "fp32";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--latent")) latent = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeats")) repeats = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision")) precision_name = argv[i + 1];
        else {
            fprintf(stderr, "vae_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (latent < 1 || batch < 1 || repeats < 1 || repeats > 1000 || warmup < 0) {
        fprintf(stderr, "vae_bench: --latent, --batch and --repeats must be positive\n");
        return 2;
    }
    dit_set_threads(threads);
    threads = dit_max_threads();
    dit_vae_config cfg;
    dit_vae_config_sd(&cfg);
    double t0 = now_seconds();
    dit_vae *v = dit_vae_synthetic(&cfg, 0);
    const double build_s = now_seconds() - t0;
    dit_precision precision;
    if (dit_precision_parse(precision_name, &precision) != DIT_OK || dit_vae_set_precision(v, precision) != DIT_OK) {
        fprintf(stderr, "vae_bench: %s\n", dit_last_error());
        return 1;
    }
    const int S = latent * dit_vae_config_factor(&cfg);
    const size_t nz = (size_t)batch * 4 * latent * latent, nx = (size_t)batch * 3 * S * S;
    float *z = malloc(nz * sizeof *z), *x = malloc(nx * sizeof *x), *moments = malloc(2 * nz * sizeof *moments);
    uint32_t state = 1;
    for (size_t i = 0; i < nz; i++) {
        state = state * 1664525u + 1013904223u;
        z[i] = 2.0f * ((float)(state >> 8) / 8388608.0f - 1.0f);
    }
    for (size_t i = 0; i < nx; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
    }
    double *dec = malloc((warmup + repeats) * sizeof(double)), *enc = malloc((warmup + repeats) * sizeof(double));
    for (int r = 0; r < warmup + repeats; r++) {
        double start = now_seconds();
        if (dit_vae_decode(v, z, batch, latent, latent, x) != DIT_OK) goto fail;
        dec[r] = now_seconds() - start;
        start = now_seconds();
        if (dit_vae_encode_moments(v, x, batch, S, S, moments) != DIT_OK) goto fail;
        enc[r] = now_seconds() - start;
    }
    double checksum = 0;
    for (size_t i = 0; i < 2 * nz; i++) checksum += fabs(moments[i]);
    printf("{\"impl\": \"dit\", \"latent\": %d, \"image\": %d, \"batch\": %d, \"threads\": %d, \"repeats\": %d, "
           "\"build_s\": %.3f, \"decode_s\": %.4f, \"encode_s\": %.4f, \"checksum\": %.6g, \"precision\": \"%s\"}\n",
           latent, S, batch, threads, repeats, build_s, bench_median(dec + warmup, repeats), bench_median(enc + warmup, repeats),
           checksum, dit_precision_name(dit_vae_precision(v)));
    dit_vae_free(v);
    free(z); free(x); free(moments); free(dec); free(enc);
    return 0;
fail:
    fprintf(stderr, "vae_bench: %s\n", dit_last_error());
    return 1;
}
