// The metrics of ADM's evaluator (openai/guided-diffusion evaluations/evaluator.py), see docs/eval.md:
// streaming float64 moments (np.mean, np.cov), the Frechet distance through symmetric eigendecompositions
// (LAPACK dsyevd from OpenBLAS) instead of scipy.linalg.sqrtm, the Inception Score over 5000-sample splits,
// and ManifoldEstimator's k-NN precision/recall with its float16 distance blocks.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/error.h"
#include "eval/metrics.h"
#include "base/threads.h"

// LAPACK (Fortran ABI, as exported by OpenBLAS): symmetric eigenvalues (and vectors), divide and conquer.
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
             const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_len, size_t uplo_len);

// ---- moments -------------------------------------------------------------------------------------------

#define MOMENTS_CHUNK 256   // rows gathered before one dsyrk

struct dit_moments {
    int dim;
    int64_t count;
    double *shift;    // the first row: sums are taken of x - shift, so cov = E[dd^T] - E[d]E[d]^T cancels little
    double *sum;      // (dim)
    double *outer;    // (dim, dim), upper triangle (row-major) of sum (x - shift)(x - shift)^T
    double *chunk;    // (MOMENTS_CHUNK, dim)
    int pending;
};

dit_moments *dit_moments_create(int dim) {
    DIT_CHECK(dim > 0);
    dit_moments *a = dit_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->dim = dim;
    a->shift = dit_calloc((size_t)dim, sizeof *a->shift);
    a->sum = dit_calloc((size_t)dim, sizeof *a->sum);
    a->outer = dit_calloc((size_t)dim * dim, sizeof *a->outer);
    a->chunk = dit_malloc((size_t)MOMENTS_CHUNK * dim * sizeof *a->chunk);
    if (!a->shift || !a->sum || !a->outer || !a->chunk) {
        dit_moments_free(a);
        return NULL;
    }
    return a;
}

void dit_moments_free(dit_moments *a) {
    if (!a) return;
    free(a->shift);
    free(a->sum);
    free(a->outer);
    free(a->chunk);
    free(a);
}

int64_t dit_moments_count(const dit_moments *a) { return a->count; }

static void moments_flush(dit_moments *a) {
    if (!a->pending) return;
    const int d = a->dim;
    for (int r = 0; r < a->pending; r++)
        for (int j = 0; j < d; j++) a->sum[j] += a->chunk[(size_t)r * d + j];
    // outer += chunk^T chunk  (chunk: pending x d, row-major)
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, a->pending, 1.0, a->chunk, d, 1.0, a->outer, d);
    a->pending = 0;
}

void dit_moments_add(dit_moments *a, const float *rows, int count) {
    const int d = a->dim;
    for (int r = 0; r < count; r++) {
        const float *x = rows + (size_t)r * d;
        if (a->count == 0)
            for (int j = 0; j < d; j++) a->shift[j] = x[j];
        double *dst = a->chunk + (size_t)a->pending * d;
        for (int j = 0; j < d; j++) dst[j] = (double)x[j] - a->shift[j];
        a->count++;
        if (++a->pending == MOMENTS_CHUNK) moments_flush(a);
    }
}

dit_status dit_moments_finish(dit_moments *a, double *mu, double *sigma) {
    if (a->count < 2)
        return dit_set_error("%lld feature vector%s: a covariance needs at least 2 samples", (long long)a->count,
                             a->count == 1 ? "" : "s");
    moments_flush(a);
    const int d = a->dim;
    const double n = (double)a->count;
    for (int j = 0; j < d; j++) mu[j] = a->shift[j] + a->sum[j] / n;
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) {
            // sum (x_i - m_i)(x_j - m_j) = sum d_i d_j - S_i S_j / n   (d = x - shift, S = sum d)
            const double c = (a->outer[(size_t)i * d + j] - a->sum[i] * a->sum[j] / n) / (n - 1.0);
            sigma[(size_t)i * d + j] = sigma[(size_t)j * d + i] = c;
        }
    return DIT_OK;
}

