// The diffusion layer: Philox4x32-10 known answers and normal statistics, schedules and respacing vs our
// reference port (tests/ref/diffusion_ref.py, goldens in tests/golden/diffusion/), single sampler steps,
// DDIM/DDPM/DPM-Solver++ runs of the tiny synthetic DiT under CFG, solver convergence and determinism.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/rng.h"
#include "diffusion/diffusion.h"
#include "io/tensors.h"
#include "test.h"

// ---- golden readers ------------------------------------------------------------------------------

static void *read_npy(const char *name, dit_dtype want, int64_t *count) {
    npy_array a;
    const char *path = golden_path(name);
    if (npy_read(path, &a) != DIT_OK) {
        CHECK(0, "read %s: %s", path, dit_last_error());
        return NULL;
    }
    if (a.dtype != want) {
        CHECK(0, "%s: dtype %s, expected %s", path, dtype_name(a.dtype), dtype_name(want));
        npy_free(&a);
        return NULL;
    }
    *count = (int64_t)(a.nbytes / dtype_size(a.dtype));
    return a.data;   // owned by the caller (npy_free only frees data)
}

static float *read_f32(const char *name, int64_t *count) { return read_npy(name, DT_F32, count); }
static double *read_f64(const char *name, int64_t *count) { return read_npy(name, DT_F64, count); }
static int64_t *read_i64(const char *name, int64_t *count) { return read_npy(name, DT_I64, count); }

// Relative comparison of float64 tables: |got - want| <= rtol |want| (exact where want is 0 or infinite).
static int check_close_f64(const char *what, const double *got, const double *want, int64_t n, double rtol) {
    double worst = 0;
    int64_t worst_i = 0;
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        double err = got[i] == want[i] ? 0 : fabs(got[i] - want[i]) / fabs(want[i]);
        if (isnan(err)) err = INFINITY;
        if (err > worst) worst = err, worst_i = i;
        if (!(err <= rtol)) ok = 0;
    }
    return CHECK(ok, "%s  (worst rel err %.3g at %lld, tolerance %.0e)", what, worst, (long long)worst_i, rtol);
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double rms(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s / n);
}

static double rms_diff(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / n);
}

// ---- RNG -------------------------------------------------------------------------------------------

static void test_philox(void) {
    // Random123 tests/kat_vectors (github.com/DEShawResearch/random123), the "philox4x32 10" lines:
    // counter (4 words), key (2 words), expected output (4 words).
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        philox4x32_10(out, kat[v], kat[v] + 4);
        CHECK(memcmp(out, kat[v] + 6, sizeof out) == 0,
              "philox4x32-10 Random123 KAT %d: %08x %08x %08x %08x", v, out[0], out[1], out[2], out[3]);
    }

    const int64_t n = 1000000;
    float *z = malloc(sizeof(float) * n), *z2 = malloc(sizeof(float) * n);
    rng_normal_fill(z, n, 1234, 7, 3, RNG_STREAM_STEP);
    double sum = 0, sum2 = 0, sum4 = 0;
    int64_t beyond3 = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += z[i], sum2 += (double)z[i] * z[i], sum4 += (double)z[i] * z[i] * z[i] * z[i];
        beyond3 += fabsf(z[i]) > 3.0f;
    }
    double mean = sum / n, var = sum2 / n - mean * mean, kurt = sum4 / n;
    // standard errors for n = 1e6: mean 0.001, variance sqrt(2/n) = 0.0014, E z^4 sqrt(96/n) = 0.0098;
    // bounds at 5 standard errors. P(|z| > 3) = 0.0026998 (sd 5.2e-5).
    CHECK(fabs(mean) < 0.005 && fabs(var - 1) < 0.007 && fabs(kurt - 3) < 0.05 &&
              fabs(beyond3 / (double)n - 0.0026998) < 0.00026,
          "1e6 normals: mean %.5f, variance %.5f, E z^4 %.4f, P(|z|>3) %.6f (N(0,1): 0, 1, 3, 0.0027)", mean, var,
          kurt, beyond3 / (double)n);

#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    rng_normal_fill(z2, n, 1234, 7, 3, RNG_STREAM_STEP);
    omp_set_num_threads(saved > 1 ? saved : 2);
    rng_normal_fill(z, n, 1234, 7, 3, RNG_STREAM_STEP);
    omp_set_num_threads(saved);
    CHECK(memcmp(z, z2, sizeof(float) * n) == 0, "1e6 normals identical with 1 and %d threads",
          saved > 1 ? saved : 2);
