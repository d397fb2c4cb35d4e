// DiT configurations, the parameter table in official state_dict order (reference.md §1.12; the other block
// designs of §1.13 in their module order), and the paper's parameter / Gflops counts (§1.11, §1.13). The forward pass is in dit_forward.c, loading in dit_load.c.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "models/dit_model.h"
#include "ops/ops.h"

const char *const dit_named_configs[] = {
    "DiT-S/8", "DiT-S/4", "DiT-S/2", "DiT-B/8", "DiT-B/4", "DiT-B/2",
    "DiT-L/8", "DiT-L/4", "DiT-L/2", "DiT-XL/8", "DiT-XL/4", "DiT-XL/2", NULL,
};

typedef struct {
    const char *size;
    int depth, hidden, heads;
} named_size;

static const named_size named_sizes[] = {
    {"S", 12, 384, 6}, {"B", 12, 768, 12}, {"L", 24, 1024, 16}, {"XL", 28, 1152, 16},
};

dit_status dit_config_named(dit_config *cfg, const char *name, int image_size) {
    char size[8];
    int patch = 0;
    if (sscanf(name, "DiT-%7[A-Z]/%d", size, &patch) != 2 || (patch != 2 && patch != 4 && patch != 8))
        return dit_set_error("unknown model '%s': expected one of DiT-S/2 ... DiT-XL/8 (S, B, L, XL with patch 2, 4 or 8)", name);
    if (image_size <= 0 || image_size % 8)
        return dit_set_error("image size %d: expected a positive multiple of 8 (the VAE downsamples by 8)", image_size);
    for (size_t i = 0; i < sizeof named_sizes / sizeof named_sizes[0]; i++) {
        if (strcmp(size, named_sizes[i].size)) continue;
        *cfg = (dit_config){
            .input_size = image_size / 8, .patch_size = patch, .in_channels = 4,
            .hidden_size = named_sizes[i].hidden, .depth = named_sizes[i].depth, .num_heads = named_sizes[i].heads,
            .mlp_ratio = 4.0f, .num_classes = 1000, .class_dropout_prob = 0.1f, .learn_sigma = 1,
        };
        return dit_config_validate(cfg);
    }
    return dit_set_error("unknown model size '%s' in '%s': expected S, B, L or XL", size, name);
}

int dit_heads_for_hidden(int hidden) {
    for (size_t i = 0; i < sizeof named_sizes / sizeof named_sizes[0]; i++)
        if (named_sizes[i].hidden == hidden) return named_sizes[i].heads;
    return 0;
}

dit_status dit_config_validate(const dit_config *c) {
    if (c->input_size <= 0 || c->patch_size <= 0 || c->in_channels <= 0 || c->hidden_size <= 0 || c->depth < 0 ||
        c->num_heads <= 0 || c->num_classes <= 0 || !(c->mlp_ratio > 0))
        return dit_set_error("model config: sizes must be positive (input %d, patch %d, channels %d, hidden %d, "
                             "depth %d, heads %d, classes %d)", c->input_size, c->patch_size, c->in_channels,
                             c->hidden_size, c->depth, c->num_heads, c->num_classes);
    if ((unsigned)c->block > DIT_BLOCK_IN_CONTEXT)
        return dit_set_error("model config: unknown block design %d", (int)c->block);
    if (c->input_size % c->patch_size)
        return dit_set_error("model config: input size %d is not a multiple of patch size %d", c->input_size, c->patch_size);
    if (c->hidden_size % c->num_heads)
        return dit_set_error("model config: hidden size %d is not a multiple of %d heads", c->hidden_size, c->num_heads);
    if (c->hidden_size % 4)
        return dit_set_error("model config: hidden size %d must be a multiple of 4 (2-D sin-cos positions)", c->hidden_size);
    if (c->input_size > 4096 || c->hidden_size > 65536 || c->depth > 1024 || c->num_classes > 10000000 ||
        c->in_channels > 4096 || c->mlp_ratio > 64)
        return dit_set_error("model config: sizes out of range (input %d, hidden %d, depth %d, classes %d)",
                             c->input_size, c->hidden_size, c->depth, c->num_classes);
    return DIT_OK;
}