// ---- Frechet distance ----------------------------------------------------------------------------------

// Eigen-decomposition of the symmetric a (n x n, overwritten by the eigenvectors when vectors != 0).
static dit_status symmetric_eigen(double *a, double *w, int n, int vectors) {
    const char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int lwork = -1, liwork = -1, info = 0, iwork_query = 0;
    double work_query = 0.0;
    dsyevd_(&jobz, &uplo, &n, a, &n, w, &work_query, &lwork, &iwork_query, &liwork, &info, 1, 1);
    if (info != 0) return dit_set_error("LAPACK dsyevd workspace query failed (info %d)", info);
    lwork = (int)work_query;
    liwork = iwork_query;
    double *work = dit_malloc((size_t)(lwork > 1 ? lwork : 1) * sizeof *work);
    int *iwork = work ? dit_malloc((size_t)(liwork > 1 ? liwork : 1) * sizeof *iwork) : NULL;
    if (!iwork) {
        free(work);
        return DIT_ERR;
    }
    dsyevd_(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(iwork);
    if (info != 0) return dit_set_error("LAPACK dsyevd did not converge on a %dx%d covariance (info %d)", n, n, info);
    return DIT_OK;
}

void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);

// Cholesky s1 = L L^T (positive definite s1, the usual case): s1 s2 = L (L^T s2 L) L^-1 is similar to the
// symmetric positive semi-definite L^T s2 L, so one eigenvalue-only decomposition gives the trace.
// Returns 0 (nothing computed) when s1 is not numerically positive definite; 1 with *status set otherwise
// (DIT_ERR when out of memory).
static int trace_sqrt_cholesky(const double *sigma1, const double *sigma2, int n, double *trace, dit_status *status) {
    const size_t nn = (size_t)n * n;
    double *l = dit_malloc(nn * sizeof *l);
    if (!l) {
        *status = DIT_ERR;
        return 1;
    }
    memcpy(l, sigma1, nn * sizeof *l);
    const char uplo = 'L';
    int info = 0;
    dpotrf_(&uplo, &n, l, &n, &info, 1);
    if (info != 0) {
        free(l);
        return 0;
    }
    double *m = dit_malloc(nn * sizeof *m), *w = m ? dit_malloc((size_t)n * sizeof *w) : NULL;
    if (!w) {
        free(l);
        free(m);
        *status = DIT_ERR;
        return 1;
    }
    memcpy(m, sigma2, nn * sizeof *m);
    // column-major: m = s2 L, then m = L^T m (dtrmm reads only L's lower triangle)
    cblas_dtrmm(CblasColMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, n, n, 1.0, l, n, m, n);
    cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, n, 1.0, l, n, m, n);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const double v = 0.5 * (m[(size_t)i * n + j] + m[(size_t)j * n + i]);
            m[(size_t)i * n + j] = m[(size_t)j * n + i] = v;
        }
    *status = symmetric_eigen(m, w, n, 0);
    if (*status == DIT_OK) {
        double sum = 0.0;
        for (int j = 0; j < n; j++) sum += w[j] > 0.0 ? sqrt(w[j]) : 0.0;
        *trace = sum;
    }
    free(l);
    free(m);
    free(w);
    return 1;
}