#endif
    // a prefix of an odd length is the prefix of the longer fill; other (sample, step, stream) differ
    rng_normal_fill(z2, 7, 1234, 7, 3, RNG_STREAM_STEP);
    int prefix = memcmp(z, z2, sizeof(float) * 7) == 0;
    rng_normal_fill(z2, 8, 1234, 8, 3, RNG_STREAM_STEP);
    int other_sample = memcmp(z, z2, sizeof(float) * 8) != 0;
    rng_normal_fill(z2, 8, 1234, 7, 4, RNG_STREAM_STEP);
    int other_step = memcmp(z, z2, sizeof(float) * 8) != 0;
    rng_normal_fill(z2, 8, 1234, 7, 3, RNG_STREAM_INITIAL);
    int other_stream = memcmp(z, z2, sizeof(float) * 8) != 0;
    rng_normal_fill(z2, 8, 1234 + (1ull << 32), 7, 3, RNG_STREAM_STEP);
    int other_seed_high = memcmp(z, z2, sizeof(float) * 8) != 0;
    CHECK(prefix && other_sample && other_step && other_stream && other_seed_high,
          "normals: odd-length prefix equal; sample id, step, stream and seed high word change the values");
    free(z), free(z2);
}

// ---- schedules and respacing -------------------------------------------------------------------------

static const char *const respacings[] = {"250", "100", "50", "25", "10", "ddim50", "ddim25", "27,13"};

static void compare_tables(const diffusion *d, const char *prefix, const char *label) {
    char name[128];
    int64_t n_steps, n_tables;
    snprintf(name, sizeof name, "diffusion/%s_timesteps.npy", prefix);
    int64_t *steps = read_i64(name, &n_steps);
    snprintf(name, sizeof name, "diffusion/%s_tables.npy", prefix);
    double *tables = read_f64(name, &n_tables);
    if (!steps || !tables) goto done;
    int same = n_steps == d->num_timesteps;
    for (int64_t i = 0; same && i < n_steps; i++) same = steps[i] == d->timestep_map[i];
    CHECK(same, "%s: %d timesteps (want %lld), first %d, last %d, as the reference", label, d->num_timesteps,
          (long long)n_steps, d->timestep_map[0], d->timestep_map[d->num_timesteps - 1]);
    if (!same || n_tables != 15 * n_steps) goto done;
    const double *rows[15] = {d->betas, d->alphas_cumprod, d->alphas_cumprod_prev, d->alphas_cumprod_next,
                              d->sqrt_alphas_cumprod, d->sqrt_one_minus_alphas_cumprod,
                              d->log_one_minus_alphas_cumprod, d->sqrt_recip_alphas_cumprod,
                              d->sqrt_recipm1_alphas_cumprod, d->posterior_variance,
                              d->posterior_log_variance_clipped, d->posterior_mean_coef1, d->posterior_mean_coef2,
                              d->log_betas, d->fixed_log_variance};
    double *all = malloc(sizeof(double) * (size_t)n_tables);
    for (int r = 0; r < 15; r++) memcpy(all + r * n_steps, rows[r], sizeof(double) * (size_t)n_steps);
    // 1e-12 rel: the same float64 operations in the same order as numpy; only log/sqrt/cos may differ
    // by an ulp between libms, and cumprod/1 - x amplify that to ~1e-14 at most.
    char what[160];
    snprintf(what, sizeof what, "%s: 15 float64 tables (betas .. fixed_large log-var) vs reference", label);
    check_close_f64(what, all, tables, n_tables, 1e-12);
    free(all);
done:
    free(steps), free(tables);
}

static int list_has(const diffusion *d, int t) {
    for (int i = 0; i < d->num_timesteps; i++)
        if (d->timestep_map[i] == t) return 1;
    return 0;
}

