// The embedding API of dit.h: class names (the shipped ImageNet-1k list, lookup by id or name with close
// matches), dit_sample (batch invariance, equality with `dit sample`, progress and cancellation), decoding,
// PNG to memory; and `dit sample --class` with names.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "io/image.h"
#include "test.h"

static const char *dit_bin(void) {
    const char *bin = getenv("DIT_BIN");
    return bin ? bin : "build/dit";
}

static int run_dit(const char *args, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", dit_bin(), args);
    return run_command(cmd, out);
}

static dit_model *imagenet_model(void) {
    dit_config cfg = {.input_size = 4, .patch_size = 2, .in_channels = 4, .hidden_size = 32, .depth = 1,
                      .num_heads = 2, .mlp_ratio = 4.0f, .num_classes = 1000, .class_dropout_prob = 0.1f,
                      .learn_sigma = 1};
    return dit_model_synthetic(&cfg, 5);
}

static int find(const dit_model *m, const char *text, int *label, const char **error) {
    int ok = dit_model_find_class(m, text, label) == DIT_OK;
    *error = ok ? "" : dit_last_error();
    return ok;
}

static void test_class_names(void) {
    CHECK(dit_imagenet_class_name(207) && !strcmp(dit_imagenet_class_name(207), "golden retriever") &&
              !strcmp(dit_imagenet_class_name(0), "tench") && !strcmp(dit_imagenet_class_name(999), "toilet tissue") &&
              dit_imagenet_class_name(1000) == NULL && dit_imagenet_class_name(-1) == NULL,
          "ImageNet names: 0 tench, 207 golden retriever, 999 toilet tissue, none outside 0..999");
    CHECK(!strcmp(dit_imagenet_class_synonyms(0), "tench, Tinca tinca"), "ImageNet synonyms of 0: %s",
          dit_imagenet_class_synonyms(0));
    dit_model *m = imagenet_model();
    if (!CHECK(m != NULL, "a synthetic 1000-class model")) return;
    CHECK(dit_model_class_name(m, 360) && !strcmp(dit_model_class_name(m, 360), "otter"),
          "a 1000-class model without names of its own is labelled with the ImageNet names (360: %s)",
          dit_model_class_name(m, 360));
    int label = -1, found;
    const char *err = "";
    found = find(m, "golden retriever", &label, &err);
    CHECK(found && label == 207, "'golden retriever' -> %d %s", label, err);
    found = find(m, "  Golden_Retriever ", &label, &err);
    CHECK(found && label == 207, "case, '_' and spaces ignored -> %d", label);
    found = find(m, "Tinca tinca", &label, &err);
    CHECK(found && label == 0, "a synonym ('Tinca tinca') -> %d", label);
    found = find(m, "207", &label, &err);
    CHECK(found && label == 207, "an id '207' -> %d", label);
    found = find(m, "1000", &label, &err);
    CHECK(!found && strstr(err, "0..999"), "id 1000 refused: %s", err);
    found = find(m, "crane", &label, &err);
    CHECK(!found && strstr(err, "ambiguous") && strstr(err, "134 crane") &&
              strstr(err, "517 crane"), "'crane' (a bird and a machine) is ambiguous: %s", err);
    found = find(m, "golden retreiver", &label, &err);
    CHECK(!found && strstr(err, "207 golden retriever"),
          "a misspelt name lists close matches: %s", err);
    found = find(m, "retriever", &label, &err);
    CHECK(!found && strstr(err, "unknown") && strstr(err, "208 Labrador retriever"),
          "a partial name lists the classes that contain it: %s", err);
    found = find(m, "", &label, &err);
    CHECK(!found && strstr(err, "empty"), "an empty name is refused: %s", err);
    dit_model_free(m);

    dit_model *fm = dit_model_load(repo_path("models/dit-fmnist.safetensors"), NULL);
    if (!CHECK(fm != NULL, "load the shipped Fashion-MNIST model")) return;
    found = find(fm, "sneaker", &label, &err);
    CHECK(found && label == 7, "fmnist 'sneaker' -> %d", label);
    found = find(fm, "T-shirt/top", &label, &err);
    CHECK(found && label == 0, "fmnist 'T-shirt/top' -> %d", label);
    found = find(fm, "sneakr", &label, &err);
    CHECK(!found && strstr(err, "7 Sneaker"), "fmnist 'sneakr': %s", err);
    found = find(fm, "golden retriever", &label, &err);
    CHECK(!found, "fmnist has no ImageNet names: %s", err);
    dit_model_free(fm);
}

typedef struct {
    int calls, first_step, last_step, last_total, cancel_at;
} progress_log;

static int on_progress(void *ctx, int step, int total) {
    progress_log *p = ctx;
    if (p->calls++ == 0) p->first_step = step;
    p->last_step = step, p->last_total = total;
    return p->cancel_at > 0 && step >= p->cancel_at;
}