int dit_config_out_channels(const dit_config *c) { return c->learn_sigma ? 2 * c->in_channels : c->in_channels; }
int dit_config_tokens(const dit_config *c) {
    int g = c->input_size / c->patch_size;
    return g * g;
}
static int mlp_hidden_of(const dit_config *c) { return (int)(c->hidden_size * c->mlp_ratio); }
static int label_rows_of(const dit_config *c) { return c->num_classes + (c->class_dropout_prob > 0); }

// ---- the parameter table -----------------------------------------------------------------------

typedef struct {
    int count_only;       // 1: only sum the sizes (dit_config_param_count), no entries
    param_entry *entries;
    int count, cap;
    size_t total;
    int out_of_memory;
} table_builder;

static void add_param(table_builder *tb, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    param_entry scratch, *e = &scratch;
    if (!tb->count_only && !tb->out_of_memory) {
        if (tb->count == tb->cap) {
            param_entry *grown = dit_realloc(tb->entries, 2 * (size_t)(tb->cap ? tb->cap : 32) * sizeof *grown);
            if (!grown) {
                tb->out_of_memory = 1;
                return;
            }
            tb->entries = grown;
            tb->cap = 2 * (tb->cap ? tb->cap : 32);
        }
        e = &tb->entries[tb->count++];
    }
    memset(e, 0, sizeof *e);
    DIT_CHECK(strlen(name) < PARAM_NAME_MAX);
    strcpy(e->name, name);
    e->ndim = ndim;
    int64_t dims[4] = {d0, d1, d2, d3};
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = dims[i];
        e->numel *= (size_t)dims[i];
    }
    e->offset = tb->total;
    tb->total += e->numel;
}

static const char *const block_names[] = {"adaln-zero", "adaln", "cross-attention", "in-context"};

dit_status dit_block_parse(const char *name, dit_block_kind *out) {
    for (int i = 0; i < (int)(sizeof block_names / sizeof block_names[0]); i++)
        if (!strcmp(name, block_names[i])) {
            *out = (dit_block_kind)i;
            return DIT_OK;
        }
    return dit_set_error("unknown block '%s': expected adaln-zero, adaln, cross-attention or in-context", name);
}

const char *dit_block_name(dit_block_kind block) {
    return (unsigned)block < sizeof block_names / sizeof block_names[0] ? block_names[block] : "unknown";
}

// A block's tensors in module order (reference.md §1.12 for adaLN-Zero; §1.13 for the other designs). Rows
// and columns as multiples of D (0 = the MLP width M); columns 0 = a vector.
typedef struct {
    const char *suffix;
    int rows, cols;
} block_tensor;

static const block_tensor attention_tensors[] = {
    {"attn.qkv.weight", 3, 1}, {"attn.qkv.bias", 3, -1}, {"attn.proj.weight", 1, 1}, {"attn.proj.bias", 1, -1},
};
static const block_tensor mlp_tensors[] = {
    {"mlp.fc1.weight", 0, 1}, {"mlp.fc1.bias", 0, -1}, {"mlp.fc2.weight", 1, 0}, {"mlp.fc2.bias", 1, -1},
};
static const block_tensor cross_tensors[] = {
    {"norm_cross.weight", 1, -1}, {"norm_cross.bias", 1, -1}, {"cross_attn.q.weight", 1, 1},
    {"cross_attn.q.bias", 1, -1}, {"cross_attn.kv.weight", 2, 1}, {"cross_attn.kv.bias", 2, -1},
    {"cross_attn.proj.weight", 1, 1}, {"cross_attn.proj.bias", 1, -1},
};

static void add_block_tensors(table_builder *tb, const dit_config *c, int l, const block_tensor *list, size_t n) {
    const int64_t D = c->hidden_size, M = mlp_hidden_of(c);
    char name[PARAM_NAME_MAX];
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "blocks.%d.%s", l, list[i].suffix);
        const int64_t rows = list[i].rows ? list[i].rows * D : M;
        if (list[i].cols < 0) add_param(tb, name, 1, rows, 0, 0, 0);
        else add_param(tb, name, 2, rows, list[i].cols ? list[i].cols * D : M, 0, 0);
    }
}