static void test_schedule(void) {
    for (size_t k = 0; k < sizeof respacings / sizeof respacings[0]; k++) {
        diffusion d;
        diffusion_options opt = {.respacing = respacings[k], .learn_sigma = 0};   // FIXED_LARGE table
        if (!CHECK(diffusion_init(&d, &opt) == DIT_OK, "diffusion_init respacing '%s'", respacings[k])) continue;
        char prefix[64], label[64];
        snprintf(prefix, sizeof prefix, "resp_%s", respacings[k]);
        for (char *p = prefix; *p; p++) if (*p == ',') *p = '_';
        snprintf(label, sizeof label, "linear, respacing '%s'", respacings[k]);
        compare_tables(&d, prefix, label);
        if (strcmp(respacings[k], "25") == 0)
            CHECK(list_has(&d, 166) && !list_has(&d, 167) && list_has(&d, 832) && !list_has(&d, 833),
                  "'25' rounds half to even: 166.5 -> 166, 832.5 -> 832");
        if (strcmp(respacings[k], "250") == 0) {
            // reference.md §2.2 / §2.3 [computed] values (6 significant digits)
            const double *ac = d.base_alphas_cumprod;
            CHECK(fabs(ac[0] / 0.9999 - 1) < 5e-6 && fabs(ac[249] / 0.524085 - 1) < 5e-6 &&
                      fabs(ac[499] / 0.0785872 - 1) < 5e-6 && fabs(ac[999] / 4.03583e-05 - 1) < 5e-6,
                  "abar[0, 249, 499, 999] = %.6g %.6g %.6g %.6g (reference.md §2.2)", ac[0], ac[249], ac[499],
                  ac[999]);
            CHECK(fabs(d.betas[0] / 1.0e-4 - 1) < 5e-6 && fabs(d.betas[1] / 5.99066e-4 - 1) < 5e-6 &&
                      fabs(d.betas[2] / 9.17603e-4 - 1) < 5e-6 && fabs(d.betas[248] / 0.0772193 - 1) < 5e-6 &&
                      fabs(d.betas[249] / 0.0775193 - 1) < 5e-6 &&
                      fabs(d.posterior_variance[1] / 8.57025e-05 - 1) < 5e-6 &&
                      fabs(d.posterior_log_variance_clipped[0] / -9.36463 - 1) < 5e-6,
                  "'250': betas %.6g %.6g %.6g .. %.6g %.6g, posterior var[1] %.6g, clipped log-var[0] %.6g "
                  "(reference.md §2.3)",
                  d.betas[0], d.betas[1], d.betas[2], d.betas[248], d.betas[249], d.posterior_variance[1],
                  d.posterior_log_variance_clipped[0]);
            int gaps = 1, fives = 0;
            for (int i = 1; i < 250; i++) {
                int gap = d.timestep_map[i] - d.timestep_map[i - 1];
                gaps &= gap == 4 || gap == 5;
                fives += gap == 5;
            }
            CHECK(gaps && fives == 3 && d.timestep_map[42] == 169 && d.timestep_map[249] == 999,
                  "'250': gaps of 4 except 3 gaps of 5 (after 164, 497, 830)");
        }
        diffusion_free(&d);
    }
    diffusion d;
    diffusion_options cos_opt = {.schedule = "squaredcos_cap_v2", .respacing = "100"};
    if (CHECK(diffusion_init(&d, &cos_opt) == DIT_OK, "diffusion_init squaredcos_cap_v2 '100'")) {
        d.var_type = DIFFUSION_VAR_FIXED_LARGE;   // the golden's last row is the FIXED_LARGE table
        compare_tables(&d, "cosine_100", "squaredcos_cap_v2, respacing '100'");
        int64_t n;
        double *ac = read_f64("diffusion/cosine_base_alphas_cumprod.npy", &n);
        if (ac && CHECK(n == 1000, "cosine base table has 1000 entries"))
            check_close_f64("squaredcos_cap_v2 base alphas_cumprod vs reference", d.base_alphas_cumprod, ac, n,
                            1e-12);
        free(ac);
        diffusion_free(&d);
    }
    // no respacing = all 1000 steps; FIXED_SMALL uses the clipped posterior log-variance
    diffusion_options full = {.respacing = "", .sigma_small = 1};
    if (CHECK(diffusion_init(&d, &full) == DIT_OK, "diffusion_init without respacing")) {
        int identity = d.num_timesteps == 1000 && d.var_type == DIFFUSION_VAR_FIXED_SMALL;
        for (int i = 0; identity && i < 1000; i++)
            identity = d.timestep_map[i] == i && d.fixed_log_variance[i] == d.posterior_log_variance_clipped[i] &&
                       fabs(d.alphas_cumprod[i] / d.base_alphas_cumprod[i] - 1) < 1e-14;
        CHECK(identity, "respacing '': 1000 steps, identity map, abar = base abar; FIXED_SMALL = clipped posterior");
        diffusion_free(&d);
    }
    static const char *const bad[] = {"1001", "abc", "10,x", "ddim999", "ddim", "0", "-3"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        diffusion_options o = {.respacing = bad[k]};
        dit_status s = diffusion_init(&d, &o);
        CHECK(s == DIT_ERR, "respacing '%s' rejected: %s", bad[k], s == DIT_ERR ? dit_last_error() : "accepted");
        if (s == DIT_OK) diffusion_free(&d);
    }
    diffusion_options bad_schedule = {.schedule = "cosine"};
    CHECK(diffusion_init(&d, &bad_schedule) == DIT_ERR, "schedule 'cosine' rejected: %s", dit_last_error());

    int ts[20];
    diffusion_dpm_timesteps(1000, 20, ts);
    int want_ok = ts[0] == 999 && ts[1] == 949 && ts[9] == 549 && ts[10] == 500 && ts[19] == 50;
    CHECK(want_ok, "DPM-Solver++ timesteps (20): %d %d .. %d %d .. %d (linspace(0, 999, 21) rounded half-even, "
          "reversed, 0 dropped)", ts[0], ts[1], ts[9], ts[10], ts[19]);
}

