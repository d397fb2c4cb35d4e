// The SD KL-f8 AutoencoderKL (reference.md §4.4): configuration, parameter table in diffusers' current
// key names and state_dict order, encoder, posterior, decoder and tiled decoding. Loading from files and
// their layouts lives in vae_load.c; the PyTorch reference is tests/ref/vae_ref.py.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "models/vae.h"
#include "ops/conv.h"
#include "ops/dispatch.h"
#include "models/synthetic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

void dit_vae_config_sd(dit_vae_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->in_channels = 3;
    cfg->out_channels = 3;
    cfg->latent_channels = 4;
    cfg->num_levels = 4;
    cfg->block_out[0] = 128;
    cfg->block_out[1] = 256;
    cfg->block_out[2] = 512;
    cfg->block_out[3] = 512;
    cfg->layers_per_block = 2;
    cfg->norm_groups = 32;
    cfg->scaling_factor = 0.18215f;
}

dit_status dit_vae_config_validate(const dit_vae_config *c) {
    if (c->num_levels < 1 || c->num_levels > DIT_VAE_MAX_LEVELS)
        return dit_set_error("VAE config: %d levels, expected 1 to %d", c->num_levels, DIT_VAE_MAX_LEVELS);
    if (c->layers_per_block < 1 || c->layers_per_block > VAE_MAX_LAYERS)
        return dit_set_error("VAE config: layers_per_block %d, expected 1 to %d", c->layers_per_block, VAE_MAX_LAYERS);
    if (c->in_channels < 1 || c->in_channels > 64 || c->out_channels < 1 || c->out_channels > 64 ||
        c->latent_channels < 1 || c->latent_channels > 1024)
        return dit_set_error("VAE config: in/out/latent channels %d/%d/%d out of range", c->in_channels,
                             c->out_channels, c->latent_channels);
    if (c->norm_groups < 1) return dit_set_error("VAE config: norm_groups %d must be positive", c->norm_groups);
    for (int i = 0; i < c->num_levels; i++)
        if (c->block_out[i] < 1 || c->block_out[i] > 16384 || c->block_out[i] % c->norm_groups)
            return dit_set_error("VAE config: level %d has %d channels, expected a positive multiple of the %d "
                                 "GroupNorm groups", i, c->block_out[i], c->norm_groups);
    return DIT_OK;
}

int dit_vae_config_factor(const dit_vae_config *cfg) { return 1 << (cfg->num_levels - 1); }

// Multiply-adds of a resnet (two 3x3 convs, a 1x1 shortcut when the width changes) and of the single-head
// attention (four C x C linears, two T x T x C products) over T positions.
static double resnet_macs(double T, double cin, double cout) {
    return 9 * T * cin * cout + 9 * T * cout * cout + (cin != cout ? T * cin * cout : 0);
}

static double attention_macs(double T, double C) { return 4 * T * C * C + 2 * T * T * C; }

double dit_vae_config_gmacs(const dit_vae_config *c, int h, int w, int encode) {
    const int L = c->num_levels, top = c->block_out[L - 1], Z = c->latent_channels;
    double macs = 0;
    if (!encode) {
        double T = (double)h * w;
        int C = top;
        macs += T * Z * Z + 9 * T * Z * top;   // post_quant_conv, conv_in
        macs += 2 * resnet_macs(T, top, top) + attention_macs(T, top);
        for (int i = 0; i < L; i++) {
            const int out = c->block_out[L - 1 - i];
            for (int j = 0; j < c->layers_per_block + 1; j++, C = out) macs += resnet_macs(T, C, out);
            if (i < L - 1) T *= 4, macs += 9 * T * C * C;   // Upsample2D's conv
        }
        macs += 9 * T * C * c->out_channels;
    } else {
        const int f = dit_vae_config_factor(c);
        double T = (double)h * f * w * f;
        int C = c->block_out[0];
        macs += 9 * T * c->in_channels * C;
        for (int i = 0; i < L; i++) {
            const int out = c->block_out[i];
            for (int j = 0; j < c->layers_per_block; j++, C = out) macs += resnet_macs(T, C, out);
            if (i < L - 1) T /= 4, macs += 9 * T * C * C;   // Downsample2D's conv, stride 2
        }
        macs += 2 * resnet_macs(T, top, top) + attention_macs(T, top);
        macs += 9 * T * top * 2 * Z + T * 2 * Z * 2 * Z;   // conv_out, quant_conv
    }
    return macs / 1e9;
}

// ---- parameter table -----------------------------------------------------------------------------

typedef struct {
    dit_vae *v;
    const float ***slots;   // where each entry's pointer goes once the buffer exists
    int cap;
    int out_of_memory;      // a growth failed: later entries are dropped, vae_create gives up
} table_builder;

static void add_param(table_builder *tb, const float **slot, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                      const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void add_param(table_builder *tb, const float **slot, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                      const char *fmt, ...) {
    dit_vae *v = tb->v;
    if (tb->out_of_memory) return;
    if (v->num_params == tb->cap) {
        const int cap = tb->cap ? 2 * tb->cap : 256;
        vae_param *table = dit_realloc(v->table, (size_t)cap * sizeof *table);
        if (table) v->table = table;
        const float ***slots = table ? dit_realloc(tb->slots, (size_t)cap * sizeof *slots) : NULL;
        if (slots) tb->slots = slots;
        if (!table || !slots) {
            tb->out_of_memory = 1;
            return;
        }
        tb->cap = cap;
    }
    vae_param *e = &v->table[v->num_params];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    DIT_CHECK(len > 0 && len < (int)sizeof e->name);
    const int64_t dims[4] = {d0, d1, d2, d3};
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = dims[i];
        e->numel *= (size_t)dims[i];
    }
    e->offset = v->total_floats;
    v->total_floats += e->numel;
    tb->slots[v->num_params++] = slot;
}

