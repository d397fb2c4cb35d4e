// `dit eval`: the FID Inception forward (synthetic weights) against tests/ref/inception_ref.py at pool_3, the
// sFID spatial features and the logits; the bilinear resizes; streaming moments, the Frechet distance (with a
// singular case), the Inception Score and precision/recall against ADM's maths in numpy/scipy; weight-file
// loading; .npz image inputs and their errors; the command line. Goldens: tests/golden/eval
// (tests/ref/make_eval_golden.py). Feature matrices come from the hash formula below, mirrored there.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "dit_eval.h"
#include "eval/inputs.h"
#include "eval/metrics.h"
#include "io/tensors.h"
#include "models/inception.h"
#include "test.h"
#include "models/synthetic.h"

static float *golden(const char *name, int64_t *count) {
    npy_array a;
    if (npy_read(golden_path(name), &a) != DIT_OK) {
        printf("     cannot read %s: %s\n", name, dit_last_error());
        return NULL;
    }
    tensor_view v = {.dtype = a.dtype, .ndim = a.ndim, .data = a.data, .nbytes = a.nbytes};
    memcpy(v.shape, a.shape, sizeof v.shape);
    *count = tensor_numel(&v);
    float *out = malloc((size_t)*count * sizeof *out + 1);
    tensor_to_f32(&v, out);
    npy_free(&a);
    return out;
}

static double *golden_f64(const char *name, int64_t *count) {
    npy_array a;
    if (npy_read(golden_path(name), &a) != DIT_OK || a.dtype != DT_F64) return NULL;
    *count = (int64_t)(a.nbytes / sizeof(double));
    return (double *)a.data;
}

// A number from tests/golden/eval/metrics.json: the value after "key": within the object "section".
static double json_number(const char *json, const char *section, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\"", section);
    const char *s = strstr(json, pat);
    if (!s) return NAN;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *k = strstr(s, pat);
    return k ? strtod(k + strlen(pat), NULL) : NAN;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *t = malloc((size_t)n + 1);
    t[fread(t, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return t;
}

// ---- features from the hash formula (make_eval_golden.py: features()) -------------------------------------

static float *features(const char *kind, uint32_t k, int n, int dim) {
    float *x = malloc((size_t)n * dim * sizeof *x);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < dim; j++) {
            const float u = synthetic_uniform((uint32_t)(r * dim + j), k, 11);
            float v;
            if (!strcmp(kind, "mixed")) v = (u + 0.5f * synthetic_uniform((uint32_t)(r * dim + (j + 1) % dim), k, 11)) + 0.2f;
            else if (!strcmp(kind, "shifted")) v = 0.9f * u + 0.1f;
            else if (!strcmp(kind, "logits")) v = 4.0f * u;
            else if (!strcmp(kind, "ref_pr")) v = 1.0f + u;
            else if (!strcmp(kind, "sample_pr")) v = 1.1f + 0.9f * u;
            else v = u;
            x[(size_t)r * dim + j] = v;
        }
    return x;
}

static void stats_of(const float *x, int n, int dim, double *mu, double *sigma) {
    dit_moments *m = dit_moments_create(dim);
    // uneven chunks: the result must not depend on how rows arrive
    int done = 0, step = 7;
    while (done < n) {
        int c = n - done < step ? n - done : step;
        dit_moments_add(m, x + (size_t)done * dim, c);
        done += c;
        step = step * 3 + 1;
    }
    DIT_CHECK(dit_moments_finish(m, mu, sigma) == DIT_OK);
    dit_moments_free(m);
}

// ---- the network ---------------------------------------------------------------------------------------

