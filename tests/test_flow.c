// Flow matching and the recipe options (issue 16): the v-flow loss and its gradient, logit-normal t, min-SNR
// weights, learning-rate and EMA-decay schedules and Euler / Heun / Euler-Maruyama trajectories against our
// PyTorch references (tests/golden/flow/, tests/ref/make_flow_golden.py); bit-identical resume with every
// option; the objective recorded in files (absent = eps); a flow model trained and sampled by the CLI.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "base/error.h"
#include "diffusion/flow.h"
#include "io/tensors.h"
#include "models/dit_model.h"
#include "test.h"
#include "train/train.h"

// ---- the loss ---------------------------------------------------------------------------------------------

static void test_flow_loss(void) {
    int64_t nx, nn, nt, no, nw, nxt, nm, nl, nd;
    double *x0d = golden_read_doubles("flow/flow_x0.npy", &nx), *nzd = golden_read_doubles("flow/flow_noise.npy", &nn);
    double *td = golden_read_doubles("flow/flow_t.npy", &nt), *od = golden_read_doubles("flow/flow_out.npy", &no);
    double *wd = golden_read_doubles("flow/flow_weight.npy", &nw), *xtd = golden_read_doubles("flow/flow_x_t.npy", &nxt);
    double *md = golden_read_doubles("flow/flow_mse.npy", &nm), *ld = golden_read_doubles("flow/flow_loss.npy", &nl);
    double *dd = golden_read_doubles("flow/flow_dout.npy", &nd);
    if (x0d && nzd && td && od && wd && xtd && md && ld && dd) {
        const int B = (int)nt, C = 2, HW = (int)(nx / (B * C));
        float *x0 = doubles_to_floats(x0d, nx), *noise = doubles_to_floats(nzd, nn), *t = doubles_to_floats(td, nt);
        float *out = doubles_to_floats(od, no), *w = doubles_to_floats(wd, nw), *want_xt = doubles_to_floats(xtd, nxt);
        float *want_mse = doubles_to_floats(md, nm), *want_dout = doubles_to_floats(dd, nd);
        float *x_t = malloc(nx * sizeof(float)), *dout = malloc(no * sizeof(float)), mse[8];
        flow_interpolate(t, x0, noise, B, (int64_t)C * HW, x_t);
        // the same two float32 products and one sum as torch: exact up to contraction (1 ulp of |x| <= 4)
        CHECK_CLOSE("v-flow: x_t = (1 - t) x0 + t noise vs torch (t = 0, 0.3, 0.77, 0.999)", x_t, want_xt, nx, 5e-7, 0);
        const double loss = flow_loss(x0, noise, out, w, B, B, C, HW, 2 * C, mse, dout);
        // mse: torch float32 mean vs our double sum (torch f32 vs f64: 8e-8 rel)
        CHECK_CLOSE("v-flow: weighted per-sample velocity mse vs torch", mse, want_mse, B, 0, 1e-6);
        CHECK(fabs(loss - ld[0]) <= 1e-6 * fabs(ld[0]), "v-flow: batch loss %.9g vs torch %.9g (1e-6 rel)", loss, ld[0]);
        // d loss / d out: torch f32 autograd vs f64 differs by 5.6e-9 (max |grad| 0.096); channels C..2C-1 get 0
        CHECK_CLOSE("v-flow: d loss / d model_out vs autograd (velocity channels; zero on the sigma channels)", dout,
                    want_dout, no, 1e-8, 1e-6);
        free(x0), free(noise), free(t), free(out), free(w), free(want_xt), free(want_mse), free(want_dout), free(x_t),
            free(dout);
    }
    free(x0d), free(nzd), free(td), free(od), free(wd), free(xtd), free(md), free(ld), free(dd);
}

// ---- the recipe schedules ---------------------------------------------------------------------------------

