// The DiT network against our PyTorch reference (tests/ref/dit_ref.py): golden forward and guided outputs for
// several configs (one at full XL width), every file layout, the paper's counts, and the CLI end to end.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "io/tensors.h"
#include "models/dit_model.h"
#include "test.h"

// Golden outputs came from the float32 reference; the float32-vs-float64 deviation measured there is
// below 5e-6 (tests/golden/dit/README.md). 1e-4 abs + 1e-4 rel leaves room for sgemm reassociation while
// any wrong index, order or constant gives errors of 1e-2 or more.
#define GOLDEN_ATOL 1e-4
#define GOLDEN_RTOL 1e-4

static float *read_golden_floats_abs(const char *path, int64_t *count);
static float *read_golden_floats(const char *name, int64_t *count) {
    return read_golden_floats_abs(golden_path(name), count);
}

static float *read_golden_floats_abs(const char *path, int64_t *count) {
    npy_array a;
    if (npy_read(path, &a) != DIT_OK) {
        CHECK(0, "read %s: %s", path, dit_last_error());
        return NULL;
    }
    tensor_view v = {.dtype = a.dtype, .ndim = a.ndim, .data = a.data, .nbytes = a.nbytes};
    memcpy(v.shape, a.shape, sizeof v.shape);
    *count = tensor_numel(&v);
    float *out = malloc((size_t)*count * sizeof(float));
    tensor_to_f32(&v, out);
    npy_free(&a);
    return out;
}

typedef struct {
    float *x, *t, *out;
    int *y;
    int64_t n_out;
    int batch;
} golden_inputs;

static int read_inputs(const char *prefix, golden_inputs *g) {
    char name[256];
    int64_t nx, nt, ny;
    memset(g, 0, sizeof *g);
    snprintf(name, sizeof name, "dit/%s_x.npy", prefix);
    g->x = read_golden_floats(name, &nx);
    snprintf(name, sizeof name, "dit/%s_t.npy", prefix);
    g->t = read_golden_floats(name, &nt);
    snprintf(name, sizeof name, "dit/%s_y.npy", prefix);
    float *yf = read_golden_floats(name, &ny);
    if (!g->x || !g->t || !yf) return 0;
    g->batch = (int)nt;
    g->y = malloc(ny * sizeof(int));
    for (int64_t i = 0; i < ny; i++) g->y[i] = (int)yf[i];
    free(yf);
    return 1;
}

static void free_inputs(golden_inputs *g) {
    free(g->x); free(g->t); free(g->y); free(g->out);
}

static int json_int(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : v ? v->valueint : 0;
}

static void compare_output(dit_model *m, const golden_inputs *g, const char *name, const char *golden, int cfg_mode,
                           double atol, double rtol) {
    int64_t n;
    char what[256];
    float *want = read_golden_floats(golden, &n);
    if (!want) return;
    float *got = calloc(n, sizeof(float));
    dit_status st = cfg_mode ? dit_model_forward_cfg(m, g->x, g->t, g->y, g->batch, 4.0f, cfg_mode == 2, got)
                             : dit_model_forward(m, g->x, g->t, g->y, g->batch, got);
    snprintf(what, sizeof what, "%s: %s vs reference %s", name, cfg_mode ? "forward_cfg(4.0)" : "forward", golden);
    if (CHECK(st == DIT_OK, "%s ran (%s)", what, st ? dit_last_error() : "ok"))
        CHECK_CLOSE(what, got, want, n, atol, rtol);
    free(want);
    free(got);
}