static void add_block_vector(table_builder *tb, int l, const char *suffix, int64_t n) {
    char name[PARAM_NAME_MAX];
    snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);
    add_param(tb, name, 1, n, 0, 0, 0);
}

static void build_table(table_builder *tb, const dit_config *c) {
    const int64_t D = c->hidden_size, C = c->in_channels, P = c->patch_size;
    const int64_t OUT = dit_config_out_channels(c);
    add_param(tb, "pos_embed", 3, 1, dit_config_tokens(c), D, 0);
    add_param(tb, "x_embedder.proj.weight", 4, D, C, P, P);
    add_param(tb, "x_embedder.proj.bias", 1, D, 0, 0, 0);
    add_param(tb, "t_embedder.mlp.0.weight", 2, D, 256, 0, 0);
    add_param(tb, "t_embedder.mlp.0.bias", 1, D, 0, 0, 0);
    add_param(tb, "t_embedder.mlp.2.weight", 2, D, D, 0, 0);
    add_param(tb, "t_embedder.mlp.2.bias", 1, D, 0, 0, 0);
    add_param(tb, "y_embedder.embedding_table.weight", 2, label_rows_of(c), D, 0, 0);
    const size_t n_attn = sizeof attention_tensors / sizeof attention_tensors[0];
    const size_t n_mlp = sizeof mlp_tensors / sizeof mlp_tensors[0];
    for (int l = 0; l < c->depth; l++) {
        if (dit_block_adaptive(c)) {   // attn, mlp, adaLN_modulation (6 chunks; adaLN regresses shift, scale: 4)
            const int64_t chunks = c->block == DIT_BLOCK_ADALN ? 4 : 6;
            char name[PARAM_NAME_MAX];
            add_block_tensors(tb, c, l, attention_tensors, n_attn);
            add_block_tensors(tb, c, l, mlp_tensors, n_mlp);
            snprintf(name, sizeof name, "blocks.%d.adaLN_modulation.1.weight", l);
            add_param(tb, name, 2, chunks * D, D, 0, 0);
            add_block_vector(tb, l, "adaLN_modulation.1.bias", chunks * D);
        } else {   // the plain blocks: norm1, attn, [norm_cross, cross_attn], norm2, mlp (timm's Block order)
            add_block_vector(tb, l, "norm1.weight", D);
            add_block_vector(tb, l, "norm1.bias", D);
            add_block_tensors(tb, c, l, attention_tensors, n_attn);
            if (c->block == DIT_BLOCK_CROSS_ATTENTION)
                add_block_tensors(tb, c, l, cross_tensors, sizeof cross_tensors / sizeof cross_tensors[0]);
            add_block_vector(tb, l, "norm2.weight", D);
            add_block_vector(tb, l, "norm2.bias", D);
            add_block_tensors(tb, c, l, mlp_tensors, n_mlp);
        }
    }
    if (!dit_block_adaptive(c)) {   // a plain final LayerNorm with its affine, then the linear decoder
        add_param(tb, "final_layer.norm_final.weight", 1, D, 0, 0, 0);
        add_param(tb, "final_layer.norm_final.bias", 1, D, 0, 0, 0);
    }
    add_param(tb, "final_layer.linear.weight", 2, P * P * OUT, D, 0, 0);
    add_param(tb, "final_layer.linear.bias", 1, P * P * OUT, 0, 0, 0);
    if (dit_block_adaptive(c)) {
        add_param(tb, "final_layer.adaLN_modulation.1.weight", 2, 2 * D, D, 0, 0);
        add_param(tb, "final_layer.adaLN_modulation.1.bias", 1, 2 * D, 0, 0, 0);
    }
}

int64_t dit_config_param_count(const dit_config *c) {
    table_builder tb = {.count_only = 1};
    build_table(&tb, c);
    return (int64_t)tb.total;
}

