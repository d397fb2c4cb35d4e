// Out of memory is an error, never an exit or a crash: each scenario (model load, forward, guided forward,
// sampling, VAE load/encode/decode, training steps, saving; evaluation metrics and inputs, Inception, the
// classifier, training data, checkpoints, npy/npz, image decoding, grids, class lookup) runs again and again with the library's
// allocator failing from the N-th allocation on (dit_alloc_fail_after, base/error.h), N = 0, 1, 2, ... until
// a run needs no refused allocation. Every run that was refused memory must return an error whose message
// says "out of memory", free what it took (ASan's leak check in `make asan`), and leave nothing broken;
// a run that was refused nothing must succeed.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "dit.h"
#include "dit_eval.h"
#include "dit_vae.h"
#include "test.h"
#include "eval/inputs.h"
#include "image/grid.h"
#include "io/image.h"
#include "io/tensors.h"
#include "io/torch_pt.h"
#include "models/classifier.h"
#include "train/classifier_train.h"
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

// The channels-last autoencoder (widths multiples of 32; in bf16: Winograd's convs, the direct ones for the
// last conv and Downsample2D), synthetic, encode and decode of a 16 px image.
static dit_status vae_channels_last(void) {
    dit_vae_config c;
    dit_vae_config_sd(&c);
    c.block_out[0] = c.block_out[1] = c.block_out[2] = c.block_out[3] = 32;
    c.norm_groups = 8;
    dit_vae *v = dit_vae_synthetic(&c, 5);
    if (!v) return DIT_ERR;
    dit_status st = dit_vae_set_precision(v, precision);
    enum { H = 16, W = 16, h = 2, w = 2 };
    static float x[3 * H * W], z[4 * h * w], noise[4 * h * w], back[3 * H * W];
    for (int i = 0; i < 3 * H * W; i++) x[i] = cosf(0.05f * i);
    for (int i = 0; i < 4 * h * w; i++) noise[i] = 0.01f * i;
    if (st == DIT_OK) st = dit_vae_encode(v, x, 1, H, W, noise, z);
    if (st == DIT_OK) st = dit_vae_decode(v, z, 1, h, w, back);
    dit_vae_free(v);
    return st;
}

static dit_block_kind block;   // the block design train_steps builds

// A v-flow model sampled with the three flow samplers (guided), as dit_sample runs them.
static dit_status sample_flow(void) {
    dit_model *m = with_precision(dit_model_synthetic(&tiny, 4));
    if (!m) return DIT_ERR;
    dit_status st = dit_model_set_objective(m, DIT_OBJECTIVE_V_FLOW);
    const dit_sample_item items[3] = {{1, 7, 0}, {2, 7, 1}, {9, 8, 0}};
    float out[3 * 8 * 8];
    for (int s = DIT_SAMPLER_EULER; st == DIT_OK && s <= DIT_SAMPLER_EULER_MARUYAMA; s++) {
        dit_sample_options opt = {.sampler = (dit_sampler)s, .steps = 3, .cfg_scale = 3.0f, .batch = 2};
        st = dit_sample(m, items, 3, &opt, out);
    }
    dit_model_free(m);
    return st;
}

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

// ---- evaluation, classifier, data, formats (the inputs are written once by make_inputs) ----

static char idx_dir[1024], folder_dir[1024], class_a_dir[1100], images_npz[1024];

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    const int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static int copy_file(const char *from, const char *to) {
    FILE *f = fopen(from, "rb");
    if (!f) return 0;
    static unsigned char buf[1 << 17];
    const size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n < sizeof buf && write_bytes(to, buf, n);
}