static void test_keys(void) {
    char *text = read_text(golden_path("eval/inception_keys.txt"));
    if (!CHECK(text, "read eval/inception_keys.txt")) return;
    inception_tensor *table = malloc(INCEPTION_NUM_TENSORS * sizeof *table);
    inception_tensor_table(table);
    int same = 0, lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++) {
        if (lines >= INCEPTION_NUM_TENSORS) continue;
        char want[160], shape[64] = "";
        const inception_tensor *t = &table[lines];
        for (int d = 0; d < t->ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "x" : "", (long long)t->shape[d]);
        snprintf(want, sizeof want, "%s %s", t->name, shape);
        if (!strcmp(line, want)) same++;
        else if (lines - same < 3) printf("     key %d: ours '%s', torchvision '%s'\n", lines, want, line);
    }
    CHECK(lines == INCEPTION_NUM_TENSORS && same == lines,
          "checkpoint table = torchvision's FID Inception state_dict (%d of %d keys and shapes agree)", same, lines);
    free(table);
    free(text);
}

static void test_resize(void) {
    int64_t n;
    float *in = golden("eval/resize_in.npy", &n);
    if (!in) return;
    float *in255 = malloc((size_t)n * sizeof *in255);
    for (int64_t i = 0; i < n; i++) in255[i] = in[i] * 255.0f;
    static const int sizes[2][2] = {{37, 41}, {11, 13}};
    for (int s = 0; s < 2; s++) {
        const int oh = sizes[s][0], ow = sizes[s][1];
        char name[64], what[128];
        float *got = malloc((size_t)3 * oh * ow * sizeof *got);
        int64_t m;
        snprintf(name, sizeof name, "eval/resize_torch_%dx%d.npy", oh, ow);
        float *want = golden(name, &m);
        inception_resize_bilinear(got, in, 3, 20, 29, oh, ow, DIT_RESIZE_PYTORCH_FID);
        snprintf(what, sizeof what, "bilinear 20x29 -> %dx%d vs F.interpolate(align_corners=False)", oh, ow);
        // 1e-6: float32 weights and products in PyTorch's order; values in [0, 1]
        if (want) CHECK_CLOSE(what, got, want, (size_t)m, 1e-6, 0);
        free(want);
        snprintf(name, sizeof name, "eval/resize_tf_%dx%d.npy", oh, ow);
        want = golden(name, &m);
        inception_resize_bilinear(got, in255, 3, 20, 29, oh, ow, DIT_RESIZE_TF_LEGACY);
        snprintf(what, sizeof what, "TF1 legacy ResizeBilinear 20x29 -> %dx%d vs numpy", oh, ow);
        // 1e-4 on [0, 255]: the same float32 formula
        if (want) CHECK_CLOSE(what, got, want, (size_t)m, 1e-4, 0);
        free(want);
        free(got);
    }
    free(in);
    free(in255);
}