// ---- single steps ----------------------------------------------------------------------------------

static void test_steps(void) {
    int64_t n_index, n_x, n_mo, n_noise;
    int64_t *index64 = read_i64("diffusion/step_index.npy", &n_index);
    float *x = read_f32("diffusion/step_x.npy", &n_x);
    float *model_out = read_f32("diffusion/step_model_out.npy", &n_mo);
    float *noise = read_f32("diffusion/step_noise.npy", &n_noise);
    if (!index64 || !x || !model_out || !noise) goto done;
    const int B = (int)n_index, C = 4, HW = (int)(n_x / (B * C));
    int index[8];
    for (int b = 0; b < B; b++) index[b] = (int)index64[b];
    float *got = malloc(sizeof(float) * n_x), *got2 = malloc(sizeof(float) * n_x),
          *got3 = malloc(sizeof(float) * n_x), *eps_only = malloc(sizeof(float) * n_x);
    for (int b = 0; b < B; b++) memcpy(eps_only + b * C * HW, model_out + b * 2 * C * HW, sizeof(float) * C * HW);
    diffusion d;
    diffusion_options opt = {.respacing = "250", .learn_sigma = 1};
    if (diffusion_init(&d, &opt) != DIT_OK) goto done;
    // 1e-6 abs + 1e-5 rel: the same float32 operations as the reference in the same order; expf and
    // torch.exp may differ by an ulp, and the values are O(1..10).
    const double atol = 1e-6, rtol = 1e-5;
    struct { const char *file; float *got; } outs[3] = {
        {"diffusion/step_mean.npy", got}, {"diffusion/step_log_variance.npy", got2},
        {"diffusion/step_pred_xstart.npy", got3}};
    diffusion_p_mean_variance(&d, index, x, model_out, B, C, HW, 0, got, got2, got3);
    for (int k = 0; k < 3; k++) {
        int64_t n;
        float *want = read_f32(outs[k].file, &n);
        char what[160];
        snprintf(what, sizeof what, "p_mean_variance LEARNED_RANGE '250' idx 249/120/0: %s", outs[k].file + 10);
        if (want) CHECK_CLOSE(what, outs[k].got, want, (size_t)n, atol, rtol);
        free(want);
    }
    struct { const char *file; int kind; int clip; float eta; } cases[] = {
        {"diffusion/step_psample.npy", 0, 0, 0}, {"diffusion/step_psample_clip.npy", 0, 1, 0},
        {"diffusion/step_ddim_eta0.npy", 1, 0, 0}, {"diffusion/step_ddim_eta05.npy", 1, 0, 0.5f}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (cases[k].kind == 0)
            diffusion_p_sample(&d, index, x, model_out, noise, B, C, HW, cases[k].clip, got, NULL);
        else
            diffusion_ddim_sample(&d, index, x, model_out, noise, B, C, HW, 0, cases[k].eta, got, NULL);
        int64_t n;
        float *want = read_f32(cases[k].file, &n);
        char what[160];
        snprintf(what, sizeof what, "%s step (given noise) vs reference %s", cases[k].kind ? "ddim_sample" : "p_sample",
                 cases[k].file + 10);
        if (want) CHECK_CLOSE(what, got, want, (size_t)n, atol, rtol);
        free(want);
    }
    // in place (x_prev == x) gives the same result
    memcpy(got2, x, sizeof(float) * n_x);
    diffusion_p_sample(&d, index, got2, model_out, noise, B, C, HW, 0, got2, NULL);
    diffusion_p_sample(&d, index, x, model_out, noise, B, C, HW, 0, got, NULL);
    CHECK(memcmp(got, got2, sizeof(float) * n_x) == 0, "p_sample in place == out of place");
    diffusion_free(&d);
    for (int sigma_small = 0; sigma_small <= 1; sigma_small++) {
        diffusion_options fo = {.respacing = "250", .learn_sigma = 0, .sigma_small = sigma_small};
        if (diffusion_init(&d, &fo) != DIT_OK) continue;
        diffusion_p_sample(&d, index, x, eps_only, noise, B, C, HW, 0, got, NULL);
        const char *file = sigma_small ? "diffusion/step_psample_fixed_small.npy" : "diffusion/step_psample_fixed_large.npy";
        int64_t n;
        float *want = read_f32(file, &n);
        char what[160];
        snprintf(what, sizeof what, "p_sample %s (C-channel model output) vs reference", sigma_small ? "FIXED_SMALL" : "FIXED_LARGE");
        if (want) CHECK_CLOSE(what, got, want, (size_t)n, atol, rtol);
        free(want);
        diffusion_free(&d);
    }
    free(got), free(got2), free(got3), free(eps_only);
done:
    free(index64), free(x), free(model_out), free(noise);
}