static void test_recipe_values(void) {
    int64_t nu, np, nt, ni;
    double *u = golden_read_doubles("flow/logit_u.npy", &nu), *params = golden_read_doubles("flow/logit_params.npy", &np);
    double *want_t = golden_read_doubles("flow/logit_t.npy", &nt), *want_i = golden_read_doubles("flow/logit_index.npy", &ni);
    if (u && params && want_t && want_i) {
        const int64_t n = nu / 2;
        double worst = 0;
        int index_ok = 1;
        for (int64_t p = 0; p < np / 2; p++)
            for (int64_t i = 0; i < n; i++) {
                const double t = train_logit_normal(u[2 * i], u[2 * i + 1], params[2 * p], params[2 * p + 1]);
                worst = fmax(worst, fabs(t - want_t[p * n + i]));
                const int idx = (int)floor(t * 1000) < 999 ? (int)floor(t * 1000) : 999;
                index_ok &= idx == (int)want_i[p * n + i];
            }
        // float64 both sides (libm vs torch's log1p, cos, exp): a few ulp
        CHECK(worst <= 1e-12 && index_ok, "logit-normal t = sigmoid(m + s z) for 64 uniform pairs x 3 (m, s) vs torch: "
              "worst |diff| %.2g (bound 1e-12); eps index min(999, floor(1000 t)) equal", worst);
    }
    free(u), free(params), free(want_t), free(want_i);

    int64_t ns, n1, n5;
    double *ts = golden_read_doubles("flow/minsnr_t.npy", &ns), *w1 = golden_read_doubles("flow/minsnr_gamma1.npy", &n1);
    double *w5 = golden_read_doubles("flow/minsnr_gamma5.npy", &n5);
    diffusion d;
    diffusion_options opt = {.learn_sigma = 1};
    if (ts && w1 && w5 && diffusion_init(&d, &opt) == DIT_OK) {
        double worst = 0;
        for (int64_t i = 0; i < ns; i++) {
            worst = fmax(worst, fabs(train_min_snr_weight(&d, (int)ts[i], 1.0) - w1[i]) / w1[i]);
            worst = fmax(worst, fabs(train_min_snr_weight(&d, (int)ts[i], 5.0) - w5[i]) / w5[i]);
        }
        // abar: our linspace and cumprod vs torch's (1 ulp); SNR at t = 0 divides by 1 - abar ~ 1e-4: 1e-12 rel
        CHECK(worst <= 1e-9, "min-SNR-gamma weights (gamma 1, 5; t = 0 ... 999) vs torch float64: worst rel %.2g "
              "(bound 1e-9)", worst);
        diffusion_free(&d);
    }
    free(ts), free(w1), free(w5);

    int64_t nlr;
    double *lrs = golden_read_doubles("flow/lr_values.npy", &nlr);
    if (lrs) {
        train_hparams hp;
        train_hparams_default(&hp);
        hp.lr = 3e-4, hp.lr_min = 3e-5, hp.warmup = 50, hp.lr_decay_steps = 400;
        const int steps = (int)(nlr / 3);
        const train_lr_schedule kinds[3] = {LR_CONSTANT, LR_COSINE, LR_LINEAR};
        double worst = 0;
        for (int k = 0; k < 3; k++) {
            hp.lr_schedule = kinds[k];
            for (int s = 0; s < steps; s++)
                worst = fmax(worst, fabs(train_lr_at(&hp, s) - lrs[k * steps + s]) / lrs[k * steps + s]);
        }
        // torch's schedulers update the rate multiplicatively step by step (chainable form): ~1e-13 rel drift
        CHECK(worst <= 1e-9, "lr schedules (warm-up 50, then constant / cosine / linear to 3e-5 at 400, held after) vs "
              "torch.optim.lr_scheduler over %d steps: worst rel %.2g (bound 1e-9)", steps, worst);
    }
    free(lrs);

    int64_t nn, nw, np2;
    double *en = golden_read_doubles("flow/ema_n.npy", &nn), *ew = golden_read_doubles("flow/ema_warmup.npy", &nw);
    double *ep = golden_read_doubles("flow/ema_power.npy", &np2);
    if (en && ew && ep) {
        train_hparams hp;
        train_hparams_default(&hp);
        double worst = 0;
        for (int64_t i = 0; i < nn; i++) {
            hp.ema_schedule = EMA_WARMUP, hp.ema_decay = 0.999;
            worst = fmax(worst, fabs(train_ema_decay_at(&hp, (int64_t)en[i]) - ew[i]));
            hp.ema_schedule = EMA_POWER, hp.ema_decay = 0.9999, hp.ema_power = 6.94;
            worst = fmax(worst, fabs(train_ema_decay_at(&hp, (int64_t)en[i]) - ep[i]));
        }
        hp.ema_schedule = EMA_CONSTANT;
        // the same double formulas (numpy's pow vs libm's): 1e-15
        CHECK(worst <= 1e-15 && train_ema_decay_at(&hp, 5) == hp.ema_decay,
              "EMA decay: warm-up min(0.999, (1+n)/(10+n)) and power min(0.9999, (1-1/(n+1))^7.94) vs numpy for n = "
              "0..39, 99 ... 99999: worst %.2g (bound 1e-15); constant = --ema", worst);
    }
    free(en), free(ew), free(ep);
}