// tr((s1 s2)^1/2): s1 s2 is similar to R s2 R with R = s1^1/2 (R^-1 (R R s2) R = R s2 R when R is invertible,
// and by continuity otherwise), which is symmetric positive semi-definite, so the eigenvalues of s1 s2 are
// real and >= 0 and the principal square root's trace is the sum of their square roots.
static dit_status trace_sqrt_product(const double *sigma1, const double *sigma2, int n, double *trace) {
    dit_status cholesky_status;
    if (trace_sqrt_cholesky(sigma1, sigma2, n, trace, &cholesky_status)) return cholesky_status;
    const size_t nn = (size_t)n * n;
    double *v = dit_malloc(nn * sizeof *v), *w = v ? dit_malloc((size_t)n * sizeof *w) : NULL;
    double *r = w ? dit_malloc(nn * sizeof *r) : NULL, *t = r ? dit_malloc(nn * sizeof *t) : NULL;
    dit_status status = t ? DIT_OK : DIT_ERR;
    if (status == DIT_OK) {
        memcpy(v, sigma1, nn * sizeof *v);
        status = symmetric_eigen(v, w, n, 1);
    }
    if (status == DIT_OK) {
        // Column-major eigenvectors: column j of v is eigenvector j. B = V diag(max(w, 0)^1/4), R = B B^T.
        for (int j = 0; j < n; j++) {
            const double s = sqrt(sqrt(w[j] > 0.0 ? w[j] : 0.0));
            for (int i = 0; i < n; i++) v[(size_t)j * n + i] *= s;
        }
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0, v, n, v, n, 0.0, r, n);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, r, n, sigma2, n, 0.0, t, n);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, t, n, r, n, 0.0, v, n);
        for (int i = 0; i < n; i++)   // symmetrize away the rounding
            for (int j = i + 1; j < n; j++) {
                const double m = 0.5 * (v[(size_t)i * n + j] + v[(size_t)j * n + i]);
                v[(size_t)i * n + j] = v[(size_t)j * n + i] = m;
            }
        status = symmetric_eigen(v, w, n, 0);
    }
    if (status == DIT_OK) {
        double sum = 0.0;
        for (int j = 0; j < n; j++) sum += w[j] > 0.0 ? sqrt(w[j]) : 0.0;   // tiny negatives are rounding
        *trace = sum;
    }
    free(v);
    free(w);
    free(r);
    free(t);
    return status;
}

dit_status dit_frechet_distance(const double *mu1, const double *sigma1, const double *mu2, const double *sigma2,
                                int dim, double *distance) {
    if (dim < 1) return dit_set_error("Frechet distance: dimension %d, expected at least 1", dim);
    const size_t nn = (size_t)dim * dim;
    for (size_t i = 0; i < nn; i++)
        if (!isfinite(sigma1[i]) || !isfinite(sigma2[i]))
            return dit_set_error("Frechet distance: covariance element %zu is not finite", i);
    double diff = 0.0, trace1 = 0.0, trace2 = 0.0;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(mu1[i]) || !isfinite(mu2[i])) return dit_set_error("Frechet distance: mean %d is not finite", i);
        diff += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
        trace1 += sigma1[(size_t)i * dim + i];
        trace2 += sigma2[(size_t)i * dim + i];
    }
    double trace_sqrt;
    if (trace_sqrt_product(sigma1, sigma2, dim, &trace_sqrt) != DIT_OK) return DIT_ERR;
    *distance = diff + trace1 + trace2 - 2.0 * trace_sqrt;
    return DIT_OK;
}

// ---- Inception Score -----------------------------------------------------------------------------------

struct dit_inception_score {
    int classes, split_size;
    int in_split;          // samples in the open split
    double *sum_p;         // (classes): sum of p(y|x) over the open split
    double sum_p_log_p;    // sum over the open split of sum_y p log p
    double *scores;        // closed splits' exp(KL)
    int num_scores, cap_scores;
    double *prob;          // (classes) scratch
};

dit_inception_score *dit_inception_score_create(int classes, int split_size) {
    DIT_CHECK(classes > 0 && split_size > 0);
    dit_inception_score *s = dit_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->classes = classes;
    s->split_size = split_size;
    s->sum_p = dit_calloc((size_t)classes, sizeof *s->sum_p);
    s->prob = dit_malloc((size_t)classes * sizeof *s->prob);
    if (!s->sum_p || !s->prob) {
        dit_inception_score_free(s);
        return NULL;
    }
    return s;
}

