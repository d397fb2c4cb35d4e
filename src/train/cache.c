// The latent cache of `dit cache-latents`: every image of a class-folder dataset and its mirror image encoded
// once by the SD VAE (as fast-DiT's extract_features.py, but keeping both flips so training still flips at
// random), times the VAE's scaling factor. Read back by train_data_open_cache (data.c).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "io/tensors.h"
#include "train/train.h"

dit_status train_cache_latents(dit_vae *vae, const train_data *folder, int use_mean, uint64_t seed, const char *path,
                               void (*progress)(void *ctx, int done, int total), void *ctx) {
    const dit_vae_config *vc = dit_vae_get_config(vae);
    const int f = dit_vae_config_factor(vc), S = folder->size, L = vc->latent_channels;
    if (folder->kind != DATA_IMAGE_FOLDER || folder->channels != vc->in_channels)
        return dit_set_error("%s: cache-latents needs a folder of class subfolders of RGB images", folder->source);
    if (S % f) return dit_set_error("--image-size %d: must be a multiple of the VAE's factor %d", S, f);
    const int h = S / f;
    const size_t per_image = (size_t)3 * S * S, per_latent = (size_t)L * h * h;
    float *latents = dit_try_malloc((size_t)folder->count * 2 * per_latent * sizeof(float), "the latents");
    float *x = dit_malloc(2 * per_image * sizeof(float)), *noise = dit_malloc(2 * per_latent * sizeof(float));
    dit_status st = latents && x && noise ? DIT_OK : DIT_ERR;
    for (int i = 0; i < folder->count && st == DIT_OK; i++) {
        if ((st = train_data_get(folder, i, 0, x)) || (st = train_data_get(folder, i, 1, x + per_image))) break;
        for (int k = 0; k < 2 && !use_mean; k++)
            rng_normal_fill(noise + k * per_latent, (int64_t)per_latent, seed, (uint32_t)(2 * i + k), 0,
                            RNG_STREAM_CACHE_POSTERIOR);
        float *z = latents + (size_t)i * 2 * per_latent;
        if ((st = dit_vae_encode(vae, x, 2, S, S, use_mean ? NULL : noise, z))) break;
        for (size_t k = 0; k < 2 * per_latent; k++) z[k] *= vc->scaling_factor;
        if (progress) progress(ctx, i + 1, folder->count);
    }
    free(x);
    free(noise);
    if (st) {
        free(latents);
        return st;
    }
    int32_t *labels = dit_malloc((size_t)folder->count * sizeof(int32_t));
    if (!labels) {
        free(latents);
        return DIT_ERR;
    }
    for (int i = 0; i < folder->count; i++) labels[i] = folder->labels[i];
    tensor_out outs[2] = {
        {.name = "latents", .dtype = DT_F32, .ndim = 5, .shape = {folder->count, 2, L, h, h}, .data = latents},
        {.name = "labels", .dtype = DT_I32, .ndim = 1, .shape = {folder->count}, .data = labels},
    };
    cJSON *names = cJSON_CreateArray();
    for (int c = 0; c < folder->num_classes; c++) cJSON_AddItemToArray(names, cJSON_CreateString(folder->class_names[c]));
    char *names_json = cJSON_PrintUnformatted(names);
    cJSON_Delete(names);
    char num_classes[32], image_size[32], scale[32], seed_text[32];
    snprintf(num_classes, sizeof num_classes, "%d", folder->num_classes);
    snprintf(image_size, sizeof image_size, "%d", S);
    snprintf(scale, sizeof scale, "%.9g", (double)vc->scaling_factor);
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    const char *keys[] = {"format", "num_classes", "dit.class_names", "image_size", "scaling_factor", "posterior",
                          "seed", "source", "layout"};
    const char *values[] = {"dit.latent_cache", num_classes, names_json, image_size, scale,
                            use_mean ? "mean" : "sample", seed_text, folder->source,
                            "latents[i, 0] = image i, latents[i, 1] = image i flipped horizontally"};
    st = safetensors_write(path, outs, 2, keys, values, 9);
    free(names_json);
    free(labels);
    free(latents);
    return st;
}
