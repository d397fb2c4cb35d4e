// The Fashion-MNIST classifier of `dit eval --fmnist` (classifier.h): parameter table in one buffer, forward
// and backward over the project's own ops (conv2d, ReLU, 2x2 max pooling, linear), safetensors I/O.
// The network is the usual small MNIST CNN (PyTorch layers: Conv2d(k=3, padding=1), ReLU, MaxPool2d(2), Linear).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "models/classifier.h"
#include "ops/conv.h"
#include "ops/ops.h"

#define CLASSIFIER_FORMAT "dit-classifier"
#define CLASSIFIER_BATCH 256   // classifier_run's batch

void classifier_config_default(classifier_config *cfg) {
    *cfg = (classifier_config){.image_size = 32, .in_channels = 1, .conv1 = 32, .conv2 = 64, .features = 128,
                               .num_classes = 10};
}

static dit_status check_config(const classifier_config *cfg) {
    if (cfg->image_size < 4 || cfg->image_size > 1024 || cfg->image_size % 4)
        return dit_set_error("classifier: image_size %d, expected a multiple of 4 in [4, 1024]", cfg->image_size);
    if (cfg->in_channels < 1 || cfg->in_channels > 4 || cfg->conv1 < 1 || cfg->conv1 > 4096 || cfg->conv2 < 1 ||
        cfg->conv2 > 4096 || cfg->features < 1 || cfg->features > 65536 || cfg->num_classes < 2 ||
        cfg->num_classes > 65536)
        return dit_set_error("classifier: config out of range (in_channels %d, conv1 %d, conv2 %d, features %d, "
                             "num_classes %d)", cfg->in_channels, cfg->conv1, cfg->conv2, cfg->features,
                             cfg->num_classes);
    return DIT_OK;
}

classifier *classifier_create(const classifier_config *cfg) {
    if (check_config(cfg) != DIT_OK) return NULL;
    classifier *c = dit_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cfg = *cfg;
    c->test_accuracy = -1;
    const int64_t S4 = cfg->image_size / 4, flat = (int64_t)cfg->conv2 * S4 * S4;
    const struct {
        const char *name;
        int ndim;
        int64_t shape[4];
    } t[CLASSIFIER_PARAMS] = {
        {"conv1.weight", 4, {cfg->conv1, cfg->in_channels, 3, 3}}, {"conv1.bias", 1, {cfg->conv1}},
        {"conv2.weight", 4, {cfg->conv2, cfg->conv1, 3, 3}},       {"conv2.bias", 1, {cfg->conv2}},
        {"fc1.weight", 2, {cfg->features, flat}},                  {"fc1.bias", 1, {cfg->features}},
        {"fc2.weight", 2, {cfg->num_classes, cfg->features}},      {"fc2.bias", 1, {cfg->num_classes}},
    };
    int64_t offset = 0;
    for (int i = 0; i < CLASSIFIER_PARAMS; i++) {
        classifier_param *p = &c->table[i];
        p->name = t[i].name, p->ndim = t[i].ndim, p->offset = offset, p->numel = 1;
        for (int d = 0; d < p->ndim; d++) p->shape[d] = t[i].shape[d], p->numel *= t[i].shape[d];
        offset += p->numel;
    }
    c->total_floats = offset;
    c->params = dit_calloc((size_t)offset, sizeof(float));
    if (!c->params) {
        dit_prefix_error("classifier: %lld parameters", (long long)offset);
        free(c);
        return NULL;
    }
    return c;
}

void classifier_free(classifier *c) {
    if (!c) return;
    free(c->params);
    free(c->class_names);
    free(c);
}

// ---- safetensors ----------------------------------------------------------------------------------------