static void test_golden_configs(void) {
    FILE *f = fopen(golden_path("dit/configs.json"), "rb");
    if (!CHECK(f != NULL, "open tests/golden/dit/configs.json")) return;
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    cJSON *root = cJSON_Parse(text);
    const cJSON *configs = cJSON_GetObjectItemCaseSensitive(root, "configs"), *c;
    int count = 0;
    cJSON_ArrayForEach(c, configs) {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        dit_config cfg = {
            .input_size = json_int(c, "input_size"), .patch_size = json_int(c, "patch_size"),
            .in_channels = json_int(c, "in_channels"), .hidden_size = json_int(c, "hidden_size"),
            .depth = json_int(c, "depth"), .num_heads = json_int(c, "num_heads"),
            .mlp_ratio = (float)cJSON_GetObjectItemCaseSensitive(c, "mlp_ratio")->valuedouble,
            .num_classes = json_int(c, "num_classes"),
            .class_dropout_prob = (float)cJSON_GetObjectItemCaseSensitive(c, "class_dropout_prob")->valuedouble,
            .learn_sigma = json_int(c, "learn_sigma"),
        };
        CHECK(dit_config_param_count(&cfg) == json_int(c, "params"), "%s: parameter count %lld = reference %d", name,
              (long long)dit_config_param_count(&cfg), json_int(c, "params"));
        dit_model *m = dit_model_synthetic(&cfg, (uint32_t)json_int(c, "weight_seed"));
        golden_inputs g;
        char golden[128];
        if (m && read_inputs(name, &g)) {
            snprintf(golden, sizeof golden, "dit/%s_out.npy", name);
            compare_output(m, &g, name, golden, 0, GOLDEN_ATOL, GOLDEN_RTOL);
            if (cfg.class_dropout_prob > 0) {
                snprintf(golden, sizeof golden, "dit/%s_cfg_out.npy", name);
                compare_output(m, &g, name, golden, 1, GOLDEN_ATOL, GOLDEN_RTOL);
                snprintf(golden, sizeof golden, "dit/%s_cfgall_out.npy", name);
                compare_output(m, &g, name, golden, 2, GOLDEN_ATOL, GOLDEN_RTOL);
            } else {
                float *out = malloc(64 * sizeof(float) * cfg.in_channels * 2 * cfg.input_size * cfg.input_size);
                CHECK(dit_model_forward_cfg(m, g.x, g.t, g.y, g.batch, 4.0f, 0, out) == DIT_ERR &&
                          strstr(dit_last_error(), "null class"),
                      "%s: guidance without a null class is refused (%s)", name, dit_last_error());
                free(out);
            }
            // A label past the table is an error, not a read out of bounds.
            int saved = g.y[0];
            g.y[0] = cfg.num_classes + 1;
            float *out = malloc((size_t)g.batch * 2 * cfg.in_channels * cfg.input_size * cfg.input_size * sizeof(float));
            CHECK(dit_model_forward(m, g.x, g.t, g.y, g.batch, out) == DIT_ERR, "%s: label %d out of range refused",
                  name, g.y[0]);
            free(out);
            g.y[0] = saved;
            free_inputs(&g);
            count++;
        }
        dit_model_free(m);
    }
    CHECK(count >= 3, "golden configs compared: %d (need at least 3, one at XL width)", count);
    cJSON_Delete(root);
}

// The 12 configs of the paper: parameter counts (incl. pos_embed) and Gflops (MACs) of reference.md §1.11.
static void test_named_counts(void) {
    static const struct { const char *name; long long params; double g256, g512; } table[] = {
        {"DiT-S/8", 33148160, 0.36, 1.43},   {"DiT-S/4", 32945024, 1.41, 6.07},    {"DiT-S/2", 32963360, 6.06, 31.44},
        {"DiT-B/8", 130881536, 1.42, 5.59},  {"DiT-B/4", 130475648, 5.57, 23.03},  {"DiT-B/2", 130512416, 23.01, 106.38},
        {"DiT-L/8", 458594816, 5.01, 19.73}, {"DiT-L/4", 458053760, 19.70, 80.74}, {"DiT-L/2", 458102816, 80.70, 360.98},
        {"DiT-XL/8", 675683072, 7.39, 29.09}, {"DiT-XL/4", 675074432, 29.04, 118.66},
        {"DiT-XL/2", 675129632, 118.62, 524.54},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        dit_config c256, c512;
        dit_config_named(&c256, table[i].name, 256);
        dit_config_named(&c512, table[i].name, 512);
        long long params = dit_config_param_count(&c256);
        double g256 = dit_config_gmacs(&c256), g512 = dit_config_gmacs(&c512);
        CHECK(params == table[i].params && fabs(g256 - table[i].g256) < 0.006 && fabs(g512 - table[i].g512) < 0.006,
              "%s: %lld params (paper table %lld), %.2f / %.2f Gflops at 256 / 512 (table %.2f / %.2f)", table[i].name,
              params, table[i].params, g256, g512, table[i].g256, table[i].g512);
    }
    dit_config c;
    static const char *const bad_names[][2] = {{"DiT-M/2", "256"}, {"DiT-XL/3", "256"}, {"DiT-XL/2", "250"}};
    for (int i = 0; i < 3; i++) {
        dit_status st = dit_config_named(&c, bad_names[i][0], atoi(bad_names[i][1]));
        CHECK(st == DIT_ERR, "%s at %s px refused: %s", bad_names[i][0], bad_names[i][1], dit_last_error());
    }
}