// ---- sampler trajectories of a toy velocity field ---------------------------------------------------------

static dit_status toy_velocity(void *ctx, const float *x, const float *t, int B, float *out) {
    const int n = *(const int *)ctx;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) {
            const float v = x[b * n + i];
            out[b * n + i] = sinf(v) + 0.0005f * t[b] * cosf(3.0f * v) - 0.3f;
        }
    return DIT_OK;
}

static const float *golden_noise;
static dit_status given_noise(void *ctx, int step, int B, int64_t per_sample, float *dst) {
    memcpy(dst, golden_noise + (int64_t)step * B * per_sample, sizeof(float) * (size_t)(B * per_sample));
    return DIT_OK;
}

static void test_trajectories(void) {
    int64_t nx, nz;
    double *x1 = golden_read_doubles("flow/traj_x1.npy", &nx), *zd = golden_read_doubles("flow/traj_noise.npy", &nz);
    const char *names[3] = {"flow-euler", "flow-heun", "flow-em"};
    const sampler_kind kinds[3] = {SAMPLER_EULER, SAMPLER_HEUN, SAMPLER_EULER_MARUYAMA};
    float *noise = x1 && zd ? doubles_to_floats(zd, nz) : NULL;
    golden_noise = noise;
    for (int k = 0; noise && k < 3; k++) {
        char file[64];
        snprintf(file, sizeof file, "flow/traj_%s.npy", names[k] + 5);
        int64_t nw;
        double *wd = golden_read_doubles(file, &nw);
        if (!wd) continue;
        const int B = 2, n = (int)(nx / B);
        float *x = doubles_to_floats(x1, nx), *want = doubles_to_floats(wd, nw);
        sampler_options opt = {.kind = kinds[k], .flow_steps = 6, .noise = given_noise};
        dit_status st = flow_sample(&opt, toy_velocity, (void *)&n, B, 1, n, 1, x);
        char what[160];
        snprintf(what, sizeof what, "%s: 6 steps of v = sin(x) + 0.0005 tau cos(3x) - 0.3 from t = 1 to 0 vs torch "
                 "float32", names[k]);
        // libm vs torch sin/cos (1 ulp each) through 6-12 evaluations on O(1) values: 2e-6
        if (CHECK(st == DIT_OK, "%s runs", names[k])) CHECK_CLOSE(what, x, want, nx, 2e-6, 0);
        free(x), free(want), free(wd);
    }
    free(noise), free(x1), free(zd);
}

// ---- resume with every option -----------------------------------------------------------------------------

static const dit_config tiny = {.input_size = 8, .patch_size = 2, .in_channels = 1, .hidden_size = 32, .depth = 2,
                                .num_heads = 2, .mlp_ratio = 4.0f, .num_classes = 10, .class_dropout_prob = 0.1f,
                                .learn_sigma = 1};

// 8 striped 8x8 images in memory (DATA_PIXELS), labels 0..3
static void tiny_data(train_data *d, float *pixels, int *labels) {
    memset(d, 0, sizeof *d);
    for (int i = 0; i < 8; i++) {
        labels[i] = i % 4;
        for (int k = 0; k < 64; k++) pixels[i * 64 + k] = ((k / 8 + k % 8 * (i % 4)) / 2 % 2) ? 1.0f : -1.0f;
    }
    d->kind = DATA_PIXELS, d->source = "tiny stripes", d->count = 8, d->channels = 1, d->size = 8;
    d->num_classes = 4, d->labels = labels, d->pixels = pixels;
}

