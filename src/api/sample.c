// The public sampling API of dit.h: samplers by name, dit_sample over items with their own (seed, index)
// noise, progress and cancellation, decoding to 8-bit images, PNG. `dit serve` and embedders use only these;
// the maths is diffusion/ (docs/diffusion.md), the noise layout that of `dit sample` (docs/serve.md).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "base/threads.h"
#include "diffusion/diffusion.h"
#include "models/dit_model.h"
#include "dit.h"
#include "dit_vae.h"
#include "image/grid.h"
#include "io/tensors.h"

const char *dit_version(void) { return "0.1.0"; }

void dit_set_num_threads(int n) { dit_set_threads(n); }

void dit_free(void *p) { free(p); }

dit_status dit_objective_parse(const char *name, dit_objective *out) {
    if (name && !strcmp(name, "eps")) *out = DIT_OBJECTIVE_EPS;
    else if (name && !strcmp(name, "v-flow")) *out = DIT_OBJECTIVE_V_FLOW;
    else return dit_set_error("objective '%s': expected eps or v-flow", name ? name : "(none)");
    return DIT_OK;
}

const char *dit_objective_name(dit_objective o) {
    return o == DIT_OBJECTIVE_EPS ? "eps" : o == DIT_OBJECTIVE_V_FLOW ? "v-flow" : "?";
}

dit_objective dit_model_objective(const dit_model *m) { return m->objective; }

dit_status dit_model_set_objective(dit_model *m, dit_objective o) {
    if (o != DIT_OBJECTIVE_EPS && o != DIT_OBJECTIVE_V_FLOW) return dit_set_error("objective %d: unknown", (int)o);
    m->objective = o;
    return DIT_OK;
}

static const char *const sampler_names[] = {"ddpm", "ddim", "dpm++2m", "flow-euler", "flow-heun", "flow-em"};
#define NUM_SAMPLERS ((int)(sizeof sampler_names / sizeof sampler_names[0]))

dit_status dit_sampler_parse(const char *name, dit_sampler *out) {
    if (!name) return dit_set_error("sampler: no name");
    for (int k = 0; k < NUM_SAMPLERS; k++)
        if (!strcmp(name, sampler_names[k])) {
            *out = (dit_sampler)k;
            return DIT_OK;
        }
    if (!strcmp(name, "dpmpp2m")) *out = DIT_SAMPLER_DPMPP_2M;
    else if (!strcmp(name, "flow-euler-maruyama")) *out = DIT_SAMPLER_EULER_MARUYAMA;
    else return dit_set_error("sampler '%s': expected ddpm, ddim or dpm++2m (eps models), flow-euler, flow-heun or flow-em (v-flow "
                              "models)", name);
    return DIT_OK;
}

const char *dit_sampler_name(dit_sampler s) { return (int)s >= 0 && (int)s < NUM_SAMPLERS ? sampler_names[s] : "?"; }

int dit_sampler_default_steps(dit_sampler s) {
    static const int steps[NUM_SAMPLERS] = {250, 250, 25, 50, 25, 100};
    return (int)s >= 0 && (int)s < NUM_SAMPLERS ? steps[s] : 250;
}

dit_objective dit_sampler_objective(dit_sampler s) {
    return s >= DIT_SAMPLER_EULER ? DIT_OBJECTIVE_V_FLOW : DIT_OBJECTIVE_EPS;
}

dit_sampler dit_model_default_sampler(const dit_model *m) {
    return m->objective == DIT_OBJECTIVE_V_FLOW ? DIT_SAMPLER_HEUN : DIT_SAMPLER_DDPM;
}

// A sampler of the model's objective, or an error naming the ones that fit.
static dit_status check_sampler(const dit_model *m, dit_sampler s) {
    if ((int)s < 0 || (int)s >= NUM_SAMPLERS) return dit_set_error("sample: unknown sampler %d", (int)s);
    if (dit_sampler_objective(s) == m->objective) return DIT_OK;
    return dit_set_error("sampler %s is for %s models, and this model is %s: use %s", dit_sampler_name(s),
                         dit_objective_name(dit_sampler_objective(s)), dit_objective_name(m->objective),
                         m->objective == DIT_OBJECTIVE_V_FLOW ? "flow-euler, flow-heun or flow-em" : "ddpm, ddim or dpm++2m");
}