// The "micro" golden config, saved in every layout by tests/ref/make_layout_fixtures.py.
static dit_config micro_config(void) {
    return (dit_config){.input_size = 8, .patch_size = 4, .in_channels = 4, .hidden_size = 32, .depth = 2,
                        .num_heads = 2, .mlp_ratio = 4.0f, .num_classes = 10, .class_dropout_prob = 0.1f,
                        .learn_sigma = 1};
}

// Every published layout of the micro model gives the official numbers.
static void test_layouts(void) {
    static const struct { const char *file, *golden; double atol; } layouts[] = {
        {"layouts/micro_official.pt", "dit/micro_out.npy", GOLDEN_ATOL},
        {"layouts/micro_trainpy.pt", "dit/micro_out.npy", GOLDEN_ATOL},   // EMA weights = the seed of micro_out
        {"layouts/micro_official.safetensors", "dit/micro_out.npy", GOLDEN_ATOL},
        {"layouts/micro_diffusers.safetensors", "dit/micro_out.npy", GOLDEN_ATOL},
        {"layouts/micro_f16.safetensors", "layouts/micro_f16_out.npy", GOLDEN_ATOL},
        {"layouts/micro_bf16.safetensors", "layouts/micro_bf16_out.npy", GOLDEN_ATOL},
    };
    golden_inputs g;
    if (!read_inputs("micro", &g)) return;
    const dit_config want = micro_config();
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        // Width 32 is not a named one, so the head count comes from the caller (--heads); diffusers files
        // have no pos_embed, so the input size does too (--image-size).
        dit_load_options opts = {.num_heads = 2, .input_size = strstr(layouts[i].file, "diffusers") ? 8 : 0};
        dit_model *m = dit_model_load(golden_path(layouts[i].file), &opts);
        if (!CHECK(m != NULL, "load %s (%s)", layouts[i].file, m ? "ok" : dit_last_error())) continue;
        const dit_config *c = dit_model_config(m);
        CHECK(c->input_size == want.input_size && c->patch_size == want.patch_size && c->hidden_size == want.hidden_size &&
                  c->depth == want.depth && c->num_heads == 2 && c->num_classes == want.num_classes &&
                  c->learn_sigma == 1 && c->in_channels == 4,
              "%s: config inferred from shapes (input %d, patch %d, hidden %d, depth %d, classes %d)", layouts[i].file,
              c->input_size, c->patch_size, c->hidden_size, c->depth, c->num_classes);
        compare_output(m, &g, layouts[i].file, layouts[i].golden, 0, layouts[i].atol, GOLDEN_RTOL);
        dit_model_free(m);
    }
    dit_model *m = dit_model_load(golden_path("layouts/micro_official.safetensors"), NULL);
    CHECK(!m && strstr(dit_last_error(), "--heads"), "a non-standard width without --heads is refused: %s",
          dit_last_error());
    m = dit_model_load(golden_path("layouts/micro_diffusers.safetensors"), &(dit_load_options){.num_heads = 2});
    CHECK(!m && strstr(dit_last_error(), "--image-size"), "a diffusers file without --image-size is refused: %s",
          dit_last_error());

    // A diffusers folder: config.json beside the weights gives the latent side and the head count.
    char folder_cmd[4096], *folder_out = NULL;
    const char *diffusers_dir = scratch_path("diffusers_micro");
    snprintf(folder_cmd, sizeof folder_cmd, "mkdir -p %s && cp %s %s/diffusion_pytorch_model.safetensors && cp %s %s/config.json",
             diffusers_dir, golden_path("layouts/micro_diffusers.safetensors"), diffusers_dir,
             golden_path("layouts/micro_diffusers_config.json"), diffusers_dir);
    if (CHECK(run_command(folder_cmd, &folder_out) == 0, "a diffusers folder in scratch")) {
        char weights[4200];
        snprintf(weights, sizeof weights, "%s/diffusion_pytorch_model.safetensors", diffusers_dir);
        m = dit_model_load(weights, NULL);
        if (CHECK(m != NULL, "diffusers folder loads with no options (sample_size 8, 2 heads from config.json): %s",
                  m ? "ok" : dit_last_error())) {
            CHECK(m->cfg.input_size == 8 && m->cfg.num_heads == 2, "config.json: input size %d, heads %d",
                  m->cfg.input_size, m->cfg.num_heads);
            compare_output(m, &g, "diffusers folder", "dit/micro_out.npy", 0, GOLDEN_ATOL, GOLDEN_RTOL);
            dit_model_free(m);
        }
        // a config.json that contradicts the weights names itself
        snprintf(folder_cmd, sizeof folder_cmd, "sed -i 's/\"patch_size\": 4/\"patch_size\": 2/' %s/config.json",
                 diffusers_dir);
        free(folder_out);
        folder_out = NULL;
        run_command(folder_cmd, &folder_out);
        m = dit_model_load(weights, NULL);
        CHECK(!m && strstr(dit_last_error(), "config.json: patch_size") && strstr(dit_last_error(), "say 4"),
              "config.json contradicting the weights is refused: %s", m ? "loaded" : dit_last_error());
        dit_model_free(m);
    }
    free(folder_out);

    // convert: official .pt -> dit safetensors -> identical parameters and config, bit for bit.
    dit_model *a = dit_model_load(golden_path("layouts/micro_official.pt"), &(dit_load_options){.num_heads = 2});
    const char *converted = scratch_path("micro_converted.safetensors");
    if (a && CHECK(dit_model_save(a, converted) == DIT_OK, "save %s", converted)) {
        dit_model *b = dit_model_load(converted, NULL);
        if (CHECK(b != NULL, "reload converted file")) {
            CHECK(b->total_floats == a->total_floats && !memcmp(a->params, b->params, a->total_floats * sizeof(float)) &&
                      !memcmp(&a->cfg, &b->cfg, sizeof a->cfg),
                  "converted file holds identical parameters and config");
            dit_model_free(b);
        }
    }
    dit_model_free(a);
    free_inputs(&g);
}