// ---- sampler runs ------------------------------------------------------------------------------------

typedef struct {
    dit_model *model;
    const int *y;
    float scale;
} cfg_ctx;

static dit_status cfg_denoise(void *ctx, const float *x, const float *t, int B, float *out) {
    cfg_ctx *c = ctx;
    return dit_model_forward_cfg(c->model, x, t, c->y, B, c->scale, 0, out);
}

typedef struct {
    const float *noise;   // (steps, B, C, HW)
    int B;
} stored_noise;

static dit_status stored_noise_fn(void *ctx, int step, int B, int64_t per_sample, float *dst) {
    stored_noise *s = ctx;
    memcpy(dst, s->noise + (int64_t)step * s->B * per_sample, sizeof(float) * (size_t)(B * per_sample));
    return DIT_OK;
}

static void progress_count(void *ctx, int step, int total) {
    int *calls = ctx;
    if (step == calls[0] + 1 && total == calls[1]) calls[0] = step;
    else calls[2] = 1;   // out of order
}

static dit_model *tiny_model(dit_config *cfg) {
    *cfg = (dit_config){.input_size = 8, .patch_size = 2, .in_channels = 4, .hidden_size = 64, .depth = 2,
                        .num_heads = 4, .mlp_ratio = 4.0f, .num_classes = 10, .class_dropout_prob = 0.1f,
                        .learn_sigma = 1};
    dit_model *m = dit_model_synthetic(cfg, 1);   // tests/golden/dit/configs.json "tiny", weight seed 1
    CHECK(m != NULL, "tiny synthetic DiT: %s", m ? "built" : dit_last_error());
    return m;
}

static void test_runs(void) {
    dit_config cfg;
    dit_model *m = tiny_model(&cfg);
    int64_t n_x, n_y, n_noise;
    float *xT = read_f32("diffusion/run_xT.npy", &n_x);
    int64_t *y64 = read_i64("diffusion/run_y.npy", &n_y);
    float *noise = read_f32("diffusion/ddpm10_noise.npy", &n_noise);
    if (!m || !xT || !y64 || !noise) goto done;
    int y[8];
    const int B = (int)n_y, C = cfg.in_channels, HW = cfg.input_size * cfg.input_size;
    for (int b = 0; b < B; b++) y[b] = (int)y64[b];
    cfg_ctx ctx = {m, y, 4.0f};
    stored_noise sn = {noise, B};
    struct { const char *name, *respacing; sampler_kind kind; } runs[] = {
        {"ddim10", "10", SAMPLER_DDIM}, {"ddim25", "ddim25", SAMPLER_DDIM},
        {"ddpm10", "10", SAMPLER_DDPM}, {"dpmpp10", "10", SAMPLER_DPMPP_2M}};
    float *x = malloc(sizeof(float) * n_x);
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        diffusion d;
        diffusion_options o = {.respacing = runs[k].respacing, .learn_sigma = 1};
        if (diffusion_init(&d, &o) != DIT_OK) continue;
        sampler_options so = {.kind = runs[k].kind, .dpm_steps = 10, .noise = stored_noise_fn, .noise_ctx = &sn};
        int calls[3] = {0, diffusion_sampler_steps(&d, &so), 0};
        so.progress = progress_count, so.progress_ctx = calls;
        memcpy(x, xT, sizeof(float) * n_x);
        dit_status s = diffusion_sample(&d, &so, cfg_denoise, &ctx, B, C, HW, x);
        char file[64], what[200];
        snprintf(file, sizeof file, "diffusion/%s_out.npy", runs[k].name);
        int64_t n;
        float *want = read_f32(file, &n);
        if (CHECK(s == DIT_OK && calls[0] == calls[1] && !calls[2] && want && n == n_x,
                  "%s: sampler ran %d/%d steps with ordered progress", runs[k].name, calls[0], calls[1])) {
            // The samples of this untrained model are large (max |x0| 475..915, see the golden README): eps is
            // not the noise, so pred_xstart ~ sqrt(1/abar) x ~ 157 x at t = 999. Torch's own float32 run differs
            // from float64 by <= 5e-4 abs (~7e-7 of max |x0|); our float32 forward differs from torch's by a
            // few 1e-6 relative per call (tests/golden/dit/README.md), carried through 10..25 steps with CFG 4.
            // Observed here: <= 6.3e-7 of max |x0|. Tolerance: 1e-5 of max |x0| abs + 1e-5 rel, ~20x the
            // reference's own float32 noise; a wrong coefficient or timestep changes x0 at the 1e-2..1 level.
            double scale = max_abs(want, n);
            snprintf(what, sizeof what, "%s (tiny DiT, CFG 4.0) final sample vs reference (max|x0| %.1f, "
                     "tolerance 1e-5 max|x0| + 1e-5 rel)", runs[k].name, scale);
            CHECK_CLOSE(what, x, want, (size_t)n, 1e-5 * scale, 1e-5);
        }
        free(want);
        diffusion_free(&d);
    }
    free(x);
