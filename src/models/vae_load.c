// Loading the autoencoder from the published layouts onto the diffusers-current parameter table
// (reference.md §4.4): diffusers safetensors with current (to_q/to_k/to_v/to_out.0) or older
// (query/key/value/proj_attn) attention names, and CompVis/ldm checkpoints (.ckpt or .safetensors, keys
// maybe under "state_dict." and "first_stage_model." / "vae."). Every key mapping is in vae_layout_key.
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "io/tensors.h"
#include "io/zip.h"
#include "models/vae.h"

typedef enum { VAE_DIFFUSERS, VAE_DIFFUSERS_OLD_ATTN, VAE_COMPVIS } vae_layout;

typedef struct {
    const tensor_file *file;
    const char *prefix;
    vae_layout layout;
    int levels;    // needed to reverse the decoder's level index in the CompVis layout
} vae_source;

// ldm names resnet parts as diffusers does, except the 1x1 shortcut.
static void compvis_resnet_rest(const char *rest, char *out, size_t n) {
    if (!strncmp(rest, "conv_shortcut.", 14)) snprintf(out, n, "nin_shortcut.%s", rest + 14);
    else snprintf(out, n, "%s", rest);
}

static void attention_rest(vae_layout layout, const char *rest, char *out, size_t n) {
    static const struct { const char *current, *old, *compvis; } names[] = {
        {"group_norm.", "group_norm.", "norm."}, {"to_q.", "query.", "q."}, {"to_k.", "key.", "k."},
        {"to_v.", "value.", "v."}, {"to_out.0.", "proj_attn.", "proj_out."},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len = strlen(names[i].current);
        if (!strncmp(rest, names[i].current, len)) {
            snprintf(out, n, "%s%s", layout == VAE_COMPVIS ? names[i].compvis : names[i].old, rest + len);
            return;
        }
    }
    snprintf(out, n, "%s", rest);
}

// The key of a table entry (diffusers current name) in the source's layout, without the prefix.
static void vae_layout_key(const vae_source *src, const char *name, char *out, size_t n) {
    char coder[16], rest[VAE_NAME_MAX], mapped[VAE_NAME_MAX + 16];
    int i, j;
    if (src->layout == VAE_DIFFUSERS) {
        snprintf(out, n, "%s", name);
    } else if (sscanf(name, "%15[a-z].mid_block.attentions.0.%79s", coder, rest) == 2) {
        attention_rest(src->layout, rest, mapped, sizeof mapped);
        snprintf(out, n, src->layout == VAE_COMPVIS ? "%s.mid.attn_1.%s" : "%s.mid_block.attentions.0.%s", coder, mapped);
    } else if (src->layout == VAE_DIFFUSERS_OLD_ATTN) {
        snprintf(out, n, "%s", name);
    } else if (sscanf(name, "encoder.down_blocks.%d.resnets.%d.%79s", &i, &j, rest) == 3) {
        compvis_resnet_rest(rest, mapped, sizeof mapped);
        snprintf(out, n, "encoder.down.%d.block.%d.%s", i, j, mapped);
    } else if (sscanf(name, "encoder.down_blocks.%d.downsamplers.0.%79s", &i, rest) == 2) {
        snprintf(out, n, "encoder.down.%d.downsample.%s", i, rest);
    } else if (sscanf(name, "decoder.up_blocks.%d.resnets.%d.%79s", &i, &j, rest) == 3) {
        // ldm indexes decoder levels by resolution: up.(L-1) runs first, as up_blocks.0.
        compvis_resnet_rest(rest, mapped, sizeof mapped);
        snprintf(out, n, "decoder.up.%d.block.%d.%s", src->levels - 1 - i, j, mapped);
    } else if (sscanf(name, "decoder.up_blocks.%d.upsamplers.0.%79s", &i, rest) == 2) {
        snprintf(out, n, "decoder.up.%d.upsample.%s", src->levels - 1 - i, rest);
    } else if (sscanf(name, "%15[a-z].mid_block.resnets.%d.%79s", coder, &i, rest) == 3) {
        compvis_resnet_rest(rest, mapped, sizeof mapped);
        snprintf(out, n, "%s.mid.block_%d.%s", coder, i + 1, mapped);
    } else if (sscanf(name, "%15[a-z].conv_norm_out.%79s", coder, rest) == 2) {
        snprintf(out, n, "%s.norm_out.%s", coder, rest);
    } else {
        snprintf(out, n, "%s", name);   // conv_in, conv_out, quant_conv, post_quant_conv
    }
}

static const tensor_view *find_in(const vae_source *src, const char *name, char *key, size_t n) {
    char layout_key[256];
    vae_layout_key(src, name, layout_key, sizeof layout_key);
    snprintf(key, n, "%s%s", src->prefix, layout_key);
    return tensor_file_find(src->file, key);
}

static const tensor_view *find(const vae_source *src, const char *fmt, int a, int b) {
    char name[VAE_NAME_MAX], key[320];
    snprintf(name, sizeof name, fmt, a, b);
    return find_in(src, name, key, sizeof key);
}

static int detect_source(const tensor_file *f, vae_source *src) {
    static const char *const prefixes[] = {"", "first_stage_model.", "vae.", "state_dict.", "state_dict.first_stage_model.",
                                           "state_dict.vae.", "model.", "module."};
    char key[128];
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        snprintf(key, sizeof key, "%sencoder.conv_in.weight", prefixes[i]);
        if (!tensor_file_find(f, key)) continue;
        src->file = f;
        src->prefix = prefixes[i];
        snprintf(key, sizeof key, "%sencoder.down.0.block.0.conv1.weight", prefixes[i]);
        if (tensor_file_find(f, key)) {
            src->layout = VAE_COMPVIS;
            return 1;
        }
        snprintf(key, sizeof key, "%sencoder.mid_block.attentions.0.query.weight", prefixes[i]);
        src->layout = tensor_file_find(f, key) ? VAE_DIFFUSERS_OLD_ATTN : VAE_DIFFUSERS;
        return 1;
    }
    return 0;
}