typedef struct {
    dit_model *model;
    const dit_sample_options *opt;
    const dit_sample_item *items;   // the current batch
    int *labels;
    int use_cfg, guide_all;         // guide_all: every eps / velocity channel (v-flow models always)
    float t_lo, t_hi;               // the guidance interval in timesteps (0..1000 units)
    int done_before, total;         // steps of earlier batches, steps of the whole call
    int cancelled;
} sample_ctx;

static dit_status denoise(void *ctx, const float *x, const float *t, int B, float *out) {
    sample_ctx *s = ctx;
    if (s->cancelled) return dit_set_error("sampling cancelled");
    return s->use_cfg ? dit_model_forward_cfg_interval(s->model, x, t, s->labels, B, s->opt->cfg_scale, s->guide_all,
                                                       s->t_lo, s->t_hi, out)
                      : dit_model_forward(s->model, x, t, s->labels, B, out);
}

static void on_step(void *ctx, int step, int total) {
    (void)total;
    sample_ctx *s = ctx;
    if (s->opt->progress && s->opt->progress(s->opt->progress_ctx, s->done_before + step, s->total)) s->cancelled = 1;
}

// Step noise of each image from its own (seed, index), as diffusion_sample would with one seed for all.
static dit_status item_noise(void *ctx, int step, int B, int64_t per_sample, float *dst) {
    const sample_ctx *s = ctx;
    for (int b = 0; b < B; b++)
        rng_normal_fill(dst + b * per_sample, per_sample, s->items[b].seed, s->items[b].index, (uint32_t)step,
                        RNG_STREAM_STEP);
    return DIT_OK;
}

dit_status dit_sample(dit_model *m, const dit_sample_item *items, int n, const dit_sample_options *opt, float *out) {
    const dit_config *c = dit_model_config(m);
    if (n < 1) return dit_set_error("sample: %d images requested", n);
    if (check_sampler(m, opt->sampler) != DIT_OK) return DIT_ERR;
    const int steps = opt->steps ? opt->steps : dit_sampler_default_steps(opt->sampler);
    if (steps < 1 || steps > 1000) return dit_set_error("sample: steps %d, expected 1..1000", steps);
    if (opt->eta < 0 || (opt->eta > 0 && opt->sampler != DIT_SAMPLER_DDIM))
        return dit_set_error("sample: eta %g is for the ddim sampler only, and not negative", opt->eta);
    const int use_cfg = opt->cfg_scale > 1.0f;   // as sample_ddp.py: guidance only above 1
    if (use_cfg && c->class_dropout_prob <= 0)
        return dit_set_error("sample: cfg_scale %g needs a null class, and the model was trained without label "
                             "dropout (use cfg_scale 1)", opt->cfg_scale);
    const float lo = opt->cfg_interval[0], hi = opt->cfg_interval[1];
    const int whole = lo == 0 && hi == 0;
    if (!whole && !(lo >= 0 && hi <= 1 && lo < hi))
        return dit_set_error("sample: cfg_interval [%g, %g], expected 0 <= lo < hi <= 1 (or 0, 0: every step)", lo, hi);
    for (int k = 0; k < n; k++)
        if (items[k].label < 0 || items[k].label >= c->num_classes)
            return dit_set_error("sample: class %d, the model has classes 0..%d", items[k].label, c->num_classes - 1);
    const int batch = opt->batch > 0 ? opt->batch : 16;
    const int C = c->in_channels, HW = c->input_size * c->input_size;
    const int64_t per_sample = (int64_t)C * HW;

    char respacing[32];
    snprintf(respacing, sizeof respacing, "%d", steps);
    diffusion diff = {0};
    const int respaced = opt->sampler == DIT_SAMPLER_DDPM || opt->sampler == DIT_SAMPLER_DDIM;
    diffusion_options dopt = {.respacing = respaced ? respacing : "",
                              .learn_sigma = c->learn_sigma};
    if (diffusion_init(&diff, &dopt) != DIT_OK) return DIT_ERR;
    static const sampler_kind kinds[] = {SAMPLER_DDPM, SAMPLER_DDIM, SAMPLER_DPMPP_2M, SAMPLER_EULER, SAMPLER_HEUN,
                                         SAMPLER_EULER_MARUYAMA};
    sample_ctx ctx = {.model = m, .opt = opt, .use_cfg = use_cfg, .labels = dit_malloc(sizeof(int) * (size_t)batch),
                      .guide_all = opt->guide_all_channels || m->objective == DIT_OBJECTIVE_V_FLOW,
                      .t_lo = whole || lo <= 0 ? -INFINITY : 1000.0f * lo,
                      .t_hi = whole || hi >= 1 ? INFINITY : 1000.0f * hi};
    if (!ctx.labels) {
        diffusion_free(&diff);
        return DIT_ERR;
    }
    sampler_options sopt = {.kind = kinds[opt->sampler], .eta = opt->eta, .dpm_steps = steps, .flow_steps = steps,
                            .noise = item_noise, .noise_ctx = &ctx, .progress = on_step, .progress_ctx = &ctx};
    const int per_batch = diffusion_sampler_steps(&diff, &sopt), num_batches = (n + batch - 1) / batch;
    ctx.total = per_batch * num_batches;
    if (opt->progress && opt->progress(opt->progress_ctx, 0, ctx.total)) ctx.cancelled = 1;
    dit_status status = DIT_OK;
    for (int first = 0; first < n && status == DIT_OK; first += batch) {
        const int B = n - first < batch ? n - first : batch;
        ctx.items = items + first;
        for (int b = 0; b < B; b++) {
            ctx.labels[b] = items[first + b].label;
            rng_normal_fill(out + (first + b) * per_sample, per_sample, items[first + b].seed, items[first + b].index,
                            0, RNG_STREAM_INITIAL);   // = diffusion_initial_noise
        }
        status = diffusion_sample(&diff, &sopt, denoise, &ctx, B, C, HW, out + first * per_sample);
        ctx.done_before += per_batch;
    }
    // A cancel asked at the last step still cancels: the caller gave up on the result.
    if (status == DIT_OK && ctx.cancelled) status = dit_set_error("sampling cancelled");
    free(ctx.labels);
    diffusion_free(&diff);
    return status;
}