static int same_state(const trainer *a, const trainer *b) {
    const size_t n = a->model->total_floats * sizeof(float);
    return a->step == b->step && a->epoch == b->epoch && a->position == b->position &&
           !memcmp(a->model->params, b->model->params, n) && !memcmp(a->ema, b->ema, n) &&
           !memcmp(a->adam_m, b->adam_m, n) && !memcmp(a->adam_v, b->adam_v, n);
}

static void resume_case(const char *what, const train_data *data, const train_hparams *hp, int learn_sigma) {
    dit_config cfg = tiny;
    cfg.learn_sigma = learn_sigma;
    trainer *straight = trainer_create(&cfg, hp, 5, data), *half = trainer_create(&cfg, hp, 5, data);
    if (!CHECK(straight && half, "%s: two trainers (%s)", what, straight ? "ok" : dit_last_error())) {
        trainer_free(straight), trainer_free(half);
        return;
    }
    train_stats st;
    double first_lr = 0, last_lr = 0;
    for (int s = 0; s < 20; s++) {
        DIT_CHECK(trainer_step(straight, &st) == DIT_OK);
        if (s == 0) first_lr = st.lr;
        last_lr = st.lr;
    }
    for (int s = 0; s < 10; s++) DIT_CHECK(trainer_step(half, &st) == DIT_OK);
    char path[512];
    snprintf(path, sizeof path, "%s", scratch_path(what));
    dit_status ok = checkpoint_save(half, path);
    trainer_free(half);
    trainer *resumed = ok == DIT_OK ? checkpoint_load(path, data, NULL) : NULL;
    if (CHECK(resumed != NULL, "%s: checkpoint saved and loaded (%s)", what, resumed ? "ok" : dit_last_error())) {
        const int same_hp = resumed->hp.objective == hp->objective && resumed->hp.time_sampling == hp->time_sampling &&
                            resumed->hp.loss_weight == hp->loss_weight && resumed->hp.ema_schedule == hp->ema_schedule &&
                            resumed->hp.lr_schedule == hp->lr_schedule && resumed->hp.lr_min == hp->lr_min &&
                            resumed->hp.lr_decay_steps == hp->lr_decay_steps && resumed->hp.logit_std == hp->logit_std &&
                            resumed->hp.logit_mean == hp->logit_mean && resumed->hp.snr_gamma == hp->snr_gamma &&
                            resumed->hp.ema_power == hp->ema_power;
        for (int s = 0; s < 10; s++) DIT_CHECK(trainer_step(resumed, &st) == DIT_OK);
        CHECK(same_hp && same_state(straight, resumed), "%s: the checkpoint keeps the recipe; 20 steps straight = 10 + "
              "checkpoint + resume + 10, bit-identical (weights, EMA, moments, cursor); lr %.3g -> %.3g", what,
              first_lr, last_lr);
        dit_model *m = dit_model_load(path, NULL);
        CHECK(m && dit_model_objective(m) == hp->objective, "%s: the model file says objective %s", what,
              m ? dit_objective_name(dit_model_objective(m)) : dit_last_error());
        dit_model_free(m);
    }
    trainer_free(resumed);
    trainer_free(straight);
}

