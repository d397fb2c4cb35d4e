// The backward pass alone (issue 12, docs/distributed.md): times dit_forward_train and dit_backward of a named
// DiT on random latents, so the all-reduce volume per step can be set against the backward time it could hide
// behind. Prints one JSON line: median seconds of the forward and of the backward over --repeats after one warm-up.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "dit.h"
#include "train/train.h"
#include "ops/cpu/blas_core.h"

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    const char *name = "DiT-XL/2";
    int image_size = 256, batch = 1, threads = 0, repeats = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) name = argv[i + 1];
        else if (!strcmp(argv[i], "--image-size")) image_size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeats")) repeats = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_backward: unknown option %s (--model NAME --image-size N --batch B --threads T "
                            "--repeats R)\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1 || repeats < 1 || repeats > 100) {
        fprintf(stderr, "bench_backward: --batch and --repeats must be positive\n");
        return 2;
    }
    dit_set_threads(threads);
    dit_config cfg;
    if (dit_config_named(&cfg, name, image_size) != DIT_OK) {
        fprintf(stderr, "bench_backward: %s\n", dit_last_error());
        return 1;
    }
    dit_model *m = dit_model_create(&cfg);
    dit_train_activations *acts = m ? dit_train_activations_create(m, batch) : NULL;
    if (!acts) {
        fprintf(stderr, "bench_backward: %s\n", dit_last_error());
        return 1;
    }
    train_init_weights(m, 0);
    const int S = cfg.input_size, C = cfg.in_channels, OC = dit_config_out_channels(&cfg);
    const size_t n_in = (size_t)batch * C * S * S, n_out = (size_t)batch * OC * S * S;
    float *x = malloc(n_in * sizeof *x), *out = malloc(n_out * sizeof *out), *dout = malloc(n_out * sizeof *dout);
    float *t = malloc(batch * sizeof *t), *grads = calloc(m->total_floats, sizeof *grads);
    int *y = malloc(batch * sizeof *y);
    uint32_t state = 1;
    for (size_t i = 0; i < n_in; i++) state = state * 1664525u + 1013904223u, x[i] = (float)(state >> 8) / 8388608.0f - 1;
    for (size_t i = 0; i < n_out; i++) state = state * 1664525u + 1013904223u, dout[i] = ((float)(state >> 8) / 8388608.0f - 1) * 1e-3f;
    for (int b = 0; b < batch; b++) t[b] = (float)(b * 137 % 1000), y[b] = b % cfg.num_classes;
    double *fw = malloc((repeats + 1) * sizeof *fw), *bw = malloc((repeats + 1) * sizeof *bw);
    for (int r = 0; r <= repeats; r++) {
        double t0 = now_seconds();
        if (dit_forward_train(m, acts, x, t, y, out) != DIT_OK) {
            fprintf(stderr, "bench_backward: %s\n", dit_last_error());
            return 1;
        }
        double t1 = now_seconds();
        dit_backward(m, acts, dout, grads);
        fw[r] = t1 - t0, bw[r] = now_seconds() - t1;
    }
    printf("{\"model\": \"%s\", \"image_size\": %d, \"batch\": %d, \"threads\": %d, \"params\": %lld, "
           "\"forward_s\": %.4f, \"backward_s\": %.4f, \"repeats\": %d}\n", name, image_size, batch, dit_max_threads(),
           (long long)m->total_floats, bench_median(fw + 1, repeats), bench_median(bw + 1, repeats), repeats);
    free(x), free(out), free(dout), free(t), free(grads), free(y), free(fw), free(bw);
    dit_train_activations_free(acts);
    dit_model_free(m);
    return 0;
}