static void add_conv(table_builder *tb, const float **w, const float **b, int cout, int cin, int k, const char *prefix) {
    add_param(tb, w, 4, cout, cin, k, k, "%s.weight", prefix);
    add_param(tb, b, 1, cout, 0, 0, 0, "%s.bias", prefix);
}

static void add_norm(table_builder *tb, const float **w, const float **b, int c, const char *prefix) {
    add_param(tb, w, 1, c, 0, 0, 0, "%s.weight", prefix);
    add_param(tb, b, 1, c, 0, 0, 0, "%s.bias", prefix);
}

static void add_resnet(table_builder *tb, vae_resnet *r, int cin, int cout, const char *prefix) {
    char name[VAE_NAME_MAX];
    r->cin = cin;
    r->cout = cout;
    snprintf(name, sizeof name, "%s.norm1", prefix);
    add_norm(tb, &r->norm1_w, &r->norm1_b, cin, name);
    snprintf(name, sizeof name, "%s.conv1", prefix);
    add_conv(tb, &r->conv1_w, &r->conv1_b, cout, cin, 3, name);
    snprintf(name, sizeof name, "%s.norm2", prefix);
    add_norm(tb, &r->norm2_w, &r->norm2_b, cout, name);
    snprintf(name, sizeof name, "%s.conv2", prefix);
    add_conv(tb, &r->conv2_w, &r->conv2_b, cout, cout, 3, name);
    if (cin != cout) {
        snprintf(name, sizeof name, "%s.conv_shortcut", prefix);
        add_conv(tb, &r->shortcut_w, &r->shortcut_b, cout, cin, 1, name);
    }
}

// UNetMidBlock2D registers its attentions before its resnets, so they come first in the state_dict.
static void add_mid(table_builder *tb, vae_resnet res[2], vae_attention *a, int C, const char *coder) {
    char name[VAE_NAME_MAX];
    snprintf(name, sizeof name, "%s.mid_block.attentions.0.group_norm", coder);
    a->C = C;
    add_norm(tb, &a->norm_w, &a->norm_b, C, name);
    static const char *const proj[] = {"to_q", "to_k", "to_v", "to_out.0"};
    const float **w[] = {&a->q_w, &a->k_w, &a->v_w, &a->out_w}, **b[] = {&a->q_b, &a->k_b, &a->v_b, &a->out_b};
    for (int i = 0; i < 4; i++) {
        add_param(tb, w[i], 2, C, C, 0, 0, "%s.mid_block.attentions.0.%s.weight", coder, proj[i]);
        add_param(tb, b[i], 1, C, 0, 0, 0, "%s.mid_block.attentions.0.%s.bias", coder, proj[i]);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s.mid_block.resnets.%d", coder, i);
        add_resnet(tb, &res[i], C, C, name);
    }
}

dit_vae *vae_create(const dit_vae_config *cfg) {
    if (dit_vae_config_validate(cfg) != DIT_OK) return NULL;
    dit_vae *v = dit_calloc(1, sizeof *v);
    if (!v) return NULL;
    v->cfg = *cfg;
    table_builder tb = {v, NULL, 0, 0};
    const int L = cfg->num_levels, top = cfg->block_out[L - 1];
    char name[VAE_NAME_MAX];
    // Encoder: conv_in, down_blocks (resnets, downsamplers), mid_block, conv_norm_out, conv_out.
    add_conv(&tb, &v->enc_in_w, &v->enc_in_b, cfg->block_out[0], cfg->in_channels, 3, "encoder.conv_in");
    int channels = cfg->block_out[0];
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < cfg->layers_per_block; j++) {
            snprintf(name, sizeof name, "encoder.down_blocks.%d.resnets.%d", i, j);
            add_resnet(&tb, &v->down.resnets[i][j], j == 0 ? channels : cfg->block_out[i], cfg->block_out[i], name);
        }
        channels = cfg->block_out[i];
        if (i < L - 1) {
            snprintf(name, sizeof name, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            add_conv(&tb, &v->down.sample_w[i], &v->down.sample_b[i], channels, channels, 3, name);
        }
    }
    add_mid(&tb, v->enc_mid, &v->enc_attn, top, "encoder");
    add_norm(&tb, &v->enc_norm_w, &v->enc_norm_b, top, "encoder.conv_norm_out");
    add_conv(&tb, &v->enc_out_w, &v->enc_out_b, 2 * cfg->latent_channels, top, 3, "encoder.conv_out");
    // Decoder: conv_in, up_blocks (registered before mid_block in Decoder.__init__), mid_block, norm, conv_out.
    add_conv(&tb, &v->dec_in_w, &v->dec_in_b, top, cfg->latent_channels, 3, "decoder.conv_in");
    channels = top;
    for (int i = 0; i < L; i++) {
        const int out = cfg->block_out[L - 1 - i];
        for (int j = 0; j < cfg->layers_per_block + 1; j++) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.%d", i, j);
            add_resnet(&tb, &v->up.resnets[i][j], j == 0 ? channels : out, out, name);
        }
        channels = out;
        if (i < L - 1) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            add_conv(&tb, &v->up.sample_w[i], &v->up.sample_b[i], out, out, 3, name);
        }
    }
    add_mid(&tb, v->dec_mid, &v->dec_attn, top, "decoder");
    add_norm(&tb, &v->dec_norm_w, &v->dec_norm_b, cfg->block_out[0], "decoder.conv_norm_out");
    add_conv(&tb, &v->dec_out_w, &v->dec_out_b, cfg->out_channels, cfg->block_out[0], 3, "decoder.conv_out");
    add_conv(&tb, &v->quant_w, &v->quant_b, 2 * cfg->latent_channels, 2 * cfg->latent_channels, 1, "quant_conv");
    add_conv(&tb, &v->post_quant_w, &v->post_quant_b, cfg->latent_channels, cfg->latent_channels, 1, "post_quant_conv");

    v->params = tb.out_of_memory ? NULL : dit_calloc(v->total_floats, sizeof *v->params);
    if (!v->params) {
        free(tb.slots);
        dit_vae_free(v);
        return NULL;
    }
    for (int i = 0; i < v->num_params; i++) *tb.slots[i] = v->params + v->table[i].offset;
    free(tb.slots);
    return v;
}