static void test_resume_recipes(void) {
    float pixels[8 * 64];
    int labels[8];
    train_data data;
    tiny_data(&data, pixels, labels);
    train_hparams hp;
    train_hparams_default(&hp);
    hp.batch = 3, hp.lr = 1e-3, hp.grad_clip = 1, hp.warmup = 4, hp.ema_decay = 0.99, hp.lr_min = 1e-4;
    hp.lr_decay_steps = 16;
    train_hparams flow = hp, eps = hp;
    flow.objective = DIT_OBJECTIVE_V_FLOW, flow.time_sampling = TIME_LOGIT_NORMAL, flow.logit_mean = -0.2;
    flow.logit_std = 1.3, flow.ema_schedule = EMA_WARMUP, flow.lr_schedule = LR_COSINE;
    resume_case("v-flow, logit-normal, EMA warm-up, cosine lr", &data, &flow, 0);
    flow.ema_schedule = EMA_POWER, flow.lr_schedule = LR_LINEAR, flow.time_sampling = TIME_UNIFORM;
    resume_case("v-flow learned sigma, uniform, power EMA, linear lr", &data, &flow, 1);
    eps.time_sampling = TIME_LOGIT_NORMAL, eps.loss_weight = LOSS_MIN_SNR, eps.snr_gamma = 3;
    eps.ema_schedule = EMA_POWER, eps.lr_schedule = LR_COSINE;
    resume_case("eps, logit-normal, min-SNR 3, power EMA, cosine lr", &data, &eps, 1);

    // v-flow with min-SNR is refused (the sigma channels getting no gradient is in the loss golden)
    train_hparams bad = flow;
    bad.loss_weight = LOSS_MIN_SNR;
    trainer *tr = trainer_create(&tiny, &bad, 1, &data);
    CHECK(!tr && strstr(dit_last_error(), "time density"), "v-flow + min-SNR refused: %s", tr ? "accepted" : dit_last_error());
    trainer_free(tr);
}

// ---- files: the objective is recorded; absent = eps ----------------------------------------------------------

static void test_objective_files(void) {
    // an eps model is saved without the key (as every file from before v-flow), and a file without it is eps
    dit_model *m = dit_model_synthetic(&tiny, 3);
    char path[512];
    snprintf(path, sizeof path, "%s", scratch_path("eps-model.safetensors"));
    DIT_CHECK(dit_model_save(m, path) == DIT_OK);
    dit_model_free(m);
    tensor_file eps_file = {0};
    const int eps_read = safetensors_read(path, &eps_file) == DIT_OK;
    CHECK(eps_read && !tensor_file_meta(&eps_file, "dit.objective"), "an eps model is saved without dit.objective");
    tensor_file_free(&eps_file);
    m = dit_model_load(path, NULL);
    CHECK(m && dit_model_objective(m) == DIT_OBJECTIVE_EPS && dit_model_default_sampler(m) == DIT_SAMPLER_DDPM,
          "a file without dit.objective loads as eps, sampled with ddpm by default");
    dit_model_free(m);
    // the shipped model is a v-flow model (docs/model-card-fmnist.md)
    m = dit_model_load(repo_path("models/dit-fmnist.safetensors"), NULL);
    if (m) CHECK(dit_model_objective(m) == DIT_OBJECTIVE_V_FLOW && dit_model_default_sampler(m) == DIT_SAMPLER_HEUN,
                 "the shipped model is v-flow, sampled with flow-heun by default");
    else SKIP("models/dit-fmnist.safetensors: %s", dit_last_error());
    dit_model_free(m);
    m = dit_model_synthetic(&tiny, 3);
    snprintf(path, sizeof path, "%s", scratch_path("flow-model.safetensors"));
    DIT_CHECK(dit_model_set_objective(m, DIT_OBJECTIVE_V_FLOW) == DIT_OK && dit_model_save(m, path) == DIT_OK);
    dit_model_free(m);
    m = dit_model_load(path, NULL);
    tensor_file f = {0};
    const char *key = safetensors_read(path, &f) == DIT_OK ? tensor_file_meta(&f, "dit.objective") : NULL;
    CHECK(m && dit_model_objective(m) == DIT_OBJECTIVE_V_FLOW && key && !strcmp(key, "v-flow") &&
              dit_model_default_sampler(m) == DIT_SAMPLER_HEUN,
          "a v-flow model saves __metadata__ dit.objective = \"%s\" and loads as v-flow (default sampler flow-heun)",
          key ? key : "(none)");
    tensor_file_free(&f);
    // the API: the objective's samplers only; guidance on the velocity
    dit_sample_item items[2] = {{.label = 1, .seed = 4}, {.label = 2, .seed = 4, .index = 1}};
    float *out = malloc(2 * 64 * sizeof(float));
    dit_sample_options opt = {.sampler = DIT_SAMPLER_DDPM, .steps = 4};
    dit_status st = m ? dit_sample(m, items, 2, &opt, out) : DIT_OK;
    CHECK(st == DIT_ERR && strstr(dit_last_error(), "flow-euler, flow-heun or flow-em"), "dit_sample refuses ddpm for a v-flow model: %s",
          st ? dit_last_error() : "accepted");
    int finite = 1;
    for (int k = DIT_SAMPLER_EULER; m && k <= DIT_SAMPLER_EULER_MARUYAMA; k++) {
        opt = (dit_sample_options){.sampler = (dit_sampler)k, .steps = 3, .cfg_scale = 2};
        finite &= dit_sample(m, items, 2, &opt, out) == DIT_OK;
        for (int i = 0; i < 2 * 64; i++) finite &= isfinite(out[i]);
    }
    CHECK(finite, "dit_sample with flow-euler, flow-heun and flow-em (3 steps, cfg 2) on a v-flow model: finite samples");
    free(out);
    dit_model_free(m);
}

