// `dit eval`: FID, sFID, Inception Score, precision and recall of a sample batch against a reference, printed
// as ADM's evaluator prints them (openai/guided-diffusion evaluations/evaluator.py); reference statistics can
// be saved and reused. The maths lives in src/eval/metrics.c, the network in src/models/inception.c;
// docs/eval.md says what matches ADM exactly and what may differ.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/progress.h"
#include "dist/dist.h"
#include "dit_eval.h"
#include "eval/inputs.h"
#include "eval/metrics.h"
#include "io/tensors.h"

int cmd_eval(int argc, char **argv);

static void print_help(void) {
    printf("usage: dit eval --inception FILE [--ref REF.npz] [--save-stats OUT.npz] [options] SAMPLES\n"
           "\n"
           "  SAMPLES               an ADM .npz batch (uint8 arr_0 (N, H, W, 3), any size) or a folder of PNG/JPEG\n"
           "  --inception FILE      pytorch-fid's FID Inception weights (pt_inception-2015-12-05-6726825d.pth,\n"
           "                        zip-format .pth) or a safetensors file with the same keys; see docs/eval.md\n"
           "  --ref REF.npz         reference: an ADM reference batch (arr_0 and/or mu, sigma, mu_s, sigma_s) or a\n"
           "                        file written by --save-stats; prints Inception Score, FID, sFID, Precision, Recall\n"
           "                        (precision/recall need the reference's images (arr_0) or features (pool))\n"
           "  --save-stats OUT.npz  write the samples' mu, sigma, mu_s, sigma_s (float64) for reuse as a --ref\n"
           "  --save-features       with --save-stats: also the pool_3 features (N, 2048) as 'pool', for P/R\n"
           "  --batch N             images per forward batch (default 64)\n"
           "  --resize MODE         pytorch-fid (default: bilinear, align_corners=False, on [0, 1]) or tf (TF1\n"
           "                        ResizeBilinear as in ADM's TensorFlow graph, then (x - 128) / 128)\n"
           "  --fp32-distances      precision/recall distances in float32 (default: ADM's float16 blocks)\n"
           "  -t, --threads N       threads (default: all cores)\n");
}

typedef struct {
    int dim;
    double *mu, *sigma;   // NULL when absent
} feature_stats;

typedef struct {
    feature_stats pool, spatial;
    float *features;      // pool_3 features (count, 2048) for precision/recall, or NULL
    int64_t count;
} summary;

static void summary_free(summary *s) {
    free(s->pool.mu);
    free(s->pool.sigma);
    free(s->spatial.mu);
    free(s->spatial.sigma);
    free(s->features);
    memset(s, 0, sizeof *s);
}

// One batch of network outputs into the running statistics (each may be NULL) and the kept features.
static void consume(dit_moments *mp, dit_moments *ms, dit_inception_score *is, summary *out, int keep_features,
                    const float *pool, const float *spatial, const float *logits, int n) {
    if (mp) {
        dit_moments_add(mp, pool, n);
        dit_moments_add(ms, spatial, n);
    }
    if (is) DIT_OR_EXIT(dit_inception_score_add(is, logits, n));
    if (keep_features) {
        memcpy(out->features + (size_t)out->count * DIT_INCEPTION_POOL_DIM, pool,
               (size_t)n * DIT_INCEPTION_POOL_DIM * sizeof *pool);
        out->count += n;
    }
}