const vae_param *vae_param_find(const dit_vae *v, const char *name) {
    for (int i = 0; i < v->num_params; i++)
        if (!strcmp(v->table[i].name, name)) return &v->table[i];
    return NULL;
}

void dit_vae_free(dit_vae *v) {
    if (!v) return;
    vae_work_free(&v->work);
    free(v->table);
    free(v->params);
    free(v);
}

const dit_vae_config *dit_vae_get_config(const dit_vae *v) { return &v->cfg; }

// AUTO stays fp32 for the autoencoder: its bf16 error (a few 1e-2 of max |out| on the synthetic test network,
// tests/test_bf16.c) could show as a few grey levels, so bf16 is the user's explicit choice (docs/precision.md).
dit_status dit_vae_set_precision(dit_vae *v, dit_precision p) {
    if (p == DIT_PRECISION_AUTO) p = DIT_PRECISION_FP32;
    if (!dit_compute_path(p)) return DIT_ERR;
    v->work.bf16 = p == DIT_PRECISION_BF16;
    return DIT_OK;
}

dit_precision dit_vae_precision(const dit_vae *v) { return v->work.bf16 ? DIT_PRECISION_BF16 : DIT_PRECISION_FP32; }
int dit_vae_num_params(const dit_vae *v) { return v->num_params; }
size_t dit_vae_total_floats(const dit_vae *v) { return v->total_floats; }

const float *dit_vae_param(const dit_vae *v, int i, const char **name, int *ndim, int64_t shape[4]) {
    if (i < 0 || i >= v->num_params) return NULL;
    const vae_param *e = &v->table[i];
    if (name) *name = e->name;
    if (ndim) *ndim = e->ndim;
    if (shape) memcpy(shape, e->shape, sizeof e->shape);
    return v->params + e->offset;
}

// ---- synthetic weights ---------------------------------------------------------------------------

void vae_fill_synthetic_tensor(float *dst, const char *name, int ndim, const int64_t *shape, uint32_t k,
                               uint32_t seed) {
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= (size_t)shape[d];
    DIT_CHECK(numel <= UINT32_MAX);
    const size_t len = strlen(name);
    const int gamma = ndim == 1 && strstr(name, "norm") && len > 7 && !strcmp(name + len - 7, ".weight");
    const float scale = ndim >= 2 ? 1.0f / sqrtf((float)(numel / (size_t)shape[0])) : 0.1f;
    for (size_t i = 0; i < numel; i++) {
        const float scaled = scale * synthetic_uniform((uint32_t)i, k, seed);
        dst[i] = gamma ? 1.0f + scaled : scaled;
    }
}

dit_vae *dit_vae_synthetic(const dit_vae_config *cfg, uint32_t seed) {
    dit_vae *v = vae_create(cfg);
    if (!v) return NULL;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < v->num_params; k++) {
        const vae_param *e = &v->table[k];
        vae_fill_synthetic_tensor(v->params + e->offset, e->name, e->ndim, e->shape, (uint32_t)k, seed);
    }
    return v;
}

// ---- layers --------------------------------------------------------------------------------------

float *vae_work_get(vae_work *w, int index, size_t floats) {
    DIT_CHECK(index >= 0 && index < 8);
    if (w->cap[index] < floats) {
        free(w->buf[index]);
        w->cap[index] = 0;
        if (!(w->buf[index] = dit_malloc(floats * sizeof(float)))) return NULL;
        w->cap[index] = floats;
    }
    return w->buf[index];
}

void vae_work_free(vae_work *w) {
    for (int i = 0; i < 8; i++) free(w->buf[i]);
    for (int i = 0; i < w->num_packed; i++) bf16_packed_free(&w->packed[i].packed);
    free(w->packed);
    memset(w, 0, sizeof *w);
}

// The packed bf16 copy of a 3x3 conv weight (taps 9; taps 16: its Winograd transform) or of a 1x1 conv / linear
// one (taps 1), made on first use (VAE weights never change after loading).
static const bf16_packed *packed_weight(vae_work *w, const float *weight, int cout, int cin, int taps) {
    for (int i = 0; i < w->num_packed; i++)
        if (w->packed[i].weight == weight && w->packed[i].taps == taps) return &w->packed[i].packed;
    if (w->num_packed == w->cap_packed) {
        vae_packed_conv *grown = dit_realloc(w->packed, (size_t)(w->cap_packed ? 2 * w->cap_packed : 32) * sizeof *grown);
        if (!grown) return NULL;
        w->packed = grown;
        w->cap_packed = w->cap_packed ? 2 * w->cap_packed : 32;
    }
    vae_packed_conv *e = &w->packed[w->num_packed];
    memset(e, 0, sizeof *e);
    if ((taps == 16  ? conv3x3_winograd_pack_bf16(&e->packed, weight, cout, cin)
         : taps == 9 ? conv3x3_pack_bf16(&e->packed, weight, cout, cin)
                     : bf16_pack(&e->packed, weight, cout, cin, cin, 1)) != DIT_OK)
        return NULL;
    e->weight = weight;
    e->taps = taps;
    w->num_packed++;
    return &e->packed;
}

// 3x3 pad 1 with the padded-input workspace in work buffer 2; out += residual (or NULL); upsample: x is
// (cin, H/2, W/2), repeated 2x2 first (Upsample2D's nearest interpolation, fused).
static dit_status conv3x3(float *out, const float *x, const float *w, const float *b, const float *residual,
                          int upsample, int cin, int cout, int H, int W, vae_work *work) {
    if (work->bf16) {
        const bf16_packed *packed = packed_weight(work, w, cout, cin, 9);
        if (!packed) return DIT_ERR;
        return conv3x3_bf16(out, x, packed, b, residual, upsample, cin, H, W, cout);
    }
    float *ws = vae_work_get(work, 2, (size_t)conv2d_workspace_floats(cin, H, W, 3, 3, 1, 1, 1, 1, 1) + 1);
    if (!ws) return DIT_ERR;
    return conv2d_forward_ex(out, x, w, b, residual, ws, upsample, 1, cin, H, W, cout, 3, 3, 1, 1, 1, 1, 1);
}

