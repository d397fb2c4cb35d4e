// bf16 against fp32 on the SD autoencoder (synthetic weights of seed 0, full width): for each of --draws random
// latents (and images), decode (and encode) in fp32, in bf16 with the direct 3x3 convs, and in bf16 with
// Winograd's (ops/cpu/conv_winograd.c), and the error of each bf16 result against the fp32 one: relative L2
// and max |diff| / max |fp32|. What docs/precision.md reports for the choice of conv form on the bf16 path.
// Usage: build/vae_precision [--latent 16] [--draws 4]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit_vae.h"
#include "ops/bf16.h"
#include "ops/cpu/blas_core.h"

static void errors(const float *got, const float *ref, size_t n, double *l2, double *max_of_max) {
    double d2 = 0, r2 = 0, worst = 0, peak = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - ref[i]);
        d2 += d * d, r2 += (double)ref[i] * ref[i];
        worst = d > worst ? d : worst;
        peak = fabs(ref[i]) > peak ? fabs(ref[i]) : peak;
    }
    *l2 = sqrt(d2 / r2), *max_of_max = worst / peak;
}

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    int latent = 16, draws = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--latent")) latent = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--draws")) draws = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "vae_precision: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (latent < 1 || latent > 128 || draws < 1 || draws > 1000) {
        fprintf(stderr, "vae_precision: --latent must be 1..128 and --draws 1..1000\n");
        return 2;
    }
    dit_vae_config cfg;
    dit_vae_config_sd(&cfg);
    dit_vae *v = dit_vae_synthetic(&cfg, 0);
    if (!v || dit_vae_set_precision(v, DIT_PRECISION_BF16) != DIT_OK) {
        fprintf(stderr, "vae_precision: %s\n", dit_last_error());
        return 1;
    }
    const int S = latent * dit_vae_config_factor(&cfg);
    const size_t nz = (size_t)4 * latent * latent, nx = (size_t)3 * S * S, nm = 2 * nz;
    float *z = malloc(nz * sizeof *z), *img = malloc(nx * sizeof *img);
    float *x[3], *m[3];   // fp32, bf16 direct, bf16 Winograd
    for (int k = 0; k < 3; k++) x[k] = malloc(nx * sizeof(float)), m[k] = malloc(nm * sizeof(float));
    uint32_t state = 7;
    double sum[4] = {0}, worst[4] = {0};   // decode direct, decode Winograd, encode direct, encode Winograd (L2)
    for (int d = 0; d < draws; d++) {
        for (size_t i = 0; i < nz; i++) {   // roughly the spread of SD latents divided by the scale factor
            state = state * 1664525u + 1013904223u;
            z[i] = 5.0f * ((float)(state >> 8) / 8388608.0f - 1.0f);
        }
        for (size_t i = 0; i < nx; i++) {
            state = state * 1664525u + 1013904223u;
            img[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
        }
        for (int k = 0; k < 3; k++) {
            dit_vae_set_precision(v, k ? DIT_PRECISION_BF16 : DIT_PRECISION_FP32);
            conv3x3_winograd_enable(k == 2);
            if (dit_vae_decode(v, z, 1, latent, latent, x[k]) != DIT_OK ||
                dit_vae_encode_moments(v, img, 1, S, S, m[k]) != DIT_OK) {
                fprintf(stderr, "vae_precision: %s\n", dit_last_error());
                return 1;
            }
        }
        double e[4][2];
        errors(x[1], x[0], nx, &e[0][0], &e[0][1]);
        errors(x[2], x[0], nx, &e[1][0], &e[1][1]);
        errors(m[1], m[0], nm, &e[2][0], &e[2][1]);
        errors(m[2], m[0], nm, &e[3][0], &e[3][1]);
        printf("{\"draw\": %d, \"latent\": %d, \"decode_l2\": {\"direct\": %.3e, \"winograd\": %.3e}, \"decode_max\": "
               "{\"direct\": %.3e, \"winograd\": %.3e}, \"encode_l2\": {\"direct\": %.3e, \"winograd\": %.3e}, "
               "\"encode_max\": {\"direct\": %.3e, \"winograd\": %.3e}}\n", d, latent, e[0][0], e[1][0], e[0][1],
               e[1][1], e[2][0], e[3][0], e[2][1], e[3][1]);
        for (int k = 0; k < 4; k++) {
            sum[k] += e[k][0];
            worst[k] = e[k][0] > worst[k] ? e[k][0] : worst[k];
        }
    }
    printf("{\"draws\": %d, \"path\": \"%s\", \"decode_l2_mean\": {\"direct\": %.3e, \"winograd\": %.3e}, "
           "\"decode_l2_worst\": {\"direct\": %.3e, \"winograd\": %.3e}, \"encode_l2_mean\": {\"direct\": %.3e, "
           "\"winograd\": %.3e}, \"encode_l2_worst\": {\"direct\": %.3e, \"winograd\": %.3e}}\n", draws,
           dit_compute_path(DIT_PRECISION_BF16), sum[0] / draws, sum[1] / draws, worst[0], worst[1], sum[2] / draws,
           sum[3] / draws, worst[2], worst[3]);
    for (int k = 0; k < 3; k++) free(x[k]), free(m[k]);
    free(z), free(img);
    dit_vae_free(v);
    return 0;
}