dit_status classifier_save(const classifier *c, const char *path, dit_dtype dtype, const char *class_names_json,
                           const char *train_json) {
    if (dtype != DT_F32 && dtype != DT_F16) return dit_set_error("%s: classifier weights are F32 or F16", path);
    tensor_out out[CLASSIFIER_PARAMS];
    void *data = dit_malloc((size_t)c->total_floats * dtype_size(dtype));
    if (!data) return DIT_ERR;
    for (int i = 0; i < CLASSIFIER_PARAMS; i++) {
        const classifier_param *p = &c->table[i];
        void *dst = (char *)data + (size_t)p->offset * dtype_size(dtype);
        if (tensor_from_f32(dtype, c->params + p->offset, p->numel, dst) != DIT_OK) {
            free(data);
            return DIT_ERR;
        }
        out[i] = (tensor_out){.name = p->name, .dtype = dtype, .ndim = p->ndim, .data = dst};
        memcpy(out[i].shape, p->shape, sizeof p->shape);
    }
    char config[256];
    snprintf(config, sizeof config,
             "{\"image_size\": %d, \"in_channels\": %d, \"conv1\": %d, \"conv2\": %d, \"features\": %d, "
             "\"num_classes\": %d}",
             c->cfg.image_size, c->cfg.in_channels, c->cfg.conv1, c->cfg.conv2, c->cfg.features, c->cfg.num_classes);
    const char *keys[4] = {"format", "classifier.config"}, *values[4] = {CLASSIFIER_FORMAT, config};
    int n = 2;
    if (class_names_json) keys[n] = "classifier.class_names", values[n++] = class_names_json;
    if (train_json) keys[n] = "classifier.train", values[n++] = train_json;
    dit_status st = safetensors_write(path, out, CLASSIFIER_PARAMS, keys, values, n);
    free(data);
    return st;
}

static int json_int(const cJSON *obj, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble) return 0;
    *out = (int)v->valuedouble;
    return 1;
}

classifier *classifier_load(const char *path) {
    tensor_file f;
    if (safetensors_read(path, &f) != DIT_OK) return NULL;
    classifier *c = NULL;
    const char *format = tensor_file_meta(&f, "format"), *config = tensor_file_meta(&f, "classifier.config");
    if (!format || strcmp(format, CLASSIFIER_FORMAT) || !config) {
        dit_set_error("%s: not a dit classifier (expected __metadata__ format \"%s\" and classifier.config)", path,
                      CLASSIFIER_FORMAT);
        goto done;
    }
    classifier_config cfg;
    cJSON *j = cJSON_Parse(config);
    int ok = j && json_int(j, "image_size", &cfg.image_size) && json_int(j, "in_channels", &cfg.in_channels) &&
             json_int(j, "conv1", &cfg.conv1) && json_int(j, "conv2", &cfg.conv2) &&
             json_int(j, "features", &cfg.features) && json_int(j, "num_classes", &cfg.num_classes);
    cJSON_Delete(j);
    if (!ok) {
        dit_set_error("%s: classifier.config is not the expected JSON object: %.200s", path, config);
        goto done;
    }
    // A config asking for more weights than the file holds is refused before they are allocated.
    const int64_t S4 = cfg.image_size / 4;
    const int64_t needed = (int64_t)cfg.conv1 * cfg.in_channels * 9 + (int64_t)cfg.conv2 * cfg.conv1 * 9 +
                           (int64_t)cfg.features * cfg.conv2 * S4 * S4 + (int64_t)cfg.num_classes * cfg.features;
    int64_t held = 0;
    for (int i = 0; i < f.count; i++) held += tensor_numel(&f.tensors[i]);
    if (check_config(&cfg) == DIT_OK && needed > held) {
        dit_set_error("%s: classifier.config needs %lld weights, the file holds %lld values", path, (long long)needed,
                      (long long)held);
        goto done;
    }
    if (!(c = classifier_create(&cfg))) {
        dit_prefix_error("%s", path);
        goto done;
    }
    for (int i = 0; i < CLASSIFIER_PARAMS; i++) {
        const classifier_param *p = &c->table[i];
        const tensor_view *t = tensor_file_find(&f, p->name);
        int same = t && t->ndim == p->ndim && tensor_is_float(t);
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            if (!t) dit_set_error("%s: tensor %s is missing", path, p->name);
            else dit_set_error("%s: tensor %s has %d dims or a non-float dtype %s, expected %d-d float of %lld "
                               "elements", path, p->name, t->ndim, dtype_name(t->dtype), p->ndim, (long long)p->numel);
            classifier_free(c);
            c = NULL;
            goto done;
        }
        tensor_to_f32(t, c->params + p->offset);
    }
    for (int64_t k = 0; k < c->total_floats; k++)
        if (!isfinite(c->params[k])) {
            dit_set_error("%s: weight %lld is not finite", path, (long long)k);
            classifier_free(c);
            c = NULL;
            goto done;
        }
    const char *names = tensor_file_meta(&f, "classifier.class_names");
    if (names && !(c->class_names = dit_strdup(names))) {
        classifier_free(c);
        c = NULL;
        goto done;
    }
    const char *train = tensor_file_meta(&f, "classifier.train");
    if (train) {
        cJSON *tj = cJSON_Parse(train);
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(tj, "test_accuracy");
        if (cJSON_IsNumber(acc)) c->test_accuracy = acc->valuedouble;
        cJSON_Delete(tj);
    }