done:
    free(xT), free(y64), free(noise);
    dit_model_free(m);
}

// ---- convergence -------------------------------------------------------------------------------------

// The exact eps-prediction for data ~ N(0, s^2 I): E[eps | x_t] = sqrt(1 - abar) x / (abar s^2 + 1 - abar).
// Its probability-flow ODE has the closed form x(abar) = x_T sqrt(abar s^2 + 1 - abar) / sqrt(abar_T s^2 + 1 - abar_T).
typedef struct {
    const double *abar;
    double s2;
} gaussian_ctx;

static dit_status gaussian_denoise(void *ctx, const float *x, const float *t, int B, float *out) {
    gaussian_ctx *g = ctx;
    const int per = 2 * 4 * 64;   // LEARNED_RANGE layout: eps (4 x 64) then v = 0
    for (int b = 0; b < B; b++) {
        double a = g->abar[(int)t[b]], k = sqrt(1 - a) / (a * g->s2 + 1 - a);
        for (int j = 0; j < per / 2; j++) out[b * per + j] = (float)(k * x[b * per / 2 + j]);
        for (int j = per / 2; j < per; j++) out[b * per + j] = 0;
    }
    return DIT_OK;
}

static float *run_sampler(const char *respacing, sampler_kind kind, int dpm_steps, denoise_fn fn, void *ctx,
                          const float *xT, int B, int C, int HW) {
    // respacing "sigma_min": the full process with DPM-Solver++'s final sigma at abar[0] instead of 0
    int sigma_min = strcmp(respacing, "sigma_min") == 0;
    diffusion d;
    diffusion_options o = {.respacing = sigma_min ? "" : respacing, .learn_sigma = 1};
    if (diffusion_init(&d, &o) != DIT_OK) return NULL;
    sampler_options so = {.kind = kind, .dpm_steps = dpm_steps, .dpm_final_sigma_min = sigma_min, .seed = 1};
    float *x = malloc(sizeof(float) * (size_t)(B * C * HW));
    memcpy(x, xT, sizeof(float) * (size_t)(B * C * HW));
    dit_status s = diffusion_sample(&d, &so, fn, ctx, B, C, HW, x);
    diffusion_free(&d);
    if (s != DIT_OK) free(x), x = NULL;
    return x;
}

