// Training the Fashion-MNIST classifier (classifier_train.h): seeded shuffles (train_data_permutation), flips
// and shifts from Philox, cross-entropy, AdamW from optim.c with a cosine learning rate.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "train/classifier_train.h"
#include "train/train.h"

static const char *const fashion_dir = "/usr/share/datasets/fashion-mnist";

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static dit_status find_idx(const char *dir, const char *split, const char *kind, char *path, size_t n) {
    snprintf(path, n, "%s/%s-%s-ubyte.gz", dir, split, kind);
    if (file_exists(path)) return DIT_OK;
    snprintf(path, n, "%s/%s-%s-ubyte", dir, split, kind);
    if (file_exists(path)) return DIT_OK;
    return dit_set_error("%s: no %s-%s-ubyte[.gz] there%s", dir, split, kind,
                         dir == fashion_dir ? " (install Debian's dataset-fashion-mnist: scripts/setup.sh)" : "");
}

dit_status classifier_dataset_load(classifier_dataset *d, const char *spec, int test) {
    memset(d, 0, sizeof *d);
    const char *dir = !strcmp(spec, "fashion-mnist") ? fashion_dir : spec;
    const char *split = test ? "t10k" : "train";
    char images[4096], labels[4096];
    if (find_idx(dir, split, "images-idx3", images, sizeof images) != DIT_OK ||
        find_idx(dir, split, "labels-idx1", labels, sizeof labels) != DIT_OK)
        return DIT_ERR;
    int n_labels;
    if (idx_read_images(images, &d->images, &d->count, &d->rows, &d->cols) != DIT_OK) return DIT_ERR;
    if (idx_read_labels(labels, &d->labels, &n_labels) != DIT_OK) {
        classifier_dataset_free(d);
        return DIT_ERR;
    }
    if (n_labels != d->count) {
        dit_set_error("%s: %d labels for %d images in %s", labels, n_labels, d->count, images);
        classifier_dataset_free(d);
        return DIT_ERR;
    }
    return DIT_OK;
}

