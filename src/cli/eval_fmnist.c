// `dit eval --fmnist SAMPLES`: the quality of class-conditional Fashion-MNIST samples measured with dit's own
// classifier (src/models/classifier.h, trained by `dit train-classifier`): the share of samples classified as
// the class they were drawn for, and the Frechet distance between classifier features of the samples and of
// the Fashion-MNIST test set, beside the same distance from training images (the floor). Notes: docs/eval.md.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "dit_eval.h"
#include "io/tensors.h"
#include "train/classifier_train.h"
#include "train/train.h"

int cmd_eval_fmnist(int argc, char **argv);

static void print_help(void) {
    printf("usage: dit eval --fmnist SAMPLES.npz (--labels LABELS.npy | --per-class K) [options]\n"
           "\n"
           "SAMPLES: an ADM .npz from `dit sample --npz` (arr_0 uint8 (N, 32, 32, 1)). The labels the samples\n"
           "were drawn for: --labels (an integer .npy of N labels) or --per-class K (arr_0 holds classes\n"
           "0..9 in order, K images each, as `dit sample -n K` writes them for a 10-class model). Without\n"
           "either, only the Frechet distance is reported.\n"
           "\n"
           "  --classifier FILE   default models/fmnist-classifier.safetensors (`dit train-classifier`)\n"
           "  --data D            the reference images: fashion-mnist (default) or a folder of IDX files\n"
           "  --test-images N     test images for the reference statistics (default all 10,000)\n"
           "  --ref-images N      random training images for the floor (default 10,000; 0 = skip)\n"
           "  --seed S (0)        which training images   -t, --threads N\n");
}

// mu (F) and sigma (F, F) of feature rows (count, F); count >= 2.
static dit_status moments_of(const float *features, int count, int F, double *mu, double *sigma) {
    dit_moments *m = dit_moments_create(F);
    if (!m) return DIT_ERR;
    dit_moments_add(m, features, count);
    dit_status st = dit_moments_finish(m, mu, sigma);
    dit_moments_free(m);
    return st;
}

static float *features_of(const classifier *c, const uint8_t *images, int count, int *pred) {
    float *f = dit_xmalloc((size_t)(count > 0 ? count : 1) * c->cfg.features * sizeof(float));
    if (classifier_run(c, images, count, pred, f, NULL) != DIT_OK) {
        free(f);
        return NULL;
    }
    return f;
}

static void shape_text(char *buf, size_t n, const tensor_view *t) {
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < t->ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (used < n) snprintf(buf + used, n - used, ")");
}