static dit_status conv1x1(float *out, const float *x, const float *w, const float *b, const float *residual,
                          int cin, int cout, int T) {
    return conv2d_forward_ex(out, x, w, b, residual, NULL, 0, 1, cin, T, 1, cout, 1, 1, 1, 0, 0, 0, 0);
}

dit_status vae_resnet_forward(float *out, const float *x, const vae_resnet *r, int H, int W, int groups,
                              vae_work *w) {
    const int T = H * W, wide = r->cin > r->cout ? r->cin : r->cout;
    float *normed = vae_work_get(w, 4, (size_t)wide * T), *h = vae_work_get(w, 5, (size_t)r->cout * T);
    if (!normed || !h) return DIT_ERR;
    groupnorm_forward(normed, x, r->norm1_w, r->norm1_b, 1, r->cin, T, groups, VAE_GN_EPS, 1);
    DIT_TRY(conv3x3(h, normed, r->conv1_w, r->conv1_b, NULL, 0, r->cin, r->cout, H, W, w));
    groupnorm_forward(normed, h, r->norm2_w, r->norm2_b, 1, r->cout, T, groups, VAE_GN_EPS, 1);
    const float *skip = x;
    if (r->shortcut_w) {   // h is free again once normalised
        DIT_TRY(conv1x1(h, x, r->shortcut_w, r->shortcut_b, NULL, r->cin, r->cout, T));
        skip = h;
    }
    // out = conv2(normed) + skip, the residual added in the conv's store (output_scale_factor 1)
    return conv3x3(out, normed, r->conv2_w, r->conv2_b, skip, 0, r->cout, r->cout, H, W, w);
}

dit_status vae_attention_forward(float *out, const float *x, const vae_attention *a, int H, int W, int groups,
                                 vae_work *w) {
    const int C = a->C, T = H * W;
    float *normed = vae_work_get(w, 4, (size_t)C * T), *q = vae_work_get(w, 5, (size_t)C * T);
    float *k = vae_work_get(w, 6, (size_t)C * T), *v = vae_work_get(w, 7, (size_t)C * T);
    if (!normed || !q || !k || !v) return DIT_ERR;
    groupnorm_forward(normed, x, a->norm_w, a->norm_b, 1, C, T, groups, VAE_GN_EPS, 0);
    // A Linear over channels on the channel-major (C, T) block is a 1x1 conv: q = W_q @ normed + b_q.
    DIT_TRY(conv1x1(q, normed, a->q_w, a->q_b, NULL, C, C, T));
    DIT_TRY(conv1x1(k, normed, a->k_w, a->k_b, NULL, C, C, T));
    DIT_TRY(conv1x1(v, normed, a->v_w, a->v_b, NULL, C, C, T));
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    float *scores = dit_malloc((size_t)spatial_attention_scratch_floats(T, threads) * sizeof *scores);
    if (!scores) return DIT_ERR;
    spatial_attention_forward(normed, q, k, v, scores, C, T);
    free(scores);
    // residual_connection, rescale_output_factor 1: out = to_out(attention) + x
    return conv1x1(out, normed, a->out_w, a->out_b, x, C, C, T);
}

// ---- encoder and decoder -------------------------------------------------------------------------

// The resnet and attention layers of one activation layout: channel-major planes (plane_layers, the float32
// path) or channels-last rows (row_layers, the bf16 path below).
typedef struct {
    dit_status (*resnet)(float *out, const float *x, const vae_resnet *r, int H, int W, int groups, vae_work *w);
    dit_status (*attention)(float *out, const float *x, const vae_attention *a, int H, int W, int groups,
                            vae_work *w);
} vae_layers;

static const vae_layers plane_layers = {vae_resnet_forward, vae_attention_forward};

// Ping-pong between work buffers 0 and 1: *cur holds the activation, the result lands in the other one.
typedef struct {
    vae_work *w;
    int cur;
    const vae_layers *layers;
} stream;

static float *next_buffer(stream *s, size_t floats) { return vae_work_get(s->w, 1 - s->cur, floats); }
static const float *current(const stream *s) { return s->w->buf[s->cur]; }
static void advance(stream *s) { s->cur = 1 - s->cur; }

static dit_status run_resnet(stream *s, const vae_resnet *r, int H, int W, int groups) {
    float *out = next_buffer(s, (size_t)r->cout * H * W);
    if (!out) return DIT_ERR;
    DIT_TRY(s->layers->resnet(out, current(s), r, H, W, groups, s->w));
    advance(s);
    return DIT_OK;
}

static dit_status run_mid(stream *s, const vae_resnet res[2], const vae_attention *a, int H, int W, int groups) {
    DIT_TRY(run_resnet(s, &res[0], H, W, groups));
    float *out = next_buffer(s, (size_t)a->C * H * W);
    if (!out) return DIT_ERR;
    DIT_TRY(s->layers->attention(out, current(s), a, H, W, groups, s->w));
    advance(s);
    return run_resnet(s, &res[1], H, W, groups);
}