void dit_inception_score_free(dit_inception_score *s) {
    if (!s) return;
    free(s->sum_p);
    free(s->prob);
    free(s->scores);
    free(s);
}

// mean_x KL(p(y|x) || p(y)) = mean_x sum_y p log p - sum_y pbar log pbar, pbar = the split's mean p(y|x).
static dit_status close_split(dit_inception_score *s) {
    const double n = (double)s->in_split;
    double cross = 0.0;
    for (int c = 0; c < s->classes; c++) {
        const double pbar = s->sum_p[c] / n;
        if (pbar > 0.0) cross += pbar * log(pbar);
    }
    if (s->num_scores == s->cap_scores) {   // the split stays open (and can close again) when this fails
        const int cap = s->cap_scores ? 2 * s->cap_scores : 16;
        double *grown = dit_realloc(s->scores, (size_t)cap * sizeof *s->scores);
        if (!grown) return DIT_ERR;
        s->scores = grown;
        s->cap_scores = cap;
    }
    s->scores[s->num_scores++] = exp(s->sum_p_log_p / n - cross);
    memset(s->sum_p, 0, (size_t)s->classes * sizeof *s->sum_p);
    s->sum_p_log_p = 0.0;
    s->in_split = 0;
    return DIT_OK;
}

dit_status dit_inception_score_add(dit_inception_score *s, const float *logits, int count) {
    const int K = s->classes;
    for (int r = 0; r < count; r++) {
        const float *l = logits + (size_t)r * K;
        double mx = l[0], z = 0.0;
        for (int c = 1; c < K; c++) mx = l[c] > mx ? l[c] : mx;
        for (int c = 0; c < K; c++) z += (s->prob[c] = exp((double)l[c] - mx));
        double plogp = 0.0;
        for (int c = 0; c < K; c++) {
            const double p = s->prob[c] / z;
            s->sum_p[c] += p;
            if (p > 0.0) plogp += p * log(p);
        }
        s->sum_p_log_p += plogp;
        if (++s->in_split == s->split_size) DIT_TRY(close_split(s));
    }
    return DIT_OK;
}

dit_status dit_inception_score_finish(dit_inception_score *s, double *mean, double *std, int *splits) {
    if (s->in_split > 0) DIT_TRY(close_split(s));
    if (s->num_scores == 0) return dit_set_error("Inception Score: no samples");
    double m = 0.0, v = 0.0;
    for (int i = 0; i < s->num_scores; i++) m += s->scores[i];
    m /= s->num_scores;
    for (int i = 0; i < s->num_scores; i++) v += (s->scores[i] - m) * (s->scores[i] - m);
    *mean = m;
    if (std) *std = sqrt(v / s->num_scores);
    if (splits) *splits = s->num_scores;
    return DIT_OK;
}

// ---- precision and recall ------------------------------------------------------------------------------

float eval_round_half(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = x & 0x80000000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return f;                       // inf, nan
    if (ax >= 0x477ff000u) return sign ? -INFINITY : INFINITY;   // >= 65520 rounds past 65504
    if (ax < 0x38800000u) {                                // below 2^-14: binary16 subnormals, step 2^-24
        const float r = rintf(fabsf(f) * 16777216.0f) / 16777216.0f;
        return sign ? -r : r;
    }
    const uint32_t lsb = (ax >> 13) & 1u;                  // keep 10 of 23 mantissa bits, ties to even
    uint32_t y = ((ax + 0xfffu + lsb) & ~0x1fffu) | sign;
    float out;
    memcpy(&out, &y, sizeof out);
    return out;
}

