// Loading a DiT from any published layout onto the official parameter table (reference.md §1.12, §4.2):
// official .pt (raw state_dict, or train.py's {"model", "ema", ...} where "ema" wins), safetensors with
// official keys, diffusers-layout safetensors, and dit's own safetensors (config in __metadata__).
// Whatever the layout, the model then runs the official numerics. Saving writes dit's own format.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "io/tensors.h"
#include "io/zip.h"
#include "models/dit_model.h"


typedef enum { LAYOUT_OFFICIAL, LAYOUT_DIFFUSERS } key_layout;

typedef struct {
    const tensor_file *file;
    const char *prefix;   // "ema.", "model.", "" ...
    key_layout layout;
} key_source;

static const tensor_view *find_key(const key_source *src, const char *key) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", src->prefix, key);
    return tensor_file_find(src->file, full);
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t used = snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++) used += snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

// Shapes must agree element for element, except that a leading-1 axis (pos_embed) may be absent.
static int same_shape(const tensor_view *t, const param_entry *e) {
    int64_t tn = tensor_numel(t);
    if (tn != (int64_t)e->numel) return 0;
    int ti = 0, ei = 0;
    while (ti < t->ndim && t->shape[ti] == 1 && t->ndim > e->ndim) ti++;
    while (ei < e->ndim && e->shape[ei] == 1 && e->ndim > t->ndim) ei++;
    if (t->ndim - ti != e->ndim - ei) return 0;
    for (; ti < t->ndim; ti++, ei++)
        if (t->shape[ti] != e->shape[ei]) return 0;
    return 1;
}

static dit_status copy_tensor(const char *path, const tensor_view *t, const param_entry *e, float *dst,
                              const char *file_key) {
    if (!tensor_is_float(t))
        return dit_set_error("%s: tensor %s has dtype %s, expected a floating type (F32, F16, BF16, F64)", path,
                             file_key, dtype_name(t->dtype));
    if (!same_shape(t, e)) {
        char got[128], want[128];
        format_shape(got, sizeof got, t->ndim, t->shape);
        format_shape(want, sizeof want, e->ndim, e->shape);
        return dit_set_error("%s: tensor %s has shape %s, expected %s", path, file_key, got, want);
    }
    tensor_to_f32(t, dst);
    return DIT_OK;
}

// ---- which layout and prefix -------------------------------------------------------------------

static int detect_source(const tensor_file *f, int skip_ema, key_source *src) {
    // train.py checkpoints hold "model" and "ema": sampling uses the EMA weights, as find_model does.
    static const char *const prefixes[] = {"ema.", "", "model.", "module.", "model.module.", "state_dict.", "ema.module."};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        if (skip_ema && !strncmp(prefixes[i], "ema.", 4)) continue;
        key_source s = {f, prefixes[i], LAYOUT_OFFICIAL};
        if (find_key(&s, "x_embedder.proj.weight")) { *src = s; return 1; }
        s.layout = LAYOUT_DIFFUSERS;
        if (find_key(&s, "pos_embed.proj.weight")) { *src = s; return 1; }
    }
    return 0;
}