int cmd_eval_fmnist(int argc, char **argv) {
    const char *samples_path = NULL, *labels_path = NULL, *classifier_path = "models/fmnist-classifier.safetensors";
    const char *data = "fashion-mnist";
    int per_class = 0, test_images = 0, ref_images = 10000, seed = 0, threads = 0;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (cli_take(&a, NULL, "--fmnist")) {
            if (samples_path) return cli_usage_error("eval --fmnist: one SAMPLES file expected, got '%s' and '%s'",
                                                     samples_path, a.value);
            samples_path = a.value;
        } else if (cli_take(&a, NULL, "--labels")) labels_path = a.value;
        else if (cli_take(&a, NULL, "--classifier")) classifier_path = a.value;
        else if (cli_take(&a, NULL, "--data")) data = a.value;
        else if (cli_take_int(&a, NULL, "--per-class", 1, 100000000, &per_class)) continue;
        else if (cli_take_int(&a, NULL, "--test-images", 2, 100000000, &test_images)) continue;
        else if (cli_take_int(&a, NULL, "--ref-images", 0, 100000000, &ref_images)) {
            if (ref_images == 1) return cli_usage_error("--ref-images: 0 (skip) or at least 2");
        } else if (cli_take_int(&a, NULL, "--seed", 0, 2147483647, &seed)) continue;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (a.failed) return 2;
        else return cli_usage_error("eval --fmnist: unknown argument '%s' (see dit eval --fmnist --help)", arg);
    }
    if (!samples_path) return cli_usage_error("eval --fmnist: no SAMPLES .npz given (see dit eval --fmnist --help)");
    if (labels_path && per_class) return cli_usage_error("eval --fmnist: give --labels or --per-class, not both");
    cli_set_threads(threads);

    int rc = 1;
    tensor_file npz = {0};
    classifier *c = NULL;
    classifier_dataset test = {0}, train = {0};
    int *labels = NULL, *pred = NULL, *perm = NULL;
    float *sample_features = NULL, *test_features = NULL, *train_features = NULL;
    uint8_t *canvases = NULL;
    double *mu = NULL, *sigma = NULL, *mu_test = NULL, *sigma_test = NULL;
    cJSON *names = NULL;

    if (!(c = classifier_load(classifier_path))) {
        dit_prefix_error("--classifier (train one with `dit train-classifier`)");
        goto fail;
    }
    const int S = c->cfg.image_size, C = c->cfg.in_channels, K = c->cfg.num_classes, F = c->cfg.features;
    if (npz_read(samples_path, &npz) != DIT_OK) goto fail;
    const tensor_view *arr = tensor_file_find(&npz, "arr_0");
    if (!arr) {
        dit_set_error("%s: no arr_0 (expected the `dit sample --npz` layout: arr_0 uint8 (N, %d, %d, %d))",
                      samples_path, S, S, C);
        goto fail;
    }
    if (arr->dtype != DT_U8 || arr->ndim != 4 || arr->shape[1] != S || arr->shape[2] != S || arr->shape[3] != C ||
        arr->shape[0] < 1 || arr->shape[0] > 100000000) {
        char shape[128];
        shape_text(shape, sizeof shape, arr);
        dit_set_error("%s: arr_0 is %s %s, expected uint8 (N, %d, %d, %d) (the classifier's input)", samples_path,
                      dtype_name(arr->dtype), shape, S, S, C);
        goto fail;
    }
    const int N = (int)arr->shape[0];
    if (labels_path) {
        int64_t count;
        if (!(labels = cli_read_npy_labels(labels_path, "--labels", &count))) goto fail;
        if (count != N) {
            dit_set_error("%s: %lld labels for the %d images of %s", labels_path, (long long)count, N, samples_path);
            goto fail;
        }
        for (int i = 0; i < N; i++)
            if (labels[i] < 0 || labels[i] >= K) {
                dit_set_error("%s: label %d of image %d, the classifier knows classes 0..%d", labels_path, labels[i],
                              i, K - 1);
                goto fail;
            }
    } else if (per_class) {
        if ((int64_t)per_class * K != N) {
            dit_set_error("%s: %d images, but --per-class %d means %d classes x %d = %lld", samples_path, N, per_class,
                          K, per_class, (long long)per_class * K);
            goto fail;
        }
        labels = dit_xmalloc((size_t)N * sizeof(int));
        for (int i = 0; i < N; i++) labels[i] = i / per_class;
    }

    pred = dit_xmalloc((size_t)N * sizeof(int));
    if (!(sample_features = features_of(c, arr->data, N, pred))) goto fail;
    printf("samples: %d images (%dx%dx%d) from %s; classifier %s", N, S, S, C, samples_path, classifier_path);
    if (c->test_accuracy >= 0) printf(" (test accuracy %.4f)", c->test_accuracy);
    printf("\n");
    if (labels) {
        names = c->class_names ? cJSON_Parse(c->class_names) : NULL;
        int right = 0;
        int *hits = dit_xcalloc((size_t)K, sizeof(int)), *totals = dit_xcalloc((size_t)K, sizeof(int));
        for (int i = 0; i < N; i++) {
            totals[labels[i]]++;
            if (pred[i] == labels[i]) hits[labels[i]]++, right++;
        }
        printf("Class agreement: %.3f (%d/%d)\n", (double)right / N, right, N);
        for (int k = 0; k < K; k++) {
            if (!totals[k]) continue;
            const cJSON *name = cJSON_GetArrayItem(names, k);
            printf("  %2d %-12s %.3f (%d/%d)\n", k, cJSON_IsString(name) ? name->valuestring : "", (double)hits[k] / totals[k],
                   hits[k], totals[k]);
        }
        free(hits);
        free(totals);
    }

    // reference statistics: the test split (all or its first --test-images)
    if (classifier_dataset_load(&test, data, 1) != DIT_OK) goto fail;
    const int n_test = test_images > 0 && test_images < test.count ? test_images : test.count;
    if (n_test < 2) {
        dit_set_error("%s: %d test images, at least 2 needed", data, n_test);
        goto fail;
    }
    canvases = classifier_dataset_canvases(&test, NULL, n_test, S);
    if (!canvases) goto fail;
    if (!(test_features = features_of(c, canvases, n_test, NULL))) goto fail;
    mu_test = dit_xmalloc((size_t)F * sizeof(double)), sigma_test = dit_xmalloc((size_t)F * F * sizeof(double));
    mu = dit_xmalloc((size_t)F * sizeof(double)), sigma = dit_xmalloc((size_t)F * F * sizeof(double));
    if (moments_of(test_features, n_test, F, mu_test, sigma_test) != DIT_OK) goto fail;
    double fd;
    if (N >= 2) {
        if (moments_of(sample_features, N, F, mu, sigma) != DIT_OK ||
            dit_frechet_distance(mu, sigma, mu_test, sigma_test, F, &fd) != DIT_OK)
            goto fail;
        printf("Frechet distance (classifier features): %.4f (%d samples vs %d test images)\n", fd, N, n_test);
    } else {
        printf("Frechet distance (classifier features): n/a (a covariance needs at least 2 samples)\n");
    }
    if (ref_images > 0) {
        if (classifier_dataset_load(&train, data, 0) != DIT_OK) goto fail;
        const int n_ref = ref_images < train.count ? ref_images : train.count;
        perm = dit_xmalloc((size_t)train.count * sizeof(int));
        train_data_permutation(train.count, (uint64_t)seed, 0, perm);
        free(canvases);
        canvases = classifier_dataset_canvases(&train, perm, n_ref, S);
        if (!canvases) goto fail;
        if (!(train_features = features_of(c, canvases, n_ref, NULL))) goto fail;
        if (moments_of(train_features, n_ref, F, mu, sigma) != DIT_OK ||
            dit_frechet_distance(mu, sigma, mu_test, sigma_test, F, &fd) != DIT_OK)
            goto fail;
        printf("Frechet distance, train vs test (floor): %.4f (%d random train vs %d test images)\n", fd, n_ref,
               n_test);
    }
    rc = 0;
fail:
    if (rc) rc = cli_fail();
    cJSON_Delete(names);
    tensor_file_free(&npz);
    classifier_free(c);
    classifier_dataset_free(&test);
    classifier_dataset_free(&train);
    free(labels), free(pred), free(perm), free(sample_features), free(test_features), free(train_features);
    free(canvases), free(mu), free(sigma), free(mu_test), free(sigma_test);
    return rc;
}