void eval_distance_block(float *d, const float *u, const float *norm_u, int rows, const float *v,
                         const float *norm_v, int cols, int dim, int fp16) {
    // d = u v^T first (float32 accumulation, as TF's half matmul on GPU), then the norms
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, dim, 1.0f, u, dim, v, dim, 0.0f, d, cols);
    for (int i = 0; i < rows; i++) {
        float *row = d + (size_t)i * cols;
        if (fp16) {
            for (int j = 0; j < cols; j++) {
                const float two_uv = 2.0f * eval_round_half(row[j]);   // exact in binary16 (the block is checked)
                const float t = eval_round_half(eval_round_half(norm_u[i] - two_uv) + norm_v[j]);
                row[j] = t > 0.0f ? t : 0.0f;
            }
        } else {
            for (int j = 0; j < cols; j++) {
                const float t = norm_u[i] - 2.0f * row[j] + norm_v[j];
                row[j] = t > 0.0f ? t : 0.0f;
            }
        }
    }
}

// Tiles: ROW_TILE x COL_TILE distances per thread; both divide ADM_DISTANCE_BLOCK, so a tile never straddles
// two of ADM's blocks and can take that block's float16/float32 decision.
#define ROW_TILE 200
#define COL_TILE 2000

typedef struct {
    const float *x;        // features (count, dim), float32
    float *x16;            // the same rounded to binary16 (NULL without fp16)
    float *norm32, *norm16;
    float *block_max16;    // per ADM block: the largest binary16 squared norm (inf when one overflowed)
    int64_t count;
    int dim;
} feature_set;

static void feature_set_free(feature_set *f);

// On failure (out of memory) f holds nothing.
static dit_status feature_set_init(feature_set *f, const float *x, int64_t count, int dim, int fp16) {
    memset(f, 0, sizeof *f);
    f->x = x, f->count = count, f->dim = dim;
    f->norm32 = dit_malloc((size_t)count * sizeof *f->norm32);
    if (!f->norm32) return DIT_ERR;
    if (fp16) {
        f->x16 = dit_malloc((size_t)count * dim * sizeof *f->x16);
        f->norm16 = dit_malloc((size_t)count * sizeof *f->norm16);
        const int64_t blocks = (count + ADM_DISTANCE_BLOCK - 1) / ADM_DISTANCE_BLOCK;
        f->block_max16 = dit_calloc((size_t)(blocks ? blocks : 1), sizeof *f->block_max16);
        if (!f->x16 || !f->norm16 || !f->block_max16) {
            feature_set_free(f);
            return DIT_ERR;
        }
    }
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        const float *row = x + (size_t)i * dim;
        float s32 = 0.0f, s16 = 0.0f;
        for (int j = 0; j < dim; j++) s32 += row[j] * row[j];
        f->norm32[i] = s32;
        if (fp16) {
            float *r16 = f->x16 + (size_t)i * dim;
            for (int j = 0; j < dim; j++) {
                r16[j] = eval_round_half(row[j]);
                s16 += eval_round_half(r16[j] * r16[j]);   // tf.square in half, then the reduction
            }
            f->norm16[i] = eval_round_half(s16);
        }
    }
    if (fp16)
        for (int64_t i = 0; i < count; i++) {
            float *m = &f->block_max16[i / ADM_DISTANCE_BLOCK];
            if (!(f->norm16[i] <= *m)) *m = f->norm16[i];   // also takes inf/nan
        }
    return DIT_OK;
}

static void feature_set_free(feature_set *f) {
    free(f->x16);
    free(f->norm32);
    free(f->norm16);
    free(f->block_max16);
    memset(f, 0, sizeof *f);
}

// ADM keeps a float16 block when every distance in it is finite. |u.v| <= |u||v|, so the block is surely finite
// when |u|^2 + |v|^2 + 2|u||v| stays below binary16's range (with a margin for rounding); otherwise we take
// float32 (docs/eval.md: ADM might still have kept float16 in a block this bound rejects).
static int block_uses_fp16(const feature_set *a, int64_t row, const feature_set *b, int64_t col) {
    if (!a->x16) return 0;
    const double nu = a->block_max16[row / ADM_DISTANCE_BLOCK], nv = b->block_max16[col / ADM_DISTANCE_BLOCK];
    if (!isfinite(nu) || !isfinite(nv)) return 0;
    return nu + nv + 2.0 * sqrt(nu * nv) < 60000.0;
}