// Under mpirun: this rank's share of the images (dist_share) through the network, the per-image outputs
// gathered on rank 0 in image order (*pool, *spatial, *logits: all rows there, NULL elsewhere).
static dit_status shard_features(dit_inception *net, image_source *src, int batch, int want_logits, float **pool,
                                 float **spatial, float **logits, progress_bar *bar) {
    dist_comm *c = dist_world();
    const int root = dist_is_root(c);
    const int64_t total = image_source_count(src);
    int64_t lo, hi;
    dist_share(total, dist_rank(c), dist_size(c), &lo, &hi);
    image_source_set_range(src, lo, hi);
    const int64_t rows = root ? total : 0, mine = hi - lo;
    const size_t dims[3] = {DIT_INCEPTION_POOL_DIM, DIT_INCEPTION_SPATIAL_DIM, DIT_INCEPTION_CLASSES};
    float *local[3], *all[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        local[k] = k < 2 || want_logits ? dit_xmalloc((size_t)(mine > 0 ? mine : 1) * dims[k] * sizeof(float)) : NULL;
        if (root && local[k]) all[k] = dit_xmalloc((size_t)(rows > 0 ? rows : 1) * dims[k] * sizeof(float));
    }
    dit_status status = DIT_OK;
    for (int64_t done = 0; status == DIT_OK && done < mine;) {
        const uint8_t *pixels;
        int h, w;
        const int n = image_source_next(src, batch, &pixels, &h, &w);
        if (n <= 0) {
            status = n < 0 ? DIT_ERR : dit_set_error("%s: images ended early", "eval");
            break;
        }
        status = dit_inception_forward(net, pixels, n, h, w, local[0] + (size_t)done * dims[0],
                                       local[1] + (size_t)done * dims[1],
                                       local[2] ? local[2] + (size_t)done * dims[2] : NULL);
        done += n;
        if (root) progress_update(bar, (int)done);
    }
    for (int k = 0; k < 3 && status == DIT_OK; k++)
        if (local[k]) status = dist_gather_rows_to(c, local[k], all[k], dims[k] * sizeof(float), total, 0);
    for (int k = 0; k < 3; k++) free(local[k]);
    *pool = all[0], *spatial = all[1], *logits = all[2];
    return status;
}

// Features of every image of src: moments (when the stats are wanted), the Inception Score (is != NULL) and
// the pool features (keep_features). label: for the progress bar and messages.
static dit_status run_images(dit_inception *net, image_source *src, const char *path, int batch, int want_stats,
                             int keep_features, dit_inception_score *is, summary *out) {
    const int64_t total = image_source_count(src);
    float *pool = dit_xmalloc((size_t)batch * DIT_INCEPTION_POOL_DIM * sizeof *pool);
    float *spatial = dit_xmalloc((size_t)batch * DIT_INCEPTION_SPATIAL_DIM * sizeof *spatial);
    float *logits = is ? dit_xmalloc((size_t)batch * DIT_INCEPTION_CLASSES * sizeof *logits) : NULL;
    dit_moments *mp = want_stats ? cli_or_exit(dit_moments_create(DIT_INCEPTION_POOL_DIM)) : NULL;
    dit_moments *ms = want_stats ? cli_or_exit(dit_moments_create(DIT_INCEPTION_SPATIAL_DIM)) : NULL;
    if (keep_features) {
        out->features = dit_xmalloc((size_t)(total > 0 ? total : 1) * DIT_INCEPTION_POOL_DIM * sizeof(float));
        out->count = 0;
    }
    progress_bar bar;
    dist_comm *comm = dist_world();
    int64_t lo, hi;
    dist_share(total, dist_rank(comm), dist_size(comm), &lo, &hi);
    progress_begin(&bar, path, (int)(hi - lo < 1 ? 1 : hi - lo));
    dit_status status = DIT_OK;
    int64_t done = 0;
    if (dist_size(comm) > 1) {
        // rank 0 consumes everybody's outputs in batches of `batch`, as one process would
        float *all_pool, *all_spatial, *all_logits;
        status = shard_features(net, src, batch, is != NULL, &all_pool, &all_spatial, &all_logits, &bar);
        for (int64_t k = 0; status == DIT_OK && all_pool && k < total; k += batch) {
            const int n = (int)(total - k < batch ? total - k : batch);
            consume(mp, ms, is, out, keep_features, all_pool + (size_t)k * DIT_INCEPTION_POOL_DIM,
                    all_spatial + (size_t)k * DIT_INCEPTION_SPATIAL_DIM,
                    all_logits ? all_logits + (size_t)k * DIT_INCEPTION_CLASSES : NULL, n);
        }
        free(all_pool), free(all_spatial), free(all_logits);
        if (!dist_is_root(comm)) {   // rank 0 alone finishes and reports
            dit_moments_free(mp), dit_moments_free(ms);
            free(pool), free(spatial), free(logits);
            return status;
        }
    }
    while (dist_size(comm) == 1) {
        const uint8_t *pixels;
        int h, w;
        const int n = image_source_next(src, batch, &pixels, &h, &w);
        if (n < 0) {
            status = DIT_ERR;
            break;
        }
        if (n == 0) break;
        if ((status = dit_inception_forward(net, pixels, n, h, w, pool, spatial, logits)) != DIT_OK) break;
        consume(mp, ms, is, out, keep_features, pool, spatial, logits, n);
        done += n;
        progress_update(&bar, (int)done);
    }
    progress_end(&bar);
    if (status == DIT_OK && mp) {
        if (dit_moments_count(mp) < 2) {
            status = dit_set_error("%s: %lld image%s: FID needs at least 2 images for a covariance (ADM uses 50,000)",
                                   path, (long long)dit_moments_count(mp), dit_moments_count(mp) == 1 ? "" : "s");
        } else {
            out->pool.dim = DIT_INCEPTION_POOL_DIM;
            out->spatial.dim = DIT_INCEPTION_SPATIAL_DIM;
            out->pool.mu = dit_xmalloc(DIT_INCEPTION_POOL_DIM * sizeof(double));
            out->pool.sigma = dit_xmalloc((size_t)DIT_INCEPTION_POOL_DIM * DIT_INCEPTION_POOL_DIM * sizeof(double));
            out->spatial.mu = dit_xmalloc(DIT_INCEPTION_SPATIAL_DIM * sizeof(double));
            out->spatial.sigma = dit_xmalloc((size_t)DIT_INCEPTION_SPATIAL_DIM * DIT_INCEPTION_SPATIAL_DIM * sizeof(double));
            if (dit_moments_finish(mp, out->pool.mu, out->pool.sigma) != DIT_OK ||
                dit_moments_finish(ms, out->spatial.mu, out->spatial.sigma) != DIT_OK)
                status = DIT_ERR;
        }
    }
    dit_moments_free(mp);
    dit_moments_free(ms);
    free(pool);
    free(spatial);
    free(logits);
    return status;
}