// ---- hostile model files ------------------------------------------------------------------------

// Write the tensors of `src` to `path`, with one tensor (by name) changed by `edit` or dropped (edit NULL).
typedef void (*tensor_edit)(tensor_out *t);
static int write_edited(const tensor_file *src, const char *path, const char *target, tensor_edit edit) {
    tensor_out *outs = calloc(src->count, sizeof *outs);
    int n = 0;
    for (int i = 0; i < src->count; i++) {
        const tensor_view *v = &src->tensors[i];
        tensor_out o = {.name = v->name, .dtype = v->dtype, .ndim = v->ndim, .data = v->data};
        memcpy(o.shape, v->shape, sizeof o.shape);
        if (!strcmp(v->name, target)) {
            if (!edit) continue;
            edit(&o);
        }
        outs[n++] = o;
    }
    dit_status st = safetensors_write(path, outs, n, NULL, NULL, 0);
    free(outs);
    return st == DIT_OK;
}

static int64_t qkv_elements;
static void edit_to_i32(tensor_out *t) { t->dtype = DT_I32; }   // same byte size as F32
static void edit_shape(tensor_out *t) {                          // same element count, other shape
    t->shape[0] = t->shape[0] / 2;
    t->shape[1] = t->shape[1] * 2;
}

static void expect_load_error(const char *path, const char *needle, const char *what) {
    dit_model *m = dit_model_load(path, &(dit_load_options){.num_heads = 2});
    CHECK(!m && strstr(dit_last_error(), needle) && strstr(dit_last_error(), path), "%s: refused with \"%s\"", what,
          m ? "(loaded!)" : dit_last_error());
    dit_model_free(m);
}