double dit_config_gmacs(const dit_config *c) {
    // Multiply-accumulates per sample, the paper's "Gflops" convention (reference.md §1.11).
    const double D = c->hidden_size, T = dit_config_tokens(c), P = c->patch_size, C = c->in_channels;
    const double M = mlp_hidden_of(c), OUT = dit_config_out_channels(c);
    // the blocks see T tokens, T + 2 with in-context conditioning (reference.md §1.13)
    const double Ts = c->block == DIT_BLOCK_IN_CONTEXT ? T + 2 : T;
    double per_block = Ts * (3 * D * D + D * D + 2 * D * M) + 2 * Ts * Ts * D;
    if (c->block == DIT_BLOCK_ADALN_ZERO) per_block += 6 * D * D;   // per-sample modulation: 6 chunks
    if (c->block == DIT_BLOCK_ADALN) per_block += 4 * D * D;        // 4 chunks
    // cross-attention: queries and output projection per image token, keys and values of the 2 context
    // tokens per sample, and QK^T, AV over 2 keys
    if (c->block == DIT_BLOCK_CROSS_ATTENTION) per_block += 2 * T * D * D + 2 * 2 * D * D + 2 * T * 2 * D;
    double macs = c->depth * per_block;
    macs += T * C * P * P * D;              // patch embedding
    macs += T * D * P * P * OUT;            // final layer
    if (dit_block_adaptive(c)) macs += 2 * D * D;   // and its adaLN
    macs += 256 * D + D * D;                // timestep MLP
    return macs / 1e9;
}

const param_entry *dit_param_find(const dit_model *m, const char *name) {
    for (int i = 0; i < m->num_params; i++)
        if (!strcmp(m->table[i].name, name)) return &m->table[i];
    return NULL;
}

static float *param_ptr(dit_model *m, const char *name) {
    const param_entry *e = dit_param_find(m, name);
    DIT_CHECK(e != NULL);
    return m->params + e->offset;
}

// A tensor only some block designs have: NULL in the others.
static float *param_ptr_if(dit_model *m, const char *name) {
    const param_entry *e = dit_param_find(m, name);
    return e ? m->params + e->offset : NULL;
}