done:
    tensor_file_free(&f);
    return c;
}

// ---- forward and backward --------------------------------------------------------------------------------

classifier_acts *classifier_acts_create(const classifier_config *cfg, int capacity, int with_grads) {
    classifier_acts *a = dit_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->capacity = capacity;
    const int64_t S = cfg->image_size, B = capacity;
    const int64_t n_a1 = B * cfg->conv1 * S * S, n_p1 = n_a1 / 4, n_a2 = B * cfg->conv2 * (S / 2) * (S / 2),
                  n_p2 = n_a2 / 4, n_f = B * cfg->features;
    a->a1 = dit_malloc((size_t)n_a1 * sizeof(float));
    a->p1 = dit_malloc((size_t)n_p1 * sizeof(float));
    a->a2 = dit_malloc((size_t)n_a2 * sizeof(float));
    a->p2 = dit_malloc((size_t)n_p2 * sizeof(float));
    a->features = dit_malloc((size_t)n_f * sizeof(float));
    a->logits = dit_malloc((size_t)B * cfg->num_classes * sizeof(float));
    int complete = a->a1 && a->p1 && a->a2 && a->p2 && a->features && a->logits;
    if (with_grads) {
        a->d_a1 = dit_malloc((size_t)n_a1 * sizeof(float));
        a->d_p1 = dit_malloc((size_t)n_p1 * sizeof(float));
        a->d_a2 = dit_malloc((size_t)n_a2 * sizeof(float));
        a->d_p2 = dit_malloc((size_t)n_p2 * sizeof(float));
        a->d_features = dit_malloc((size_t)n_f * sizeof(float));
        complete = complete && a->d_a1 && a->d_p1 && a->d_a2 && a->d_p2 && a->d_features;
    }
    if (!complete) {
        classifier_acts_free(a);
        return NULL;
    }
    return a;
}

void classifier_acts_free(classifier_acts *a) {
    if (!a) return;
    free(a->a1), free(a->p1), free(a->a2), free(a->p2), free(a->features), free(a->logits);
    free(a->d_a1), free(a->d_p1), free(a->d_a2), free(a->d_p2), free(a->d_features);
    free(a);
}

#define P(i) (c->params + c->table[i].offset)
#define G(i) (grads + c->table[i].offset)

dit_status classifier_forward(const classifier *c, classifier_acts *a, const float *x, int B) {
    DIT_CHECK(B >= 0 && B <= a->capacity);
    const classifier_config *k = &c->cfg;
    const int S = k->image_size, S2 = S / 2, S4 = S / 4, flat = k->conv2 * S4 * S4;
    // The convolutional stack one sample per thread: the images are small, so one parallel region over the
    // batch beats a region (and a barrier) per sample inside conv2d_forward; inner regions run on one thread.
    const int64_t n_x = (int64_t)k->in_channels * S * S, n_a1 = (int64_t)k->conv1 * S * S,
                  n_a2 = (int64_t)k->conv2 * S2 * S2;
    int failed = 0;   // a sample's convolution scratch could not be allocated (the message is that thread's)
    #pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        float *a1 = a->a1 + b * n_a1, *p1 = a->p1 + b * n_a1 / 4, *a2 = a->a2 + b * n_a2, *p2 = a->p2 + b * n_a2 / 4;
        if (conv2d_forward(a1, x + b * n_x, P(0), P(1), 1, k->in_channels, S, S, k->conv1, 3, 3, 1, 1, 1, 1, 1) !=
            DIT_OK) {
            #pragma omp atomic write
            failed = 1;
            continue;
        }
        relu_forward(a1, a1, n_a1);
        maxpool2x2_forward(p1, a1, k->conv1, S, S);
        if (conv2d_forward(a2, p1, P(2), P(3), 1, k->conv1, S2, S2, k->conv2, 3, 3, 1, 1, 1, 1, 1) != DIT_OK) {
            #pragma omp atomic write
            failed = 1;
            continue;
        }
        relu_forward(a2, a2, n_a2);
        maxpool2x2_forward(p2, a2, k->conv2, S2, S2);
    }
    if (failed) return dit_set_error("classifier: out of memory allocating convolution scratch");
    linear_forward(a->features, a->p2, P(4), P(5), B, flat, k->features);
    relu_forward(a->features, a->features, (int64_t)B * k->features);
    linear_forward(a->logits, a->features, P(6), P(7), B, k->features, k->num_classes);
    return DIT_OK;
}