static void test_convergence(void) {
    const int B = 3, C = 4, HW = 64;
    const int64_t n = (int64_t)B * C * HW;
    float *xT = malloc(sizeof(float) * n);
    diffusion_initial_noise(xT, B, C * HW, 42, 0);
    diffusion base;
    diffusion_options o = {.learn_sigma = 1};
    if (diffusion_init(&base, &o) != DIT_OK) return;

    // (1) the analytic Gaussian denoiser (s = 0.5): every solver against the exact ODE solution
    gaussian_ctx g = {base.base_alphas_cumprod, 0.25};
    double aT = base.base_alphas_cumprod[999], ratio = sqrt(g.s2) / sqrt(aT * g.s2 + 1 - aT);
    float *exact = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) exact[i] = (float)(xT[i] * ratio);
    float *dpm20 = run_sampler("", SAMPLER_DPMPP_2M, 20, gaussian_denoise, &g, xT, B, C, HW);
    float *dpm50 = run_sampler("", SAMPLER_DPMPP_2M, 50, gaussian_denoise, &g, xT, B, C, HW);
    float *dpm20_min = run_sampler("sigma_min", SAMPLER_DPMPP_2M, 20, gaussian_denoise, &g, xT, B, C, HW);
    float *ddim20 = run_sampler("20", SAMPLER_DDIM, 0, gaussian_denoise, &g, xT, B, C, HW);
    float *ddim250 = run_sampler("250", SAMPLER_DDIM, 0, gaussian_denoise, &g, xT, B, C, HW);
    if (dpm20 && dpm50 && dpm20_min && ddim20 && ddim250) {
        double r = rms(exact, n), e_dpm = rms_diff(dpm20, exact, n) / r, e_dpm50 = rms_diff(dpm50, exact, n) / r,
               e_min = rms_diff(dpm20_min, exact, n) / r, e_d20 = rms_diff(ddim20, exact, n) / r,
               e_d250 = rms_diff(ddim250, exact, n) / r;
        // Measured (float64 reference port agrees): DPM-Solver++ 20 steps 4.6e-2, 50 steps 5e-4; DDIM 20
        // 1.4e-1, 250 1.1e-2. Most of the 20-step error is the final jump from t = 50 (sigma/alpha = 0.18) to
        // sigma 0, which returns the x0 prediction there: -(0.18/s)^2 / 2 = -6% for s = 0.5 (docs/diffusion.md).
        // Bounds: 20 steps below 6% and 2x better than DDIM-20; 50 steps below DDIM-250 / 5 (second order);
        // the final sigma 0 (our default) better than diffusers' "sigma_min" (second-order last step, 23%).
        CHECK(e_dpm < 0.06 && e_dpm * 2 < e_d20 && e_dpm50 * 5 < e_d250 && e_dpm < e_min,
              "Gaussian data (s = 0.5) vs exact ODE solution, relative RMS error: DPM-Solver++(2M) 20 steps %.2e "
              "(final sigma_min: %.2e), 50 steps %.2e; DDIM 20 %.2e, DDIM 250 %.2e",
              e_dpm, e_min, e_dpm50, e_d20, e_d250);
    }
    free(dpm50), free(dpm20_min);
    free(dpm20), free(ddim20), free(ddim250), free(exact);

    // (2) the tiny synthetic DiT under CFG 4.0: DDIM-250 as the reference solution
    dit_config cfg;
    dit_model *m = tiny_model(&cfg);
    int y[3] = {4, 2, 7};
    cfg_ctx ctx = {m, y, 4.0f};
    if (m) {
        dpm20 = run_sampler("", SAMPLER_DPMPP_2M, 20, cfg_denoise, &ctx, xT, B, C, HW);
        ddim20 = run_sampler("20", SAMPLER_DDIM, 0, cfg_denoise, &ctx, xT, B, C, HW);
        ddim250 = run_sampler("250", SAMPLER_DDIM, 0, cfg_denoise, &ctx, xT, B, C, HW);
        if (dpm20 && ddim20 && ddim250) {
            double r = rms(ddim250, n), e_dpm = rms_diff(dpm20, ddim250, n) / r,
                   e_d20 = rms_diff(ddim20, ddim250, n) / r;
            // DDIM-250 is itself first order (1.1% from the exact answer in the Gaussian case above) and the
            // final sigma-0 step of DPM-Solver++ adds an O((sigma/alpha at t = 50)^2) ~ 3% deviation:
            // bound 5%, and DPM-Solver++ must beat DDIM with the same 20 evaluations.
            CHECK(e_dpm < 0.05 && e_dpm < e_d20,
                  "tiny DiT, CFG 4.0: RMS(x - DDIM-250) / RMS(DDIM-250 = %.1f): DPM-Solver++(2M) 20 steps %.3e, "
                  "DDIM 20 steps %.3e", r, e_dpm, e_d20);
        }
        free(dpm20), free(ddim20), free(ddim250);
        dit_model_free(m);
    }
    diffusion_free(&base);
    free(xT);
}

// ---- determinism -------------------------------------------------------------------------------------

// An elementwise stand-in for the network (its result depends only on the element and t), so any
// difference between batchings or thread counts can only come from the sampler and the RNG.
static dit_status elementwise_denoise(void *ctx, const float *x, const float *t, int B, float *out) {
    const int64_t per = *(const int64_t *)ctx;
    for (int b = 0; b < B; b++)
        for (int64_t j = 0; j < per; j++) {
            float v = x[b * per + j];
            out[b * 2 * per + j] = 0.8f * tanhf(v) + 1e-4f * t[b];
            out[b * 2 * per + per + j] = 0.5f * sinf(v);
        }
    return DIT_OK;
}

static void sample_split(const diffusion *d, sampler_kind kind, denoise_fn fn, void *ctx, const float *xT, int B,
                         int C, int HW, int split, float *x, const int *y, cfg_ctx *cctx) {
    const int64_t per = (int64_t)C * HW;
    memcpy(x, xT, sizeof(float) * (size_t)(B * per));
    for (int b0 = 0; b0 < B; b0 += split) {
        int nb = B - b0 < split ? B - b0 : split;
        sampler_options so = {.kind = kind, .dpm_steps = 10, .eta = 1.0f, .seed = 99, .first_sample_id = (uint32_t)b0};
        if (cctx) cctx->y = y + b0;
        diffusion_sample(d, &so, fn, ctx, nb, C, HW, x + b0 * per);
    }
}