static void test_sample_api(void) {
    dit_model *m = dit_model_load(repo_path("models/dit-fmnist.safetensors"), NULL);
    if (!CHECK(m != NULL, "load the shipped Fashion-MNIST model")) return;
    const dit_config *c = dit_model_config(m);
    const int per = c->in_channels * c->input_size * c->input_size;
    dit_sample_item items[3] = {{.label = 7, .seed = 11, .index = 0}, {.label = 0, .seed = 3, .index = 2},
                                {.label = 9, .seed = 11, .index = 1}};
    progress_log log = {0};
    dit_sample_options opt = {.sampler = DIT_SAMPLER_HEUN, .steps = 5, .cfg_scale = 3.0f, .batch = 2,
                              .progress = on_progress, .progress_ctx = &log};
    float *together = malloc(sizeof(float) * 3 * per), *alone = malloc(sizeof(float) * per);
    int ok = dit_sample(m, items, 3, &opt, together) == DIT_OK;
    CHECK(ok && log.first_step == 0 && log.last_step == 10 && log.last_total == 10 && log.calls == 11,
          "dit_sample: progress 0, then each step over 2 batches of 5 steps (calls %d, last %d/%d)", log.calls,
          log.last_step, log.last_total);
    opt.progress = NULL;
    opt.batch = 1;
    int same = ok;
    for (int k = 0; k < 3 && same; k++)
        same = dit_sample(m, &items[k], 1, &opt, alone) == DIT_OK && !memcmp(alone, together + k * per, sizeof(float) * per);
    CHECK(same, "each image is the same sampled alone or in a batch of 3 (bit for bit)");

    // The image of (seed 3, index 2) is `dit sample --seed 3`'s third image.
    uint8_t *pixels = malloc((size_t)per);
    char dir[1024], args[4096], *out = NULL;
    snprintf(dir, sizeof dir, "%s", scratch_path("api_cli"));
    snprintf(args, sizeof args, "sample -m %s --class 0 -n 3 --steps 5 --sampler flow-heun --cfg-scale 3 --seed 3 --out-dir %s",
             repo_path("models/dit-fmnist.safetensors"), dir);
    int rc = run_dit(args, &out);
    free(out);
    char cli_png[1100], api_png[1100];
    snprintf(cli_png, sizeof cli_png, "%s/000002.png", dir);
    snprintf(api_png, sizeof api_png, "%s/api.png", dir);
    image_u8 a = {0}, b = {0};
    ok = rc == 0 && dit_decode_images(m, NULL, together + per, 1, pixels) == DIT_OK &&
         dit_png_write(api_png, pixels, c->input_size, c->input_size, 1) == DIT_OK &&
         image_read_rgb(cli_png, &a) == DIT_OK && image_read_rgb(api_png, &b) == DIT_OK;
    CHECK(ok && a.width == b.width && !memcmp(a.pixels, b.pixels, (size_t)a.width * a.height * 3),
          "dit_sample item (seed 3, index 2) decodes to the pixels of `dit sample --seed 3` image 2");

    // The guidance interval, through the API and the CLI: the same image again.
    opt.cfg_interval[0] = 0.1f, opt.cfg_interval[1] = 0.6f;
    image_free(&a), image_free(&b);
    snprintf(args, sizeof args, "sample -m %s --class 0 -n 3 --steps 5 --sampler flow-heun --cfg-scale 3 "
             "--cfg-interval 0.1,0.6 --seed 3 --out-dir %s", repo_path("models/dit-fmnist.safetensors"), dir);
    rc = run_dit(args, &out);
    free(out);
    ok = rc == 0 && dit_sample(m, &items[1], 1, &opt, alone) == DIT_OK &&
         dit_decode_images(m, NULL, alone, 1, pixels) == DIT_OK &&
         dit_png_write(api_png, pixels, c->input_size, c->input_size, 1) == DIT_OK &&
         image_read_rgb(cli_png, &a) == DIT_OK && image_read_rgb(api_png, &b) == DIT_OK;
    CHECK(ok && a.width == b.width && !memcmp(a.pixels, b.pixels, (size_t)a.width * a.height * 3) &&
              memcmp(alone, together + per, sizeof(float) * per),
          "cfg_interval {0.1, 0.6}: dit_sample = `dit sample --cfg-interval 0.1,0.6`, and differs from guiding every step");
    opt.cfg_interval[0] = 0.6f, opt.cfg_interval[1] = 0.1f;
    CHECK(dit_sample(m, &items[1], 1, &opt, alone) == DIT_ERR && strstr(dit_last_error(), "cfg_interval"),
          "cfg_interval {0.6, 0.1} refused (%s)", dit_last_error());
    opt.cfg_interval[0] = opt.cfg_interval[1] = 0;
    image_free(&a), image_free(&b);

    uint8_t *png = NULL;
    size_t png_size = 0;
    FILE *f = fopen(api_png, "rb");
    uint8_t file_bytes[8192];
    size_t file_size = f ? fread(file_bytes, 1, sizeof file_bytes, f) : 0;
    if (f) fclose(f);
    ok = dit_png_encode(pixels, c->input_size, c->input_size, 1, &png, &png_size) == DIT_OK;
    CHECK(ok && png_size == file_size &&
              !memcmp(png, file_bytes, png_size), "dit_png_encode gives the bytes dit_png_write writes (%zu bytes)", png_size);
    dit_free(png);
    CHECK(dit_png_encode(pixels, 4, 4, 2, &png, &png_size) != DIT_OK && strstr(dit_last_error(), "channels"),
          "dit_png_encode refuses 2 channels: %s", dit_last_error());

    // Cancellation: stop after step 2 of 5.
    log = (progress_log){.cancel_at = 2};
    opt = (dit_sample_options){.sampler = DIT_SAMPLER_EULER, .steps = 5, .progress = on_progress, .progress_ctx = &log};
    ok = dit_sample(m, items, 1, &opt, together) == DIT_OK;
    CHECK(!ok && strstr(dit_last_error(), "cancelled") && log.last_step == 2,
          "a progress callback that returns 1 cancels: %s after step %d", dit_last_error(), log.last_step);
    log = (progress_log){.cancel_at = 5};
    ok = dit_sample(m, items, 1, &opt, together) == DIT_OK;
    CHECK(!ok && log.last_step == 5,
          "a cancel at the last step still fails the call (the caller gave up on it)");
    opt.progress = NULL;
    dit_sample_item bad = {.label = 10};
    CHECK(dit_sample(m, &bad, 1, &opt, together) != DIT_OK && strstr(dit_last_error(), "0..9"),
          "class 10 of a 10-class model is refused: %s", dit_last_error());
    opt.steps = 1001;
    CHECK(dit_sample(m, items, 1, &opt, together) != DIT_OK, "1001 steps refused: %s", dit_last_error());
    dit_sampler s;
    CHECK(dit_sampler_parse("dpm++2m", &s) == DIT_OK && s == DIT_SAMPLER_DPMPP_2M && dit_sampler_parse("euler", &s) != DIT_OK,
          "dit_sampler_parse: dpm++2m known, euler refused (%s)", dit_last_error());
    int H, W, C;
    ok = dit_image_shape(m, NULL, &H, &W, &C) == DIT_OK;
    CHECK(ok && H == 32 && W == 32 && C == 1,
          "dit_image_shape of the pixel-space model: %dx%dx%d", H, W, C);
    free(pixels), free(together), free(alone);
    dit_model_free(m);

    dit_model *latent = imagenet_model();
    CHECK(dit_image_shape(latent, NULL, &H, &W, &C) != DIT_OK && strstr(dit_last_error(), "VAE"),
          "a latent model without a VAE has no image shape: %s", dit_last_error());
    dit_model_free(latent);
}