dit_model *dit_model_create(const dit_config *cfg) {
    if (dit_config_validate(cfg) != DIT_OK) return NULL;
    dit_model *m = dit_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->label_rows = label_rows_of(cfg);
    m->mlp_hidden = mlp_hidden_of(cfg);
    m->seq_tokens = dit_config_tokens(cfg) + (cfg->block == DIT_BLOCK_IN_CONTEXT ? 2 : 0);
    table_builder tb = {0};
    build_table(&tb, cfg);
    if (tb.out_of_memory) {
        free(tb.entries);
        free(m);
        return NULL;
    }
    m->table = tb.entries;
    m->num_params = tb.count;
    m->total_floats = tb.total;
    m->params = tb.total <= SIZE_MAX / sizeof(float) ? dit_calloc(tb.total, sizeof(float)) : NULL;
    if (!m->params) {   // the caller asked for this size: an error to report, not a reason to exit
        dit_set_error("model config: out of memory allocating %zu parameters", tb.total);
        free(m->table);
        free(m);
        return NULL;
    }

    dit_params *p = &m->p;
    dit_layers *L = &m->layers;
    char name[PARAM_NAME_MAX];
    p->pos_embed = param_ptr(m, "pos_embed");
    p->patch_w = param_ptr(m, "x_embedder.proj.weight");
    p->patch_b = param_ptr(m, "x_embedder.proj.bias");
    p->t_mlp0_w = param_ptr(m, "t_embedder.mlp.0.weight");
    p->t_mlp0_b = param_ptr(m, "t_embedder.mlp.0.bias");
    p->t_mlp2_w = param_ptr(m, "t_embedder.mlp.2.weight");
    p->t_mlp2_b = param_ptr(m, "t_embedder.mlp.2.bias");
    p->y_table = param_ptr(m, "y_embedder.embedding_table.weight");
    p->blocks = dit_calloc(cfg->depth ? cfg->depth : 1, sizeof *p->blocks);
    L->blocks = dit_calloc(cfg->depth ? cfg->depth : 1, sizeof *L->blocks);
    if (!p->blocks || !L->blocks) {
        dit_model_free(m);
        return NULL;
    }
    for (int l = 0; l < cfg->depth; l++) {
        dit_block_params *bp = &p->blocks[l];
#define BLOCK_PTR(field, suffix) (snprintf(name, sizeof name, "blocks.%d.%s", l, suffix), bp->field = param_ptr(m, name))
#define BLOCK_PTR_IF(field, suffix) (snprintf(name, sizeof name, "blocks.%d.%s", l, suffix), bp->field = param_ptr_if(m, name))
        BLOCK_PTR(qkv_w, "attn.qkv.weight");
        BLOCK_PTR(qkv_b, "attn.qkv.bias");
        BLOCK_PTR(proj_w, "attn.proj.weight");
        BLOCK_PTR(proj_b, "attn.proj.bias");
        BLOCK_PTR(fc1_w, "mlp.fc1.weight");
        BLOCK_PTR(fc1_b, "mlp.fc1.bias");
        BLOCK_PTR(fc2_w, "mlp.fc2.weight");
        BLOCK_PTR(fc2_b, "mlp.fc2.bias");
        BLOCK_PTR_IF(ada_w, "adaLN_modulation.1.weight");
        BLOCK_PTR_IF(ada_b, "adaLN_modulation.1.bias");
        BLOCK_PTR_IF(norm1_w, "norm1.weight");
        BLOCK_PTR_IF(norm1_b, "norm1.bias");
        BLOCK_PTR_IF(norm2_w, "norm2.weight");
        BLOCK_PTR_IF(norm2_b, "norm2.bias");
        BLOCK_PTR_IF(cross_norm_w, "norm_cross.weight");
        BLOCK_PTR_IF(cross_norm_b, "norm_cross.bias");
        BLOCK_PTR_IF(cross_q_w, "cross_attn.q.weight");
        BLOCK_PTR_IF(cross_q_b, "cross_attn.q.bias");
        BLOCK_PTR_IF(cross_kv_w, "cross_attn.kv.weight");
        BLOCK_PTR_IF(cross_kv_b, "cross_attn.kv.bias");
        BLOCK_PTR_IF(cross_proj_w, "cross_attn.proj.weight");
        BLOCK_PTR_IF(cross_proj_b, "cross_attn.proj.bias");
#undef BLOCK_PTR
#undef BLOCK_PTR_IF
    }
    p->final_w = param_ptr(m, "final_layer.linear.weight");
    p->final_b = param_ptr(m, "final_layer.linear.bias");
    p->final_ada_w = param_ptr_if(m, "final_layer.adaLN_modulation.1.weight");
    p->final_ada_b = param_ptr_if(m, "final_layer.adaLN_modulation.1.bias");
    p->final_norm_w = param_ptr_if(m, "final_layer.norm_final.weight");
    p->final_norm_b = param_ptr_if(m, "final_layer.norm_final.bias");
    pos_embed_2d_sincos(p->pos_embed, cfg->hidden_size, cfg->input_size / cfg->patch_size);

    const int D = cfg->hidden_size, M = m->mlp_hidden, P = cfg->patch_size;
    const int OUT = dit_config_out_channels(cfg);
    linear_layer_init(&L->patch, p->patch_w, p->patch_b, D, cfg->in_channels * P * P);
    linear_layer_init(&L->t_mlp0, p->t_mlp0_w, p->t_mlp0_b, D, 256);
    linear_layer_init(&L->t_mlp2, p->t_mlp2_w, p->t_mlp2_b, D, D);
    if (p->final_ada_w) linear_layer_init(&L->final_ada, p->final_ada_w, p->final_ada_b, 2 * D, D);
    linear_layer_init(&L->final, p->final_w, p->final_b, P * P * OUT, D);
    for (int l = 0; l < cfg->depth; l++) {
        const dit_block_params *bp = &p->blocks[l];
        dit_block_layers *bl = &L->blocks[l];
        linear_layer_init(&bl->qkv, bp->qkv_w, bp->qkv_b, 3 * D, D);
        linear_layer_init(&bl->proj, bp->proj_w, bp->proj_b, D, D);
        linear_layer_init(&bl->fc1, bp->fc1_w, bp->fc1_b, M, D);
        linear_layer_init(&bl->fc2, bp->fc2_w, bp->fc2_b, D, M);
        if (bp->ada_w) linear_layer_init(&bl->ada, bp->ada_w, bp->ada_b, cfg->block == DIT_BLOCK_ADALN ? 4 * D : 6 * D, D);
        if (bp->cross_q_w) {
            linear_layer_init(&bl->cross_q, bp->cross_q_w, bp->cross_q_b, D, D);
            linear_layer_init(&bl->cross_kv, bp->cross_kv_w, bp->cross_kv_b, 2 * D, D);
            linear_layer_init(&bl->cross_proj, bp->cross_proj_w, bp->cross_proj_b, D, D);
        }
    }
    m->ops.weights_version = 1;
    m->precision = dit_precision_resolve(DIT_PRECISION_AUTO);
    m->ops.precision = m->precision == DIT_PRECISION_BF16 ? OPS_BF16 : OPS_FP32;
    return m;
}