static dit_status require_4d(const char *path, const vae_source *src, const char *name, const tensor_view **t) {
    char key[320];
    *t = find_in(src, name, key, sizeof key);
    if (!*t) return dit_set_error("%s: missing tensor %s", path, key);
    if ((*t)->ndim != 4 || (*t)->shape[0] < 1 || (*t)->shape[1] < 1)
        return dit_set_error("%s: tensor %s has %d dimensions, expected a conv weight [out, in, kh, kw]", path, key,
                             (*t)->ndim);
    return DIT_OK;
}

// Widths from shapes: level i has block_out[i] = out channels of its first resnet's conv1.
static dit_status infer_config(const char *path, vae_source *src, const dit_vae_load_options *opts,
                               dit_vae_config *cfg) {
    const tensor_view *conv_in, *dec_in, *dec_out, *t;
    dit_vae_config_sd(cfg);
    cfg->norm_groups = opts && opts->norm_groups > 0 ? opts->norm_groups : 32;
    src->levels = 1;   // the encoder's names do not depend on it
    int levels = 0, layers = 0;
    while (levels < DIT_VAE_MAX_LEVELS && (t = find(src, "encoder.down_blocks.%d.resnets.0.conv1.weight", levels, 0))) {
        if (t->ndim != 4) return dit_set_error("%s: encoder level %d's conv1 weight is not 4-D", path, levels);
        cfg->block_out[levels++] = (int)t->shape[0];
    }
    while (layers < VAE_MAX_LAYERS && find(src, "encoder.down_blocks.0.resnets.%d.conv1.weight", layers, 0)) layers++;
    if (levels == 0 || layers == 0)
        return dit_set_error("%s: missing tensor %s%s (no encoder levels found)", path, src->prefix,
                             src->layout == VAE_COMPVIS ? "encoder.down.0.block.0.conv1.weight"
                                                        : "encoder.down_blocks.0.resnets.0.conv1.weight");
    cfg->num_levels = levels;
    cfg->layers_per_block = layers;
    src->levels = levels;
    if (require_4d(path, src, "encoder.conv_in.weight", &conv_in) || require_4d(path, src, "decoder.conv_in.weight", &dec_in) ||
        require_4d(path, src, "decoder.conv_out.weight", &dec_out))
        return DIT_ERR;
    cfg->in_channels = (int)conv_in->shape[1];
    cfg->latent_channels = (int)dec_in->shape[1];
    cfg->out_channels = (int)dec_out->shape[0];
    if (dit_vae_config_validate(cfg) != DIT_OK) {
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    return DIT_OK;
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++) used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

// Equal up to trailing size-1 axes: ldm's attention q/k/v/proj_out are 1x1 convs [C, C, 1, 1], diffusers'
// are Linear [C, C].
static int same_shape(const tensor_view *t, const vae_param *e) {
    int tn = t->ndim, en = e->ndim;
    while (tn > 1 && t->shape[tn - 1] == 1) tn--;
    while (en > 1 && e->shape[en - 1] == 1) en--;
    if (tn != en) return 0;
    for (int i = 0; i < tn; i++)
        if (t->shape[i] != e->shape[i]) return 0;
    return 1;
}

static dit_status fill_params(dit_vae *v, const char *path, const vae_source *src) {
    char key[320];
    for (int i = 0; i < v->num_params; i++) {
        const vae_param *e = &v->table[i];
        const tensor_view *t = find_in(src, e->name, key, sizeof key);
        if (!t) {
            if (strcmp(key + strlen(src->prefix), e->name))
                return dit_set_error("%s: missing tensor %s (the model's %s)", path, key, e->name);
            return dit_set_error("%s: missing tensor %s", path, key);
        }
        if (!tensor_is_float(t))
            return dit_set_error("%s: tensor %s has dtype %s, expected a floating type", path, key, dtype_name(t->dtype));
        if (!same_shape(t, e)) {
            char got[128], want[128];
            format_shape(got, sizeof got, t->ndim, t->shape);
            format_shape(want, sizeof want, e->ndim, e->shape);
            return dit_set_error("%s: tensor %s has shape %s, expected %s", path, key, got, want);
        }
        tensor_to_f32(t, v->params + e->offset);
    }
    return DIT_OK;
}

dit_vae *dit_vae_load(const char *path, const dit_vae_load_options *opts) {
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        dit_set_error("%s: cannot open VAE file", path);
        return NULL;
    }
    fclose(probe);
    tensor_file file = {0};
    if ((zip_file_has_magic(path) ? torch_pt_read(path, &file) : safetensors_read(path, &file)) != DIT_OK) return NULL;
    dit_vae *v = NULL;
    vae_source src;
    dit_vae_config cfg;
    if (!detect_source(&file, &src)) {
        dit_set_error("%s: no autoencoder weights found (looked for encoder.conv_in.weight, also under "
                      "first_stage_model., vae., state_dict.)", path);
    } else if (infer_config(path, &src, opts, &cfg) == DIT_OK) {
        v = vae_create(&cfg);
        if (!v) {
            dit_prefix_error("%s", path);
        } else if (fill_params(v, path, &src) != DIT_OK) {
            dit_vae_free(v);
            v = NULL;
        }
    }
    tensor_file_free(&file);
    return v;
}