// The official key of a table entry spelled in the source's layout; returns 0 when the entry has no single
// counterpart (diffusers splits qkv into to_q/to_k/to_v: fill_params gathers those).
static int layout_key(const key_source *src, const char *official, char *out, size_t n) {
    if (src->layout == LAYOUT_OFFICIAL) {
        snprintf(out, n, "%s", official);
        return 1;
    }
    int l;
    char rest[PARAM_NAME_MAX];
    static const struct { const char *official, *diffusers; } fixed[] = {
        {"x_embedder.proj.weight", "pos_embed.proj.weight"},
        {"x_embedder.proj.bias", "pos_embed.proj.bias"},
        {"t_embedder.mlp.0.weight", "transformer_blocks.0.norm1.emb.timestep_embedder.linear_1.weight"},
        {"t_embedder.mlp.0.bias", "transformer_blocks.0.norm1.emb.timestep_embedder.linear_1.bias"},
        {"t_embedder.mlp.2.weight", "transformer_blocks.0.norm1.emb.timestep_embedder.linear_2.weight"},
        {"t_embedder.mlp.2.bias", "transformer_blocks.0.norm1.emb.timestep_embedder.linear_2.bias"},
        {"y_embedder.embedding_table.weight", "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"},
        {"final_layer.linear.weight", "proj_out_2.weight"},
        {"final_layer.linear.bias", "proj_out_2.bias"},
        {"final_layer.adaLN_modulation.1.weight", "proj_out_1.weight"},
        {"final_layer.adaLN_modulation.1.bias", "proj_out_1.bias"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(official, fixed[i].official)) {
            snprintf(out, n, "%s", fixed[i].diffusers);
            return 1;
        }
    if (sscanf(official, "blocks.%d.%63s", &l, rest) == 2) {
        static const struct { const char *official, *diffusers; } block[] = {
            {"attn.proj.weight", "attn1.to_out.0.weight"}, {"attn.proj.bias", "attn1.to_out.0.bias"},
            {"mlp.fc1.weight", "ff.net.0.proj.weight"}, {"mlp.fc1.bias", "ff.net.0.proj.bias"},
            {"mlp.fc2.weight", "ff.net.2.weight"}, {"mlp.fc2.bias", "ff.net.2.bias"},
            {"adaLN_modulation.1.weight", "norm1.linear.weight"}, {"adaLN_modulation.1.bias", "norm1.linear.bias"},
        };
        for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
            if (!strcmp(rest, block[i].official)) {
                snprintf(out, n, "transformer_blocks.%d.%s", l, block[i].diffusers);
                return 1;
            }
    }
    return 0;
}

// ---- configuration from shapes -----------------------------------------------------------------

static dit_status require(const char *path, const key_source *src, const char *key, int ndim, const tensor_view **t) {
    *t = find_key(src, key);
    if (!*t) return dit_set_error("%s: missing tensor %s%s", path, src->prefix, key);
    if ((*t)->ndim != ndim)
        return dit_set_error("%s: tensor %s%s has %d dimensions, expected %d", path, src->prefix, key, (*t)->ndim, ndim);
    return DIT_OK;
}

static int count_blocks(const key_source *src) {
    char key[PARAM_NAME_MAX + 32];
    int depth = 0;
    for (;; depth++) {
        snprintf(key, sizeof key, src->layout == LAYOUT_OFFICIAL ? "blocks.%d.mlp.fc1.weight"
                                                                 : "transformer_blocks.%d.ff.net.0.proj.weight", depth);
        if (!find_key(src, key)) return depth;
    }
}

static int meta_int(const cJSON *obj, const char *name, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valueint;
    return 1;
}

// dit's own files carry the full config as JSON in __metadata__["dit.config"].
static dit_status config_from_metadata(const char *path, const char *json, dit_config *cfg) {
    cJSON *obj = cJSON_Parse(json);
    if (!obj || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return dit_set_error("%s: metadata dit.config is not a JSON object", path);
    }
    int ok = meta_int(obj, "input_size", &cfg->input_size) & meta_int(obj, "patch_size", &cfg->patch_size) &
             meta_int(obj, "in_channels", &cfg->in_channels) & meta_int(obj, "hidden_size", &cfg->hidden_size) &
             meta_int(obj, "depth", &cfg->depth) & meta_int(obj, "num_heads", &cfg->num_heads) &
             meta_int(obj, "num_classes", &cfg->num_classes) & meta_int(obj, "learn_sigma", &cfg->learn_sigma);
    // "block" came with the block designs of reference.md §1.13: a file without it holds adaLN-Zero
    cfg->block = DIT_BLOCK_ADALN_ZERO;
    const cJSON *block = cJSON_GetObjectItemCaseSensitive(obj, "block");
    if (block && !(cJSON_IsString(block) && dit_block_parse(block->valuestring, &cfg->block) == DIT_OK)) {
        cJSON_Delete(obj);
        return dit_set_error("%s: metadata dit.config: block must be one of \"adaln-zero\", \"adaln\", "
                             "\"cross-attention\", \"in-context\"", path);
    }
    const cJSON *ratio = cJSON_GetObjectItemCaseSensitive(obj, "mlp_ratio");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(obj, "class_dropout_prob");
    ok = ok && cJSON_IsNumber(ratio) && cJSON_IsNumber(drop);
    if (ok) {
        cfg->mlp_ratio = (float)ratio->valuedouble;
        cfg->class_dropout_prob = (float)drop->valuedouble;
    }
    cJSON_Delete(obj);
    if (!ok) return dit_set_error("%s: metadata dit.config lacks a field (input_size, patch_size, in_channels, "
                                  "hidden_size, depth, num_heads, mlp_ratio, num_classes, class_dropout_prob, learn_sigma)", path);
    if (dit_config_validate(cfg) != DIT_OK) {
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    return DIT_OK;
}

// A diffusers folder keeps config.json beside the weights (transformer/config.json): the latent side
// (sample_size) and the head count, which the weights alone do not say (reference.md §4.1). Fills
// *sample_size and *heads (0 when absent; no file is no error) and checks what the weights do say.
static dit_status read_diffusers_json(const char *path, const dit_config *cfg, int *sample_size, int *heads) {
    *sample_size = *heads = 0;
    char json_path[4096];
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path) + 1 : 0;
    if (snprintf(json_path, sizeof json_path, "%.*sconfig.json", dir_len, path) >= (int)sizeof json_path) return DIT_OK;
    FILE *f = fopen(json_path, "rb");
    if (!f) return DIT_OK;
    char *text = dit_malloc(1 << 20);
    if (!text) {
        fclose(f);
        return DIT_ERR;
    }
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    int too_big = !feof(f);
    fclose(f);
    text[n] = '\0';
    cJSON *root = too_big ? NULL : cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dit_set_error("%s: not a JSON object of at most 1 MB (the diffusers config beside %s)", json_path, path);
    }
    const struct { const char *key; int want; } checks[] = {
        {"patch_size", cfg->patch_size}, {"in_channels", cfg->in_channels}, {"num_layers", cfg->depth},
        {"out_channels", dit_config_out_channels(cfg)},
    };
    dit_status st = DIT_OK;
    for (size_t i = 0; i < sizeof checks / sizeof checks[0] && st == DIT_OK; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, checks[i].key);
        if (v && !cJSON_IsNull(v) && (!cJSON_IsNumber(v) || v->valuedouble != checks[i].want))
            st = dit_set_error("%s: %s is %s, the weights in %s say %d", json_path, checks[i].key,
                               cJSON_IsNumber(v) ? "another number" : "not a number", path, checks[i].want);
    }
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "sample_size");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "num_attention_heads");
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "attention_head_dim");
    if (st == DIT_OK && size && !(cJSON_IsNumber(size) && size->valuedouble >= 1 && size->valuedouble <= 4096 &&
                                  size->valuedouble == (int)size->valuedouble))
        st = dit_set_error("%s: sample_size must be an integer in 1..4096", json_path);
    if (st == DIT_OK && h && !(cJSON_IsNumber(h) && h->valuedouble >= 1 && h->valuedouble <= 65536 &&
                               h->valuedouble == (int)h->valuedouble))
        st = dit_set_error("%s: num_attention_heads must be a positive integer", json_path);
    if (st == DIT_OK && h && hd && (!cJSON_IsNumber(hd) || hd->valuedouble * h->valuedouble != cfg->hidden_size))
        st = dit_set_error("%s: num_attention_heads x attention_head_dim must be the hidden size %d of %s", json_path,
                           cfg->hidden_size, path);
    if (st == DIT_OK) {
        *sample_size = size ? size->valueint : 0;
        *heads = h ? h->valueint : 0;
    }
    cJSON_Delete(root);
    return st;
}

