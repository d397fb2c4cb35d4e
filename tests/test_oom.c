// Out of memory is an error, never an exit or a crash: each scenario (model load, forward, guided forward,
// sampling, VAE load/encode/decode, training steps, saving) runs again and again with the library's
// allocator failing from the N-th allocation on (dit_alloc_fail_after, base/error.h), N = 0, 1, 2, ... until
// a run needs no refused allocation. Every run that was refused memory must return an error whose message
// says "out of memory", free what it took (ASan's leak check in `make asan`), and leave nothing broken;
// a run that was refused nothing must succeed.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "dit.h"
#include "dit_vae.h"
#include "test.h"
#include "io/tensors.h"
#include "io/torch_pt.h"
#include "train/train.h"

static const dit_config tiny = {.input_size = 8, .patch_size = 2, .in_channels = 1, .hidden_size = 64, .depth = 2,
                                .num_heads = 4, .mlp_ratio = 4.0f, .num_classes = 10, .class_dropout_prob = 0.1f,
                                .learn_sigma = 1};
static dit_precision precision;   // the precision every scenario runs its products in

static dit_model *with_precision(dit_model *m) {
    if (m && dit_model_set_precision(m, precision) != DIT_OK) {
        dit_model_free(m);
        return NULL;
    }
    return m;
}

// A forward and a guided forward of a model (the model is freed).
static dit_status forward_both(dit_model *m) {
    if (!m) return DIT_ERR;
    const dit_config *c = dit_model_config(m);
    const int B = 2, in = c->in_channels * c->input_size * c->input_size;
    const int out_n = dit_config_out_channels(c) * c->input_size * c->input_size;
    float x[2 * 4 * 32 * 32], t[2] = {10, 500}, out[2 * 8 * 32 * 32];
    int y[2] = {1, 3};
    DIT_CHECK(B * in <= (int)(sizeof x / sizeof x[0]) && B * out_n <= (int)(sizeof out / sizeof out[0]));
    for (int i = 0; i < B * in; i++) x[i] = sinf(0.1f * i);
    dit_status st = dit_model_forward(m, x, t, y, B, out);
    if (st == DIT_OK) st = dit_model_forward_cfg(m, x, t, y, B, 4.0f, 0, out);
    dit_model_free(m);
    return st;
}

static dit_status load_shipped_and_forward(void) {
    return forward_both(with_precision(dit_model_load(repo_path("models/dit-fmnist.safetensors"), NULL)));
}

// The .pt reader (zip, pickle, storages) on official-layout, odd-dtype and old-protocol files.
static dit_status read_pt_files(void) {
    static const char *const files[] = {"pt/official_sd.pt", "pt/dtypes.pt", "pt/parameter.pt", "pt/proto1.pt"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        tensor_file f;
        if (torch_pt_read(golden_path(files[i]), &f) != DIT_OK) return DIT_ERR;
        tensor_file_free(&f);
    }
    return DIT_OK;
}