static dit_status encode_one(dit_vae *v, const float *x, int H, int W, float *moments) {
    const dit_vae_config *c = &v->cfg;
    const int G = c->norm_groups, L = c->num_levels;
    stream s = {&v->work, 0, &plane_layers};
    float *h = vae_work_get(s.w, 0, (size_t)c->block_out[0] * H * W);
    if (!h) return DIT_ERR;
    DIT_TRY(conv3x3(h, x, v->enc_in_w, v->enc_in_b, NULL, 0, c->in_channels, c->block_out[0], H, W, s.w));
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < c->layers_per_block; j++) DIT_TRY(run_resnet(&s, &v->down.resnets[i][j], H, W, G));
        if (i < L - 1) {
            // Downsample2D(padding=0): zero pad right and bottom by one, then 3x3 stride 2.
            const int C = c->block_out[i], OH = conv2d_out_size(H, 3, 2, 0, 1), OW = conv2d_out_size(W, 3, 2, 0, 1);
            float *out = next_buffer(&s, (size_t)C * OH * OW);
            float *ws = vae_work_get(s.w, 2, (size_t)conv2d_workspace_floats(C, H, W, 3, 3, 2, 0, 0, 1, 1) + 1);
            if (!out || !ws) return DIT_ERR;
            DIT_TRY(conv2d_forward_ex(out, current(&s), v->down.sample_w[i], v->down.sample_b[i], NULL, ws, 0, 1, C, H,
                                      W, C, 3, 3, 2, 0, 0, 1, 1));
            advance(&s);
            H = OH;
            W = OW;
        }
    }
    const int top = c->block_out[L - 1], Z2 = 2 * c->latent_channels;
    DIT_TRY(run_mid(&s, v->enc_mid, &v->enc_attn, H, W, G));
    float *normed = vae_work_get(s.w, 4, (size_t)top * H * W);
    if (!normed) return DIT_ERR;
    groupnorm_forward(normed, current(&s), v->enc_norm_w, v->enc_norm_b, 1, top, H * W, G, VAE_GN_EPS, 1);
    float *out = next_buffer(&s, (size_t)Z2 * H * W);
    if (!out) return DIT_ERR;
    DIT_TRY(conv3x3(out, normed, v->enc_out_w, v->enc_out_b, NULL, 0, top, Z2, H, W, s.w));
    return conv1x1(moments, out, v->quant_w, v->quant_b, NULL, Z2, Z2, H * W);
}

// ---- the bf16 path: channels-last (decoder and encoder) ----------------------------------------------------
// Activations are (T = H W, C) float32 rows in the stream buffers; each 3x3 conv reads a padded bf16 grid of its
// input (work buffer 2) that conv3x3_pad_cl_bf16 builds with the GroupNorm before it and its SiLU folded in, and
// writes rows straight into the next activation (a residual added in its store). 1x1 convs and the attention's
// linears are products over the rows; GroupNorm's scale and shift live in work buffer 3. Only the first conv
// (latent or image channels in) and the last (image or moment channels out) meet the channel-major layout. Same
// layers and order as the float32 path (docs/precision.md).

// Every level's channels a multiple of 32 (the direct conv's K steps): SD's 128/256/512 are.
static int channels_last(const dit_vae *v) {
    if (!v->work.bf16) return 0;
    for (int i = 0; i < v->cfg.num_levels; i++)
        if (v->cfg.block_out[i] % 32) return 0;
    return 1;
}

// The bf16 grid a conv of a C x H x W input reads, in work buffer 2.
static uint16_t *grid_buffer(vae_work *w, int C, int H, int W) {
    return (uint16_t *)vae_work_get(w, 2, (size_t)(conv3x3_padded_elems(C, H, W) + 1) / 2);
}

// out = conv3x3 of x's grid (scale/shift: the GroupNorm as an affine map, NULL for none; silu) + bias, + out
// with accumulate; channels-last rows, or channel-major (C, H W) with transpose_out. By Winograd's F(2x2, 3x3)
// from a float32 grid where it fits (ops/cpu/conv_winograd.c), else the direct form from a bf16 grid.
static dit_status cl_conv3x3(vae_work *w, float *out, const float *x, const float *weight, const float *bias,
                             int accumulate, int transpose_out, int cin, int cout, int H, int W, int upsample,
                             const float *scale, const float *shift) {
    const int winograd = !transpose_out && conv3x3_winograd_enabled() && conv3x3_winograd_fits(cin, cout, H, W);
    const bf16_packed *packed = packed_weight(w, weight, cout, cin, winograd ? 16 : 9);
    if (!packed) return DIT_ERR;
    if (winograd) {
        float *grid = vae_work_get(w, 2, (size_t)conv3x3_padded_elems(cin, H, W));
        if (!grid) return DIT_ERR;
        conv3x3_pad_cl_f32(grid, x, cin, H, W, upsample, scale, shift, scale != NULL);
        return conv3x3_winograd_bf16(out, grid, packed, bias, accumulate, upsample, cin, H, W);
    }
    uint16_t *padded = grid_buffer(w, cin, H, W);
    if (!padded) return DIT_ERR;
    conv3x3_pad_cl_bf16(padded, x, cin, H, W, upsample, scale, shift, scale != NULL);
    return conv3x3_bf16_padded(out, padded, packed, bias, accumulate, transpose_out, cin, H, W);
}

// out (T, cout) = x (T, cin) @ weight^T + bias (+ out with accumulate): a 1x1 conv or a Linear over channels.
static dit_status cl_linear(vae_work *w, float *out, int64_t ldo, const float *x, const float *weight,
                            const float *bias, int accumulate, int cin, int cout, int T) {
    const bf16_packed *packed = packed_weight(w, weight, cout, cin, 1);
    if (!packed) return DIT_ERR;
    const gemm_epilogue ep = {.bias = bias, .accumulate = accumulate};
    return gemm_bf16(out, ldo, x, cin, 1, packed, T, &ep);
}

// The GroupNorm's per-channel scale and shift in work buffer 3.
static float *cl_groupnorm(vae_work *w, const float *x, const float *gamma, const float *beta, int T, int C, int G) {
    float *affine = vae_work_get(w, 3, 2 * (size_t)C);
    if (!affine || groupnorm_cl_affine(affine, affine + C, x, T, C, G, gamma, beta, VAE_GN_EPS) != DIT_OK) return NULL;
    return affine;
}