static void test_determinism(void) {
    diffusion d;
    diffusion_options o = {.respacing = "10", .learn_sigma = 1};
    if (diffusion_init(&d, &o) != DIT_OK) return;
    // large enough that both the RNG (> 4096 blocks per sample) and the step loops run in parallel
    const int B = 3, C = 4, HW = 96 * 96;
    int64_t per = (int64_t)C * HW, n = B * per;
    float *xT = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    diffusion_initial_noise(xT, B, per, 5, 0);
    const sampler_kind kinds[3] = {SAMPLER_DDPM, SAMPLER_DDIM, SAMPLER_DPMPP_2M};
    const char *names[3] = {"DDPM", "DDIM eta 1", "DPM-Solver++"};
    for (int k = 0; k < 3; k++) {
        sample_split(&d, kinds[k], elementwise_denoise, &per, xT, B, C, HW, 3, a, NULL, NULL);
        sample_split(&d, kinds[k], elementwise_denoise, &per, xT, B, C, HW, 1, b, NULL, NULL);
        int same_batch = memcmp(a, b, sizeof(float) * n) == 0;
        int same_threads = 1;
#ifdef _OPENMP
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        sample_split(&d, kinds[k], elementwise_denoise, &per, xT, B, C, HW, 3, b, NULL, NULL);
        omp_set_num_threads(2);
        float *c2 = malloc(sizeof(float) * n);
        sample_split(&d, kinds[k], elementwise_denoise, &per, xT, B, C, HW, 3, c2, NULL, NULL);
        omp_set_num_threads(saved);
        same_threads = memcmp(a, b, sizeof(float) * n) == 0 && memcmp(a, c2, sizeof(float) * n) == 0;
        free(c2);
#endif
        CHECK(same_batch && same_threads && isfinite(a[0]),
              "%s 10 steps (RNG noise, elementwise model): bit-identical for batch 3 vs 3 x batch 1 and 1 vs 2 threads",
              names[k]);
    }
    free(xT), free(a), free(b);

    // with the tiny DiT under CFG: the forward is batch-invariant by design (per-sample matrix products,
    // src/models/dit_forward.c), so the samples must be bit-identical however the batch is split
    dit_config cfg;
    dit_model *m = tiny_model(&cfg);
    if (m) {
        const int Cm = cfg.in_channels, HWm = cfg.input_size * cfg.input_size;
        int64_t nm = (int64_t)B * Cm * HWm;
        int y[3] = {4, 2, 7};
        cfg_ctx ctx = {m, y, 4.0f};
        float *xTm = malloc(sizeof(float) * nm), *am = malloc(sizeof(float) * nm), *bm = malloc(sizeof(float) * nm);
        diffusion_initial_noise(xTm, B, Cm * HWm, 5, 0);
        sample_split(&d, SAMPLER_DDPM, cfg_denoise, &ctx, xTm, B, Cm, HWm, 3, am, y, &ctx);
        sample_split(&d, SAMPLER_DDPM, cfg_denoise, &ctx, xTm, B, Cm, HWm, 1, bm, y, &ctx);
        double diff = 0;
        for (int64_t i = 0; i < nm; i++) diff = fmax(diff, fabs((double)am[i] - bm[i]));
        double scale = max_abs(am, nm);
        CHECK(diff == 0, "tiny DiT DDPM '10' CFG 4.0 (RNG noise): batch 3 vs 3 x batch 1 bit-identical (max diff %.3g, "
              "max |x0| %.1f)", diff, scale);
#ifdef _OPENMP
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        sample_split(&d, SAMPLER_DDPM, cfg_denoise, &ctx, xTm, B, Cm, HWm, 3, bm, y, &ctx);
        omp_set_num_threads(2);
        sample_split(&d, SAMPLER_DDPM, cfg_denoise, &ctx, xTm, B, Cm, HWm, 3, am, y, &ctx);
        omp_set_num_threads(saved);
        diff = 0;
        for (int64_t i = 0; i < nm; i++) diff = fmax(diff, fabs((double)am[i] - bm[i]));
        CHECK(diff == 0, "tiny DiT DDPM '10' CFG 4.0 (RNG noise): 1 vs 2 threads bit-identical (max diff %.3g)", diff);
#endif
        free(xTm), free(am), free(bm);
        dit_model_free(m);
    }
    diffusion_free(&d);
}

void test_diffusion(void) {
    test_philox();
    test_schedule();
    test_steps();
    test_runs();
    test_convergence();
    test_determinism();
}