static void test_forward(void) {
    int64_t n_img, n_pool, n_spatial, n_logits;
    npy_array images;
    if (!CHECK(npy_read(golden_path("eval/inception_images.npy"), &images) == DIT_OK && images.dtype == DT_U8,
               "read eval/inception_images.npy (uint8)"))
        return;
    n_img = images.shape[0];
    float *want_pool = golden("eval/inception_pool.npy", &n_pool);
    float *want_spatial = golden("eval/inception_spatial.npy", &n_spatial);
    float *want_logits = golden("eval/inception_logits.npy", &n_logits);
    dit_inception *net = dit_inception_synthetic(1);
    float *pool = malloc((size_t)n_img * DIT_INCEPTION_POOL_DIM * sizeof *pool);
    float *spatial = malloc((size_t)n_img * DIT_INCEPTION_SPATIAL_DIM * sizeof *spatial);
    float *logits = malloc((size_t)n_img * DIT_INCEPTION_CLASSES * sizeof *logits);
    dit_status st = dit_inception_forward(net, images.data, (int)n_img, (int)images.shape[1], (int)images.shape[2],
                                          pool, spatial, logits);
    if (CHECK(st == DIT_OK && want_pool && want_spatial && want_logits, "Inception forward of two 64x64 images")) {
        // float32 through 94 conv layers (BatchNorm folded) vs a float64 reference of the same float32 weights:
        // activations are O(1) (pool mean ~2); 2e-4 abs + 2e-4 rel covers the accumulated float32 rounding.
        CHECK_CLOSE("pool_3 (2, 2048) vs reference", pool, want_pool, (size_t)n_pool, 2e-4, 2e-4);
        CHECK_CLOSE("mixed_6/conv[..., :7] (2, 2023) vs reference", spatial, want_spatial, (size_t)n_spatial, 2e-4, 2e-4);
        CHECK_CLOSE("logits pool @ fc.weight^T (2, 1008) vs reference", logits, want_logits, (size_t)n_logits, 5e-4, 2e-4);
        double diff = 0.0;
        for (int j = 0; j < DIT_INCEPTION_POOL_DIM; j++) diff += fabs(pool[j] - pool[DIT_INCEPTION_POOL_DIM + j]);
        CHECK(diff / DIT_INCEPTION_POOL_DIM > 1e-2, "the two images give different features (mean |diff| %.3g)",
              diff / DIT_INCEPTION_POOL_DIM);
        // One image alone takes the same path as in a batch: the same bits.
        float *one = malloc(DIT_INCEPTION_POOL_DIM * sizeof *one);
        dit_inception_forward(net, (const uint8_t *)images.data + (size_t)64 * 64 * 3, 1, 64, 64, one, NULL, NULL);
        CHECK(!memcmp(one, pool + DIT_INCEPTION_POOL_DIM, DIT_INCEPTION_POOL_DIM * sizeof *one),
              "image 1 alone = image 1 in a batch of two, bit for bit");
        free(one);
    }
    dit_inception_free(net);
    free(pool); free(spatial); free(logits);
    free(want_pool); free(want_spatial); free(want_logits);
    npy_free(&images);
}

// The synthetic weights written as a safetensors file load to the same folded parameters; wrong files fail
// with the tensor named.
static void test_load(void) {
    inception_tensor *table = malloc(INCEPTION_NUM_TENSORS * sizeof *table);
    inception_tensor_table(table);
    tensor_out *outs = calloc(INCEPTION_NUM_TENSORS, sizeof *outs);
    float **data = calloc(INCEPTION_NUM_TENSORS, sizeof *data);
    for (int k = 0; k < INCEPTION_NUM_TENSORS; k++) {
        data[k] = malloc(table[k].numel * sizeof(float));
        for (size_t i = 0; i < table[k].numel; i++) data[k][i] = inception_synthetic_value(&table[k], (uint32_t)k, (uint32_t)i, 1);
        outs[k] = (tensor_out){.name = table[k].name, .dtype = DT_F32, .ndim = table[k].ndim, .data = data[k]};
        memcpy(outs[k].shape, table[k].shape, sizeof table[k].shape);
    }
    const char *path = scratch_path("inception.safetensors");
    if (CHECK(safetensors_write(path, outs, INCEPTION_NUM_TENSORS, NULL, NULL, 0) == DIT_OK, "write synthetic weights")) {
        dit_inception *a = dit_inception_load(path), *b = dit_inception_synthetic(1);
        if (CHECK(a, "load the safetensors weights (%s)", a ? "ok" : dit_last_error())) {
            size_t na, nb;
            const float *pa = inception_params(a, &na), *pb = inception_params(b, &nb);
            CHECK(na == nb && !memcmp(pa, pb, na * sizeof *pa), "loaded file = synthetic model (%zu folded parameters)", na);
        }
        dit_inception_free(a);
        dit_inception_free(b);
    }
    // a wrong shape, then a missing tensor
    const char *bad = scratch_path("inception_bad.safetensors");
    outs[5].shape[0] = 31;
    safetensors_write(bad, outs, INCEPTION_NUM_TENSORS, NULL, NULL, 0);
    dit_inception *m = dit_inception_load(bad);
    CHECK(!m && strstr(dit_last_error(), "Conv2d_2a_3x3.conv.weight has shape [31, 32, 3, 3], expected [32, 32, 3, 3]"),
          "wrong shape: %s", dit_last_error());
    dit_inception_free(m);
    outs[5].shape[0] = 32;
    safetensors_write(bad, outs, INCEPTION_NUM_TENSORS - 1, NULL, NULL, 0);
    m = dit_inception_load(bad);
    CHECK(!m && strstr(dit_last_error(), "missing tensor fc.bias"), "missing tensor: %s", dit_last_error());
    dit_inception_free(m);
    for (int k = 0; k < INCEPTION_NUM_TENSORS; k++) free(data[k]);
    free(data);
    free(outs);
    free(table);
}