static dit_status cl_resnet(float *out, const float *x, const vae_resnet *r, int H, int W, int G, vae_work *w) {
    const int T = H * W;
    float *h = vae_work_get(w, 5, (size_t)r->cout * T), *affine = cl_groupnorm(w, x, r->norm1_w, r->norm1_b, T, r->cin, G);
    if (!h || !affine) return DIT_ERR;
    DIT_TRY(cl_conv3x3(w, h, x, r->conv1_w, r->conv1_b, 0, 0, r->cin, r->cout, H, W, 0, affine, affine + r->cin));
    // out = the skip (x, or its 1x1 projection) + conv2's bias, then conv2(silu(norm2(h))) added in the conv's
    // store (a plain accumulation, which the kernel does in place)
    const int C = r->cout;
    if (r->shortcut_w) {
        DIT_TRY(cl_linear(w, out, C, x, r->shortcut_w, r->shortcut_b, 0, r->cin, C, T));
        #pragma omp parallel for schedule(guided)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) out[(int64_t)t * C + c] += r->conv2_b[c];
    } else {   // one pass, not a copy and then an addition
        #pragma omp parallel for schedule(guided)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) out[(int64_t)t * C + c] = x[(int64_t)t * C + c] + r->conv2_b[c];
    }
    if (!(affine = cl_groupnorm(w, h, r->norm2_w, r->norm2_b, T, C, G))) return DIT_ERR;
    return cl_conv3x3(w, out, h, r->conv2_w, NULL, 1, 0, C, C, H, W, 0, affine, affine + C);
}

// Single-head attention over the T positions: q, k, v side by side in one (T, 3C) block, as the bf16 attention
// kernel reads them; out = x + to_out(attention).
static dit_status cl_attention(float *out, const float *x, const vae_attention *a, int H, int W, int G,
                               vae_work *w) {
    const int C = a->C, T = H * W;
    float *normed = vae_work_get(w, 4, (size_t)C * T), *qkv = vae_work_get(w, 5, (size_t)3 * C * T);
    float *attended = vae_work_get(w, 6, (size_t)C * T), *affine = cl_groupnorm(w, x, a->norm_w, a->norm_b, T, C, G);
    if (!normed || !qkv || !attended || !affine) return DIT_ERR;
    #pragma omp parallel for schedule(guided)
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) normed[(int64_t)t * C + c] = x[(int64_t)t * C + c] * affine[c] + affine[C + c];
    DIT_TRY(cl_linear(w, qkv, 3 * C, normed, a->q_w, a->q_b, 0, C, C, T));
    DIT_TRY(cl_linear(w, qkv + C, 3 * C, normed, a->k_w, a->k_b, 0, C, C, T));
    DIT_TRY(cl_linear(w, qkv + 2 * C, 3 * C, normed, a->v_w, a->v_b, 0, C, C, T));
    DIT_TRY(attention_forward_bf16(attended, NULL, 0, (qkv_rows){.f32 = qkv}, NULL, 1, T, C, 1));
    memcpy(out, x, sizeof(float) * (size_t)T * C);
    return cl_linear(w, out, C, attended, a->out_w, a->out_b, 1, C, C, T);
}

static const vae_layers row_layers = {cl_resnet, cl_attention};

// The first conv of the decoder or encoder (few input channels, channel-major) into channels-last rows.
static dit_status first_conv_rows(vae_work *w, float *rows, const float *x, const float *weight, const float *bias,
                                  int cin, int cout, int H, int W) {
    const bf16_packed *packed = packed_weight(w, weight, cout, cin, 9);
    if (!packed) return DIT_ERR;
    return conv3x3_bf16_rows(rows, x, packed, bias, cin, H, W, cout);
}

static dit_status decode_one_channels_last(dit_vae *v, const float *z, int H, int W, float *x) {
    const dit_vae_config *c = &v->cfg;
    const int G = c->norm_groups, L = c->num_levels, top = c->block_out[L - 1], Z = c->latent_channels;
    stream s = {&v->work, 0, &row_layers};
    // the latent's 1x1 conv channel-major; its 3x3 conv writes rows
    float *post = vae_work_get(s.w, 4, (size_t)Z * H * W), *rows = vae_work_get(s.w, 0, (size_t)top * H * W);
    if (!post || !rows) return DIT_ERR;
    DIT_TRY(conv1x1(post, z, v->post_quant_w, v->post_quant_b, NULL, Z, Z, H * W));
    DIT_TRY(first_conv_rows(s.w, rows, post, v->dec_in_w, v->dec_in_b, Z, top, H, W));
    DIT_TRY(run_mid(&s, v->dec_mid, &v->dec_attn, H, W, G));
    float *out;
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < c->layers_per_block + 1; j++) DIT_TRY(run_resnet(&s, &v->up.resnets[i][j], H, W, G));
        if (i < L - 1) {   // Upsample2D: nearest x2 folded into the grid, then the 3x3 conv
            const int C = c->block_out[L - 1 - i];
            H *= 2;
            W *= 2;
            if (!(out = next_buffer(&s, (size_t)C * H * W))) return DIT_ERR;
            DIT_TRY(cl_conv3x3(s.w, out, current(&s), v->up.sample_w[i], v->up.sample_b[i], 0, 0, C, C, H, W, 1, NULL,
                               NULL));
            advance(&s);
        }
    }
    const int C0 = c->block_out[0];
    const float *affine = cl_groupnorm(s.w, current(&s), v->dec_norm_w, v->dec_norm_b, H * W, C0, G);
    if (!affine) return DIT_ERR;
    return cl_conv3x3(s.w, x, current(&s), v->dec_out_w, v->dec_out_b, 0, 1, C0, c->out_channels, H, W, 0, affine,
                      affine + C0);
}

