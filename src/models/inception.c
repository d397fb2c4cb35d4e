// The FID Inception-v3 of pytorch-fid (pytorch_fid/inception.py: fid_inception_v3 = torchvision's Inception3,
// 1008 classes, no aux head, with FIDInceptionA/C/E_1 averaging 3x3 pools without the zero padding and
// FIDInceptionE_2 max-pooling its pool branch). BatchNorm (eps 0.001) is folded into each conv at load.
// Outputs pool_3 (2048), ADM's mixed_6/conv[..., :7] (= Mixed_6d.branch1x1 after its ReLU) and the softmax
// layer's logits without bias. Reference: tests/ref/inception_ref.py; docs/eval.md.
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/error.h"
#include "io/tensors.h"
#include "models/inception.h"
#include "ops/conv.h"
#include "models/synthetic.h"

struct dit_inception {
    inception_conv conv[INCEPTION_NUM_CONVS];
    float *params;          // folded conv weights and biases
    size_t num_params;
    float *fc_weight;       // (1008, 2048)
    dit_inception_resize resize;
};

// ---- the layer table --------------------------------------------------------------------------------

typedef struct {
    inception_conv *conv;
    int count;
    size_t offset;
} table_builder;

static void add_conv(table_builder *b, const char *block, const char *unit, int cin, int cout, int kh, int kw,
                     int stride, int pad_h, int pad_w) {
    DIT_CHECK(b->count < INCEPTION_NUM_CONVS);
    inception_conv *c = &b->conv[b->count++];
    if (unit) snprintf(c->name, sizeof c->name, "%s.%s", block, unit);
    else snprintf(c->name, sizeof c->name, "%s", block);
    c->cin = cin, c->cout = cout, c->kh = kh, c->kw = kw, c->stride = stride, c->pad_h = pad_h, c->pad_w = pad_w;
    c->weight_offset = b->offset;
    b->offset += (size_t)cout * cin * kh * kw;
    c->bias_offset = b->offset;
    b->offset += (size_t)cout;
}

// torchvision's InceptionA..E in module registration order (= state_dict order = forward order).
static void add_block_a(table_builder *b, const char *name, int cin, int pool_features) {
    add_conv(b, name, "branch1x1", cin, 64, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch5x5_1", cin, 48, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch5x5_2", 48, 64, 5, 5, 1, 2, 2);
    add_conv(b, name, "branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    add_conv(b, name, "branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1);
    add_conv(b, name, "branch_pool", cin, pool_features, 1, 1, 1, 0, 0);
}

static void add_block_b(table_builder *b, const char *name, int cin) {
    add_conv(b, name, "branch3x3", cin, 384, 3, 3, 2, 0, 0);
    add_conv(b, name, "branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    add_conv(b, name, "branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0);
}

