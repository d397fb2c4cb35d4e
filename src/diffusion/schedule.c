// Beta schedules, respacing and the float64 tables of the reference GaussianDiffusion / SpacedDiffusion
// (diffusion/gaussian_diffusion.py, diffusion/respace.py; docs/reference.md §2.2-2.3). The arithmetic
// follows numpy's operation order so the tables agree with tests/ref/diffusion_ref.py to ~1 ulp.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "diffusion/diffusion.h"

static double cosine_alpha_bar(double t) {
    double c = cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

dit_status diffusion_named_betas(const char *schedule, int T, double *betas) {
    if (T < 1) return dit_set_error("diffusion: %d diffusion steps, expected at least 1", T);
    if (!schedule || strcmp(schedule, "linear") == 0) {
        // np.linspace(scale * 1e-4, scale * 0.02, T): start + i * step, the last entry exactly the end.
        double scale = 1000.0 / T, start = scale * 0.0001, end = scale * 0.02;
        double step = T > 1 ? (end - start) / (T - 1) : 0;
        for (int i = 0; i < T; i++) betas[i] = i * step + start;
        if (T > 1) betas[T - 1] = end;
        else betas[0] = start;
        return DIT_OK;
    }
    if (strcmp(schedule, "squaredcos_cap_v2") == 0) {
        // betas_for_alpha_bar(T, cos((t + 0.008) / 1.008 * pi / 2)^2, max_beta = 0.999)
        for (int i = 0; i < T; i++) {
            double t1 = (double)i / T, t2 = (double)(i + 1) / T;
            double b = 1 - cosine_alpha_bar(t2) / cosine_alpha_bar(t1);
            betas[i] = b < 0.999 ? b : 0.999;
        }
        return DIT_OK;
    }
    return dit_set_error("diffusion: unknown noise schedule '%s', expected linear or squaredcos_cap_v2", schedule);
}

// Python's int(): optional surrounding whitespace, optional sign, decimal digits.
static int parse_int(const char *s, const char *end, long *out) {
    while (s < end && isspace((unsigned char)*s)) s++;
    while (end > s && isspace((unsigned char)end[-1])) end--;
    if (s == end) return 0;
    char buf[32];
    if ((size_t)(end - s) >= sizeof buf) return 0;
    memcpy(buf, s, (size_t)(end - s));
    buf[end - s] = 0;
    char *stop;
    errno = 0;
    long v = strtol(buf, &stop, 10);
    if (*stop || errno) return 0;
    *out = v;
    return 1;
}

static int compare_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

dit_status diffusion_space_timesteps(int T, const char *respacing, int **steps, int *count) {
    *steps = NULL, *count = 0;
    if (T < 1) return dit_set_error("diffusion: %d diffusion steps, expected at least 1", T);
    if (!respacing || !*respacing) {        // create_diffusion: "" = [diffusion_steps]
        if (!(*steps = dit_malloc(sizeof(int) * (size_t)T))) return DIT_ERR;
        for (int i = 0; i < T; i++) (*steps)[i] = i;
        *count = T;
        return DIT_OK;
    }
    if (strncmp(respacing, "ddim", 4) == 0) {
        // The smallest stride i with len(range(0, T, i)) == N.
        long want;
        if (!parse_int(respacing + 4, respacing + strlen(respacing), &want))
            return dit_set_error("diffusion: respacing '%s': expected ddimN", respacing);
        for (int stride = 1; stride < T; stride++) {
            if ((T + stride - 1) / stride != want) continue;
            if (!(*steps = dit_malloc(sizeof(int) * (size_t)want))) return DIT_ERR;
            *count = (int)want;
            for (int k = 0; k < want; k++) (*steps)[k] = k * stride;
            return DIT_OK;
        }
        return dit_set_error("diffusion: respacing '%s': cannot create exactly %ld steps with an integer stride",
                             respacing, want);
    }
    int sections = 1;
    for (const char *p = respacing; *p; p++) sections += *p == ',';
    long *section_counts = dit_malloc(sizeof(long) * (size_t)sections);
    if (!section_counts) return DIT_ERR;
    const char *p = respacing;
    long total = 0;
    for (int s = 0; s < sections; s++) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        if (!parse_int(p, end, &section_counts[s]) || section_counts[s] < 0 || section_counts[s] > T) {
            free(section_counts);
            return dit_set_error("diffusion: respacing '%s': expected N, a,b,c or ddimN with counts in 0..%d",
                                 respacing, T);
        }
        total += section_counts[s];
        p = end + 1;
    }
    int *out = dit_malloc(sizeof(int) * (size_t)(total > 0 ? total : 1));
    if (!out) {
        free(section_counts);
        return DIT_ERR;
    }
    int n = 0, size_per = T / sections, extra = T % sections, start = 0;
    for (int s = 0; s < sections; s++) {
        int size = size_per + (s < extra ? 1 : 0);
        long want = section_counts[s];
        if (size < want) {
            free(out), free(section_counts);
            return dit_set_error("diffusion: respacing '%s': cannot divide a section of %d steps into %ld",
                                 respacing, size, want);
        }
        double frac_stride = want <= 1 ? 1.0 : (double)(size - 1) / (double)(want - 1);
        double cur = 0.0;
        for (long k = 0; k < want; k++) {
            out[n++] = start + (int)rint(cur);   // Python round(): half to even (166.5 -> 166)
            cur += frac_stride;
        }
        start += size;
    }
    free(section_counts);
    // The reference returns a set: sort and drop duplicates (there are none for valid input).
    qsort(out, (size_t)n, sizeof(int), compare_int);
    int unique = 0;
    for (int i = 0; i < n; i++)
        if (unique == 0 || out[i] != out[unique - 1]) out[unique++] = out[i];
    *steps = out, *count = unique;
    return DIT_OK;
}