// ---- metrics -------------------------------------------------------------------------------------------

static void test_fid(const char *json) {
    const int dim = 48;
    float *x1 = features("plain", 1, 300, dim), *x2 = features("mixed", 2, 250, dim);
    double *mu1 = malloc(dim * sizeof *mu1), *s1 = malloc(dim * dim * sizeof *s1);
    double *mu2 = malloc(dim * sizeof *mu2), *s2 = malloc(dim * dim * sizeof *s2);
    stats_of(x1, 300, dim, mu1, s1);
    stats_of(x2, 250, dim, mu2, s2);
    int64_t n;
    double *want_mu = golden_f64("eval/fid_a_mu.npy", &n), *want_sigma = golden_f64("eval/fid_a_sigma.npy", &n);
    if (CHECK(want_mu && want_sigma, "read fid_a_mu/sigma")) {
        double worst = 0.0;
        for (int i = 0; i < dim; i++) worst = fmax(worst, fabs(mu2[i] - want_mu[i]));
        for (int i = 0; i < dim * dim; i++) worst = fmax(worst, fabs(s2[i] - want_sigma[i]));
        // float64 sums of float32 values: only the summation order differs from numpy
        CHECK(worst < 1e-12, "streaming mean/covariance vs np.mean/np.cov (ddof 1), worst %.3g", worst);
    }
    free(want_mu);
    free(want_sigma);
    double fid = NAN, want = json_number(json, "fid_a", "adm");
    dit_status st = dit_frechet_distance(mu1, s1, mu2, s2, dim, &fid);
    CHECK(st == DIT_OK && fabs(fid - want) < 1e-9 * fabs(want), "FID (eigen) %.12g vs ADM's scipy sqrtm %.12g", fid, want);
    st = dit_frechet_distance(mu1, s1, mu1, s1, dim, &fid);
    CHECK(st == DIT_OK && fabs(fid) < 1e-10, "FID of a set with itself %.3g", fid);

    // 30 and 25 samples of 48 features: singular covariances, singular product
    float *y1 = features("plain", 3, 30, dim), *y2 = features("shifted", 4, 25, dim);
    stats_of(y1, 30, dim, mu1, s1);
    stats_of(y2, 25, dim, mu2, s2);
    want = json_number(json, "fid_singular", "adm");
    // scipy's sqrtm of a singular product carries ~1e-8 of noise (imaginary parts ~5e-9); ours is exact to ~1e-12
    st = dit_frechet_distance(mu1, s1, mu2, s2, dim, &fid);
    CHECK(st == DIT_OK && fabs(fid - want) < 1e-6,
          "FID, singular covariances (n < dim): %.12g vs scipy %.12g (|diff| %.2g; numpy eigh gives %.12g)", fid, want,
          fabs(fid - want), json_number(json, "fid_singular", "eig"));
    free(y1); free(y2);

    // errors
    dit_moments *m = dit_moments_create(dim);
    dit_moments_add(m, x1, 1);
    CHECK(dit_moments_finish(m, mu1, s1) == DIT_ERR && strstr(dit_last_error(), "at least 2"),
          "one sample: %s", dit_last_error());
    dit_moments_free(m);
    s1[5] = NAN;
    CHECK(dit_frechet_distance(mu1, s1, mu2, s2, dim, &fid) == DIT_ERR, "non-finite covariance: %s", dit_last_error());
    free(x1); free(x2); free(mu1); free(s1); free(mu2); free(s2);
}