static dit_status infer_config(const char *path, const key_source *src, const dit_load_options *opts, dit_config *cfg) {
    const int diffusers = src->layout == LAYOUT_DIFFUSERS;
    const tensor_view *patch, *fc1, *table, *final_linear, *pos = NULL;
    if (require(path, src, diffusers ? "pos_embed.proj.weight" : "x_embedder.proj.weight", 4, &patch) ||
        require(path, src, diffusers ? "transformer_blocks.0.ff.net.0.proj.weight" : "blocks.0.mlp.fc1.weight", 2, &fc1) ||
        require(path, src, diffusers ? "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"
                                     : "y_embedder.embedding_table.weight", 2, &table) ||
        require(path, src, diffusers ? "proj_out_2.weight" : "final_layer.linear.weight", 2, &final_linear))
        return DIT_ERR;
    memset(cfg, 0, sizeof *cfg);
    cfg->hidden_size = (int)patch->shape[0];
    cfg->in_channels = (int)patch->shape[1];
    cfg->patch_size = (int)patch->shape[2];
    if (patch->shape[2] != patch->shape[3] || patch->shape[0] <= 0 || patch->shape[0] > 65536 ||
        patch->shape[1] <= 0 || patch->shape[1] > 4096 || patch->shape[2] <= 0 || patch->shape[2] > 64)
        return dit_set_error("%s: patch embedding weight has an unusable shape", path);
    cfg->depth = count_blocks(src);
    cfg->mlp_ratio = (float)fc1->shape[0] / (float)cfg->hidden_size;
    // The official tables have num_classes + 1 rows: the last is the null class of classifier-free guidance.
    cfg->num_classes = (int)table->shape[0] - 1;
    cfg->class_dropout_prob = 0.1f;
    if (table->shape[0] < 2) return dit_set_error("%s: label table has %lld rows, expected at least 2", path, (long long)table->shape[0]);
    const int64_t pp = (int64_t)cfg->patch_size * cfg->patch_size;
    if (final_linear->shape[0] == pp * 2 * cfg->in_channels) cfg->learn_sigma = 1;
    else if (final_linear->shape[0] == pp * cfg->in_channels) cfg->learn_sigma = 0;
    else return dit_set_error("%s: final linear has %lld outputs, expected %lld (learned sigma) or %lld", path,
                              (long long)final_linear->shape[0], (long long)(pp * 2 * cfg->in_channels),
                              (long long)(pp * cfg->in_channels));
    if (!diffusers) pos = find_key(src, "pos_embed");
    int json_size = 0, json_heads = 0;
    if (diffusers && read_diffusers_json(path, cfg, &json_size, &json_heads) != DIT_OK) return DIT_ERR;
    if (opts && opts->input_size > 0) {
        cfg->input_size = opts->input_size;
    } else if (pos) {
        int64_t tokens = tensor_numel(pos) / cfg->hidden_size;
        int64_t side = (int64_t)llround(sqrt((double)tokens));
        if (side * side != tokens) return dit_set_error("%s: pos_embed holds %lld tokens, not a square grid", path, (long long)tokens);
        cfg->input_size = (int)(side * cfg->patch_size);
    } else if (json_size > 0) {
        cfg->input_size = json_size;
    } else if (opts && opts->input_size_if_unknown > 0) {
        cfg->input_size = opts->input_size_if_unknown;
    } else {
        return dit_set_error("%s: the file does not say the input size (no pos_embed, no config.json beside it): "
                             "pass --image-size", path);
    }
    cfg->num_heads = opts && opts->num_heads > 0 ? opts->num_heads
                     : json_heads > 0           ? json_heads
                                                : dit_heads_for_hidden(cfg->hidden_size);
    if (!cfg->num_heads)
        return dit_set_error("%s: hidden size %d is not one of the named DiT widths, so the head count is unknown: "
                             "pass --heads", path, cfg->hidden_size);
    if (dit_config_validate(cfg) != DIT_OK) {
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    return DIT_OK;
}

// ---- filling the table -------------------------------------------------------------------------

static dit_status fill_params(dit_model *m, const char *path, const key_source *src) {
    char key[PARAM_NAME_MAX + 64];
    const int D = m->cfg.hidden_size;
    for (int i = 0; i < m->num_params; i++) {
        const param_entry *e = &m->table[i];
        float *dst = m->params + e->offset;
        if (!strcmp(e->name, "pos_embed")) {
            // Read it where the file has it (load_state_dict does); otherwise keep the computed table.
            const tensor_view *t = src->layout == LAYOUT_OFFICIAL ? find_key(src, "pos_embed") : NULL;
            if (t && copy_tensor(path, t, e, dst, "pos_embed")) return DIT_ERR;
            continue;
        }
        int layer;
        char rest[PARAM_NAME_MAX];
        if (src->layout == LAYOUT_DIFFUSERS && sscanf(e->name, "blocks.%d.attn.qkv.%63s", &layer, rest) == 2) {
            // qkv rows are [q | k | v]: gather them from diffusers' split to_q / to_k / to_v (torch.chunk(3)).
            param_entry part = *e;
            part.shape[0] = D;
            part.numel = e->numel / 3;
            for (int j = 0; j < 3; j++) {
                snprintf(key, sizeof key, "transformer_blocks.%d.attn1.to_%c.%s", layer, "qkv"[j], rest);
                const tensor_view *t = find_key(src, key);
                if (!t) return dit_set_error("%s: missing tensor %s%s", path, src->prefix, key);
                if (copy_tensor(path, t, &part, dst + j * part.numel, key)) return DIT_ERR;
            }
            continue;
        }
        if (!layout_key(src, e->name, key, sizeof key))
            return dit_set_error("%s: no diffusers key is known for %s", path, e->name);
        const tensor_view *t = find_key(src, key);
        if (!t) return dit_set_error("%s: missing tensor %s%s", path, src->prefix, key);
        if (copy_tensor(path, t, e, dst, key)) return DIT_ERR;
    }
    return DIT_OK;
}

// Optional display names of the classes: __metadata__["dit.class_names"] = JSON list of num_classes strings.
static dit_status load_class_names(dit_model *m, const char *path, const tensor_file *file) {
    const char *json = tensor_file_meta(file, "dit.class_names");
    if (!json) return DIT_OK;
    cJSON *list = cJSON_Parse(json);
    int count = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    const char **names = count > 0 ? dit_calloc(count, sizeof *names) : NULL;
    if (count > 0 && !names) {
        cJSON_Delete(list);
        return DIT_ERR;
    }
    for (int i = 0; i < count; i++) {
        const cJSON *item = cJSON_GetArrayItem(list, i);
        names[i] = cJSON_IsString(item) ? item->valuestring : NULL;
        if (!names[i]) count = -1;
    }
    dit_status st = count == m->cfg.num_classes ? dit_model_set_class_names(m, names, count)
                    : dit_set_error("%s: metadata dit.class_names must be a list of %d strings", path, m->cfg.num_classes);
    free(names);
    cJSON_Delete(list);
    return st;
}

// What the network predicts: __metadata__["dit.objective"], "eps" or "v-flow"; absent (every file from before
// flow matching, and every non-dit file) = eps.
static dit_status load_objective(dit_model *m, const char *path, const tensor_file *file) {
    const char *name = tensor_file_meta(file, "dit.objective");
    m->objective = DIT_OBJECTIVE_EPS;
    if (name && dit_objective_parse(name, &m->objective) != DIT_OK) {
        dit_prefix_error("%s: metadata dit.objective", path);
        return DIT_ERR;
    }
    return DIT_OK;
}

dit_model *dit_model_load(const char *path, const dit_load_options *opts) {
    tensor_file file = {0};
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        dit_set_error("%s: cannot open model file", path);
        return NULL;
    }
    fclose(probe);
    dit_status st = zip_file_has_magic(path) ? torch_pt_read(path, &file) : safetensors_read(path, &file);
    if (st != DIT_OK) return NULL;
    dit_model *m = NULL;
    key_source src;
    dit_config cfg;
    const char *own_config = tensor_file_meta(&file, "dit.config");
    const int skip_ema = opts && opts->skip_ema;
    if (!detect_source(&file, skip_ema, &src)) {
        dit_set_error("%s: no DiT weights found (looked for x_embedder.proj.weight or the diffusers pos_embed.proj.weight, "
                      "also under %smodel., module.)", path, skip_ema ? "" : "ema., ");
        goto done;
    }
    if (own_config ? config_from_metadata(path, own_config, &cfg) : infer_config(path, &src, opts, &cfg)) goto done;
    if (own_config && opts && opts->input_size > 0 && opts->input_size != cfg.input_size) {
        dit_set_error("%s: the file is for input size %d, not %d", path, cfg.input_size, opts->input_size);
        goto done;
    }
    // Refuse a config that asks for more parameters than the file holds before allocating them (a lying
    // dit.config could otherwise ask for terabytes); pos_embed may be absent (it is recomputed).
    int64_t file_values = 0;
    for (int i = 0; i < file.count; i++) file_values += tensor_numel(&file.tensors[i]);
    const int64_t needed = dit_config_param_count(&cfg) - (int64_t)dit_config_tokens(&cfg) * cfg.hidden_size;
    if (needed > file_values) {
        dit_set_error("%s: the config needs %lld parameters, the file holds %lld values", path, (long long)needed,
                      (long long)file_values);
        goto done;
    }
    m = dit_model_create(&cfg);
    if (!m) {
        dit_prefix_error("%s", path);
        goto done;
    }
    if (fill_params(m, path, &src) != DIT_OK || load_class_names(m, path, &file) != DIT_OK ||
        load_objective(m, path, &file) != DIT_OK) {
        dit_model_free(m);
        m = NULL;
    }
done:
    tensor_file_free(&file);
    return m;
}