// A float array of the reference as float64, checked against the expected shape.
static dit_status read_stat(const char *path, const char *name, int ndim, int dim, double **out, int *found) {
    npy_array a;
    *out = NULL;
    if (npz_read_member(path, name, &a, found) != DIT_OK) return DIT_ERR;
    if (!*found) return DIT_OK;
    dit_status status = DIT_OK;
    int ok = a.ndim == ndim && a.shape[0] == dim && (ndim == 1 || a.shape[1] == dim);
    if (!ok)
        status = dit_set_error("%s: %s has %d dimensions [%lld%s], expected %s of %d", path, name, a.ndim,
                               a.ndim ? (long long)a.shape[0] : 0LL, a.ndim > 1 ? ", ..." : "",
                               ndim == 1 ? "a vector" : "a square matrix", dim);
    else if (a.dtype != DT_F64 && a.dtype != DT_F32)
        status = dit_set_error("%s: %s has dtype %s, expected float64 or float32", path, name, dtype_name(a.dtype));
    if (status == DIT_OK) {
        const size_t n = ndim == 1 ? (size_t)dim : (size_t)dim * dim;
        double *v = dit_xmalloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) v[i] = a.dtype == DT_F64 ? ((const double *)a.data)[i] : ((const float *)a.data)[i];
        *out = v;
    }
    npy_free(&a);
    return status;
}

static dit_status read_stats_pair(const char *path, const char *mu_name, const char *sigma_name, int dim,
                                  feature_stats *s) {
    int found_mu, found_sigma;
    if (read_stat(path, mu_name, 1, dim, &s->mu, &found_mu) != DIT_OK) return DIT_ERR;
    if (read_stat(path, sigma_name, 2, dim, &s->sigma, &found_sigma) != DIT_OK) return DIT_ERR;
    if (found_mu != found_sigma)
        return dit_set_error("%s: has %s but not %s", path, found_mu ? mu_name : sigma_name, found_mu ? sigma_name : mu_name);
    s->dim = dim;
    return DIT_OK;
}

static dit_status read_ref_features(const char *path, summary *ref) {
    npy_array a;
    int found;
    if (npz_read_member(path, "pool", &a, &found) != DIT_OK || !found) return found ? DIT_ERR : DIT_OK;
    dit_status status = DIT_OK;
    if (a.ndim != 2 || a.shape[1] != DIT_INCEPTION_POOL_DIM || (a.dtype != DT_F32 && a.dtype != DT_F64))
        status = dit_set_error("%s: pool must be float features (N, %d)", path, DIT_INCEPTION_POOL_DIM);
    if (status == DIT_OK) {
        tensor_view v = {.dtype = a.dtype, .ndim = 2, .data = a.data, .nbytes = a.nbytes};
        v.shape[0] = a.shape[0], v.shape[1] = a.shape[1];
        ref->features = dit_xmalloc((size_t)(a.shape[0] > 0 ? a.shape[0] : 1) * DIT_INCEPTION_POOL_DIM * sizeof(float));
        tensor_to_f32(&v, ref->features);
        ref->count = a.shape[0];
    }
    npy_free(&a);
    return status;
}

