// Shared pieces of the `dit` command: flag parsing, thread setup and .npy inputs.
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dist/dist.h"
#include "base/error.h"
#include "base/threads.h"
#include "io/tensors.h"

int cli_fail(void) {
    if (dist_size(dist_world()) > 1) fprintf(stderr, "dit: rank %d: %s\n", dist_rank(dist_world()), dit_last_error());
    else fprintf(stderr, "dit: %s\n", dit_last_error());
    return 1;
}

void *cli_or_exit(void *p) {
    if (!p) {
        cli_fail();
        exit(2);
    }
    return p;
}

int cli_usage_error(const char *fmt, ...) {
    if (!dist_is_root(dist_world())) return 2;   // every rank parses the same flags: rank 0 says it
    va_list ap;
    fprintf(stderr, "dit: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 2;
}

int cli_parse_classes(const dit_model *m, const char *text, int **labels, int *count) {
    const char *p = text;
    do {
        const size_t n = strcspn(p, ",");
        char name[256];
        if (*count >= CLI_MAX_CLASS_LABELS) {
            cli_usage_error("--class: more than %d labels", CLI_MAX_CLASS_LABELS);
            return 0;
        }
        if (n >= sizeof name) {
            cli_usage_error("--class: a name of %zu characters (at most %zu)", n, sizeof name - 1);
            return 0;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        int label;
        if (dit_model_find_class(m, name, &label) != DIT_OK) {
            fprintf(stderr, "dit: --class: %s\n", dit_last_error());
            return 0;
        }
        if ((*count & (*count - 1)) == 0) {   // grow at powers of two
            int *bigger = realloc(*labels, (size_t)(*count ? 2 * *count : 1) * sizeof **labels);
            if (!bigger) {
                cli_usage_error("--class: out of memory");
                return 0;
            }
            *labels = bigger;
        }
        (*labels)[(*count)++] = label;
        p += n;
    } while (*p++ == ',');
    return 1;
}

static int parse_int(const char *flag, const char *text, int min, int max, int *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        cli_usage_error("%s: expected an integer in [%d, %d], got '%s'", flag, min, max, text);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int parse_float(const char *flag, const char *text, float *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) {
        cli_usage_error("%s: expected a number, got '%s'", flag, text);
        return 0;
    }
    *out = (float)v;
    return 1;
}

int cli_take(cli_args *a, const char *short_name, const char *long_name) {
    if (a->failed) return 0;
    const char *arg = a->argv[a->i];
    if (!((short_name && !strcmp(arg, short_name)) || (long_name && !strcmp(arg, long_name)))) return 0;
    if (a->i + 1 >= a->argc) {
        cli_usage_error("flag %s needs a value", arg);
        a->failed = 1;
        return 0;
    }
    a->value = a->argv[++a->i];
    return 1;
}

int cli_take_int(cli_args *a, const char *short_name, const char *long_name, int min, int max, int *out) {
    if (!cli_take(a, short_name, long_name)) return 0;
    if (parse_int(long_name ? long_name : short_name, a->value, min, max, out)) return 1;
    a->failed = 1;
    return 0;
}

int cli_take_float(cli_args *a, const char *short_name, const char *long_name, float *out) {
    if (!cli_take(a, short_name, long_name)) return 0;
    if (parse_float(long_name ? long_name : short_name, a->value, out)) return 1;
    a->failed = 1;
    return 0;
}

int cli_take_precision(cli_args *a, dit_precision *out) {
    if (!cli_take(a, NULL, "--precision")) return 0;
    if (dit_precision_parse(a->value, out) == DIT_OK) return 1;
    cli_usage_error("--precision: %s", dit_last_error());
    a->failed = 1;
    return 0;
}

int cli_apply_precision(dit_model *m, dit_precision p) {
    if (dit_model_set_precision(m, p) == DIT_OK) return 1;
    cli_fail();
    return 0;
}

void cli_set_threads(int n) { dit_set_threads(n); }

int cli_threads(void) { return dit_max_threads(); }

float *cli_read_npy_floats(const char *path, const char *what, int *ndim, int64_t shape[8], int64_t *count) {
    npy_array a;
    if (npy_read(path, &a) != DIT_OK) {
        dit_prefix_error("%s", what);
        return NULL;
    }
    if (a.dtype == DT_BOOL) {
        npy_free(&a);
        dit_set_error("%s (%s): expected a numeric array, found booleans", path, what);
        return NULL;
    }
    tensor_view view = {.dtype = a.dtype, .ndim = a.ndim, .data = a.data, .nbytes = a.nbytes};
    memcpy(view.shape, a.shape, sizeof view.shape);
    int64_t n = tensor_numel(&view);
    float *out = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!out) {
        npy_free(&a);
        dit_set_error("%s: out of memory", path);
        return NULL;
    }
    tensor_to_f32(&view, out);
    *ndim = a.ndim;
    memcpy(shape, a.shape, sizeof(int64_t) * TENSOR_MAX_DIMS);
    *count = n;
    npy_free(&a);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(out[i])) {
            free(out);
            dit_set_error("%s (%s): element %lld is not finite", path, what, (long long)i);
            return NULL;
        }
    return out;
}

int *cli_read_npy_labels(const char *path, const char *what, int64_t *count) {
    int ndim;
    int64_t shape[8];
    float *values = cli_read_npy_floats(path, what, &ndim, shape, count);
    if (!values) return NULL;
    int *labels = malloc((size_t)(*count ? *count : 1) * sizeof(int));
    for (int64_t i = 0; labels && i < *count; i++) {
        if (values[i] != floorf(values[i]) || fabsf(values[i]) > 1e8f) {
            dit_set_error("%s (%s): element %lld = %g is not an integer label", path, what, (long long)i, values[i]);
            free(labels);
            labels = NULL;
            break;
        }
        labels[i] = (int)values[i];
    }
    free(values);
    return labels;
}

dit_status cli_write_npy_floats(const char *path, const float *data, int ndim, const int64_t *shape) {
    npy_array a = {.dtype = DT_F32, .ndim = ndim, .data = (void *)data};
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        a.shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    a.nbytes = n * sizeof(float);
    return npy_write(path, &a);
}

const char *cli_config_name(const dit_config *cfg) {
    for (int i = 0; dit_named_configs[i]; i++) {
        dit_config named;
        if (dit_config_named(&named, dit_named_configs[i], cfg->input_size * 8) != DIT_OK) continue;
        if (named.patch_size == cfg->patch_size && named.hidden_size == cfg->hidden_size &&
            named.depth == cfg->depth && named.num_heads == cfg->num_heads && named.in_channels == cfg->in_channels &&
            named.mlp_ratio == cfg->mlp_ratio && named.num_classes == cfg->num_classes &&
            named.learn_sigma == cfg->learn_sigma)
            return dit_named_configs[i];
    }
    return "custom";
}