dit_status classifier_backward(const classifier *c, classifier_acts *a, const float *x, const float *dlogits, float *grads,
                         int B) {
    DIT_CHECK(a->d_a1 && B >= 0 && B <= a->capacity);
    const classifier_config *k = &c->cfg;
    const int S = k->image_size, S2 = S / 2, S4 = S / 4, flat = k->conv2 * S4 * S4;
    linear_backward(a->d_features, G(6), G(7), dlogits, a->features, P(6), B, k->features, k->num_classes);
    relu_backward(a->d_features, a->d_features, a->features, (int64_t)B * k->features);
    linear_backward(a->d_p2, G(4), G(5), a->d_features, a->p2, P(4), B, flat, k->features);
    maxpool2x2_backward(a->d_a2, a->d_p2, a->a2, B * k->conv2, S2, S2);
    relu_backward(a->d_a2, a->d_a2, a->a2, (int64_t)B * k->conv2 * S2 * S2);
    DIT_TRY(conv2d_backward(a->d_p1, G(2), G(3), a->d_a2, a->p1, P(2), B, k->conv1, S2, S2, k->conv2, 3, 3, 1, 1, 1,
                            1, 1));
    maxpool2x2_backward(a->d_a1, a->d_p1, a->a1, B * k->conv1, S, S);
    relu_backward(a->d_a1, a->d_a1, a->a1, (int64_t)B * k->conv1 * S * S);
    return conv2d_backward(NULL, G(0), G(1), a->d_a1, x, P(0), B, k->in_channels, S, S, k->conv1, 3, 3, 1, 1, 1, 1,
                           1);
}

#undef P
#undef G

// ---- images -----------------------------------------------------------------------------------------------

void classifier_images_to_input(float *x, const uint8_t *images, int count, int S, int C) {
    const int64_t per = (int64_t)S * S;
    for (int64_t n = 0; n < count; n++)
        for (int ch = 0; ch < C; ch++)
            for (int64_t p = 0; p < per; p++)
                x[(n * C + ch) * per + p] = (float)images[(n * per + p) * C + ch] / 127.5f - 1.0f;
}

dit_status classifier_run(const classifier *c, const uint8_t *images, int count, int *pred, float *features,
                          float *logits) {
    const int S = c->cfg.image_size, C = c->cfg.in_channels, F = c->cfg.features, K = c->cfg.num_classes;
    const int cap = count < CLASSIFIER_BATCH ? (count > 0 ? count : 1) : CLASSIFIER_BATCH;
    classifier_acts *a = classifier_acts_create(&c->cfg, cap, 0);
    float *x = a ? dit_malloc((size_t)cap * C * S * S * sizeof(float)) : NULL;
    dit_status status = x ? DIT_OK : DIT_ERR;
    for (int start = 0; status == DIT_OK && start < count; start += cap) {
        const int B = count - start < cap ? count - start : cap;
        classifier_images_to_input(x, images + (int64_t)start * S * S * C, B, S, C);
        if ((status = classifier_forward(c, a, x, B)) != DIT_OK) break;
        for (int b = 0; b < B; b++) {
            const float *row = a->logits + (int64_t)b * K;
            if (pred) {
                int best = 0;
                for (int j = 1; j < K; j++)
                    if (row[j] > row[best]) best = j;
                pred[start + b] = best;
            }
            if (logits) memcpy(logits + (int64_t)(start + b) * K, row, (size_t)K * sizeof(float));
        }
        if (features) memcpy(features + (int64_t)start * F, a->features, (size_t)B * F * sizeof(float));
    }
    free(x);
    classifier_acts_free(a);
    return status;
}

void classifier_place_image(uint8_t *dst, int S, const uint8_t *src, int rows, int cols, int dy, int dx, int flip) {
    memset(dst, 0, (size_t)S * S);
    const int top = (S - rows) / 2 + dy, left = (S - cols) / 2 + dx;
    for (int r = 0; r < rows; r++) {
        const int y = top + r;
        if (y < 0 || y >= S) continue;
        for (int q = 0; q < cols; q++) {
            const int x = left + q;
            if (x >= 0 && x < S) dst[y * S + x] = src[r * cols + (flip ? cols - 1 - q : q)];
        }
    }
}