// The reference: statistics from mu/sigma/mu_s/sigma_s when present (as ADM, even beside arr_0), features from
// 'pool' when present; whatever is missing is computed from arr_0 when the archive holds images.
static dit_status load_ref(const char *path, dit_inception *net, int batch, int want_features, summary *ref) {
    if (read_stats_pair(path, "mu", "sigma", DIT_INCEPTION_POOL_DIM, &ref->pool) != DIT_OK ||
        read_stats_pair(path, "mu_s", "sigma_s", DIT_INCEPTION_SPATIAL_DIM, &ref->spatial) != DIT_OK ||
        read_ref_features(path, ref) != DIT_OK)
        return DIT_ERR;
    const int need_stats = !ref->pool.mu || !ref->spatial.mu, need_features = want_features && !ref->features;
    if (!need_stats && !need_features) return DIT_OK;
    int has_images;
    image_source *src = image_source_open_npz_if_images(path, &has_images);
    if (!src) {
        if (has_images) return DIT_ERR;   // arr_0 present but unusable
        if (!ref->pool.mu)
            return dit_set_error("%s: the reference holds neither statistics (mu, sigma, mu_s, sigma_s) nor images "
                                 "(arr_0)", path);
        return DIT_OK;
    }
    summary computed = {0};
    dit_status status = run_images(net, src, path, batch, need_stats, need_features, NULL, &computed);
    image_source_close(src);
    if (status == DIT_OK) {
        if (!ref->pool.mu) ref->pool = computed.pool, computed.pool = (feature_stats){0};
        if (!ref->spatial.mu) ref->spatial = computed.spatial, computed.spatial = (feature_stats){0};
        if (need_features) ref->features = computed.features, ref->count = computed.count, computed.features = NULL;
    }
    summary_free(&computed);
    return status;
}

static dit_status save_stats(const char *out_path, const summary *s) {
    npy_array arrays[5];
    const char *names[5] = {"mu", "sigma", "mu_s", "sigma_s", "pool"};
    const feature_stats *st[4] = {&s->pool, &s->pool, &s->spatial, &s->spatial};
    for (int i = 0; i < 4; i++) {
        const int dim = st[i]->dim, matrix = i % 2;
        arrays[i] = (npy_array){.dtype = DT_F64, .ndim = matrix ? 2 : 1, .data = matrix ? st[i]->sigma : st[i]->mu};
        arrays[i].shape[0] = dim;
        arrays[i].shape[1] = dim;
        arrays[i].nbytes = (size_t)dim * (matrix ? dim : 1) * sizeof(double);
    }
    int count = 4;
    if (s->features) {
        arrays[4] = (npy_array){.dtype = DT_F32, .ndim = 2, .data = s->features};
        arrays[4].shape[0] = s->count;
        arrays[4].shape[1] = DIT_INCEPTION_POOL_DIM;
        arrays[4].nbytes = (size_t)s->count * DIT_INCEPTION_POOL_DIM * sizeof(float);
        count = 5;
    }
    return npz_write(out_path, names, arrays, count);
}