static void test_inception_score(const char *json) {
    const int n = 2500, classes = 1008;
    float *logits = features("logits", 5, n, classes);
    dit_inception_score *s = dit_inception_score_create(classes, 1000);
    dit_inception_score_add(s, logits, 700);
    dit_inception_score_add(s, logits + (size_t)700 * classes, n - 700);
    double mean, std;
    int splits;
    dit_inception_score_finish(s, &mean, &std, &splits);
    dit_inception_score_free(s);
    const double want = json_number(json, "is", "mean"), want_std = json_number(json, "is", "std");
    // ADM's numbers are float32 softmax and logs; ours float64
    CHECK(splits == 3 && fabs(mean - want) < 1e-5 * want && fabs(std - want_std) < 1e-5,
          "Inception Score %d splits of 1000: %.8g (std %.3g) vs ADM formula %.8g (std %.3g)", splits, mean, std, want,
          want_std);
    free(logits);
}

static int count_different(const float *a, const float *b, int64_t n) {
    int d = 0;
    for (int64_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static void test_precision_recall(const char *json) {
    const int dim = 32, nr = 300, ns = 400;
    float *ref = features("ref_pr", 6, nr, dim), *smp = features("sample_pr", 7, ns, dim);
    float *radii = malloc(ns * sizeof *radii);
    for (int fp16 = 1; fp16 >= 0; fp16--) {
        const char *tag = fp16 ? "fp16" : "fp32";
        char name[64], section[16];
        int64_t n;
        snprintf(name, sizeof name, "eval/pr_%s_radii_ref.npy", tag);
        float *want = golden(name, &n);
        dit_manifold_radii(radii, ref, nr, dim, 3, fp16);
        // float16: exact up to float32 summation order (which can move a rounding by one step);
        // float32: 1e-5 relative, sgemm vs numpy summation order
        if (want && fp16)
            CHECK(count_different(radii, want, nr) <= 3, "k=3 radii of the reference (fp16) vs ADM: %d of %d differ",
                  count_different(radii, want, nr), nr);
        else if (want)
            CHECK_CLOSE("k=3 radii of the reference (fp32) vs ADM", radii, want, (size_t)nr, 0, 1e-5);
        free(want);
        snprintf(name, sizeof name, "eval/pr_%s_radii_samples.npy", tag);
        want = golden(name, &n);
        dit_manifold_radii(radii, smp, ns, dim, 3, fp16);
        if (want && fp16)
            CHECK(count_different(radii, want, ns) <= 4, "k=3 radii of the samples (fp16) vs ADM: %d of %d differ",
                  count_different(radii, want, ns), ns);
        else if (want)
            CHECK_CLOSE("k=3 radii of the samples (fp32) vs ADM", radii, want, (size_t)ns, 0, 1e-5);
        free(want);
        double p = NAN, r = NAN;
        snprintf(section, sizeof section, "pr_%s", tag);
        const double wp = json_number(json, section, "precision"), wr = json_number(json, section, "recall");
        const dit_status st = dit_precision_recall(ref, nr, smp, ns, dim, 3, fp16, &p, &r);
        CHECK(st == DIT_OK && fabs(p - wp) <= 2.0 / ns && fabs(r - wr) <= 2.0 / nr,
              "precision %.4f recall %.4f (%s) vs ADM %.4f %.4f", p, r, tag, wp, wr);
    }
    double p, r;
    CHECK(dit_precision_recall(ref, 3, smp, ns, dim, 3, 1, &p, &r) == DIT_ERR && strstr(dit_last_error(), "at least 4"),
          "3 reference vectors: %s", dit_last_error());
    CHECK(eval_round_half(65504.0f) == 65504.0f && isinf(eval_round_half(65520.0f)) &&
              eval_round_half(1.0f + 1.0f / 2048) == 1.0f && eval_round_half(1.0f + 3.0f / 2048) == 1.0f + 2.0f / 1024 &&
              eval_round_half(3e-8f) == 5.9604645e-8f,
          "binary16 rounding: max, overflow, ties to even, subnormals");
    free(ref); free(smp); free(radii);
}

// ---- inputs --------------------------------------------------------------------------------------------

static void write_npz(const char *path, const char *name, dit_dtype dt, int ndim, const int64_t *shape) {
    npy_array a = {.dtype = dt, .ndim = ndim};
    size_t n = 1;
    for (int d = 0; d < ndim; d++) a.shape[d] = shape[d], n *= (size_t)shape[d];
    a.nbytes = n * dtype_size(dt);
    a.data = malloc(a.nbytes + 1);
    for (size_t i = 0; i < a.nbytes; i++) ((uint8_t *)a.data)[i] = (uint8_t)(i * 37 + 11);
    const char *names[1] = {name};
    npz_write(path, names, &a, 1);
    npy_free(&a);
}

// A uint8 image batch of xorshift bytes (images differ from each other, unlike write_npz's pattern, whose
// period of 256 bytes repeats whole 16x16 RGB images): features with a non-zero covariance.
static void write_random_images(const char *path, int count, int height, int width) {
    npy_array a = {.dtype = DT_U8, .ndim = 4, .shape = {count, height, width, 3}};
    a.nbytes = (size_t)count * height * width * 3;
    a.data = malloc(a.nbytes);
    uint32_t state = 2463534242u;
    for (size_t i = 0; i < a.nbytes; i++) ((uint8_t *)a.data)[i] = (uint8_t)((test_uniform(&state) + 1) * 127.5f);
    const char *names[1] = {"arr_0"};
    npz_write(path, names, &a, 1);
    npy_free(&a);
}

static void test_inputs(void) {
    const char *ok = scratch_path("five.npz");
    write_npz(ok, "arr_0", DT_U8, 4, (int64_t[]){5, 6, 7, 3});
    image_source *s = image_source_open(ok);
    if (CHECK(s && image_source_count(s) == 5, "open a (5, 6, 7, 3) uint8 batch (%s)", s ? "ok" : dit_last_error())) {
        const uint8_t *px;
        int h, w, sizes[4], got = 0, good = 1, k = 0;
        while ((sizes[k] = image_source_next(s, 2, &px, &h, &w)) > 0 && k < 3) {
            for (int i = 0; i < sizes[k] * 6 * 7 * 3; i++) good &= px[i] == (uint8_t)((got * 6 * 7 * 3 + i) * 37 + 11);
            got += sizes[k++];
        }
        CHECK(k == 3 && sizes[0] == 2 && sizes[1] == 2 && sizes[2] == 1 && good && h == 6 && w == 7,
              "streamed in batches of 2, 2, 1 with the file's bytes");
    }
    image_source_close(s);
    static const struct { const char *name; dit_dtype dt; int ndim; int64_t shape[4]; const char *msg; } bad[] = {
        {"arr_0", DT_F32, 4, {2, 4, 4, 3}, "dtype F32, expected uint8"},
        {"arr_0", DT_U8, 3, {2, 4, 4}, "3 dimensions, expected 4"},
        {"arr_0", DT_U8, 4, {2, 4, 4, 1}, "1 channels"},
        {"images", DT_U8, 4, {2, 4, 4, 3}, "no arr_0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = scratch_path("bad.npz");
        write_npz(p, bad[i].name, bad[i].dt, bad[i].ndim, bad[i].shape);
        s = image_source_open(p);
        CHECK(!s && strstr(dit_last_error(), bad[i].msg), "bad batch: %s", dit_last_error());
        image_source_close(s);
    }
    s = image_source_open(golden_path("eval/README.md"));
    CHECK(!s && strstr(dit_last_error(), "expected an .npz batch"), "not an archive: %s", dit_last_error());
}

// ---- the command line ----------------------------------------------------------------------------------

static void test_cli(void) {
    const char *bin = getenv("DIT_BIN") ? getenv("DIT_BIN") : "build/dit";
    char cmd[4096], *out = NULL;
    double fid_tol = 0, sfid_tol = 0;   // from the samples' covariance traces (set below)
    snprintf(cmd, sizeof cmd, "%s eval --help", bin);
    int help_rc = run_command(cmd, &out);
    CHECK(help_rc == 0 && out && strstr(out, "--inception"), "dit eval --help exits 0 and names --inception (exit %d)",
          help_rc);
    free(out);
    // test_load wrote the weights. Statistics and features of 4 samples:
    const char *weights = scratch_path("inception.safetensors"), *samples = scratch_path("cli_samples.npz");
    const char *ref = scratch_path("cli_ref.npz"), *stats = scratch_path("cli_stats.npz");
    write_random_images(samples, 4, 16, 16);
    write_npz(ref, "arr_0", DT_U8, 4, (int64_t[]){5, 24, 20, 3});
    snprintf(cmd, sizeof cmd, "%s eval --inception %s --save-stats %s --save-features -t 2 --batch 3 %s", bin,
             weights, stats, samples);
    int rc = run_command(cmd, &out);
    CHECK(rc == 0 && strstr(out, "Inception Score: "), "dit eval --save-stats --save-features (exit %d)", rc);
    free(out);
    tensor_file saved;
    if (CHECK(npz_read(stats, &saved) == DIT_OK, "read the saved statistics")) {
        const tensor_view *mu = tensor_file_find(&saved, "mu"), *sigma_s = tensor_file_find(&saved, "sigma_s");
        const tensor_view *pool = tensor_file_find(&saved, "pool");
        CHECK(mu && mu->dtype == DT_F64 && mu->shape[0] == 2048 && sigma_s && sigma_s->shape[0] == 2023 &&
                  sigma_s->shape[1] == 2023 && pool && pool->shape[0] == 4 && pool->shape[1] == 2048,
              "saved mu (2048) float64, sigma_s (2023, 2023), pool (4, 2048)");
        // The run below compares these statistics with themselves: they must not be degenerate (all-equal
        // samples give a zero covariance and a trivially zero FID).
        const tensor_view *sigma = tensor_file_find(&saved, "sigma");
        double trace = 0, trace_s = 0;
        if (sigma && sigma->dtype == DT_F64 && sigma->ndim == 2 && sigma->shape[0] == 2048)
            for (int i = 0; i < 2048; i++) trace += ((const double *)sigma->data)[(size_t)i * 2048 + i];
        if (sigma_s->dtype == DT_F64)
            for (int i = 0; i < 2023; i++) trace_s += ((const double *)sigma_s->data)[(size_t)i * 2023 + i];
        CHECK(trace > 0 && trace_s > 0, "the 4 samples' covariances are not degenerate (traces %.6g, %.6g > 0)", trace,
              trace_s);
        fid_tol = 2048 * sqrt(DBL_EPSILON) * trace;
        sfid_tol = 2023 * sqrt(DBL_EPSILON) * trace_s;
        tensor_file_free(&saved);
    }
    // End to end, always: the samples against their own saved statistics and features. One run prints all five
    // metrics through the whole --ref path (stats file, FID and sFID eigendecompositions at 2048/2023 of rank-3
    // covariances, IS, precision/recall on the saved pool features). Identical statistics give FID = sFID = 0 up
    // to float64 roundoff: the n - 3 zero eigenvalues of s^1/2 s s^1/2 come out as noise of order
    // eps |s|^2, and their square roots add up to n sqrt(eps) tr(s) at most (measured: FID -1.9e-5 against a
    // bound of 3.6e-4). Every sample lies in the other set's manifold at distance 0: precision = recall = 1.
    snprintf(cmd, sizeof cmd, "%s eval --inception %s --ref %s -t 2 --batch 3 %s", bin, weights, stats, samples);
    rc = run_command(cmd, &out);
    {
        const char *is = out ? strstr(out, "Inception Score: ") : NULL, *fid = out ? strstr(out, "\nFID: ") : NULL;
        const char *sfid = out ? strstr(out, "\nsFID: ") : NULL, *prec = out ? strstr(out, "\nPrecision: ") : NULL;
        const char *rec = out ? strstr(out, "\nRecall: ") : NULL;
        double fid_v = fid ? strtod(fid + 6, NULL) : NAN, sfid_v = sfid ? strtod(sfid + 7, NULL) : NAN;
        double prec_v = prec ? strtod(prec + 12, NULL) : NAN, rec_v = rec ? strtod(rec + 9, NULL) : NAN;
        double is_v = is ? strtod(is + 17, NULL) : NAN;
        CHECK(rc == 0 && fabs(fid_v) <= fid_tol && fabs(sfid_v) <= sfid_tol && prec_v == 1 && rec_v == 1 && is_v >= 1,
              "dit eval --ref <own stats>: IS %.6g (>= 1), FID %.3g (|.| <= %.2g), sFID %.3g (|.| <= %.2g), "
              "precision %g, recall %g (1) (exit %d)", is_v, fid_v, fid_tol, sfid_v, sfid_tol, prec_v, rec_v, rc);
        if (rc) printf("%s\n", out ? out : "");
    }
    free(out);
    write_npz(samples, "arr_0", DT_U8, 4, (int64_t[]){1, 16, 16, 3});
    snprintf(cmd, sizeof cmd, "%s eval --inception %s --save-stats %s %s", bin, weights, stats, samples);
    rc = run_command(cmd, &out);
    CHECK(rc == 1 && strstr(out, "at least 2 images"), "one sample: %s", out);
    free(out);
    // Two more full runs against a different reference (each FID/sFID pair is four 2048-wide eigendecompositions,
    // 10-40 s on a small machine): on request. The run above already covers the --ref path on every CI run.
    if (!getenv("DIT_SLOW_TESTS")) {
        SKIP("dit eval --ref against a different reference and at mixed image sizes: set DIT_SLOW_TESTS=1");
        return;
    }
    write_random_images(samples, 4, 16, 16);
    snprintf(cmd, sizeof cmd, "%s eval --inception %s --ref %s --save-stats %s --save-features -t 2 --batch 3 %s",
             bin, weights, ref, stats, samples);
    rc = run_command(cmd, &out);
    CHECK(rc == 0 && strstr(out, "Inception Score: ") && strstr(out, "\nFID: ") && strstr(out, "\nsFID: ") &&
              strstr(out, "\nPrecision: ") && strstr(out, "\nRecall: "),
          "dit eval prints IS, FID, sFID, Precision, Recall (exit %d)", rc);
    if (rc) printf("%s\n", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s eval --inception %s --ref %s -t 2 %s", bin, weights, ref, scratch_path("five.npz"));
    rc = run_command(cmd, &out);
    CHECK(rc == 0, "a 6x7 batch vs a 24x20 reference (exit %d)", rc);
    free(out);
}

void test_eval(void) {
    test_keys();
    test_resize();
    test_forward();
    test_load();
    char *json = read_text(golden_path("eval/metrics.json"));
    if (CHECK(json, "read eval/metrics.json")) {
        test_fid(json);
        test_inception_score(json);
        test_precision_recall(json);
    }
    free(json);
    test_inputs();
    test_cli();
}