dit_status dit_config_from_json(dit_config *cfg, const char *json, const char *what) {
    memset(cfg, 0, sizeof *cfg);
    return config_from_metadata(what, json, cfg);
}

dit_status dit_config_to_json(const dit_config *c, char *buf, size_t n) {
    int len = snprintf(buf, n,
                       "{\"input_size\": %d, \"patch_size\": %d, \"in_channels\": %d, \"hidden_size\": %d, "
                       "\"depth\": %d, \"num_heads\": %d, \"mlp_ratio\": %.9g, \"num_classes\": %d, "
                       "\"class_dropout_prob\": %.9g, \"learn_sigma\": %d, \"block\": \"%s\"}",
                       c->input_size, c->patch_size, c->in_channels, c->hidden_size, c->depth, c->num_heads,
                       (double)c->mlp_ratio, c->num_classes, (double)c->class_dropout_prob, c->learn_sigma,
                       dit_block_name(c->block));
    return len > 0 && (size_t)len < n ? DIT_OK : dit_set_error("config JSON does not fit in %zu bytes", n);
}

dit_status dit_model_save(const dit_model *m, const char *path) { return dit_model_save_as(m, path, "f32"); }

dit_status dit_model_save_as(const dit_model *m, const char *path, const char *dtype_text) {
    dit_dtype dtype;
    if (!strcmp(dtype_text, "f32")) dtype = DT_F32;
    else if (!strcmp(dtype_text, "f16")) dtype = DT_F16;
    else if (!strcmp(dtype_text, "bf16")) dtype = DT_BF16;
    else return dit_set_error("%s: unknown storage type '%s' (expected f32, f16 or bf16)", path, dtype_text);
    char config_json[512];
    if (dit_config_to_json(&m->cfg, config_json, sizeof config_json)) return DIT_ERR;
    tensor_out *outs = dit_calloc(m->num_params, sizeof *outs);
    void *converted = dtype == DT_F32 ? NULL : dit_malloc(m->total_floats * dtype_size(dtype));
    if (!outs || (dtype != DT_F32 && !converted)) {
        free(outs);
        free(converted);
        return DIT_ERR;
    }
    int count = 0;
    for (int i = 0; i < m->num_params; i++) {
        const param_entry *e = &m->table[i];
        if (dtype != DT_F32 && !strcmp(e->name, "pos_embed")) continue;   // recomputed exactly at load
        tensor_out *o = &outs[count++];
        o->name = e->name;
        o->dtype = dtype;
        o->ndim = e->ndim;
        memcpy(o->shape, e->shape, sizeof e->shape);
        if (dtype == DT_F32) {
            o->data = m->params + e->offset;
        } else {
            void *dst = (uint8_t *)converted + e->offset * dtype_size(dtype);
            tensor_from_f32(dtype, m->params + e->offset, (int64_t)e->numel, dst);
            o->data = dst;
        }
    }
    char *names_json = NULL;
    if (m->class_names) {
        cJSON *list = cJSON_CreateArray();
        for (int i = 0; i < m->cfg.num_classes; i++) cJSON_AddItemToArray(list, cJSON_CreateString(m->class_names[i]));
        names_json = cJSON_PrintUnformatted(list);
        cJSON_Delete(list);
        if (!names_json) {   // cJSON's own allocation failed
            free(outs);
            free(converted);
            return dit_set_error("%s: out of memory writing the class names", path);
        }
    }
    // dit.objective only for flow models: eps files stay as they were (and the key's absence means eps)
    const char *keys[4] = {"format", "dit.config"}, *values[4] = {"dit", config_json};
    int num_keys = 2;
    if (names_json) keys[num_keys] = "dit.class_names", values[num_keys++] = names_json;
    if (m->objective != DIT_OBJECTIVE_EPS) keys[num_keys] = "dit.objective", values[num_keys++] = dit_objective_name(m->objective);
    dit_status st = safetensors_write(path, outs, count, keys, values, num_keys);
    free(outs);
    free(converted);
    free(names_json);
    return st;
}