// IDX train/t10k splits of 6 images of 6x6 with labels 0..2; a class folder (two PNGs and two JPEGs in two
// classes) from tests/golden/vae; an ADM-style .npz of 3 uint8 images 4x5. Returns 0 when one cannot be made.
static int make_inputs(void) {
    snprintf(idx_dir, sizeof idx_dir, "%s", scratch_path("oom-idx"));
    snprintf(folder_dir, sizeof folder_dir, "%s", scratch_path("oom-folder"));
    snprintf(class_a_dir, sizeof class_a_dir, "%s/a", folder_dir);
    snprintf(images_npz, sizeof images_npz, "%s", scratch_path("oom-images.npz"));
    char class_b[1100], path[1200];
    snprintf(class_b, sizeof class_b, "%s/b", folder_dir);
    if (mkdir(idx_dir, 0777) || mkdir(folder_dir, 0777) || mkdir(class_a_dir, 0777) || mkdir(class_b, 0777)) return 0;
    enum { COUNT = 6, SIDE = 6 };
    unsigned char images[16 + COUNT * SIDE * SIDE] = {0, 0, 8, 3, 0, 0, 0, COUNT, 0, 0, 0, SIDE, 0, 0, 0, SIDE};
    unsigned char labels[8 + COUNT] = {0, 0, 8, 1, 0, 0, 0, COUNT};
    for (int i = 0; i < COUNT * SIDE * SIDE; i++) images[16 + i] = (unsigned char)(i * 37 % 256);
    for (int i = 0; i < COUNT; i++) labels[8 + i] = (unsigned char)(i % 3);
    static const char *const splits[] = {"train", "t10k"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", idx_dir, splits[k]);
        if (!write_bytes(path, images, sizeof images)) return 0;
        snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", idx_dir, splits[k]);
        if (!write_bytes(path, labels, sizeof labels)) return 0;
    }
    static const char *const files[4][2] = {{"img_tiny.png", "a"}, {"img_photo.jpg", "a"},
                                            {"img_palette.png", "b"}, {"img_gray.jpg", "b"}};
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "vae/%s", files[i][0]);
        snprintf(path, sizeof path, "%s/%s/%s", folder_dir, files[i][1], files[i][0]);
        if (!copy_file(golden_path(name), path)) return 0;
    }
    static uint8_t pixels[3 * 4 * 5 * 3];
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 11);
    const npy_array arr = {.dtype = DT_U8, .ndim = 4, .shape = {3, 4, 5, 3}, .data = pixels, .nbytes = sizeof pixels};
    const char *const names[1] = {"arr_0"};
    return npz_write(images_npz, names, &arr, 1) == DIT_OK;
}

// Moments, the Frechet distance (Cholesky and eigenvalue paths), the Inception Score over 24 one-sample
// splits (the score list grows), manifold radii and precision/recall in float32 and float16.
static dit_status eval_metrics(void) {
    enum { N = 24, D = 6, K = 10 };
    static float a[N * D], b[N * D], logits[N * K], radii[N];
    static double mu_a[D], sigma_a[D * D], mu_b[D], sigma_b[D * D], zero[D * D];
    for (int i = 0; i < N * D; i++) a[i] = sinf(0.7f * i), b[i] = cosf(0.3f * i + 1.0f);
    for (int i = 0; i < N * K; i++) logits[i] = sinf(0.11f * i);
    dit_status st = DIT_OK;
    for (int k = 0; k < 2 && st == DIT_OK; k++) {
        dit_moments *m = dit_moments_create(D);
        if (!m) return DIT_ERR;
        dit_moments_add(m, k ? b : a, N);
        st = dit_moments_finish(m, k ? mu_b : mu_a, k ? sigma_b : sigma_a);
        dit_moments_free(m);
    }
    double distance, mean, std, precision_, recall;
    if (st == DIT_OK) st = dit_frechet_distance(mu_a, sigma_a, mu_b, sigma_b, D, &distance);
    if (st == DIT_OK) st = dit_frechet_distance(mu_a, zero, mu_b, sigma_b, D, &distance);   // not positive definite
    dit_inception_score *is = st == DIT_OK ? dit_inception_score_create(K, 1) : NULL;
    if (st == DIT_OK && !is) st = DIT_ERR;
    if (st == DIT_OK) st = dit_inception_score_add(is, logits, N);
    if (st == DIT_OK) st = dit_inception_score_finish(is, &mean, &std, NULL);
    dit_inception_score_free(is);
    for (int fp16 = 0; fp16 < 2 && st == DIT_OK; fp16++) {
        st = dit_manifold_radii(radii, a, N, D, 3, fp16);
        if (st == DIT_OK) st = dit_precision_recall(a, N, b, N, D, 3, fp16, &precision_, &recall);
    }
    return st;
}