// The encoder on the same path: the image's conv reads it channel-major and writes rows; Downsample2D as a stride-2
// conv over a grid padded only right and bottom; the last conv writes the moments channel-major for quant_conv.
static dit_status encode_one_channels_last(dit_vae *v, const float *x, int H, int W, float *moments) {
    const dit_vae_config *c = &v->cfg;
    const int G = c->norm_groups, L = c->num_levels, C0 = c->block_out[0];
    stream s = {&v->work, 0, &row_layers};
    float *rows = vae_work_get(s.w, 0, (size_t)C0 * H * W);
    if (!rows) return DIT_ERR;
    DIT_TRY(first_conv_rows(s.w, rows, x, v->enc_in_w, v->enc_in_b, c->in_channels, C0, H, W));
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < c->layers_per_block; j++) DIT_TRY(run_resnet(&s, &v->down.resnets[i][j], H, W, G));
        if (i < L - 1) {   // Downsample2D(padding=0): zero pad right and bottom by one, then 3x3 stride 2
            const int C = c->block_out[i];
            const bf16_packed *packed = packed_weight(s.w, v->down.sample_w[i], C, C, 9);
            uint16_t *grid = grid_buffer(s.w, C, H, W);
            float *out = next_buffer(&s, (size_t)C * (H / 2) * (W / 2));
            if (!packed || !grid || !out) return DIT_ERR;
            conv3x3_pad_cl_bf16_down(grid, current(&s), C, H, W);
            DIT_TRY(conv3x3_bf16_down(out, grid, packed, v->down.sample_b[i], C, H, W));
            advance(&s);
            H /= 2;
            W /= 2;
        }
    }
    const int top = c->block_out[L - 1], Z2 = 2 * c->latent_channels;
    DIT_TRY(run_mid(&s, v->enc_mid, &v->enc_attn, H, W, G));
    const float *affine = cl_groupnorm(s.w, current(&s), v->enc_norm_w, v->enc_norm_b, H * W, top, G);
    float *conv_out = vae_work_get(s.w, 6, (size_t)Z2 * H * W);
    if (!affine || !conv_out) return DIT_ERR;
    DIT_TRY(cl_conv3x3(s.w, conv_out, current(&s), v->enc_out_w, v->enc_out_b, 0, 1, top, Z2, H, W, 0, affine,
                       affine + top));
    return conv1x1(moments, conv_out, v->quant_w, v->quant_b, NULL, Z2, Z2, H * W);
}

static dit_status decode_one(dit_vae *v, const float *z, int H, int W, float *x) {
    if (channels_last(v)) return decode_one_channels_last(v, z, H, W, x);
    const dit_vae_config *c = &v->cfg;
    const int G = c->norm_groups, L = c->num_levels, top = c->block_out[L - 1], Z = c->latent_channels;
    stream s = {&v->work, 0, &plane_layers};
    float *post = vae_work_get(s.w, 4, (size_t)Z * H * W);
    if (!post) return DIT_ERR;
    DIT_TRY(conv1x1(post, z, v->post_quant_w, v->post_quant_b, NULL, Z, Z, H * W));
    float *h = vae_work_get(s.w, 0, (size_t)top * H * W);
    if (!h) return DIT_ERR;
    DIT_TRY(conv3x3(h, post, v->dec_in_w, v->dec_in_b, NULL, 0, Z, top, H, W, s.w));
    DIT_TRY(run_mid(&s, v->dec_mid, &v->dec_attn, H, W, G));
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < c->layers_per_block + 1; j++) DIT_TRY(run_resnet(&s, &v->up.resnets[i][j], H, W, G));
        if (i < L - 1) {
            // Upsample2D: nearest x2 (fused into the conv's input copy), then 3x3 conv pad 1.
            const int C = c->block_out[L - 1 - i];
            H *= 2;
            W *= 2;
            float *out = next_buffer(&s, (size_t)C * H * W);
            if (!out) return DIT_ERR;
            DIT_TRY(conv3x3(out, current(&s), v->up.sample_w[i], v->up.sample_b[i], NULL, 1, C, C, H, W, s.w));
            advance(&s);
        }
    }
    const int C0 = c->block_out[0];
    float *normed = vae_work_get(s.w, 4, (size_t)C0 * H * W);
    if (!normed) return DIT_ERR;
    groupnorm_forward(normed, current(&s), v->dec_norm_w, v->dec_norm_b, 1, C0, H * W, G, VAE_GN_EPS, 1);
    return conv3x3(x, normed, v->dec_out_w, v->dec_out_b, NULL, 0, C0, c->out_channels, H, W, s.w);
}

dit_status dit_vae_encode_moments(dit_vae *v, const float *x, int B, int H, int W, float *moments) {
    const int f = dit_vae_config_factor(&v->cfg);
    if (B < 1 || H < f || W < f || H % f || W % f || H > 65536 || W > 65536)
        return dit_set_error("VAE encode: images of %dx%d (batch %d), expected positive multiples of %d", H, W, B, f);
    const int64_t in = (int64_t)v->cfg.in_channels * H * W, out = (int64_t)2 * v->cfg.latent_channels * (H / f) * (W / f);
    const int64_t latent_plane = (int64_t)v->cfg.latent_channels * (H / f) * (W / f);
    for (int b = 0; b < B; b++) {
        DIT_TRY(channels_last(v) ? encode_one_channels_last(v, x + b * in, H, W, moments + b * out)
                                 : encode_one(v, x + b * in, H, W, moments + b * out));
        // DiagonalGaussianDistribution clamps logvar to [-30, 20].
        float *logvar = moments + b * out + latent_plane;
        for (int64_t i = 0; i < latent_plane; i++)
            logvar[i] = logvar[i] < -30.0f ? -30.0f : logvar[i] > 20.0f ? 20.0f : logvar[i];
    }
    return DIT_OK;
}

void dit_vae_posterior(const float *moments, const float *noise, int B, int latent, int h, int w, float *z) {
    const int64_t plane = (int64_t)latent * h * w;
    for (int b = 0; b < B; b++) {
        const float *mean = moments + 2 * b * plane, *logvar = mean + plane;
        for (int64_t i = 0; i < plane; i++) {
            float lv = logvar[i] < -30.0f ? -30.0f : logvar[i] > 20.0f ? 20.0f : logvar[i];
            z[b * plane + i] = noise ? mean[i] + expf(0.5f * lv) * noise[b * plane + i] : mean[i];
        }
    }
}