static void free_layers(dit_model *m) {
    dit_layers *L = &m->layers;
    linear_layer *singles[] = {&L->patch, &L->t_mlp0, &L->t_mlp2, &L->final_ada, &L->final};
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) linear_layer_free(singles[i]);
    for (int l = 0; L->blocks && l < m->cfg.depth; l++) {
        dit_block_layers *bl = &L->blocks[l];
        linear_layer_free(&bl->qkv);
        linear_layer_free(&bl->proj);
        linear_layer_free(&bl->fc1);
        linear_layer_free(&bl->fc2);
        linear_layer_free(&bl->ada);
        linear_layer_free(&bl->cross_q);
        linear_layer_free(&bl->cross_kv);
        linear_layer_free(&bl->cross_proj);
    }
    free(L->blocks);
    L->blocks = NULL;
}

void dit_model_weights_changed(dit_model *m) { m->ops.weights_version++; }

dit_status dit_model_set_precision(dit_model *m, dit_precision p) {
    p = dit_precision_resolve(p);
    if (!dit_compute_path(p)) return DIT_ERR;
    m->precision = p;
    m->ops.precision = p == DIT_PRECISION_BF16 ? OPS_BF16 : OPS_FP32;
    return DIT_OK;
}

dit_precision dit_model_precision(const dit_model *m) { return m->precision; }

static void free_activations(dit_activations *a) {
    free(a->x); free(a->h); free(a->qkv); free(a->attn); free(a->mlp); free(a->tmp);
    free(a->cond); free(a->temb); free(a->tmid); free(a->ada); free(a->scores);
    free(a->context); free(a->cross_kv);
    free(a->cfg_x); free(a->cfg_t); free(a->cfg_out); free(a->cfg_y);
    memset(a, 0, sizeof *a);
}

void dit_activations_free(dit_model *m) { free_activations(&m->acts); }

const char *dit_model_class_name(const dit_model *m, int label) {
    if (label < 0 || label >= m->cfg.num_classes) return NULL;
    if (m->class_names) return m->class_names[label];
    return m->cfg.num_classes == 1000 ? dit_imagenet_class_name(label) : NULL;   // ImageNet-1k, shipped
}

static void free_class_names(dit_model *m) {
    for (int i = 0; m->class_names && i < m->cfg.num_classes; i++) free(m->class_names[i]);
    free(m->class_names);
    m->class_names = NULL;
}

dit_status dit_model_set_class_names(dit_model *m, const char *const *names, int count) {
    if (count != m->cfg.num_classes)
        return dit_set_error("class names: %d names given for a model of %d classes", count, m->cfg.num_classes);
    free_class_names(m);
    char **copy = dit_calloc(count, sizeof *copy);
    for (int i = 0; copy && i < count; i++) {
        if ((copy[i] = dit_strdup(names[i]))) continue;
        while (i > 0) free(copy[--i]);
        free(copy);
        copy = NULL;
    }
    if (!copy) return DIT_ERR;
    m->class_names = copy;
    return DIT_OK;
}

void dit_model_free(dit_model *m) {
    if (!m) return;
    free_class_names(m);
    free_activations(&m->acts);
    free_layers(m);
    free(m->p.blocks);
    free(m->params);
    free(m->table);
    free(m);
}

const dit_config *dit_model_config(const dit_model *m) { return &m->cfg; }