// The images of an .npz batch and of a folder (two sizes: two batches), and one member of an .npz.
static dit_status eval_inputs(void) {
    const char *const paths[2] = {images_npz, class_a_dir};
    for (int k = 0; k < 2; k++) {
        image_source *s = image_source_open(paths[k]);
        if (!s) return DIT_ERR;
        const uint8_t *pixels;
        int n, h, w;
        while ((n = image_source_next(s, 4, &pixels, &h, &w)) > 0) continue;
        image_source_close(s);
        if (n < 0) return DIT_ERR;
    }
    npy_array arr;
    int found;
    DIT_TRY(npz_read_member(images_npz, "arr_0", &arr, &found));
    npy_free(&arr);
    return DIT_OK;
}

static dit_inception *inception;   // made once (not under the hook): the synthetic weights take a while

// Features of one small image: resize to 299, the network, the logits.
static dit_status inception_forward(void) {
    enum { S = 8 };
    static uint8_t image[S * S * 3];
    static float pool[DIT_INCEPTION_POOL_DIM], spatial[DIT_INCEPTION_SPATIAL_DIM], logits[DIT_INCEPTION_CLASSES];
    for (int i = 0; i < S * S * 3; i++) image[i] = (uint8_t)(i * 5);
    return dit_inception_forward(inception, image, 1, S, S, pool, spatial, logits);
}

// The classifier: the IDX test split, one epoch of training (with the test accuracy), save, load, accuracy.
static dit_status classifier_roundtrip(void) {
    classifier_dataset d;
    DIT_TRY(classifier_dataset_load(&d, idx_dir, 1));
    const classifier_config cfg = {.image_size = 8, .in_channels = 1, .conv1 = 3, .conv2 = 4, .features = 5,
                                   .num_classes = 3};
    classifier *c = classifier_create(&cfg);
    classifier_train_options o;
    classifier_train_options_default(&o);
    o.epochs = 1, o.batch = 6;
    const char *path = scratch_path("oom-classifier.safetensors");
    dit_status st = c ? DIT_OK : DIT_ERR;
    if (st == DIT_OK) {
        classifier_train_init_weights(c, 1);
        st = classifier_train(c, &d, &d, &o, NULL, NULL);
    }
    if (st == DIT_OK) st = classifier_save(c, path, DT_F16, "[\"a\", \"b\", \"c\"]", "{\"test_accuracy\": 0.5}");
    classifier_free(c);
    c = st == DIT_OK ? classifier_load(path) : NULL;
    double accuracy;
    if (st == DIT_OK) st = c ? classifier_accuracy(c, &d, 0, &accuracy) : DIT_ERR;
    classifier_free(c);
    classifier_dataset_free(&d);
    return st;
}

// Training data: an IDX file resized (bicubic) and padded, then class folders (PNG and JPEG, center crops).
static dit_status open_training_data(void) {
    char images[1200];
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte", idx_dir);
    static const int sizes[2] = {8, 10};   // 6 -> 8: bicubic; 6 -> 10: padded by 2
    for (int k = 0; k < 2; k++) {
        train_data d;
        DIT_TRY(train_data_open(&d, images, sizes[k]));
        train_data_free(&d);
    }
    train_data d;
    DIT_TRY(train_data_open(&d, folder_dir, 8));
    static float x[3 * 8 * 8];
    dit_status st = DIT_OK;
    for (int i = 0; i < d.count && st == DIT_OK; i++) st = train_data_get(&d, i, i % 2, x);
    train_data_free(&d);
    return st;
}