static dit_status synthetic_save_load(void) {
    dit_model *m = with_precision(dit_model_synthetic(&tiny, 3));
    if (!m) return DIT_ERR;
    const char *const names[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    const char *path = scratch_path("oom-model.safetensors");
    dit_status st = dit_model_set_class_names(m, names, 10);
    if (st == DIT_OK) st = dit_model_save_as(m, path, "bf16");
    dit_model_free(m);
    return st == DIT_OK ? forward_both(with_precision(dit_model_load(path, NULL))) : st;
}

// dit_sample with each sampler and guidance, then the images as PNG.
static dit_status sample_and_encode(void) {
    dit_model *m = with_precision(dit_model_synthetic(&tiny, 4));
    if (!m) return DIT_ERR;
    const dit_sample_item items[3] = {{1, 7, 0}, {2, 7, 1}, {9, 8, 0}};
    float out[3 * 8 * 8];
    uint8_t pixels[3 * 8 * 8];
    dit_status st = DIT_OK;
    for (int s = DIT_SAMPLER_DDPM; st == DIT_OK && s <= DIT_SAMPLER_DPMPP_2M; s++) {
        dit_sample_options opt = {.sampler = (dit_sampler)s, .steps = 3, .cfg_scale = s == 1 ? 1.0f : 3.0f,
                                  .eta = s == DIT_SAMPLER_DDIM ? 0.5f : 0.0f, .batch = 2};
        st = dit_sample(m, items, 3, &opt, out);
    }
    uint8_t *png = NULL;
    size_t size = 0;
    if (st == DIT_OK) st = dit_decode_images(m, NULL, out, 3, pixels);
    if (st == DIT_OK) st = dit_png_encode(pixels, 8, 8 * 3, 1, &png, &size);
    dit_free(png);
    dit_model_free(m);
    return st;
}

static dit_status vae_roundtrip(void) {
    dit_vae_load_options opts = {.norm_groups = 2};
    dit_vae *v = dit_vae_load(golden_path("vae/layout_compvis.ckpt"), &opts);
    if (!v) return DIT_ERR;
    dit_status st = dit_vae_set_precision(v, precision);
    enum { H = 16, W = 16, h = 4, w = 4 };   // 3 levels: a factor of 4
    static float x[3 * H * W], z[4 * h * w], noise[4 * h * w], back[3 * H * W];
    for (int i = 0; i < 3 * H * W; i++) x[i] = cosf(0.05f * i);
    for (int i = 0; i < 4 * h * w; i++) noise[i] = 0.01f * i;
    if (st == DIT_OK) st = dit_vae_encode(v, x, 1, H, W, noise, z);
    if (st == DIT_OK) st = dit_vae_decode(v, z, 1, h, w, back);
    if (st == DIT_OK) st = dit_vae_decode_tiled(v, z, 1, h, w, 2, 1, back);
    dit_vae_free(v);
    return st;
}

static dit_block_kind block;   // the block design train_steps builds

// Two training steps on 8 in-memory images, then the EMA model.
static dit_status train_steps(void) {
    enum { COUNT = 8, S = 8 };
    static float pixels[COUNT * S * S];
    static int labels[COUNT];
    for (int i = 0; i < COUNT * S * S; i++) pixels[i] = sinf(0.3f * i);
    for (int i = 0; i < COUNT; i++) labels[i] = i % 10;
    train_data data = {.kind = DATA_PIXELS, .source = "memory", .count = COUNT, .channels = 1, .size = S,
                       .num_classes = 10, .labels = labels, .pixels = pixels};
    train_hparams hp;
    train_hparams_default(&hp);
    hp.batch = 4;
    dit_config cfg = tiny;
    cfg.block = block;
    trainer *tr = trainer_create(&cfg, &hp, 5, &data);
    if (!tr) return DIT_ERR;
    dit_status st = dit_model_set_precision(tr->model, precision);
    for (int step = 0; st == DIT_OK && step < 2; step++) st = trainer_step(tr, NULL);
    dit_model *ema = st == DIT_OK ? trainer_ema_model(tr) : NULL;
    if (st == DIT_OK && !ema) st = DIT_ERR;
    dit_model_free(ema);
    trainer_free(tr);
    return st;
}

// Run `scenario` with the allocator failing from allocation N on, for N = 0, 1, ... until a run is refused
// nothing. Returns the number of runs.
static void fail_everywhere(const char *what, dit_status (*scenario)(void)) {
    enum { MAX_RUNS = 20000 };
    int runs = 0, refused_runs = 0, bad = 0;
    char first_bad[1200] = "";
    for (long n = 0; n < MAX_RUNS; n++) {
        dit_set_error("(no message)");
        const long before = dit_alloc_count();
        dit_alloc_fail_after(n);
        const dit_status st = scenario();
        dit_alloc_fail_after(-1);
        const long made = dit_alloc_count() - before;
        runs++;
        if (made <= n) {   // nothing refused: the run must have succeeded
            if (st != DIT_OK && !bad++)
                snprintf(first_bad, sizeof first_bad, "with every allocation granted it failed: %s", dit_last_error());
            break;
        }
        refused_runs++;
        if ((st == DIT_OK || !strstr(dit_last_error(), "out of memory")) && !bad++)
            snprintf(first_bad, sizeof first_bad, "allocation %ld refused: %s (%s)", n,
                     st == DIT_OK ? "the call succeeded" : "the message does not say out of memory", dit_last_error());
    }
    CHECK(bad == 0 && runs < MAX_RUNS, "%s (%s): %d runs each refused memory at a different allocation returned an "
          "out-of-memory error, then one run with all %d allocations succeeded%s%s",
          what, dit_precision_name(precision), refused_runs, refused_runs, bad ? "; FIRST PROBLEM: " : "", first_bad);
}

void test_oom(void) {
    dit_set_error("(no message)");
    void *p = dit_malloc(16);
    dit_alloc_fail_after(0);
    void *q = dit_malloc(16);
    dit_alloc_fail_after(-1);
    CHECK(p && !q && strstr(dit_last_error(), "out of memory allocating 16 bytes at tests/test_oom.c:"),
          "the hook refuses an allocation, which returns NULL with '%s'", dit_last_error());
    free(p);

    static const dit_precision precisions[] = {DIT_PRECISION_FP32, DIT_PRECISION_BF16};
    for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++) {
        precision = precisions[i];
        if (!dit_compute_path(precision)) {
            SKIP("%s: this CPU has no bf16 path (%s)", dit_precision_name(precision), dit_last_error());
            continue;
        }
        fail_everywhere("load the shipped model, forward, guided forward", load_shipped_and_forward);
        fail_everywhere("read .pt files (zip, pickle, protocols)", read_pt_files);
        fail_everywhere("synthetic model, class names, save as bf16, load, forward", synthetic_save_load);
        fail_everywhere("dit_sample (ddpm, ddim, dpm++2m; guided), decode, PNG", sample_and_encode);
        fail_everywhere("VAE load (CompVis .ckpt), encode, decode, tiled decode", vae_roundtrip);
        block = DIT_BLOCK_ADALN_ZERO;
        fail_everywhere("trainer, two training steps, EMA model", train_steps);
        block = DIT_BLOCK_CROSS_ATTENTION;
        fail_everywhere("cross-attention blocks: trainer, two training steps, EMA model", train_steps);
        block = DIT_BLOCK_IN_CONTEXT;
        fail_everywhere("in-context blocks: trainer, two training steps, EMA model", train_steps);
    }
}