void diffusion_free(diffusion *d) {
    double **tables[] = {&d->betas, &d->alphas_cumprod, &d->alphas_cumprod_prev, &d->alphas_cumprod_next,
                         &d->sqrt_alphas_cumprod, &d->sqrt_one_minus_alphas_cumprod,
                         &d->log_one_minus_alphas_cumprod, &d->sqrt_recip_alphas_cumprod,
                         &d->sqrt_recipm1_alphas_cumprod, &d->posterior_variance,
                         &d->posterior_log_variance_clipped, &d->posterior_mean_coef1, &d->posterior_mean_coef2,
                         &d->log_betas, &d->fixed_log_variance, &d->base_alphas_cumprod};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) free(*tables[i]), *tables[i] = NULL;
    free(d->timestep_map);
    d->timestep_map = NULL;
}

// GaussianDiffusion.__init__ on d->betas (N entries).
static dit_status compute_tables(diffusion *d) {
    int N = d->num_timesteps;
    size_t bytes = sizeof(double) * (size_t)N;
    double *alphas = dit_malloc(bytes);
    d->alphas_cumprod = dit_malloc(bytes), d->alphas_cumprod_prev = dit_malloc(bytes);
    d->alphas_cumprod_next = dit_malloc(bytes), d->sqrt_alphas_cumprod = dit_malloc(bytes);
    d->sqrt_one_minus_alphas_cumprod = dit_malloc(bytes), d->log_one_minus_alphas_cumprod = dit_malloc(bytes);
    d->sqrt_recip_alphas_cumprod = dit_malloc(bytes), d->sqrt_recipm1_alphas_cumprod = dit_malloc(bytes);
    d->posterior_variance = dit_malloc(bytes), d->posterior_log_variance_clipped = dit_malloc(bytes);
    d->posterior_mean_coef1 = dit_malloc(bytes), d->posterior_mean_coef2 = dit_malloc(bytes);
    d->log_betas = dit_malloc(bytes), d->fixed_log_variance = dit_malloc(bytes);
    if (!alphas || !d->alphas_cumprod || !d->alphas_cumprod_prev || !d->alphas_cumprod_next ||
        !d->sqrt_alphas_cumprod || !d->sqrt_one_minus_alphas_cumprod || !d->log_one_minus_alphas_cumprod ||
        !d->sqrt_recip_alphas_cumprod || !d->sqrt_recipm1_alphas_cumprod || !d->posterior_variance ||
        !d->posterior_log_variance_clipped || !d->posterior_mean_coef1 || !d->posterior_mean_coef2 ||
        !d->log_betas || !d->fixed_log_variance) {
        free(alphas);
        return DIT_ERR;   // the caller frees the tables
    }
    const double *betas = d->betas;
    double *ac = d->alphas_cumprod, *acp = d->alphas_cumprod_prev;
    double prod = 1.0;
    for (int i = 0; i < N; i++) {
        alphas[i] = 1.0 - betas[i];
        prod *= alphas[i];                  // np.cumprod: a sequential product
        ac[i] = prod;
    }
    for (int i = 0; i < N; i++) {
        acp[i] = i == 0 ? 1.0 : ac[i - 1];
        d->alphas_cumprod_next[i] = i + 1 < N ? ac[i + 1] : 0.0;
        d->sqrt_alphas_cumprod[i] = sqrt(ac[i]);
        d->sqrt_one_minus_alphas_cumprod[i] = sqrt(1.0 - ac[i]);
        d->log_one_minus_alphas_cumprod[i] = log(1.0 - ac[i]);
        d->sqrt_recip_alphas_cumprod[i] = sqrt(1.0 / ac[i]);
        d->sqrt_recipm1_alphas_cumprod[i] = sqrt(1.0 / ac[i] - 1.0);
        d->posterior_variance[i] = betas[i] * (1.0 - acp[i]) / (1.0 - ac[i]);
        d->posterior_mean_coef1[i] = betas[i] * sqrt(acp[i]) / (1.0 - ac[i]);
        d->posterior_mean_coef2[i] = (1.0 - acp[i]) * sqrt(alphas[i]) / (1.0 - ac[i]);
        d->log_betas[i] = log(betas[i]);
    }
    // log of the posterior variance with entry 0 (which is 0) replaced by entry 1. With N = 1 the
    // reference has an empty array; we use log(posterior_variance[0]) = -inf there (never sampled with noise).
    for (int i = 0; i < N; i++)
        d->posterior_log_variance_clipped[i] = log(d->posterior_variance[i == 0 && N > 1 ? 1 : i]);
    for (int i = 0; i < N; i++) {
        if (d->var_type == DIFFUSION_VAR_FIXED_SMALL)
            d->fixed_log_variance[i] = d->posterior_log_variance_clipped[i];
        else   // FIXED_LARGE: log(append(posterior_variance[1], betas[1:]))
            d->fixed_log_variance[i] = log(i == 0 && N > 1 ? d->posterior_variance[1] : betas[i]);
    }
    free(alphas);
    return DIT_OK;
}