static void test_bad_model_files(void) {
    tensor_file good = {0};
    const char *good_path = golden_path("layouts/micro_official.safetensors");
    if (!CHECK(safetensors_read(good_path, &good) == DIT_OK, "read %s", good_path)) return;
    const char *path = scratch_path("bad_model.safetensors");

    write_edited(&good, path, "blocks.1.attn.qkv.weight", edit_to_i32);
    expect_load_error(path, "expected a floating type", "a weight with integer dtype");
    write_edited(&good, path, "blocks.1.attn.qkv.weight", edit_shape);
    expect_load_error(path, "has shape [48, 64], expected [96, 32]", "a weight of the wrong shape");
    write_edited(&good, path, "blocks.1.mlp.fc2.bias", NULL);
    expect_load_error(path, "missing tensor blocks.1.mlp.fc2.bias", "a missing tensor");
    write_edited(&good, path, "x_embedder.proj.weight", NULL);
    expect_load_error(path, "no DiT weights found", "a file without DiT weights");
    (void)qkv_elements;

    // Truncations of a valid file at many lengths: each an error naming the file, never a crash.
    FILE *f = fopen(good_path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(size);
    size_t got = fread(bytes, 1, size, f);
    fclose(f);
    int all_refused = got == (size_t)size;
    for (long cut = 0; cut < size; cut += cut < 256 ? 1 : 997) {
        FILE *o = fopen(path, "wb");
        fwrite(bytes, 1, cut, o);
        fclose(o);
        dit_model *m = dit_model_load(path, &(dit_load_options){.num_heads = 2});
        if (m || !strstr(dit_last_error(), path)) all_refused = 0;
        dit_model_free(m);
    }
    CHECK(all_refused, "every truncation of %s (%ld bytes) refused with a message naming the file", good_path, size);

    // A header that lies about its length.
    unsigned char *lying = malloc(size);
    memcpy(lying, bytes, size);
    uint64_t huge = (uint64_t)size * 4;
    memcpy(lying, &huge, 8);
    FILE *o = fopen(path, "wb");
    fwrite(lying, 1, size, o);
    fclose(o);
    expect_load_error(path, path, "a header length past the end of the file");
    free(lying);
    free(bytes);
    tensor_file_free(&good);
}

// ---- the command line ---------------------------------------------------------------------------

static const char *dit_bin(void) {
    const char *bin = getenv("DIT_BIN");
    return bin ? bin : "build/dit";
}

static void test_cli(void) {
    char cmd[2048], *out = NULL;
    const char *o = scratch_path("cli_out.npy");
    snprintf(cmd, sizeof cmd, "%s forward -m %s --heads 2 --x %s --t %s --y %s -o %s -t 2", dit_bin(),
             golden_path("layouts/micro_official.pt"), golden_path("dit/micro_x.npy"), golden_path("dit/micro_t.npy"),
             golden_path("dit/micro_y.npy"), o);
    int rc = run_command(cmd, &out);
    if (CHECK(rc == 0, "dit forward on the micro golden inputs (exit %d: %s)", rc, out ? out : "")) {
        int64_t n1, n2;
        float *got = read_golden_floats_abs(o, &n1), *want = read_golden_floats("dit/micro_out.npy", &n2);
        if (got && want && CHECK(n1 == n2, "dit forward output size %lld = golden %lld", (long long)n1, (long long)n2))
            CHECK_CLOSE("dit forward output vs reference", got, want, n1, GOLDEN_ATOL, GOLDEN_RTOL);
        free(got);
        free(want);
    }
    free(out);
    // a diffusers file without pos_embed (and no config.json): the latent side comes from --x
    snprintf(cmd, sizeof cmd, "%s forward -m %s --heads 2 --x %s --t %s --y %s -o %s -t 2", dit_bin(),
             golden_path("layouts/micro_diffusers.safetensors"), golden_path("dit/micro_x.npy"),
             golden_path("dit/micro_t.npy"), golden_path("dit/micro_y.npy"), o);
    rc = run_command(cmd, &out);
    if (CHECK(rc == 0, "dit forward on a diffusers file sizes it from --x, no --image-size (exit %d: %s)", rc,
              out ? out : "")) {
        int64_t n1, n2;
        float *got = read_golden_floats_abs(o, &n1), *want = read_golden_floats("dit/micro_out.npy", &n2);
        if (got && want && n1 == n2) CHECK_CLOSE("dit forward (diffusers, size from --x) vs reference", got, want, n1,
                                                 GOLDEN_ATOL, GOLDEN_RTOL);
        free(got);
        free(want);
    }
    free(out);
    snprintf(cmd, sizeof cmd, "%s forward -m %s --heads 2 --x %s --t %s --y %s -o %s -t 2", dit_bin(),
             golden_path("layouts/micro_official.pt"), golden_path("dit/micro_x.npy"), golden_path("dit/micro_t.npy"),
             golden_path("dit/micro_y.npy"), o);
    strcat(cmd, " --cfg-scale 4");
    rc = run_command(cmd, &out);
    if (CHECK(rc == 0, "dit forward --cfg-scale 4 (exit %d: %s)", rc, out ? out : "")) {
        int64_t n1, n2;
        float *got = read_golden_floats_abs(o, &n1), *want = read_golden_floats("dit/micro_cfg_out.npy", &n2);
        if (got && want && n1 == n2) CHECK_CLOSE("dit forward --cfg-scale 4 output vs reference", got, want, n1, GOLDEN_ATOL, GOLDEN_RTOL);
        free(got);
        free(want);
    }
    free(out);

    snprintf(cmd, sizeof cmd, "%s info --config DiT-XL/2 --image-size 256", dit_bin());
    rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "675,129,632") && strstr(out, "118.62"),
          "dit info --config DiT-XL/2 prints 675,129,632 params and 118.62 Gflops");
    free(out);
    snprintf(cmd, sizeof cmd, "%s info --config DiT-XL/2 --image-size 512", dit_bin());
    rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "524.54"), "dit info at 512 prints 524.54 Gflops");
    free(out);
    // the old spelling still works, with a note; -m/--model takes a file as in every other command
    snprintf(cmd, sizeof cmd, "%s info --model DiT-S/2 --image-size 256", dit_bin());
    rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "32,963,360") && strstr(out, "deprecated"),
          "dit info --model DiT-S/2 (deprecated spelling) prints 32,963,360 params and a note (exit %d)", rc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s info --model %s --heads 2", dit_bin(), golden_path("layouts/micro_official.pt"));
    rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "micro_official.pt") && !strstr(out, "deprecated"),
          "dit info --model FILE reads the file (exit %d)", rc);
    free(out);

    // info --hw: the paths, the L2 size the GEMM's blocking reads, a GEMM's rate on each, and on a bf16 path one
    // core's rate on every CPU in turn
    snprintf(cmd, sizeof cmd, "%s info --hw", dit_bin());
    rc = run_command(cmd, &out);
    const int bf16_path = out && (strstr(out, "kernel path:   amx") || strstr(out, "kernel path:   avx512-bf16"));
    CHECK(rc == 0 && out && strstr(out, "kernel path:") && strstr(out, "GEMM 1024 x 1024 x 1024") &&
              strstr(out, "L2 cache:") &&
              (!bf16_path || (strstr(out, "one core each, bf16") && strstr(out, " cpu"))),
          "dit info --hw prints the kernel path, the L2 size, the GEMM rates%s (exit %d)",
          bf16_path ? " and one core's bf16 rate on each CPU" : " (no bf16 path)", rc);
    free(out);

    // Bad invocations: non-zero exit and one line starting with "dit: ".
    static const struct { const char *args, *needle; } bad[] = {
        {"forward -m MISSING.pt --x X --t T --y Y -o O", "MISSING.pt"},
        {"forward -m @micro --heads 2 --x @odd_x --t @micro_t --y @micro_y -o @out", "expected shape (B, 4, 8, 8)"},
        {"forward -m @micro --heads 2 --x @micro_x --t @tiny_t --y @micro_y -o @out", "expected 2 timesteps"},
        {"forward -m @micro --heads 2 --x @micro_x --t @micro_t --y @tiny_y -o @out", "expected 2 labels"},
        {"forward -m @micro --heads 2 --x @micro_x --t @micro_t --y @xlwide_y -o @out", "out of range"},
        {"forward -m @micro --x @micro_x --t @micro_t --y @micro_y -o @out", "--heads"},
        {"forward -m @micro --heads 2 --x @micro_x --t @micro_t -o @out", "required"},
        {"forward -m @micro --heads 2 --x @micro_x --t @micro_t --y @micro_y -o @out --cfg-scale abc", "expected a number"},
        {"forward -m @micro --heads x", "--heads"},
        {"sample -m @micro --heads 2 --cfg-interval 0.8,0.2", "expected LO,HI with 0 <= LO < HI <= 1"},
        {"sample -m @micro --heads 2 --cfg-interval 0.2", "expected LO,HI"},
        {"sample -m @micro --heads 2 --cfg-interval 0,1.5", "expected LO,HI"},
        {"forward -m @bad --heads 2 --x @micro_x --t @micro_t --y @micro_y -o @out", "no DiT weights"},
        {"info --config DiT-Q/2", "unknown model"},
        {"info --bogus", "unknown option"},
        {"frobnicate", "unknown command"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[1024] = "", *w = args;
        for (const char *s = bad[i].args; *s;) {   // expand @names into golden paths
            if (*s == '@') {
                char word[64];
                int n = 0;
                for (s++; *s && *s != ' ' && n < 63; s++) word[n++] = *s;
                word[n] = 0;
                char rel[128];
                if (!strcmp(word, "micro")) snprintf(rel, sizeof rel, "layouts/micro_official.pt");
                else if (!strcmp(word, "bad")) snprintf(rel, sizeof rel, "io/python.safetensors");
                else snprintf(rel, sizeof rel, "dit/%s.npy", word);
                w += sprintf(w, "%s", !strcmp(word, "out") ? scratch_path("bad_out.npy") : golden_path(rel));
            } else {
                *w++ = *s++;
            }
        }
        *w = 0;
        snprintf(cmd, sizeof cmd, "%s %s", dit_bin(), args);
        rc = run_command(cmd, &out);
        int one_line = out && !strncmp(out, "dit: ", 5) && strchr(out, '\n') == out + strlen(out) - 1;
        CHECK(rc != 0 && one_line && strstr(out, bad[i].needle), "dit %s -> exit %d, \"%.*s\"", bad[i].args, rc,
              out ? (int)strcspn(out, "\n") : 0, out ? out : "");
        free(out);
    }
}