static void test_sample_class_names_cli(void) {
    const char *model = repo_path("models/dit-fmnist.safetensors");
    char args[4096], grid[1024], *out = NULL;
    snprintf(grid, sizeof grid, "%s", scratch_path("names_grid.png"));
    snprintf(args, sizeof args, "sample -m %s --class 'sneaker,0' -n 1 --steps 2 --sampler flow-heun -o %s", model, grid);
    int rc = run_dit(args, &out);
    CHECK(rc == 0 && strstr(out, "2 classes x 1"), "dit sample --class 'sneaker,0' (a name and an id): rc %d", rc);
    free(out);
    snprintf(args, sizeof args, "sample -m %s --class 'sneakr' -n 1 --steps 2 -o %s", model, grid);
    rc = run_dit(args, &out);
    CHECK(rc != 0 && strstr(out, "dit: ") && strstr(out, "7 Sneaker"), "an unknown name: rc %d, %s", rc, out);
    free(out);
    dit_model *m = imagenet_model();
    char path[1024];
    snprintf(path, sizeof path, "%s", scratch_path("imagenet_tiny.safetensors"));
    if (!CHECK(m && dit_model_save(m, path) == DIT_OK, "save a tiny 1000-class model")) return;
    dit_model_free(m);
    snprintf(args, sizeof args, "sample -m %s --class crane -n 1 --steps 2 --save-latents %s.npy", path, path);
    rc = run_dit(args, &out);
    CHECK(rc != 0 && strstr(out, "ambiguous") && strstr(out, "134 crane") && strstr(out, "517 crane"),
          "--class crane on a 1000-class model: rc %d, %s", rc, out);
    free(out);
    snprintf(args, sizeof args, "sample -m %s --class 'golden retriever,360' -n 1 --steps 2 --cfg-scale 1 --save-latents %s.npy",
             path, path);
    rc = run_dit(args, &out);
    CHECK(rc == 0, "--class 'golden retriever,360' on a 1000-class model: rc %d", rc);
    free(out);
}

void test_api(void) {
    test_class_names();
    test_sample_api();
    test_sample_class_names_cli();
}