dit_status diffusion_init(diffusion *d, const diffusion_options *opt) {
    memset(d, 0, sizeof *d);
    diffusion_options defaults = {0};
    if (!opt) opt = &defaults;
    int T = opt->diffusion_steps > 0 ? opt->diffusion_steps : 1000;
    d->base_timesteps = T;
    d->var_type = opt->learn_sigma ? DIFFUSION_VAR_LEARNED_RANGE
                  : opt->sigma_small ? DIFFUSION_VAR_FIXED_SMALL : DIFFUSION_VAR_FIXED_LARGE;
    double *base_betas = dit_malloc(sizeof(double) * (size_t)T);
    if (!base_betas) return DIT_ERR;
    if (diffusion_named_betas(opt->schedule, T, base_betas) != DIT_OK) {
        free(base_betas);
        return DIT_ERR;
    }
    d->base_alphas_cumprod = dit_malloc(sizeof(double) * (size_t)T);
    if (!d->base_alphas_cumprod) {
        free(base_betas);
        return DIT_ERR;
    }
    double prod = 1.0;
    for (int i = 0; i < T; i++) prod *= 1.0 - base_betas[i], d->base_alphas_cumprod[i] = prod;
    free(base_betas);

    int *kept, count;
    if (diffusion_space_timesteps(T, opt->respacing, &kept, &count) != DIT_OK) {
        diffusion_free(d);
        return DIT_ERR;
    }
    if (count < 1) {
        free(kept);
        diffusion_free(d);
        return dit_set_error("diffusion: respacing '%s' keeps no timestep", opt->respacing);
    }
    // SpacedDiffusion: new_beta = 1 - abar_i / last_abar over the kept original steps, then every table
    // is recomputed from these betas (so the respaced abar equal the kept ones up to rounding).
    d->num_timesteps = count;
    d->timestep_map = kept;
    d->betas = dit_malloc(sizeof(double) * (size_t)count);
    if (!d->betas) {
        diffusion_free(d);
        return DIT_ERR;
    }
    double last = 1.0;
    for (int i = 0; i < count; i++) {
        double abar = d->base_alphas_cumprod[kept[i]];
        d->betas[i] = 1.0 - abar / last;
        last = abar;
    }
    if (compute_tables(d) != DIT_OK) {
        diffusion_free(d);
        return DIT_ERR;
    }
    return DIT_OK;
}

void diffusion_dpm_timesteps(int T, int n, int *timesteps) {
    // np.linspace(0, T - 1, n + 1).round()[::-1][:-1]: entry k of the linspace is k * step (the last
    // exactly T - 1); np.round rounds half to even like rint.
    double step = (double)(T - 1) / n;
    for (int k = n; k >= 1; k--) {
        double v = k == n ? (double)(T - 1) : k * step;
        timesteps[n - k] = (int)rint(v);
    }
}