void classifier_dataset_free(classifier_dataset *d) {
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

uint8_t *classifier_dataset_canvases(const classifier_dataset *d, const int *indices, int count, int S) {
    uint8_t *out = dit_malloc((size_t)(count > 0 ? count : 1) * S * S);
    if (!out) return NULL;
    const int64_t per = (int64_t)d->rows * d->cols;
    for (int i = 0; i < count; i++)
        classifier_place_image(out + (int64_t)i * S * S, S, d->images + (indices ? indices[i] : i) * per, d->rows,
                               d->cols, 0, 0, 0);
    return out;
}

void classifier_train_options_default(classifier_train_options *o) {
    *o = (classifier_train_options){.epochs = 8, .batch = 128, .lr = 1e-3, .weight_decay = 1e-4, .hflip = 1,
                                    .shift = 0, .seed = 0};
}

void classifier_train_init_weights(classifier *c, uint64_t seed) {
    for (int i = 0; i < CLASSIFIER_PARAMS; i++) {
        const classifier_param *p = &c->table[i];
        float *w = c->params + p->offset;
        if (p->ndim == 1) {
            memset(w, 0, (size_t)p->numel * sizeof *w);
            continue;
        }
        const double bound = sqrt(6.0 / (double)(p->numel / p->shape[0]));
        for (int64_t k = 0; k < p->numel; k++)
            w[k] = (float)((2 * train_rng_uniform(seed, (uint32_t)k, (uint32_t)i, 0, RNG_STREAM_CLASSIFIER_INIT) - 1) *
                           bound);
    }
}

double classifier_cross_entropy(const float *logits, const uint8_t *labels, int B, int K, float *dlogits,
                                int *correct) {
    double total = 0;
    int right = 0;
    for (int b = 0; b < B; b++) {
        const float *row = logits + (int64_t)b * K;
        int best = 0;
        for (int j = 1; j < K; j++)
            if (row[j] > row[best]) best = j;
        right += best == labels[b];
        double sum = 0;
        for (int j = 0; j < K; j++) sum += exp((double)row[j] - row[best]);
        const double lse = row[best] + log(sum);
        total += lse - row[labels[b]];
        if (dlogits)
            for (int j = 0; j < K; j++)
                dlogits[(int64_t)b * K + j] = (float)((exp((double)row[j] - lse) - (j == labels[b])) / B);
    }
    if (correct) *correct = right;
    return B > 0 ? total / B : 0;
}

dit_status classifier_accuracy(const classifier *c, const classifier_dataset *d, int limit, double *accuracy) {
    const int n = limit <= 0 || limit > d->count ? d->count : limit;
    *accuracy = 0;
    if (n == 0) return DIT_OK;
    uint8_t *canvases = classifier_dataset_canvases(d, NULL, n, c->cfg.image_size);
    int *pred = canvases ? dit_malloc((size_t)n * sizeof(int)) : NULL;
    dit_status status = pred ? classifier_run(c, canvases, n, pred, NULL, NULL) : DIT_ERR;
    if (status == DIT_OK) {
        int right = 0;
        for (int i = 0; i < n; i++) right += pred[i] == d->labels[i];
        *accuracy = (double)right / n;
    }
    free(pred);
    free(canvases);
    return status;
}

dit_status classifier_train(classifier *c, const classifier_dataset *train, const classifier_dataset *test,
                            const classifier_train_options *o,
                            void (*on_epoch)(void *ctx, const classifier_epoch_stats *st), void *ctx) {
    const int S = c->cfg.image_size, B = o->batch, K = c->cfg.num_classes;
    if (c->cfg.in_channels != 1) return dit_set_error("classifier training: IDX images have 1 channel, the model %d",
                                                      c->cfg.in_channels);
    if (train->rows > S || train->cols > S)
        return dit_set_error("classifier training: %dx%d images do not fit the model's %dx%d input", train->rows,
                             train->cols, S, S);
    if (B < 1 || train->count < B)
        return dit_set_error("classifier training: batch %d with %d training images", B, train->count);
    for (int i = 0; i < train->count; i++)
        if (train->labels[i] >= K)
            return dit_set_error("classifier training: label %d of image %d, the model has %d classes",
                                 train->labels[i], i, K);
    const int steps_per_epoch = train->count / B;   // drop_last
    const int64_t total_steps = (int64_t)steps_per_epoch * o->epochs;
    train_hparams hp;
    train_hparams_default(&hp);
    hp.weight_decay = o->weight_decay;
    hp.batch = B;
    const size_t n = (size_t)c->total_floats;
    float *grads = dit_malloc(n * sizeof(float)), *adam_m = dit_calloc(n, sizeof(float));
    float *adam_v = dit_calloc(n, sizeof(float));
    float *x = dit_malloc((size_t)B * S * S * sizeof(float)), *dlogits = dit_malloc((size_t)B * K * sizeof(float));
    uint8_t *canvas = dit_malloc((size_t)B * S * S), *labels = dit_malloc((size_t)B);
    int *perm = dit_malloc((size_t)train->count * sizeof(int));
    classifier_acts *acts = classifier_acts_create(&c->cfg, B, 1);
    const int64_t per = (int64_t)train->rows * train->cols;
    int64_t step = 0;
    dit_status status = grads && adam_m && adam_v && x && dlogits && canvas && labels && perm && acts ? DIT_OK : DIT_ERR;
    for (int epoch = 0; status == DIT_OK && epoch < o->epochs; epoch++) {
        const double t0 = now_seconds();
        train_data_permutation(train->count, o->seed, epoch, perm);
        double loss_sum = 0;
        int64_t right = 0;
        for (int s = 0; status == DIT_OK && s < steps_per_epoch; s++, step++) {
            for (int b = 0; b < B; b++) {
                const int i = perm[(int64_t)s * B + b];
                const uint64_t w = train_rng_u64(o->seed, (uint32_t)b, (uint32_t)step, 0, RNG_STREAM_CLASSIFIER_AUGMENT);
                const int flip = o->hflip && (w & 1);
                const int dy = o->shift > 0 ? (int)((w >> 8) % (uint64_t)(2 * o->shift + 1)) - o->shift : 0;
                const int dx = o->shift > 0 ? (int)((w >> 24) % (uint64_t)(2 * o->shift + 1)) - o->shift : 0;
                classifier_place_image(canvas + (int64_t)b * S * S, S, train->images + i * per, train->rows,
                                       train->cols, dy, dx, flip);
                labels[b] = train->labels[i];
            }
            classifier_images_to_input(x, canvas, B, S, 1);
            if ((status = classifier_forward(c, acts, x, B)) != DIT_OK) break;
            int correct;
            loss_sum += classifier_cross_entropy(acts->logits, labels, B, K, dlogits, &correct);
            right += correct;
            memset(grads, 0, n * sizeof(float));
            if ((status = classifier_backward(c, acts, x, dlogits, grads, B)) != DIT_OK) break;
            const double lr = o->lr * 0.5 * (1 + cos(M_PI * (double)step / (double)total_steps));
            train_adamw_update(c->params, grads, adam_m, adam_v, n, &hp, lr, step + 1);
        }
        classifier_epoch_stats st = {.epoch = epoch + 1, .epochs = o->epochs, .train_loss = loss_sum / steps_per_epoch,
                                     .train_accuracy = (double)right / ((double)steps_per_epoch * B),
                                     .test_accuracy = -1};
        if (status == DIT_OK && test) status = classifier_accuracy(c, test, 0, &st.test_accuracy);
        if (status != DIT_OK) break;
        st.seconds = now_seconds() - t0;
        if (on_epoch) on_epoch(ctx, &st);
    }
    classifier_acts_free(acts);
    free(grads), free(adam_m), free(adam_v), free(x), free(dlogits), free(canvas), free(labels), free(perm);
    return status;
}
