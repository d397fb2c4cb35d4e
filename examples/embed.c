// Using dit as a library: load a model, sample one image of a class (by name or id) with a progress
// callback that can cancel, decode it and write a PNG. Builds against the installed library alone:
//     cc examples/embed.c $(pkg-config --cflags --libs dit) -o embed
//     ./embed models/dit-fmnist.safetensors sneaker.png sneaker        (a latent model: add --vae VAE.safetensors)
// usage: embed MODEL OUT.png [CLASS] [--cancel-at STEP] [--vae VAE]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dit.h>
#include <dit_vae.h>

static int on_progress(void *ctx, int step, int total) {
    int cancel_at = *(const int *)ctx;
    printf("step %d/%d\n", step, total);
    return cancel_at > 0 && step >= cancel_at;   // non-zero cancels
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL, *class_text = "0", *vae_path = NULL;
    int cancel_at = 0, positional = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cancel-at") && i + 1 < argc) cancel_at = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--vae") && i + 1 < argc) vae_path = argv[++i];
        else if (positional == 0) model_path = argv[i], positional++;
        else if (positional == 1) out_path = argv[i], positional++;
        else class_text = argv[i];
    }
    if (!model_path || !out_path) {
        fprintf(stderr, "usage: embed MODEL OUT.png [CLASS] [--cancel-at STEP] [--vae VAE]\n");
        return 2;
    }
    printf("libdit %s\n", dit_version());
    dit_model *model = dit_model_load(model_path, NULL);
    if (!model) {
        fprintf(stderr, "embed: %s\n", dit_last_error());
        return 1;
    }
    dit_vae *vae = vae_path ? dit_vae_load(vae_path, NULL) : NULL;
    int status = 1, label, height, width, channels;
    float *samples = NULL;
    uint8_t *pixels = NULL;
    if (dit_model_find_class(model, class_text, &label) != DIT_OK ||
        dit_image_shape(model, vae, &height, &width, &channels) != DIT_OK) {
        fprintf(stderr, "embed: %s\n", dit_last_error());
        goto done;
    }
    const dit_config *cfg = dit_model_config(model);
    samples = malloc(sizeof(float) * cfg->in_channels * cfg->input_size * cfg->input_size);
    pixels = malloc((size_t)height * width * channels);
    dit_sample_item item = {.label = label, .seed = 42, .index = 0};
    // a fast solver of the model's objective: Heun for flow matching, DPM-Solver++(2M) for DiT's eps models
    const dit_sampler sampler =
        dit_model_objective(model) == DIT_OBJECTIVE_V_FLOW ? DIT_SAMPLER_HEUN : DIT_SAMPLER_DPMPP_2M;
    dit_sample_options opt = {.sampler = sampler, .steps = 10, .cfg_scale = 3.0f,
                              .progress = on_progress, .progress_ctx = &cancel_at};
    if (dit_sample(model, &item, 1, &opt, samples) != DIT_OK) {
        fprintf(stderr, "embed: %s\n", dit_last_error());
        status = strstr(dit_last_error(), "cancelled") ? 3 : 1;
        goto done;
    }
    if (dit_decode_images(model, vae, samples, 1, pixels) != DIT_OK ||
        dit_png_write(out_path, pixels, width, height, channels) != DIT_OK) {
        fprintf(stderr, "embed: %s\n", dit_last_error());
        goto done;
    }
    const char *name = dit_model_class_name(model, label);
    printf("wrote %s: class %d (%s), seed 42, %dx%d\n", out_path, label, name ? name : "no name", width, height);
    status = 0;
done:
    free(samples);
    free(pixels);
    dit_vae_free(vae);
    dit_model_free(model);
    return status;
}