static void tile_distances(float *d, const feature_set *a, int64_t r0, int rows, const feature_set *b, int64_t c0,
                           int cols) {
    const int fp16 = block_uses_fp16(a, r0, b, c0);
    const size_t dim = (size_t)a->dim;
    if (fp16)
        eval_distance_block(d, a->x16 + r0 * dim, a->norm16 + r0, rows, b->x16 + c0 * dim, b->norm16 + c0, cols,
                            a->dim, 1);
    else
        eval_distance_block(d, a->x + r0 * dim, a->norm32 + r0, rows, b->x + c0 * dim, b->norm32 + c0, cols, a->dim,
                            0);
}

static int thread_index(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// radius[i] = the (k+1)-th smallest distance from i over the set, i itself included (ADM: np.partition, then
// column k of the partitioned row).
static dit_status radii_of(float *radii, const feature_set *f, int k) {
    const int64_t tiles = (f->count + ROW_TILE - 1) / ROW_TILE;
    const int keep = k + 1;
    float *dist = dit_malloc((size_t)dit_max_threads() * ROW_TILE * COL_TILE * sizeof *dist);
    float *best = dist ? dit_malloc((size_t)dit_max_threads() * ROW_TILE * keep * sizeof *best) : NULL;
    if (!best) {
        free(dist);
        return DIT_ERR;
    }
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < tiles; t++) {
        float *d = dist + (size_t)thread_index() * ROW_TILE * COL_TILE;
        float *top = best + (size_t)thread_index() * ROW_TILE * keep;
        const int64_t r0 = t * ROW_TILE;
        const int rows = (int)(f->count - r0 < ROW_TILE ? f->count - r0 : ROW_TILE);
        for (int i = 0; i < rows * keep; i++) top[i] = INFINITY;
        for (int64_t c0 = 0; c0 < f->count; c0 += COL_TILE) {
            const int cols = (int)(f->count - c0 < COL_TILE ? f->count - c0 : COL_TILE);
            tile_distances(d, f, r0, rows, f, c0, cols);
            for (int i = 0; i < rows; i++) {
                float *s = top + (size_t)i * keep;   // ascending
                const float *row = d + (size_t)i * cols;
                for (int j = 0; j < cols; j++) {
                    float v = row[j];
                    if (!(v < s[keep - 1])) continue;
                    int p = keep - 1;
                    while (p > 0 && s[p - 1] > v) s[p] = s[p - 1], p--;
                    s[p] = v;
                }
            }
        }
        for (int i = 0; i < rows; i++) radii[r0 + i] = top[(size_t)i * keep + k];
    }
    free(dist);
    free(best);
    return DIT_OK;
}

static dit_status check_features(const char *what, const float *x, int64_t count, int dim, int k) {
    if (dim < 1) return dit_set_error("%s: feature dimension %d, expected at least 1", what, dim);
    if (count < k + 1)
        return dit_set_error("%s: %lld feature vectors, the %d-nearest-neighbour radii need at least %d", what,
                             (long long)count, k, k + 1);
    for (int64_t i = 0; i < count * dim; i++)
        if (!isfinite(x[i])) return dit_set_error("%s: feature %lld is not finite", what, (long long)(i / dim));
    return DIT_OK;
}

dit_status dit_manifold_radii(float *radii, const float *features, int64_t count, int dim, int k, int fp16) {
    if (k < 1) return dit_set_error("manifold radii: k = %d, expected at least 1", k);
    if (check_features("manifold radii", features, count, dim, k) != DIT_OK) return DIT_ERR;
    feature_set f;
    DIT_TRY(feature_set_init(&f, features, count, dim, fp16));
    const dit_status status = radii_of(radii, &f, k);
    feature_set_free(&f);
    return status;
}