dit_status dit_image_shape(const dit_model *m, const dit_vae *vae, int *height, int *width, int *channels) {
    const dit_config *c = dit_model_config(m);
    if (c->in_channels == 1 || c->in_channels == 3) {
        *height = *width = c->input_size;
        *channels = c->in_channels;
        return DIT_OK;
    }
    if (!vae)
        return dit_set_error("a latent-space model (%d channels) needs the VAE to make images", c->in_channels);
    const dit_vae_config *v = dit_vae_get_config(vae);
    if (v->latent_channels != c->in_channels)
        return dit_set_error("the VAE has %d latent channels, the model %d", v->latent_channels, c->in_channels);
    *height = *width = c->input_size * dit_vae_config_factor(v);
    *channels = v->out_channels;
    return DIT_OK;
}

dit_status dit_decode_images(const dit_model *m, dit_vae *vae, const float *samples, int n, uint8_t *pixels) {
    int H, W, IC;
    if (dit_image_shape(m, vae, &H, &W, &IC) != DIT_OK) return DIT_ERR;
    const dit_config *c = dit_model_config(m);
    const int C = c->in_channels, S = c->input_size;
    const int64_t per_sample = (int64_t)C * S * S, per_image = (int64_t)IC * H * W;
    if (C == IC && H == S) {   // pixel space: the samples are the images
        to_uint8_nhwc(pixels, samples, n, C, S, S);
        return DIT_OK;
    }
    const float scale = dit_vae_get_config(vae)->scaling_factor;
    float *z = dit_malloc(sizeof(float) * (size_t)per_sample), *x = dit_malloc(sizeof(float) * (size_t)per_image);
    dit_status st = z && x ? DIT_OK : DIT_ERR;
    for (int k = 0; k < n && st == DIT_OK; k++) {   // one at a time keeps the decoder's activations small
        for (int64_t i = 0; i < per_sample; i++) z[i] = samples[k * per_sample + i] / scale;
        st = dit_vae_decode(vae, z, 1, S, S, x);
        if (st == DIT_OK) to_uint8_nhwc(pixels + k * per_image, x, 1, IC, H, W);
    }
    free(z), free(x);
    return st;
}

dit_status dit_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels) {
    return png_write(path, pixels, width, height, channels);
}