static void add_block_c(table_builder *b, const char *name, int c7) {
    add_conv(b, name, "branch1x1", 768, 192, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch7x7_1", 768, c7, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch7x7_2", c7, c7, 1, 7, 1, 0, 3);
    add_conv(b, name, "branch7x7_3", c7, 192, 7, 1, 1, 3, 0);
    add_conv(b, name, "branch7x7dbl_1", 768, c7, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0);
    add_conv(b, name, "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3);
    add_conv(b, name, "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0);
    add_conv(b, name, "branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3);
    add_conv(b, name, "branch_pool", 768, 192, 1, 1, 1, 0, 0);
}

static void add_block_d(table_builder *b, const char *name) {
    add_conv(b, name, "branch3x3_1", 768, 192, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch3x3_2", 192, 320, 3, 3, 2, 0, 0);
    add_conv(b, name, "branch7x7x3_1", 768, 192, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
    add_conv(b, name, "branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
    add_conv(b, name, "branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0);
}

static void add_block_e(table_builder *b, const char *name, int cin) {
    add_conv(b, name, "branch1x1", cin, 320, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch3x3_1", cin, 384, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch3x3_2a", 384, 384, 1, 3, 1, 0, 1);
    add_conv(b, name, "branch3x3_2b", 384, 384, 3, 1, 1, 1, 0);
    add_conv(b, name, "branch3x3dbl_1", cin, 448, 1, 1, 1, 0, 0);
    add_conv(b, name, "branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1);
    add_conv(b, name, "branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1);
    add_conv(b, name, "branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0);
    add_conv(b, name, "branch_pool", cin, 192, 1, 1, 1, 0, 0);
}

static size_t build_convs(inception_conv *conv) {
    table_builder b = {conv, 0, 0};
    add_conv(&b, "Conv2d_1a_3x3", NULL, 3, 32, 3, 3, 2, 0, 0);
    add_conv(&b, "Conv2d_2a_3x3", NULL, 32, 32, 3, 3, 1, 0, 0);
    add_conv(&b, "Conv2d_2b_3x3", NULL, 32, 64, 3, 3, 1, 1, 1);
    add_conv(&b, "Conv2d_3b_1x1", NULL, 64, 80, 1, 1, 1, 0, 0);
    add_conv(&b, "Conv2d_4a_3x3", NULL, 80, 192, 3, 3, 1, 0, 0);
    add_block_a(&b, "Mixed_5b", 192, 32);
    add_block_a(&b, "Mixed_5c", 256, 64);
    add_block_a(&b, "Mixed_5d", 288, 64);
    add_block_b(&b, "Mixed_6a", 288);
    add_block_c(&b, "Mixed_6b", 128);
    add_block_c(&b, "Mixed_6c", 160);
    add_block_c(&b, "Mixed_6d", 160);
    add_block_c(&b, "Mixed_6e", 192);
    add_block_d(&b, "Mixed_7a");
    add_block_e(&b, "Mixed_7b", 1280);
    add_block_e(&b, "Mixed_7c", 2048);
    DIT_CHECK(b.count == INCEPTION_NUM_CONVS);
    return b.offset;
}

void inception_tensor_table(inception_tensor *table) {
    inception_conv conv[INCEPTION_NUM_CONVS];
    build_convs(conv);
    static const char *const bn_parts[] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    int k = 0;
    for (int c = 0; c < INCEPTION_NUM_CONVS; c++) {
        inception_tensor *t = &table[k++];
        snprintf(t->name, sizeof t->name, "%.39s.conv.weight", conv[c].name);
        t->ndim = 4;
        t->shape[0] = conv[c].cout, t->shape[1] = conv[c].cin, t->shape[2] = conv[c].kh, t->shape[3] = conv[c].kw;
        t->numel = (size_t)conv[c].cout * conv[c].cin * conv[c].kh * conv[c].kw;
        for (int p = 0; p < 4; p++) {
            t = &table[k++];
            snprintf(t->name, sizeof t->name, "%.39s.%.15s", conv[c].name, bn_parts[p]);
            t->ndim = 1;
            t->shape[0] = conv[c].cout;
            t->numel = (size_t)conv[c].cout;
        }
    }
    inception_tensor *fc = &table[k++];
    snprintf(fc->name, sizeof fc->name, "fc.weight");
    fc->ndim = 2, fc->shape[0] = DIT_INCEPTION_CLASSES, fc->shape[1] = DIT_INCEPTION_POOL_DIM;
    fc->numel = (size_t)DIT_INCEPTION_CLASSES * DIT_INCEPTION_POOL_DIM;
    fc = &table[k++];
    snprintf(fc->name, sizeof fc->name, "fc.bias");
    fc->ndim = 1, fc->shape[0] = DIT_INCEPTION_CLASSES;
    fc->numel = DIT_INCEPTION_CLASSES;
    DIT_CHECK(k == INCEPTION_NUM_TENSORS);
}

// ---- synthetic parameters (docs/eval.md) ---------------------------------------------------------------

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

float inception_synthetic_value(const inception_tensor *t, uint32_t k, uint32_t i, uint32_t seed) {
    const float u = synthetic_uniform(i, k, seed);
    if (t->ndim >= 2) {   // He-uniform: variance 2 / fan_in keeps activations O(1) through 94 ReLU layers
        const float fan_in = (float)(t->numel / (size_t)t->shape[0]);
        return sqrtf(6.0f / fan_in) * u;
    }
    if (ends_with(t->name, "bn.weight")) return 1.0f + 0.25f * u;
    if (ends_with(t->name, "bn.running_var")) return 1.0f + 0.5f * u;
    return 0.1f * u;   // bn.bias, bn.running_mean, fc.bias
}

// ---- creation and loading ------------------------------------------------------------------------------

static dit_inception *inception_create(void) {
    dit_inception *m = dit_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->num_params = build_convs(m->conv);
    m->params = dit_malloc(m->num_params * sizeof *m->params);
    m->fc_weight = dit_malloc((size_t)DIT_INCEPTION_CLASSES * DIT_INCEPTION_POOL_DIM * sizeof *m->fc_weight);
    m->resize = DIT_RESIZE_PYTORCH_FID;
    if (!m->params || !m->fc_weight) {
        dit_inception_free(m);
        return NULL;
    }
    return m;
}

void dit_inception_free(dit_inception *m) {
    if (!m) return;
    free(m->params);
    free(m->fc_weight);
    free(m);
}

void dit_inception_set_resize(dit_inception *m, dit_inception_resize mode) { m->resize = mode; }

const float *inception_params(const dit_inception *m, size_t *count) {
    *count = m->num_params;
    return m->params;
}

// w' = w * s, b' = beta - mean * s with s = gamma / sqrt(var + eps), in float64.
static void fold_conv(dit_inception *m, int c, const float *weight, const float *gamma, const float *beta,
                      const float *mean, const float *var) {
    const inception_conv *conv = &m->conv[c];
    const size_t per_out = (size_t)conv->cin * conv->kh * conv->kw;
    float *w = m->params + conv->weight_offset, *b = m->params + conv->bias_offset;
    for (int o = 0; o < conv->cout; o++) {
        const double s = (double)gamma[o] / sqrt((double)var[o] + INCEPTION_BN_EPS);
        for (size_t j = 0; j < per_out; j++) w[o * per_out + j] = (float)(weight[o * per_out + j] * s);
        b[o] = (float)((double)beta[o] - (double)mean[o] * s);
    }
}

// tensors[k] holds table[k]'s values (float32).
static void fold_all(dit_inception *m, float *const *tensors) {
    for (int c = 0; c < INCEPTION_NUM_CONVS; c++) {
        float *const *t = tensors + 5 * c;
        fold_conv(m, c, t[0], t[1], t[2], t[3], t[4]);
    }
    memcpy(m->fc_weight, tensors[5 * INCEPTION_NUM_CONVS],
           (size_t)DIT_INCEPTION_CLASSES * DIT_INCEPTION_POOL_DIM * sizeof(float));
}

dit_inception *dit_inception_synthetic(uint32_t seed) {
    inception_tensor *table = dit_malloc(INCEPTION_NUM_TENSORS * sizeof *table);
    float **tensors = dit_calloc(INCEPTION_NUM_TENSORS, sizeof *tensors);
    dit_inception *m = NULL;
    int complete = table && tensors;
    if (complete) inception_tensor_table(table);
    for (int k = 0; complete && k < INCEPTION_NUM_TENSORS; k++) {
        tensors[k] = dit_malloc(table[k].numel * sizeof(float));
        if (!(complete = tensors[k] != NULL)) break;
        for (size_t i = 0; i < table[k].numel; i++)
            tensors[k][i] = inception_synthetic_value(&table[k], (uint32_t)k, (uint32_t)i, seed);
    }
    if (complete && (m = inception_create())) fold_all(m, tensors);
    for (int k = 0; tensors && k < INCEPTION_NUM_TENSORS; k++) free(tensors[k]);
    free(tensors);
    free(table);
    return m;
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

// Torch files start with a ZIP header (or, in the legacy format, a pickle protocol byte 0x80, which
// torch_pt_read names in its error); anything else is read as safetensors.
static dit_status read_weight_file(const char *path, tensor_file *file) {
    FILE *f = fopen(path, "rb");
    if (!f) return dit_set_error("%s: cannot open the Inception weight file", path);
    unsigned char magic[4] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    const int torch = (got == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4) ||
                      (got >= 1 && magic[0] == 0x80);
    return torch ? torch_pt_read(path, file) : safetensors_read(path, file);
}

dit_inception *dit_inception_load(const char *path) {
    tensor_file file;
    if (read_weight_file(path, &file) != DIT_OK) return NULL;
    inception_tensor *table = dit_malloc(INCEPTION_NUM_TENSORS * sizeof *table);
    float **tensors = table ? dit_calloc(INCEPTION_NUM_TENSORS, sizeof *tensors) : NULL;
    if (!tensors) {
        free(table);
        tensor_file_free(&file);
        return NULL;
    }
    inception_tensor_table(table);
    dit_status status = DIT_OK;
    for (int k = 0; k < INCEPTION_NUM_TENSORS && status == DIT_OK; k++) {
        const inception_tensor *e = &table[k];
        const tensor_view *t = tensor_file_find(&file, e->name);
        if (!t) {
            status = dit_set_error("%s: missing tensor %s (expected pytorch-fid's FID Inception weights)", path,
                                   e->name);
            break;
        }
        if (!tensor_is_float(t)) {
            status = dit_set_error("%s: tensor %s has dtype %s, expected a floating type", path, e->name,
                                   dtype_name(t->dtype));
            break;
        }
        int same = t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
        if (!same) {
            char got[96], want[96];
            format_shape(got, sizeof got, t->ndim, t->shape);
            format_shape(want, sizeof want, e->ndim, e->shape);
            status = dit_set_error("%s: tensor %s has shape %s, expected %s", path, e->name, got, want);
            break;
        }
        if (!(tensors[k] = dit_malloc(e->numel * sizeof(float)))) {
            status = DIT_ERR;
            break;
        }
        tensor_to_f32(t, tensors[k]);
        if (ends_with(e->name, "bn.running_var"))
            for (size_t i = 0; i < e->numel; i++)
                if (!(tensors[k][i] >= 0.0f) || !isfinite(tensors[k][i])) {
                    status = dit_set_error("%s: tensor %s has a negative or non-finite variance at %zu", path,
                                           e->name, i);
                    break;
                }
    }
    dit_inception *m = NULL;
    if (status == DIT_OK && (m = inception_create())) fold_all(m, tensors);
    for (int k = 0; k < INCEPTION_NUM_TENSORS; k++) free(tensors[k]);
    free(tensors);
    free(table);
    tensor_file_free(&file);
    return m;
}

// ---- preprocessing -------------------------------------------------------------------------------------

// PyTorch (upsample_bilinear2d, CPU): scale = in / out in float, src = max(scale * (dst + 0.5) - 0.5, 0),
// i0 = floor(src), i1 = min(i0 + 1, in - 1), l1 = src - i0. TF1 legacy: src = dst * scale, same neighbours.
static void linear_taps(int *i0, int *i1, float *l0, float *l1, int in, int out, dit_inception_resize mode) {
    const float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        float src = mode == DIT_RESIZE_PYTORCH_FID ? scale * ((float)o + 0.5f) - 0.5f : (float)o * scale;
        if (src < 0.0f) src = 0.0f;
        int lo = (int)src;
        if (lo > in - 1) lo = in - 1;
        float lambda = src - (float)lo;
        if (lambda > 1.0f) lambda = 1.0f;
        i0[o] = lo;
        i1[o] = lo < in - 1 ? lo + 1 : lo;
        l1[o] = lambda;
        l0[o] = 1.0f - lambda;
    }
}

dit_status inception_resize_bilinear(float *dst, const float *src, int C, int H, int W, int OH, int OW,
                                     dit_inception_resize mode) {
    int *y0 = dit_malloc((size_t)(OH + OW) * 2 * sizeof *y0);
    float *wy0 = y0 ? dit_malloc((size_t)(OH + OW) * 2 * sizeof *wy0) : NULL;
    if (!wy0) {
        free(y0);
        return DIT_ERR;
    }
    int *y1 = y0 + OH, *x0 = y1 + OH, *x1 = x0 + OW;
    float *wy1 = wy0 + OH, *wx0 = wy1 + OH, *wx1 = wx0 + OW;
    linear_taps(y0, y1, wy0, wy1, H, OH, mode);
    linear_taps(x0, x1, wx0, wx1, W, OW, mode);
    for (int c = 0; c < C; c++) {
        const float *plane = src + (size_t)c * H * W;
        float *out = dst + (size_t)c * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            const float *r0 = plane + (size_t)y0[oy] * W, *r1 = plane + (size_t)y1[oy] * W;
            for (int ox = 0; ox < OW; ox++) {
                const float a = r0[x0[ox]], b = r0[x1[ox]], c0 = r1[x0[ox]], d = r1[x1[ox]];
                if (mode == DIT_RESIZE_PYTORCH_FID) {
                    // PyTorch's order: h weights outside, w weights inside
                    out[(size_t)oy * OW + ox] = wy0[oy] * (wx0[ox] * a + wx1[ox] * b) + wy1[oy] * (wx0[ox] * c0 + wx1[ox] * d);
                } else {
                    // TF's ResizeBilinear: top + (bottom - top) * y_lerp
                    const float top = a + (b - a) * wx1[ox], bottom = c0 + (d - c0) * wx1[ox];
                    out[(size_t)oy * OW + ox] = top + (bottom - top) * wy1[oy];
                }
            }
        }
    }
    free(y0);
    free(wy0);
    return DIT_OK;
}

dit_status dit_inception_preprocess(float *x, const uint8_t *rgb, int height, int width, dit_inception_resize mode) {
    const int S = DIT_INCEPTION_SIZE;
    const size_t plane = (size_t)height * width;
    float *chw = dit_malloc(3 * plane * sizeof *chw);
    if (!chw) return DIT_ERR;
    for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < 3; c++)
            chw[c * plane + p] = mode == DIT_RESIZE_PYTORCH_FID ? (float)rgb[p * 3 + c] / 255.0f : (float)rgb[p * 3 + c];
    const dit_status status = inception_resize_bilinear(x, chw, 3, height, width, S, S, mode);
    free(chw);
    if (status != DIT_OK) return DIT_ERR;
    const size_t n = (size_t)3 * S * S;
    if (mode == DIT_RESIZE_PYTORCH_FID)
        for (size_t i = 0; i < n; i++) x[i] = 2.0f * x[i] - 1.0f;
    else
        for (size_t i = 0; i < n; i++) x[i] = (x[i] - 128.0f) * 0.0078125f;
    return DIT_OK;
}

// ---- the network ---------------------------------------------------------------------------------------

// Per-thread activations: two ping-pong buffers for the trunk, two for branch intermediates.
#define TRUNK_FLOATS ((size_t)64 * 147 * 147)   // the largest map: Conv2d_2b_3x3's output
#define BRANCH_FLOATS ((size_t)288 * 35 * 35)   // the largest pooled block input (Mixed_5d)

typedef struct {
    float *s1, *s2;
} scratch;

// conv + folded BatchNorm + ReLU. in: (cin, H, W) -> out: (cout, OH, OW).
static dit_status conv_relu(const dit_inception *m, int c, float *out, const float *in, int H, int W, int *OH,
                            int *OW) {
    const inception_conv *u = &m->conv[c];
    DIT_TRY(conv2d_forward(out, in, m->params + u->weight_offset, m->params + u->bias_offset, 1, u->cin, H, W, u->cout,
                           u->kh, u->kw, u->stride, u->pad_h, u->pad_w, u->pad_h, u->pad_w));
    const int oh = conv2d_out_size(H, u->kh, u->stride, u->pad_h, u->pad_h);
    const int ow = conv2d_out_size(W, u->kw, u->stride, u->pad_w, u->pad_w);
    const size_t n = (size_t)u->cout * oh * ow;
    for (size_t i = 0; i < n; i++) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
    if (OH) *OH = oh;
    if (OW) *OW = ow;
    return DIT_OK;
}

// 3x3 stride-2 max pool without padding. x: (C, H, W) -> (C, (H-3)/2+1, (W-3)/2+1)
static void max_pool_3x3_s2(float *out, const float *x, int C, int H, int W, int *OH, int *OW) {
    const int oh = (H - 3) / 2 + 1, ow = (W - 3) / 2 + 1;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < oh; y++)
            for (int xo = 0; xo < ow; xo++) {
                const float *p = x + ((size_t)c * H + 2 * y) * W + 2 * xo;
                float v = p[0];
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++) v = p[dy * W + dx] > v ? p[dy * W + dx] : v;
                out[((size_t)c * oh + y) * ow + xo] = v;
            }
    *OH = oh, *OW = ow;
}

// 3x3 stride-1 pool with padding 1 where the padding takes no part: the average over the valid taps
// (F.avg_pool2d count_include_pad=False, TF's SAME avg pool) or their maximum (FIDInceptionE_2).
static void pool_3x3_same(float *out, const float *x, int C, int H, int W, int use_max) {
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int xo = 0; xo < W; xo++) {
                const int y0 = y > 0 ? y - 1 : 0, y1 = y < H - 1 ? y + 1 : H - 1;
                const int x0 = xo > 0 ? xo - 1 : 0, x1 = xo < W - 1 ? xo + 1 : W - 1;
                const float *plane = x + (size_t)c * H * W;
                float acc = use_max ? plane[(size_t)y0 * W + x0] : 0.0f;
                for (int yy = y0; yy <= y1; yy++)
                    for (int xx = x0; xx <= x1; xx++) {
                        const float v = plane[(size_t)yy * W + xx];
                        if (use_max) acc = v > acc ? v : acc;
                        else acc += v;
                    }
                out[((size_t)c * H + y) * W + xo] = use_max ? acc : acc / (float)((y1 - y0 + 1) * (x1 - x0 + 1));
            }
}

// The blocks write each branch straight into its channel slice of y. c: the block's first conv.
static dit_status block_a(const dit_inception *m, int c, float *y, const float *x, int cin, int H, const scratch *s) {
    const size_t T = (size_t)H * H;
    DIT_TRY(conv_relu(m, c + 0, y, x, H, H, NULL, NULL));                     // 64
    DIT_TRY(conv_relu(m, c + 1, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 2, y + 64 * T, s->s1, H, H, NULL, NULL));        // 64
    DIT_TRY(conv_relu(m, c + 3, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 4, s->s2, s->s1, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 5, y + 128 * T, s->s2, H, H, NULL, NULL));       // 96
    pool_3x3_same(s->s1, x, cin, H, H, 0);
    DIT_TRY(conv_relu(m, c + 6, y + 224 * T, s->s1, H, H, NULL, NULL));       // pool_features
    return DIT_OK;
}

static dit_status block_b(const dit_inception *m, int c, float *y, const float *x, int cin, int H, const scratch *s,
                          int *OH) {
    int oh, ow;
    DIT_TRY(conv_relu(m, c + 0, y, x, H, H, &oh, &ow));                       // 384, stride 2
    const size_t T = (size_t)oh * ow;
    DIT_TRY(conv_relu(m, c + 1, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 2, s->s2, s->s1, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 3, y + 384 * T, s->s2, H, H, NULL, NULL));       // 96, stride 2
    max_pool_3x3_s2(y + 480 * T, x, cin, H, H, &oh, &ow);                    // cin
    *OH = oh;
    return DIT_OK;
}

static dit_status block_c(const dit_inception *m, int c, float *y, const float *x, int H, const scratch *s) {
    const size_t T = (size_t)H * H;
    DIT_TRY(conv_relu(m, c + 0, y, x, H, H, NULL, NULL));                     // 192
    DIT_TRY(conv_relu(m, c + 1, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 2, s->s2, s->s1, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 3, y + 192 * T, s->s2, H, H, NULL, NULL));       // 192
    DIT_TRY(conv_relu(m, c + 4, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 5, s->s2, s->s1, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 6, s->s1, s->s2, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 7, s->s2, s->s1, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 8, y + 384 * T, s->s2, H, H, NULL, NULL));       // 192
    pool_3x3_same(s->s1, x, 768, H, H, 0);
    DIT_TRY(conv_relu(m, c + 9, y + 576 * T, s->s1, H, H, NULL, NULL));       // 192
    return DIT_OK;
}

static dit_status block_d(const dit_inception *m, int c, float *y, const float *x, int H, const scratch *s, int *OH) {
    int oh, ow;
    DIT_TRY(conv_relu(m, c + 0, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 1, y, s->s1, H, H, &oh, &ow));                   // 320, stride 2
    const size_t T = (size_t)oh * ow;
    DIT_TRY(conv_relu(m, c + 2, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 3, s->s2, s->s1, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 4, s->s1, s->s2, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 5, y + 320 * T, s->s1, H, H, NULL, NULL));       // 192, stride 2
    max_pool_3x3_s2(y + 512 * T, x, 768, H, H, &oh, &ow);                    // 768
    *OH = oh;
    return DIT_OK;
}

static dit_status block_e(const dit_inception *m, int c, float *y, const float *x, int cin, int H, const scratch *s,
                          int max_pool) {
    const size_t T = (size_t)H * H;
    DIT_TRY(conv_relu(m, c + 0, y, x, H, H, NULL, NULL));                     // 320
    DIT_TRY(conv_relu(m, c + 1, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 2, y + 320 * T, s->s1, H, H, NULL, NULL));       // 384 (1x3)
    DIT_TRY(conv_relu(m, c + 3, y + 704 * T, s->s1, H, H, NULL, NULL));       // 384 (3x1)
    DIT_TRY(conv_relu(m, c + 4, s->s1, x, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 5, s->s2, s->s1, H, H, NULL, NULL));
    DIT_TRY(conv_relu(m, c + 6, y + 1088 * T, s->s2, H, H, NULL, NULL));      // 384 (1x3)
    DIT_TRY(conv_relu(m, c + 7, y + 1472 * T, s->s2, H, H, NULL, NULL));      // 384 (3x1)
    pool_3x3_same(s->s1, x, cin, H, H, max_pool);
    DIT_TRY(conv_relu(m, c + 8, y + 1856 * T, s->s1, H, H, NULL, NULL));      // 192
    return DIT_OK;
}

// The first conv of each block in the table (see build_convs).
enum { C_5B = 5, C_5C = 12, C_5D = 19, C_6A = 26, C_6B = 30, C_6C = 40, C_6D = 50, C_6E = 60, C_7A = 70,
       C_7B = 76, C_7C = 85 };

// One image. x: (3, 299, 299). a, b: TRUNK_FLOATS each.
static dit_status forward_one(const dit_inception *m, const float *x, float *a, float *b, const scratch *s,
                              float *pool, float *spatial, float *logits) {
    int H, W;
    DIT_TRY(conv_relu(m, 0, a, x, DIT_INCEPTION_SIZE, DIT_INCEPTION_SIZE, &H, &W)); // 32 x 149
    DIT_TRY(conv_relu(m, 1, b, a, H, W, &H, &W));                             // 32 x 147
    DIT_TRY(conv_relu(m, 2, a, b, H, W, &H, &W));                             // 64 x 147
    max_pool_3x3_s2(b, a, 64, H, W, &H, &W);                                  // 64 x 73
    DIT_TRY(conv_relu(m, 3, a, b, H, W, &H, &W));                             // 80 x 73
    DIT_TRY(conv_relu(m, 4, b, a, H, W, &H, &W));                             // 192 x 71
    max_pool_3x3_s2(a, b, 192, H, W, &H, &W);                                 // 192 x 35
    DIT_TRY(block_a(m, C_5B, b, a, 192, H, s));                               // 256
    DIT_TRY(block_a(m, C_5C, a, b, 256, H, s));                               // 288
    DIT_TRY(block_a(m, C_5D, b, a, 288, H, s));                               // 288
    DIT_TRY(block_b(m, C_6A, a, b, 288, H, s, &H));                           // 768 x 17
    DIT_TRY(block_c(m, C_6B, b, a, H, s));
    DIT_TRY(block_c(m, C_6C, a, b, H, s));
    DIT_TRY(block_c(m, C_6D, b, a, H, s));
    if (spatial) {   // TF's mixed_6/conv (Mixed_6d.branch1x1, channels 0..191 of b), first 7 channels, NHWC order
        const size_t T = (size_t)H * H;
        for (size_t p = 0; p < T; p++)
            for (int c = 0; c < 7; c++) spatial[p * 7 + c] = b[c * T + p];
    }
    DIT_TRY(block_c(m, C_6E, a, b, H, s));
    DIT_TRY(block_d(m, C_7A, b, a, H, s, &H));                                // 1280 x 8
    DIT_TRY(block_e(m, C_7B, a, b, 1280, H, s, 0));                           // 2048
    DIT_TRY(block_e(m, C_7C, b, a, 2048, H, s, 1));
    const size_t T = (size_t)H * H;
    for (int c = 0; c < DIT_INCEPTION_POOL_DIM; c++) {
        float acc = 0.0f;
        for (size_t p = 0; p < T; p++) acc += b[c * T + p];
        pool[c] = acc / (float)T;
    }
    if (logits)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, DIT_INCEPTION_CLASSES, DIT_INCEPTION_POOL_DIM, 1.0f, m->fc_weight,
                    DIT_INCEPTION_POOL_DIM, pool, 1, 0.0f, logits, 1);
    return DIT_OK;
}

// Images go one per thread, so every image takes the same single-threaded path (OpenBLAS runs serially
// inside a parallel region): features do not depend on the thread count or the batch.
static dit_status forward_batch(dit_inception *m, const float *prepared, const uint8_t *images, int batch,
                                int height, int width, float *pool, float *spatial, float *logits) {
    if (batch < 0) return dit_set_error("inception: negative batch size %d", batch);
    if (images && (height < 1 || width < 1))
        return dit_set_error("inception: image size %dx%d, expected at least 1x1", width, height);
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    // At least two in the team when threads allow, so that even a lone image runs inside an active parallel
    // region (serial OpenBLAS) and gives the bits it gives in a batch.
    int workers = threads < batch ? threads : batch;
    if (workers < 2) workers = threads >= 2 ? 2 : 1;
    const size_t input = (size_t)3 * DIT_INCEPTION_SIZE * DIT_INCEPTION_SIZE;
    const size_t per_worker = 2 * TRUNK_FLOATS + 2 * BRANCH_FLOATS + input + DIT_INCEPTION_POOL_DIM;
    float *work = dit_malloc((size_t)workers * per_worker * sizeof *work);
    if (!work) return DIT_ERR;
    int failed = 0;   // an image's scratch could not be allocated (the message is that thread's)
    #pragma omp parallel for schedule(dynamic, 1) num_threads(workers)
    for (int i = 0; i < batch; i++) {
        int stop;
        #pragma omp atomic read
        stop = failed;
        if (stop) continue;
#ifdef _OPENMP
        float *w = work + (size_t)omp_get_thread_num() * per_worker;
#else
        float *w = work;
#endif
        float *a = w, *b = a + TRUNK_FLOATS, *in = b + TRUNK_FLOATS + 2 * BRANCH_FLOATS, *p = in + input;
        scratch s = {b + TRUNK_FLOATS, b + TRUNK_FLOATS + BRANCH_FLOATS};
        const float *x = prepared ? prepared + (size_t)i * input : in;
        dit_status st = DIT_OK;
        if (!prepared)
            st = dit_inception_preprocess(in, images + (size_t)i * height * width * 3, height, width, m->resize);
        if (st == DIT_OK)
            st = forward_one(m, x, a, b, &s, p, spatial ? spatial + (size_t)i * DIT_INCEPTION_SPATIAL_DIM : NULL,
                             logits ? logits + (size_t)i * DIT_INCEPTION_CLASSES : NULL);
        if (st != DIT_OK) {
            #pragma omp atomic write
            failed = 1;
            continue;
        }
        if (pool) memcpy(pool + (size_t)i * DIT_INCEPTION_POOL_DIM, p, DIT_INCEPTION_POOL_DIM * sizeof *p);
    }
    free(work);
    if (failed) return dit_set_error("inception: out of memory allocating an image's scratch (resize, convolutions)");
    return DIT_OK;
}

dit_status dit_inception_forward(dit_inception *m, const uint8_t *images, int batch, int height, int width,
                                 float *pool, float *spatial, float *logits) {
    return forward_batch(m, NULL, images, batch, height, width, pool, spatial, logits);
}

dit_status dit_inception_forward_prepared(dit_inception *m, const float *x, int batch, float *pool, float *spatial,
                                          float *logits) {
    return forward_batch(m, x, NULL, batch, 0, 0, pool, spatial, logits);
}