dit_status dit_precision_recall(const float *ref, int64_t n_ref, const float *samples, int64_t n_samples, int dim,
                                int k, int fp16, double *precision, double *recall) {
    if (k < 1) return dit_set_error("precision/recall: k = %d, expected at least 1", k);
    if (check_features("precision/recall (reference)", ref, n_ref, dim, k) != DIT_OK ||
        check_features("precision/recall (samples)", samples, n_samples, dim, k) != DIT_OK)
        return DIT_ERR;
    feature_set a, b;
    memset(&b, 0, sizeof b);
    const int threads = dit_max_threads();
    float *radii_a = NULL, *radii_b = NULL, *dist = NULL;
    unsigned char *ref_in = NULL, *sample_in = NULL;
    dit_status status = feature_set_init(&a, ref, n_ref, dim, fp16);
    if (status == DIT_OK) status = feature_set_init(&b, samples, n_samples, dim, fp16);
    if (status == DIT_OK) {
        radii_a = dit_malloc((size_t)n_ref * sizeof *radii_a);
        radii_b = dit_malloc((size_t)n_samples * sizeof *radii_b);
        ref_in = dit_calloc((size_t)n_ref, 1);
        sample_in = dit_calloc((size_t)threads * n_samples, 1);   // one row of flags per thread
        dist = dit_malloc((size_t)threads * ROW_TILE * COL_TILE * sizeof *dist);
        if (!radii_a || !radii_b || !ref_in || !sample_in || !dist) status = DIT_ERR;
    }
    if (status == DIT_OK) status = radii_of(radii_a, &a, k);
    if (status == DIT_OK) status = radii_of(radii_b, &b, k);
    if (status != DIT_OK) goto done;

    // Rows are the reference (ADM's features_1), columns the samples, as evaluate_pr lays out its blocks.
    const int64_t tiles = (n_ref + ROW_TILE - 1) / ROW_TILE;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < tiles; t++) {
        float *d = dist + (size_t)thread_index() * ROW_TILE * COL_TILE;
        unsigned char *mine = sample_in + (size_t)thread_index() * n_samples;
        const int64_t r0 = t * ROW_TILE;
        const int rows = (int)(n_ref - r0 < ROW_TILE ? n_ref - r0 : ROW_TILE);
        for (int64_t c0 = 0; c0 < n_samples; c0 += COL_TILE) {
            const int cols = (int)(n_samples - c0 < COL_TILE ? n_samples - c0 : COL_TILE);
            tile_distances(d, &a, r0, rows, &b, c0, cols);
            for (int i = 0; i < rows; i++) {
                const float *row = d + (size_t)i * cols;
                const float ra = radii_a[r0 + i];
                for (int j = 0; j < cols; j++) {
                    if (row[j] <= radii_b[c0 + j]) ref_in[r0 + i] = 1;   // recall: ref inside a sample ball
                    if (row[j] <= ra) mine[c0 + j] = 1;                   // precision: sample inside a ref ball
                }
            }
        }
    }
    int64_t inside_ref = 0, inside_samples = 0;
    for (int64_t i = 0; i < n_ref; i++) inside_ref += ref_in[i];
    for (int64_t j = 0; j < n_samples; j++) {
        int any = 0;
        for (int t = 0; t < threads && !any; t++) any = sample_in[(size_t)t * n_samples + j];
        inside_samples += any;
    }
    *precision = (double)inside_samples / (double)n_samples;
    *recall = (double)inside_ref / (double)n_ref;
done:
    free(ref_in);
    free(sample_in);
    free(dist);
    free(radii_a);
    free(radii_b);
    feature_set_free(&a);
    feature_set_free(&b);
    return status;
}