// float32 -> F16 / BF16 storage: every half value survives a round trip; ties go to even; and a model saved
// as f16 reloads to the rounded weights and recomputes pos_embed exactly.
static void test_reduced_precision(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue;   // NaN payloads need not survive
        uint16_t bits16 = (uint16_t)h, back;
        tensor_view v = {.dtype = DT_F16, .ndim = 1, .shape = {1}, .data = &bits16, .nbytes = 2};
        float f;
        tensor_to_f32(&v, &f);
        tensor_from_f32(DT_F16, &f, 1, &back);
        if (back != bits16) bad++;
    }
    CHECK(bad == 0, "F16: all 63,490 non-NaN half values round-trip through float32 (%d differ)", bad);
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even -> 1.0 (0x3C00); 1 + 3*2^-11 -> 0x3C02.
    float ties[4] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65520.0f, 0x1p-25f};
    uint16_t want[4] = {0x3C00, 0x3C02, 0x7C00, 0x0000}, got[4];
    tensor_from_f32(DT_F16, ties, 4, got);
    CHECK(!memcmp(got, want, sizeof got), "F16 rounding: ties to even, 65520 -> inf, 2^-25 -> 0 (got %04x %04x %04x %04x)",
          got[0], got[1], got[2], got[3]);
    float bties[2] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
    uint16_t bwant[2] = {0x3F80, 0x3F82};
    tensor_from_f32(DT_BF16, bties, 2, got);
    CHECK(!memcmp(got, bwant, 4), "BF16 rounding: ties to even (got %04x %04x)", got[0], got[1]);

    dit_model *m = dit_model_load(golden_path("layouts/micro_official.pt"), &(dit_load_options){.num_heads = 2});
    const char *path = scratch_path("micro_f16.safetensors");
    if (!m || !CHECK(dit_model_save_as(m, path, "f16") == DIT_OK, "save micro as f16")) {
        dit_model_free(m);
        return;
    }
    dit_model *h = dit_model_load(path, NULL);
    if (CHECK(h != NULL, "reload the f16 file (config from its metadata)")) {
        float *rounded = malloc(m->total_floats * sizeof(float));
        uint16_t *tmp = malloc(m->total_floats * sizeof(uint16_t));
        tensor_from_f32(DT_F16, m->params, (int64_t)m->total_floats, tmp);
        tensor_view v = {.dtype = DT_F16, .ndim = 1, .shape = {(int64_t)m->total_floats}, .data = tmp};
        tensor_to_f32(&v, rounded);
        const param_entry *pos = dit_param_find(m, "pos_embed");
        memcpy(rounded + pos->offset, m->params + pos->offset, pos->numel * sizeof(float));   // recomputed, exact
        CHECK(!memcmp(rounded, h->params, m->total_floats * sizeof(float)),
              "f16 file holds the half-rounded weights, pos_embed recomputed exactly");
        free(rounded);
        free(tmp);
    }
    CHECK(dit_model_save_as(m, path, "f8") == DIT_ERR && strstr(dit_last_error(), "f8"), "unknown --dtype refused");
    dit_model_free(h);
    dit_model_free(m);
}