// A trainer with class names saved into a run folder beside an older checkpoint (keep 1: that one is pruned),
// the latest found again and loaded as --resume does.
static dit_status checkpoint_resume(void) {
    enum { COUNT = 4, S = 8 };
    static float pixels[COUNT * S * S];
    static int labels[COUNT] = {0, 1, 2, 3};
    train_data data = {.kind = DATA_PIXELS, .source = "memory", .count = COUNT, .channels = 1, .size = S,
                       .num_classes = 10, .labels = labels, .pixels = pixels};
    train_hparams hp;
    train_hparams_default(&hp);
    hp.batch = 2;
    trainer *tr = trainer_create(&tiny, &hp, 5, &data);
    if (!tr) return DIT_ERR;
    const char *const names[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    char run[1024], older[1100], saved[4096], latest[4096];
    snprintf(run, sizeof run, "%s", scratch_path("oom-run"));
    snprintf(older, sizeof older, "%s/checkpoints", run);
    mkdir(run, 0777), mkdir(older, 0777);
    snprintf(older, sizeof older, "%s/checkpoints/0000001.safetensors", run);
    FILE *f = fopen(older, "wb");   // (pruning goes by the name)
    if (f) fclose(f);
    tr->step = 10;
    dit_status st = dit_model_set_class_names(tr->model, names, 10);
    if (st == DIT_OK) st = checkpoint_save_run(tr, run, 1, saved, sizeof saved);
    trainer_free(tr);
    if (st == DIT_OK) st = checkpoint_find_latest(run, latest, sizeof latest);
    char *spec = NULL;
    trainer *back = st == DIT_OK ? checkpoint_load(latest, &data, &spec) : NULL;
    if (st == DIT_OK && !back) st = DIT_ERR;
    free(spec);
    trainer_free(back);
    return st;
}

// .npy files (big-endian, Fortran order), .npz archives (stored, deflated), an .npz written and read back.
static dit_status npy_npz(void) {
    static const char *const npy[] = {"io/f32_2x3.npy", "io/be_f4.npy", "io/fortran_i4.npy"};
    for (size_t i = 0; i < sizeof npy / sizeof npy[0]; i++) {
        npy_array a;
        DIT_TRY(npy_read(golden_path(npy[i]), &a));
        npy_free(&a);
    }
    static const char *const npz[] = {"io/stored.npz", "io/compressed.npz"};
    for (size_t i = 0; i < sizeof npz / sizeof npz[0]; i++) {
        tensor_file f;
        DIT_TRY(npz_read(golden_path(npz[i]), &f));
        tensor_file_free(&f);
    }
    static float values[6] = {1, 2, 3, 4, 5, 6};
    const npy_array arrays[2] = {{.dtype = DT_F32, .ndim = 2, .shape = {2, 3}, .data = values, .nbytes = 24},
                                 {.dtype = DT_F32, .ndim = 1, .shape = {6}, .data = values, .nbytes = 24}};
    const char *const names[2] = {"mu", "sigma"};
    const char *path = scratch_path("oom-written.npz");
    DIT_TRY(npz_write(path, names, arrays, 2));
    tensor_file f;
    DIT_TRY(npz_read(path, &f));
    tensor_file_free(&f);
    return DIT_OK;
}

// PNG (RGB, palette, RGBA, gray) and JPEG (colour, gray) decoding, a center crop, and sample grids.
static dit_status decode_images_and_grid(void) {
    static const char *const files[] = {"vae/img_tiny.png", "vae/img_palette.png", "vae/img_rgba.png",
                                        "vae/img_gray.png", "vae/img_photo.jpg", "vae/img_gray.jpg"};
    dit_status st = DIT_OK;
    for (size_t i = 0; i < sizeof files / sizeof files[0] && st == DIT_OK; i++) {
        image_u8 im, crop;
        DIT_TRY(image_read_rgb(golden_path(files[i]), &im));
        st = image_center_crop(&im, 8, &crop);
        if (st == DIT_OK) image_free(&crop);
        image_free(&im);
    }
    static uint8_t cells[4 * 5 * 6 * 3];
    for (size_t i = 0; i < sizeof cells; i++) cells[i] = (uint8_t)(i * 3);
    const char *const labels[2] = {"cat", "dog"};
    for (int C = 1; C <= 3 && st == DIT_OK; C += 2) {
        rgb_image grid = {0};
        st = grid_compose(&grid, cells, 4, 5, 6, C, 2, labels, 2);
        free(grid.pixels);
    }
    return st;
}

// Class lookup by id, by name, and the close matches of an unknown name (an error, but not out of memory).
static dit_status find_classes(void) {
    dit_model *m = dit_model_synthetic(&tiny, 6);
    if (!m) return DIT_ERR;
    const char *const names[10] = {"apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew",
                                   "kiwi", "lemon"};
    int label;
    dit_status st = dit_model_set_class_names(m, names, 10);
    if (st == DIT_OK) st = dit_model_find_class(m, "3", &label);
    if (st == DIT_OK) st = dit_model_find_class(m, "Banana", &label);
    if (st == DIT_OK && dit_model_find_class(m, "bananna", &label) == DIT_OK) st = dit_set_error("bananna was found");
    else if (st == DIT_OK && dit_error_is_out_of_memory()) st = DIT_ERR;
    dit_model_free(m);
    return st;
}

// Run `scenario` with the allocator failing from allocation N on, for N = 0, 1, ... until a run is refused
// nothing. sparse: N = 0, 1, 2, 3, then doubling (4, 8, 16, ...), for a scenario whose every run is slow.
static void fail_at_allocations(const char *what, dit_status (*scenario)(void), int sparse) {
    enum { MAX_RUNS = 20000 };
    int runs = 0, refused_runs = 0, bad = 0;
    long made = 0;
    char first_bad[1200] = "";
    for (long n = 0; n < MAX_RUNS; n = sparse && n >= 4 ? 2 * n : n + 1) {
        dit_set_error("(no message)");
        const long before = dit_alloc_count();
        dit_alloc_fail_after(n);
        const dit_status st = scenario();
        dit_alloc_fail_after(-1);
        made = dit_alloc_count() - before;
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
    CHECK(bad == 0 && runs < MAX_RUNS, "%s (%s): %d runs each refused memory at a different allocation%s returned "
          "an out-of-memory error, then one run with all %ld allocations succeeded%s%s",
          what, dit_precision_name(precision), refused_runs, sparse ? " (0-4, then doubling)" : "", made,
          bad ? "; FIRST PROBLEM: " : "", first_bad);
}

static void fail_everywhere(const char *what, dit_status (*scenario)(void)) { fail_at_allocations(what, scenario, 0); }

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
        fail_everywhere("v-flow model: dit_sample (flow-euler, flow-heun, flow-em; guided)", sample_flow);
        fail_everywhere("VAE load (CompVis .ckpt), encode, decode, tiled decode", vae_roundtrip);
        fail_everywhere("synthetic VAE of widths 32 (channels-last on the bf16 path), encode, decode", vae_channels_last);
        block = DIT_BLOCK_ADALN_ZERO;
        fail_everywhere("trainer, two training steps, EMA model", train_steps);
        block = DIT_BLOCK_CROSS_ATTENTION;
        fail_everywhere("cross-attention blocks: trainer, two training steps, EMA model", train_steps);
        block = DIT_BLOCK_IN_CONTEXT;
        fail_everywhere("in-context blocks: trainer, two training steps, EMA model", train_steps);
    }

    // Precision-independent paths (evaluation, the classifier, data and formats run in float32).
    precision = DIT_PRECISION_FP32;
    if (!CHECK(make_inputs(), "wrote the scenarios' inputs (IDX splits, a class folder, an .npz batch) in %s",
               scratch_path("")))
        return;
    fail_everywhere("moments, Frechet distance, Inception Score, radii, precision/recall", eval_metrics);
    fail_everywhere("eval inputs: .npz batch, image folder, .npz member", eval_inputs);
    inception = dit_inception_synthetic(1);
    if (CHECK(inception != NULL, "synthetic Inception network for the forward scenario"))
        fail_at_allocations("Inception forward of one 8x8 image (resize, 94 convolutions, logits)", inception_forward, 1);
    dit_inception_free(inception);
    fail_everywhere("classifier: IDX test split, one epoch, save, load, accuracy", classifier_roundtrip);
    fail_everywhere("training data: IDX resized and padded, class folders of PNG/JPEG", open_training_data);
    fail_everywhere("checkpoints: save (an older one pruned), find the latest, load (resume)", checkpoint_resume);
    fail_everywhere("npy (big-endian, Fortran), npz (stored, deflated), npz write and read", npy_npz);
    fail_everywhere("PNG/JPEG decode, center crop, image grids with labels", decode_images_and_grid);
    fail_everywhere("class lookup: by id, by name, close matches of an unknown name", find_classes);
}