dit_status dit_vae_encode(dit_vae *v, const float *x, int B, int H, int W, const float *noise, float *z) {
    const int f = dit_vae_config_factor(&v->cfg), Z = v->cfg.latent_channels;
    if (B < 1 || H < f || W < f || H % f || W % f)
        return dit_set_error("VAE encode: images of %dx%d (batch %d), expected positive multiples of %d", H, W, B, f);
    float *moments = dit_malloc((size_t)B * 2 * Z * (H / f) * (W / f) * sizeof *moments);
    if (!moments) return DIT_ERR;
    dit_status st = dit_vae_encode_moments(v, x, B, H, W, moments);
    if (st == DIT_OK) dit_vae_posterior(moments, noise, B, Z, H / f, W / f, z);
    free(moments);
    return st;
}

static dit_status check_latent_size(const dit_vae *v, int B, int h, int w) {
    const int64_t f = dit_vae_config_factor(&v->cfg);
    if (B < 1 || h < 1 || w < 1 || h * f > 65536 || w * f > 65536)
        return dit_set_error("VAE decode: latents of %dx%d (batch %d) give no valid image size", h, w, B);
    return DIT_OK;
}

dit_status dit_vae_decode(dit_vae *v, const float *z, int B, int h, int w, float *x) {
    if (check_latent_size(v, B, h, w)) return DIT_ERR;
    const int f = dit_vae_config_factor(&v->cfg);
    const int64_t in = (int64_t)v->cfg.latent_channels * h * w, out = (int64_t)v->cfg.out_channels * h * f * w * f;
    for (int b = 0; b < B; b++) DIT_TRY(decode_one(v, z + b * in, h, w, x + b * out));
    return DIT_OK;
}

// ---- tiled decoding ------------------------------------------------------------------------------

// Tile starts along one axis of n latent pixels: 0, step, 2 step, ... and a last one ending at n.
static int tile_starts(int n, int tile, int overlap, int *starts) {
    if (n <= tile) {
        starts[0] = 0;
        return 1;
    }
    int count = 0;
    const int step = tile - overlap;
    for (int s = 0; s + tile < n; s += step) starts[count++] = s;
    starts[count++] = n - tile;
    return count;
}

// The blend weight of image pixel p (0-based within tile t) along one axis: a linear ramp across the
// overlap with each neighbouring tile, 1 elsewhere.
static float axis_weight(const int *starts, int count, int t, int len, int f, int p) {
    float weight = 1.0f;
    if (t > 0) {
        const int ramp = (starts[t - 1] + len - starts[t]) * f;
        if (p < ramp) weight = fminf(weight, ((float)p + 0.5f) / (float)ramp);
    }
    if (t + 1 < count) {
        const int ramp = (starts[t] + len - starts[t + 1]) * f, q = len * f - 1 - p;
        if (q < ramp) weight = fminf(weight, ((float)q + 0.5f) / (float)ramp);
    }
    return weight;
}

dit_status dit_vae_decode_tiled(dit_vae *v, const float *z, int B, int h, int w, int tile, int overlap, float *x) {
    if (tile <= 0 || (tile >= h && tile >= w)) return dit_vae_decode(v, z, B, h, w, x);
    if (check_latent_size(v, B, h, w)) return DIT_ERR;
    if (overlap < 0 || overlap >= tile)
        return dit_set_error("VAE tiled decode: overlap %d must be in [0, tile size %d)", overlap, tile);
    const int f = dit_vae_config_factor(&v->cfg), Z = v->cfg.latent_channels, OC = v->cfg.out_channels;
    const int th = tile < h ? tile : h, tw = tile < w ? tile : w;
    int *ys = dit_malloc(sizeof(int) * (size_t)(h + 1)), *xs = dit_malloc(sizeof(int) * (size_t)(w + 1));
    const int ny = ys ? tile_starts(h, th, overlap, ys) : 0, nx = xs ? tile_starts(w, tw, overlap, xs) : 0;
    const int64_t H = (int64_t)h * f, W = (int64_t)w * f, tile_pixels = (int64_t)th * f * tw * f;
    float *zt = dit_malloc((size_t)Z * th * tw * sizeof *zt), *xt = dit_malloc((size_t)(OC * tile_pixels) * sizeof *xt);
    float *weights = dit_malloc((size_t)(H * W) * sizeof *weights);
    dit_status st = ys && xs && zt && xt && weights ? DIT_OK : DIT_ERR;
    for (int b = 0; st == DIT_OK && b < B; b++) {
        float *xb = x + b * OC * H * W;
        memset(xb, 0, (size_t)(OC * H * W) * sizeof *xb);
        memset(weights, 0, (size_t)(H * W) * sizeof *weights);
        for (int ty = 0; st == DIT_OK && ty < ny; ty++)
            for (int tx = 0; st == DIT_OK && tx < nx; tx++) {
                for (int c = 0; c < Z; c++)
                    for (int i = 0; i < th; i++)
                        memcpy(zt + ((int64_t)c * th + i) * tw,
                               z + (((int64_t)b * Z + c) * h + ys[ty] + i) * w + xs[tx], (size_t)tw * sizeof *zt);
                if ((st = decode_one(v, zt, th, tw, xt)) != DIT_OK) break;
                for (int i = 0; i < th * f; i++) {
                    const float wy = axis_weight(ys, ny, ty, th, f, i);
                    for (int j = 0; j < tw * f; j++) {
                        const float wgt = wy * axis_weight(xs, nx, tx, tw, f, j);
                        const int64_t pix = ((int64_t)ys[ty] * f + i) * W + (int64_t)xs[tx] * f + j;
                        weights[pix] += wgt;
                        for (int c = 0; c < OC; c++) xb[c * H * W + pix] += wgt * xt[(c * (int64_t)th * f + i) * tw * f + j];
                    }
                }
            }
        for (int c = 0; c < OC; c++)
            for (int64_t p = 0; p < H * W; p++) xb[c * H * W + p] /= weights[p];
    }
    free(ys);
    free(xs);
    free(zt);
    free(xt);
    free(weights);
    return st;
}
