// The recipe options of a training step that matter early on small data (issue 16; docs/training.md "Recipe
// options"): how t is drawn (uniform or logit-normal), the min-SNR-gamma loss weight, the learning-rate
// schedule (linear warm-up, then cosine or linear decay to a floor) and the EMA decay schedule (constant, the
// (1 + n) / (10 + n) warm-up, or a power function). Every value is a pure function of (hyper-parameters, step,
// slot), so checkpoints need only the hyper-parameters. Our PyTorch reference: tests/ref/make_flow_golden.py.
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "train/train.h"

const char *const train_time_sampling_names[] = {"uniform", "logit-normal", NULL};
const char *const train_loss_weight_names[] = {"none", "min-snr", NULL};
const char *const train_ema_schedule_names[] = {"constant", "warmup", "power", NULL};
const char *const train_lr_schedule_names[] = {"constant", "cosine", "linear", NULL};

int train_name_index(const char *const *names, const char *name) {
    for (int i = 0; name && names[i]; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

double train_logit_normal(double u1, double u2, double mean, double std) {
    const double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);   // Box-Muller; 1 - u1 in (0, 1]
    return 1.0 / (1.0 + exp(-(mean + std * z)));
}

double train_sample_time(const train_hparams *hp, uint64_t seed, uint32_t step, uint32_t slot) {
    const double u1 = train_rng_uniform(seed, 0, step, slot, RNG_STREAM_TIMESTEP);
    if (hp->time_sampling != TIME_LOGIT_NORMAL) return u1;
    const double u2 = train_rng_uniform(seed, 1, step, slot, RNG_STREAM_TIMESTEP);
    return train_logit_normal(u1, u2, hp->logit_mean, hp->logit_std);
}

int train_sample_timestep(const train_hparams *hp, uint64_t seed, uint32_t step, uint32_t slot, int T) {
    if (hp->time_sampling != TIME_LOGIT_NORMAL)   // DiT: torch.randint(0, T), bit for bit as before
        return (int)train_rng_below(seed, 0, step, slot, RNG_STREAM_TIMESTEP, (uint32_t)T);
    const int t = (int)floor(train_sample_time(hp, seed, step, slot) * T);
    return t < T - 1 ? t : T - 1;
}

double train_min_snr_weight(const diffusion *d, int t, double gamma) {
    const double abar = d->alphas_cumprod[t], snr = abar / (1.0 - abar);
    return (snr < gamma ? snr : gamma) / snr;
}

double train_lr_at(const train_hparams *hp, int64_t step) {
    double lr = hp->lr;
    if (hp->warmup > 0 && step + 1 < hp->warmup) lr *= (double)(step + 1) / hp->warmup;   // as before, exactly
    if (hp->lr_schedule == LR_CONSTANT || step + 1 < hp->warmup) return lr;
    const double span = (double)(hp->lr_decay_steps - hp->warmup);
    double p = span > 0 ? (double)(step + 1 - hp->warmup) / span : 1.0;
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    const double f = hp->lr_schedule == LR_COSINE ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
    return hp->lr_min + (hp->lr - hp->lr_min) * f;
}

double train_ema_decay_at(const train_hparams *hp, int64_t n) {
    double decay = hp->ema_decay;
    if (hp->ema_schedule == EMA_WARMUP) {
        const double warm = (1.0 + (double)n) / (10.0 + (double)n);
        if (warm < decay) decay = warm;
    } else if (hp->ema_schedule == EMA_POWER) {
        const double power = pow(1.0 - 1.0 / ((double)n + 1.0), hp->ema_power + 1.0);
        if (power < decay) decay = power;
    }
    return decay;
}
