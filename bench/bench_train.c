// dit side of the training-step benchmark: one full step (batch assembly, forward, the MSE + VB loss, backward,
// AdamW, EMA) of a model with the reference init on synthetic data, timed over --repeats steps after --warmup;
// prints one JSON line like bench/ref_train.py. GFLOP/s use the 3 x forward convention (backward ~ 2 x forward),
// 2 flops per multiply-accumulate. Peak memory: getrusage ru_maxrss.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

#include "bench_util.h"
#include "dit.h"
#include "train/train.h"
#include "ops/cpu/blas_core.h"

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    const char *name = NULL, *precision_name = "auto";
    int image_size = 256, batch = 8, threads = 0, repeats = 3, warmup = 1;
    int size = 32, channels = 1, patch = 4, hidden = 256, depth = 6, heads = 4, classes = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) name = argv[i + 1];
        else if (!strcmp(argv[i], "--image-size")) image_size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeats")) repeats = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--channels")) channels = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--patch")) patch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--hidden")) hidden = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--depth")) depth = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--heads")) heads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision")) precision_name = argv[i + 1];
        else {
            fprintf(stderr, "bench_train: unknown option %s (--model NAME --image-size N | --size S --channels C "
                            "--patch P --hidden D --depth L --heads H; --batch --threads --repeats --warmup)\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1 || repeats < 1 || repeats > 1000 || warmup < 0) {
        fprintf(stderr, "bench_train: --batch and --repeats must be positive\n");
        return 2;
    }
    dit_set_threads(threads);
    dit_config cfg;
    if (name) {
        if (dit_config_named(&cfg, name, image_size) != DIT_OK) {
            fprintf(stderr, "bench_train: %s\n", dit_last_error());
            return 1;
        }
    } else {
        cfg = (dit_config){.input_size = size, .patch_size = patch, .in_channels = channels, .hidden_size = hidden,
                           .depth = depth, .num_heads = heads, .mlp_ratio = 4.0f, .num_classes = classes,
                           .class_dropout_prob = 0.1f, .learn_sigma = 1};
    }
    // synthetic data: 2 batches of seeded values in [-1, 1]
    const int S = cfg.input_size, C = cfg.in_channels, count = 2 * batch;
    train_data data = {.kind = DATA_PIXELS, .source = "synthetic", .count = count, .channels = C, .size = S,
                       .num_classes = cfg.num_classes};
    data.pixels = malloc((size_t)count * C * S * S * sizeof(float));
    data.labels = malloc(count * sizeof(int));
    uint32_t state = 1;
    for (size_t i = 0; i < (size_t)count * C * S * S; i++) {
        state = state * 1664525u + 1013904223u;
        data.pixels[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
    }
    for (int i = 0; i < count; i++) data.labels[i] = (i * 131 + 7) % cfg.num_classes;
    train_hparams hp;
    train_hparams_default(&hp);
    hp.batch = batch;
    trainer *tr = trainer_create(&cfg, &hp, 0, &data);
    if (!tr) {
        fprintf(stderr, "bench_train: %s\n", dit_last_error());
        return 1;
    }
    dit_precision precision;
    if (dit_precision_parse(precision_name, &precision) != DIT_OK ||
        dit_model_set_precision(tr->model, precision) != DIT_OK) {
        fprintf(stderr, "bench_train: %s\n", dit_last_error());
        return 1;
    }
    double *times = malloc((warmup + repeats) * sizeof(double));
    train_stats st;
    for (int r = 0; r < warmup + repeats; r++) {
        double start = now_seconds();
        if (trainer_step(tr, &st) != DIT_OK) {
            fprintf(stderr, "bench_train: %s\n", dit_last_error());
            return 1;
        }
        times[r] = now_seconds() - start;
    }
    double median = bench_median(times + warmup, repeats);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double g = dit_config_gmacs(&cfg), gflop = 2.0 * 3.0 * g * batch;
    int used_threads = dit_max_threads();
    printf("{\"impl\": \"dit\", \"model\": \"%s\", \"input_size\": %d, \"in_channels\": %d, \"batch\": %d, "
           "\"threads\": %d, \"seconds_per_step\": %.6f, \"seconds_min\": %.6f, \"repeats\": %d, \"gmacs_forward\": %.4f, "
           "\"gflop_step\": %.4f, \"gflops_per_second\": %.3f, \"params\": %lld, \"peak_rss_mb\": %.1f, \"loss\": %.6g, \"precision\": \"%s\"}\n",
           name ? name : "custom", S, C, batch, used_threads, median, times[warmup], repeats, g, gflop, gflop / median,
           (long long)dit_config_param_count(&cfg), ru.ru_maxrss / 1024.0, st.loss,
           dit_precision_name(dit_model_precision(tr->model)));
    free(times);
    trainer_free(tr);
    free(data.pixels);
    free(data.labels);
    return 0;
}