// The guidance interval: the samples whose timestep is in [lo, hi] get exactly forward_cfg's guided output, the
// others exactly the conditional forward (bit for bit: the same products run on the same rows); an interval
// that no sample is in runs the plain forward only.
static void test_cfg_interval(void) {
    const dit_config cfg = micro_config();
    dit_model *m = dit_model_synthetic(&cfg, 7);
    enum { B = 4 };
    const int64_t in_n = (int64_t)cfg.in_channels * cfg.input_size * cfg.input_size, out_n = 2 * in_n;
    float x[B * 4 * 64], t[B] = {100, 400, 700, 999}, guided[B * 8 * 64], plain[B * 8 * 64], got[B * 8 * 64];
    const int y[B] = {1, 3, 5, 9};
    for (int64_t i = 0; i < B * in_n; i++) x[i] = (float)sin(0.37 * (double)i);
    CHECK(m && dit_model_forward_cfg(m, x, t, y, B, 3.0f, 1, guided) == DIT_OK &&
              dit_model_forward(m, x, t, y, B, plain) == DIT_OK,
          "cfg interval: reference forwards (%s)", dit_last_error());
    // [300, 800]: samples 1 and 2 guided, 0 and 3 conditional
    CHECK(dit_model_forward_cfg_interval(m, x, t, y, B, 3.0f, 1, 300.0f, 800.0f, got) == DIT_OK, "cfg interval: runs");
    for (int b = 0; b < B; b++) {
        const float *want = (b == 1 || b == 2 ? guided : plain) + b * out_n;
        CHECK(!memcmp(got + b * out_n, want, sizeof(float) * (size_t)out_n), "cfg interval [300, 800]: sample %d (t %g) "
              "is the %s output bit for bit", b, t[b], b == 1 || b == 2 ? "guided" : "conditional");
    }
    CHECK(dit_model_forward_cfg_interval(m, x, t, y, B, 3.0f, 1, 0.0f, 1000.0f, got) == DIT_OK &&
              !memcmp(got, guided, sizeof(float) * (size_t)(B * out_n)),
          "cfg interval [0, 1000] = forward_cfg bit for bit");
    CHECK(dit_model_forward_cfg_interval(m, x, t, y, B, 3.0f, 1, 0.0f, 50.0f, got) == DIT_OK &&
              !memcmp(got, plain, sizeof(float) * (size_t)(B * out_n)),
          "cfg interval [0, 50] (no sample in it) = the conditional forward bit for bit");
    dit_model_free(m);
}

void test_dit(void) {
    test_cfg_interval();
    test_reduced_precision();
    test_named_counts();
    test_golden_configs();
    test_layouts();
    test_bad_model_files();
    test_cli();
}