// ---- the CLI: train a tiny flow model, sample it ---------------------------------------------------------

static void write_be32(FILE *f, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

static void test_cli(void) {
    const char *bin = getenv("DIT_BIN") ? getenv("DIT_BIN") : "build/dit";
    char dir[512], cmd[2048];
    snprintf(dir, sizeof dir, "%s", scratch_path("flow-cli"));
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    run_command(cmd, NULL);
    // 16 images of 8x8 (uncompressed IDX), 4 classes of stripes
    char images[600], labels[600];
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte", dir);
    FILE *fi = fopen(images, "wb"), *fl = fopen(labels, "wb");
    if (!CHECK(fi && fl, "tiny IDX files written")) {
        if (fi) fclose(fi);
        if (fl) fclose(fl);
        return;
    }
    write_be32(fi, 0x803), write_be32(fi, 16), write_be32(fi, 8), write_be32(fi, 8);
    write_be32(fl, 0x801), write_be32(fl, 16);
    for (int i = 0; i < 16; i++) {
        for (int k = 0; k < 64; k++) fputc(((k / 8 + k % 8 * (i % 4)) / 2 % 2) ? 255 : 0, fi);
        fputc(i % 4, fl);
    }
    fclose(fi), fclose(fl);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s train --data %s --depth 1 --hidden 32 --heads 2 --patch 2 --batch 4 --steps 4 "
             "--recipe small --ckpt-every 2 --sample-every 4 --sample-steps 4 --log-every 2 -t 1 -o %s/run 2>&1", bin,
             images, dir);
    int rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "v-flow") && strstr(out, "logit-normal(0, 1)") && strstr(out, "wrote"),
          "dit train --recipe small: a v-flow run with logit-normal t, its log and a sample grid (exit %d)", rc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s sample -m %s/run/checkpoints/0000004.safetensors -n 2 --steps 3 --cfg-scale 2 "
             "-o %s/grid.png -t 1 2>&1", bin, dir, dir);
    rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "with flow-heun") && strstr(out, "wrote"),
          "dit sample on the flow checkpoint picks flow-heun from the file and writes the grid (exit %d)", rc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s sample -m %s/run/checkpoints/0000004.safetensors --sampler dpm++2m -n 1 -o %s/x.png "
             "2>&1", bin, dir, dir);
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && out && strstr(out, "is v-flow: use flow-euler, flow-heun or flow-em"),
          "dit sample --sampler dpm++2m on a v-flow file is refused naming the right samplers (exit %d)", rc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s train --resume %s/run --objective eps --steps 6 -t 1 2>&1", bin, dir);
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && out && strstr(out, "--objective"), "--resume with a different --objective is refused (exit %d)", rc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s train --resume %s/run --recipe small --steps 6 -t 1 2>&1", bin, dir);
    rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "trained to step 6"), "--resume repeating --recipe small continues (exit %d)", rc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s train --data %s --objective v-flow --loss-weight min-snr --steps 2 2>&1", bin, images);
    rc = run_command(cmd, &out);
    CHECK(rc == 2 && out && strstr(out, "time density"), "--objective v-flow --loss-weight min-snr is a usage error "
          "(exit %d)", rc);
    free(out);
}

void test_flow(void) {
    test_flow_loss();
    test_recipe_values();
    test_trajectories();
    test_resume_recipes();
    test_objective_files();
    test_cli();
}