int cmd_eval(int argc, char **argv) {
    for (int i = 1; i < argc; i++)   // Fashion-MNIST quality has its own evaluator (src/cli/eval_fmnist.c)
        if (!strcmp(argv[i], "--fmnist")) return cmd_eval_fmnist(argc, argv);
    const char *inception_path = NULL, *ref_path = NULL, *save_path = NULL, *samples_path = NULL;
    int batch = 64, threads = 0, save_features = 0, fp16 = 1;
    dit_inception_resize resize = DIT_RESIZE_PYTORCH_FID;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (cli_take(&a, NULL, "--inception")) inception_path = a.value;
        else if (cli_take(&a, NULL, "--ref")) ref_path = a.value;
        else if (cli_take(&a, NULL, "--save-stats")) save_path = a.value;
        else if (cli_take_int(&a, NULL, "--batch", 1, 4096, &batch)) continue;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (cli_take(&a, NULL, "--resize")) {
            if (!strcmp(a.value, "pytorch-fid")) resize = DIT_RESIZE_PYTORCH_FID;
            else if (!strcmp(a.value, "tf")) resize = DIT_RESIZE_TF_LEGACY;
            else return cli_usage_error("--resize: expected pytorch-fid or tf, got '%s'", a.value);
        } else if (!strcmp(arg, "--save-features")) save_features = 1;
        else if (!strcmp(arg, "--fp32-distances")) fp16 = 0;
        else if (a.failed) return 2;
        else if (arg[0] == '-' && arg[1])
            return cli_usage_error("eval: unknown option '%s' (see dit eval --help)", arg);
        else if (samples_path)
            return cli_usage_error("eval: one SAMPLES input expected, got '%s' and '%s'", samples_path, arg);
        else samples_path = arg;
    }
    if (!inception_path) return cli_usage_error("eval: --inception FILE is required (see docs/eval.md for the weights)");
    if (!samples_path) return cli_usage_error("eval: no SAMPLES (.npz batch or image folder) given");
    if (!ref_path && !save_path) return cli_usage_error("eval: nothing to do: give --ref REF.npz and/or --save-stats OUT.npz");
    if (save_features && !save_path) return cli_usage_error("eval: --save-features goes with --save-stats");
    cli_set_threads(threads);

    dit_inception *net = dit_inception_load(inception_path);
    if (!net) return cli_fail();
    dit_inception_set_resize(net, resize);

    int rc = 0;
    summary ref = {0}, samples = {0};
    dit_inception_score *is = cli_or_exit(dit_inception_score_create(DIT_INCEPTION_CLASSES, ADM_IS_SPLIT_SIZE));
    image_source *src = NULL;
    if (ref_path && load_ref(ref_path, net, batch, 1, &ref) != DIT_OK) {
        rc = cli_fail();
        goto done;
    }
    if (!(src = image_source_open(samples_path))) {
        rc = cli_fail();
        goto done;
    }
    const int keep = (ref_path && ref.features) || save_features;
    if (run_images(net, src, samples_path, batch, 1, keep, is, &samples) != DIT_OK) {
        rc = cli_fail();
        goto done;
    }
    if (!dist_is_root(dist_world())) goto done;   // under mpirun: rank 0 has every image's features
    if (save_path) {
        if (save_stats(save_path, &samples) != DIT_OK) {
            rc = cli_fail();
            goto done;
        }
        fprintf(stderr, "dit: wrote %s (statistics of %lld images%s)\n", save_path, (long long)image_source_count(src),
                save_features ? " and their pool_3 features" : "");
    }
    double is_mean, is_std, fid = NAN, sfid = NAN, precision = NAN, recall = NAN;
    int splits;
    if (dit_inception_score_finish(is, &is_mean, &is_std, &splits) != DIT_OK) {
        rc = cli_fail();
        goto done;
    }
    if (ref_path) {
        if (dit_frechet_distance(samples.pool.mu, samples.pool.sigma, ref.pool.mu, ref.pool.sigma,
                                 DIT_INCEPTION_POOL_DIM, &fid) != DIT_OK) {
            rc = cli_fail();
            goto done;
        }
        if (ref.spatial.mu && dit_frechet_distance(samples.spatial.mu, samples.spatial.sigma, ref.spatial.mu,
                                                   ref.spatial.sigma, DIT_INCEPTION_SPATIAL_DIM, &sfid) != DIT_OK) {
            rc = cli_fail();
            goto done;
        }
        if (ref.features && dit_precision_recall(ref.features, ref.count, samples.features, samples.count,
                                                 DIT_INCEPTION_POOL_DIM, ADM_NEIGHBOURS, fp16, &precision,
                                                 &recall) != DIT_OK) {
            rc = cli_fail();
            goto done;
        }
    }
    printf("Inception Score: %.10g\n", is_mean);
    fprintf(stderr, "dit: Inception Score over %d split%s of up to %d samples, std %.6g\n", splits,
            splits == 1 ? "" : "s", ADM_IS_SPLIT_SIZE, is_std);
    if (ref_path) {
        printf("FID: %.10g\n", fid);
        if (ref.spatial.mu) printf("sFID: %.10g\n", sfid);
        else fprintf(stderr, "dit: sFID unavailable: %s has no mu_s/sigma_s and no images\n", ref_path);
        if (ref.features) {
            printf("Precision: %.10g\n", precision);
            printf("Recall: %.10g\n", recall);
        } else {
            fprintf(stderr, "dit: precision and recall unavailable: %s holds only statistics (they need the "
                            "reference's images, arr_0, or features, pool)\n", ref_path);
        }
    }
done:
    image_source_close(src);
    dit_inception_score_free(is);
    summary_free(&ref);
    summary_free(&samples);
    dit_inception_free(net);
    return rc;
}
