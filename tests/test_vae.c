// The autoencoder: conv/GroupNorm/upsample/attention kernels against naive loops, the network against
// tests/ref/vae_ref.py goldens (reduced width end to end, one resnet and the attention at full SD width),
// every checkpoint layout onto identical parameters, tiled decoding, PNG/JPEG decoding and the ADM center
// crop against PIL, and clear errors for bad inputs. Goldens: tests/golden/vae (make_vae_golden.py).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit_vae.h"
#include "io/image.h"
#include "io/tensors.h"
#include "models/vae.h"
#include "ops/conv.h"
#include "test.h"

static uint32_t rng_state = 2024;
static float *random_floats(size_t n) { return test_random_floats(&rng_state, n, 1.0f); }

static float *read_floats(const char *path, int64_t *count, int64_t shape[4]) {
    npy_array a;
    if (npy_read(path, &a) != DIT_OK) {
        printf("     cannot read %s: %s\n", path, dit_last_error());
        return NULL;
    }
    tensor_view view = {.dtype = a.dtype, .ndim = a.ndim, .data = a.data, .nbytes = a.nbytes};
    memcpy(view.shape, a.shape, sizeof view.shape);
    *count = tensor_numel(&view);
    if (shape) memcpy(shape, a.shape, 4 * sizeof *shape);
    float *out = malloc((size_t)*count * sizeof *out + 1);
    tensor_to_f32(&view, out);
    npy_free(&a);
    return out;
}
static float *golden_floats(const char *name, int64_t *count, int64_t shape[4]) {
    return read_floats(golden_path(name), count, shape);
}

// ---- kernels vs naive loops ----------------------------------------------------------------------

static void naive_conv(float *out, const float *x, const float *w, const float *b, int B, int Cin, int H, int W,
                       int Cout, int KH, int KW, int s, int pt, int pl, int pb, int pr) {
    const int OH = conv2d_out_size(H, KH, s, pt, pb), OW = conv2d_out_size(W, KW, s, pl, pr);
    for (int n = 0; n < B; n++)
        for (int co = 0; co < Cout; co++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    double acc = b ? b[co] : 0.0;
                    for (int ci = 0; ci < Cin; ci++)
                        for (int ky = 0; ky < KH; ky++)
                            for (int kx = 0; kx < KW; kx++) {
                                int iy = oy * s - pt + ky, ix = ox * s - pl + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += (double)x[((n * Cin + ci) * H + iy) * W + ix] * w[((co * Cin + ci) * KH + ky) * KW + kx];
                            }
                    out[((n * Cout + co) * OH + oy) * OW + ox] = (float)acc;
                }
}

static void test_conv(void) {
    static const struct { int B, Cin, H, W, Cout, KH, KW, s, pt, pl, pb, pr; const char *what; } cases[] = {
        {2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1, "3x3 pad 1, odd sizes"},
        {1, 4, 8, 7, 6, 3, 3, 2, 0, 0, 1, 1, "3x3 stride 2, asymmetric pad (0, 1, 0, 1) (the encoder's downsample)"},
        {2, 2, 9, 11, 3, 2, 3, 3, 2, 0, 1, 2, "2x3 stride 3, pads t2 l0 b1 r2"},
        {2, 5, 6, 5, 7, 1, 1, 1, 0, 0, 0, 0, "1x1 (one sgemm)"},
        {1, 3, 5, 4, 2, 3, 3, 1, 2, 3, 0, 1, "3x3, pads wider than the kernel reach on one side"},
        {2, 35, 5, 37, 11, 3, 3, 1, 1, 1, 1, 1, "3x3 pad 1, rows of 37 (two full vectors and a partial one), 35 channels"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int B = cases[c].B, Cin = cases[c].Cin, H = cases[c].H, W = cases[c].W, Cout = cases[c].Cout;
        const int KH = cases[c].KH, KW = cases[c].KW, s = cases[c].s;
        const int OH = conv2d_out_size(H, KH, s, cases[c].pt, cases[c].pb), OW = conv2d_out_size(W, KW, s, cases[c].pl, cases[c].pr);
        const size_t on = (size_t)B * Cout * OH * OW;
        float *x = random_floats((size_t)B * Cin * H * W), *w = random_floats((size_t)Cout * Cin * KH * KW);
        float *b = random_floats(Cout), *got = malloc(on * sizeof *got), *want = malloc(on * sizeof *want);
        naive_conv(want, x, w, b, B, Cin, H, W, Cout, KH, KW, s, cases[c].pt, cases[c].pl, cases[c].pb, cases[c].pr);
        conv2d_forward(got, x, w, b, B, Cin, H, W, Cout, KH, KW, s, cases[c].pt, cases[c].pl, cases[c].pb, cases[c].pr);
        char what[256];
        // 1e-5: float32 sums of at most 315 products of values in [-1, 1], reassociated by sgemm
        snprintf(what, sizeof what, "conv2d %s vs naive", cases[c].what);
        CHECK_CLOSE(what, got, want, on, 1e-5, 1e-5);
        // A budget of one output row per band: many bands, same result.
        conv2d_forward_budget(got, x, w, b, B, Cin, H, W, Cout, KH, KW, s, cases[c].pt, cases[c].pl, cases[c].pb,
                              cases[c].pr, (int64_t)Cin * KH * KW * OW);
        snprintf(what, sizeof what, "conv2d %s, one row per im2col band, vs naive", cases[c].what);
        CHECK_CLOSE(what, got, want, on, 1e-5, 1e-5);
        free(x); free(w); free(b); free(got); free(want);
    }
}

static void test_groupnorm(void) {
    const int B = 2, C = 12, T = 10, G = 4;
    float *x = random_floats(B * C * T), *gamma = random_floats(C), *beta = random_floats(C);
    float *got = malloc(B * C * T * sizeof *got), *want = malloc(B * C * T * sizeof *want);
    for (int i = 0; i < B * C * T; i++) x[i] = 4.0f * x[i] + 2.5f;   // offset mean, larger spread
    for (int silu = 0; silu <= 1; silu++) {
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) {
                const float *xg = x + (b * C + g * (C / G)) * T;
                double mu = 0, var = 0;
                for (int i = 0; i < C / G * T; i++) mu += xg[i];
                mu /= C / G * T;
                for (int i = 0; i < C / G * T; i++) var += (xg[i] - mu) * (xg[i] - mu);
                var /= C / G * T;
                for (int c = g * (C / G); c < (g + 1) * (C / G); c++)
                    for (int t = 0; t < T; t++) {
                        double y = (x[(b * C + c) * T + t] - mu) / sqrt(var + 1e-6) * gamma[c] + beta[c];
                        want[(b * C + c) * T + t] = (float)(silu ? y / (1.0 + exp(-y)) : y);
                    }
            }
        groupnorm_forward(got, x, gamma, beta, B, C, T, G, 1e-6f, silu);
        // 1e-5: one float32 multiply-add per element after float64 statistics (+ fast_expf, rel 2e-7)
        CHECK_CLOSE(silu ? "groupnorm_forward + SiLU (2, 12, 10), 4 groups vs naive"
                         : "groupnorm_forward (2, 12, 10), 4 groups vs naive", got, want, B * C * T, 1e-5, 1e-5);
    }
    free(x); free(gamma); free(beta); free(got); free(want);
}

static void test_upsample(void) {
    const int N = 3, H = 3, W = 5;
    float *x = random_floats(N * H * W), *got = malloc(N * 4 * H * W * sizeof *got), *want = malloc(N * 4 * H * W * sizeof *want);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++) want[(n * 2 * H + i) * 2 * W + j] = x[(n * H + i / 2) * W + j / 2];
    upsample_nearest2x_forward(got, x, N, H, W);
    CHECK_CLOSE("upsample_nearest2x_forward (3, 3, 5) vs naive (exact)", got, want, N * 4 * H * W, 0, 0);
    free(x); free(got); free(want);
}

static void test_spatial_attention(void) {
    const int C = 8, T = 150;   // three query blocks, the last one partial
    float *q = random_floats(C * T), *k = random_floats(C * T), *v = random_floats(C * T);
    float *got = malloc(C * T * sizeof *got), *want = malloc(C * T * sizeof *want);
    double *p = malloc(T * sizeof *p);
    for (int t = 0; t < T; t++) {
        double mx = -1e300, sum = 0;
        for (int s = 0; s < T; s++) {
            double d = 0;
            for (int c = 0; c < C; c++) d += (double)q[c * T + t] * k[c * T + s];
            p[s] = d / sqrt((double)C);
            mx = p[s] > mx ? p[s] : mx;
        }
        for (int s = 0; s < T; s++) sum += p[s] = exp(p[s] - mx);
        for (int c = 0; c < C; c++) {
            double o = 0;
            for (int s = 0; s < T; s++) o += p[s] / sum * v[c * T + s];
            want[c * T + t] = (float)o;
        }
    }
    float *scratch = malloc((size_t)spatial_attention_scratch_floats(T, 64) * sizeof *scratch);
    spatial_attention_forward(got, q, k, v, scratch, C, T);
    // 1e-5: float32 scores and softmax over 150 keys (fast_expf rel 2e-7), sgemm reassociation
    CHECK_CLOSE("spatial_attention_forward C=8, T=150 (query blocks of 64) vs naive", got, want, C * T, 1e-5, 1e-5);
    free(q); free(k); free(v); free(got); free(want); free(p); free(scratch);
}

// ---- the network vs the PyTorch reference --------------------------------------------------------

static void small_config(dit_vae_config *c) {
    dit_vae_config_sd(c);
    c->block_out[0] = c->block_out[1] = 32;
    c->block_out[2] = c->block_out[3] = 64;
}

static void layout_config(dit_vae_config *c) {
    dit_vae_config_sd(c);
    c->num_levels = 3;
    c->block_out[0] = c->block_out[1] = 4;
    c->block_out[2] = 8;
    c->layers_per_block = 1;
    c->norm_groups = 2;
}

static void test_table_order(void) {
    dit_vae_config c;
    small_config(&c);
    dit_vae *v = dit_vae_synthetic(&c, 3);
    FILE *f = fopen(golden_path("vae/small_names.txt"), "r");
    int same = f != NULL, i = 0;
    char line[256];
    while (same && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        const char *name;
        same = dit_vae_param(v, i++, &name, NULL, NULL) && !strcmp(name, line);
        if (!same) printf("     entry %d: golden %s, table %s\n", i - 1, line, i - 1 < dit_vae_num_params(v) ? name : "(none)");
    }
    if (f) fclose(f);
    CHECK(same && i == dit_vae_num_params(v), "parameter table = the reference state_dict keys in order (%d entries)", i);
    dit_vae_config sd;
    dit_vae_config_sd(&sd);
    dit_vae *full = vae_create(&sd);
    // 83,653,863: diffusers' AutoencoderKL for sd-vae-ft-mse (the paper's "84M")
    CHECK(dit_vae_total_floats(full) == 83653863, "SD kl-f8 parameter count %zu = 83653863", dit_vae_total_floats(full));
    dit_vae_free(full);
    dit_vae_free(v);
}

// 2e-4 abs + 2e-4 rel: float32 vs the float64 reference through ~30 convs and GroupNorms; errors grow with
// depth (measured worst ~1e-5), GroupNorm re-normalises so they do not compound.
#define NET_ATOL 2e-4
#define NET_RTOL 2e-4

static void test_small_golden(void) {
    dit_vae_config c;
    small_config(&c);
    dit_vae *v = dit_vae_synthetic(&c, 3);
    int64_t nx, nm, nz, nd, sx[4], sz[4];
    float *x = golden_floats("vae/small_x.npy", &nx, sx), *mom = golden_floats("vae/small_moments.npy", &nm, NULL);
    float *z = golden_floats("vae/small_z.npy", &nz, sz), *dec = golden_floats("vae/small_decoded.npy", &nd, NULL);
    if (x && mom && z && dec) {
        float *got = malloc(nm * sizeof *got);
        CHECK(dit_vae_encode_moments(v, x, (int)sx[0], (int)sx[2], (int)sx[3], got) == DIT_OK, "encode (2, 3, 32, 48)");
        CHECK_CLOSE("encoder moments [mean | clamped logvar] (2, 8, 4, 6), reduced SD config, vs reference", got, mom, nm,
                    NET_ATOL, NET_RTOL);
        free(got);
        got = malloc(nd * sizeof *got);
        CHECK(dit_vae_decode(v, z, (int)sz[0], (int)sz[2], (int)sz[3], got) == DIT_OK, "decode (2, 4, 4, 6)");
        CHECK_CLOSE("decoder output (2, 3, 32, 48), reduced SD config, vs reference", got, dec, nd, NET_ATOL, NET_RTOL);
        // Tiled decoding: one tile covering everything is the plain decode, bit for bit.
        float *tiled = malloc(nd * sizeof *tiled);
        dit_vae_decode_tiled(v, z, (int)sz[0], (int)sz[2], (int)sz[3], 6, 2, tiled);
        CHECK_CLOSE("tiled decode with one tile = untiled", tiled, got, nd, 0, 0);
        free(tiled);
        free(got);
    }
    // Tiles of 4x4 latents overlapping by 2 on a (1, 4, 4, 12) latent: starts 0, 2, 4, 6, 8. Image columns
    // 0..15 come from tile 0 alone with weight 1, so they equal that tile decoded on its own.
    float *zl = random_floats(4 * 4 * 12), *full = malloc(3 * 32 * 96 * sizeof *full), *zt = malloc(4 * 16 * sizeof *zt);
    float *tile = malloc(3 * 32 * 32 * sizeof *tile);
    dit_vae_decode_tiled(v, zl, 1, 4, 12, 4, 2, full);
    for (int ch = 0; ch < 4; ch++)
        for (int i = 0; i < 4; i++) memcpy(zt + (ch * 4 + i) * 4, zl + (ch * 4 + i) * 12, 4 * sizeof *zt);
    dit_vae_decode(v, zt, 1, 4, 4, tile);
    double worst = 0;
    int finite = 1;
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 96; j++) {
                float g = full[(ch * 32 + i) * 96 + j];
                finite &= isfinite(g);
                if (j < 16) worst = fmax(worst, fabs(g - tile[(ch * 32 + i) * 32 + j]));
            }
    CHECK(finite && worst == 0, "tiled decode (tiles 4, overlap 2): finite, and columns only tile 0 covers equal "
          "tile 0 decoded alone (worst %.3g)", worst);
    free(zl); free(full); free(zt); free(tile);
    free(x); free(mom); free(z); free(dec);
    dit_vae_free(v);
}

// One block of the full SD width on its own weights: k = index in the block's own state_dict.
static void test_full_width_blocks(void) {
    static const char *const resnet_names[] = {"norm1.weight", "norm1.bias", "conv1.weight", "conv1.bias",
                                               "norm2.weight", "norm2.bias", "conv2.weight", "conv2.bias"};
    static const char *const attn_names[] = {"group_norm.weight", "group_norm.bias", "to_q.weight", "to_q.bias",
                                             "to_k.weight", "to_k.bias", "to_v.weight", "to_v.bias",
                                             "to_out.0.weight", "to_out.0.bias"};
    const int C = 512;
    float *bufs[10];
    for (int k = 0; k < 10; k++)   // big enough for either block's k-th tensor (3x3 conv weights: 9 C^2)
        bufs[k] = malloc((size_t)C * C * (k == 2 || k == 6 ? 9 : 1) * sizeof(float));
    vae_work work = {0};
    int64_t n, shape[4], n_want;
    // resnet
    for (int k = 0; k < 8; k++) {
        int64_t s[4] = {C, C, 3, 3};
        const int ndim = strstr(resnet_names[k], "conv") && strstr(resnet_names[k], "weight") ? 4 : 1;
        vae_fill_synthetic_tensor(bufs[k], resnet_names[k], ndim, s, (uint32_t)k, 5);
    }
    vae_resnet r = {C, C, bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5], bufs[6], bufs[7], NULL, NULL};
    float *x = golden_floats("vae/resnet512_x.npy", &n, shape), *want = golden_floats("vae/resnet512_out.npy", &n_want, NULL);
    if (x && want) {
        float *got = malloc(n * sizeof *got);
        vae_resnet_forward(got, x, &r, (int)shape[2], (int)shape[3], 32, &work);
        // 1e-4: float32 3x3 convs over 4608 inputs vs float64 (values of order 1)
        CHECK_CLOSE("ResnetBlock2D(512, 512) on (1, 512, 4, 4) vs reference", got, want, n, 1e-4, 1e-4);
        free(got);
    }
    free(x); free(want);
    // attention
    for (int k = 0; k < 10; k++) {
        int64_t s[4] = {C, C, 0, 0};
        vae_fill_synthetic_tensor(bufs[k], attn_names[k], k >= 2 && k % 2 == 0 ? 2 : 1, s, (uint32_t)k, 7);
    }
    vae_attention a = {C, bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5], bufs[6], bufs[7], bufs[8], bufs[9]};
    x = golden_floats("vae/attn512_x.npy", &n, shape);
    want = golden_floats("vae/attn512_out.npy", &n_want, NULL);
    if (x && want) {
        float *got = malloc(n * sizeof *got);
        vae_attention_forward(got, x, &a, (int)shape[2], (int)shape[3], 32, &work);
        // 1e-4: float32 projections over 512 channels and a softmax over 16 positions vs float64
        CHECK_CLOSE("mid-block Attention(512) on (1, 512, 4, 4) vs reference", got, want, n, 1e-4, 1e-4);
        free(got);
    }
    free(x); free(want);
    vae_work_free(&work);
    for (int k = 0; k < 10; k++) free(bufs[k]);
}

// ---- layouts -------------------------------------------------------------------------------------

static void test_layouts(void) {
    dit_vae_config c;
    layout_config(&c);
    dit_vae *want = dit_vae_synthetic(&c, 9);
    static const char *const files[] = {"vae/layout_diffusers.safetensors", "vae/layout_diffusers_old.safetensors",
                                        "vae/layout_compvis.ckpt", "vae/layout_compvis.safetensors"};
    dit_vae_load_options opts = {.norm_groups = 2};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        dit_vae *v = dit_vae_load(golden_path(files[i]), &opts);
        if (!CHECK(v != NULL, "load %s (%s)", files[i], v ? "ok" : dit_last_error())) continue;
        const dit_vae_config *got = dit_vae_get_config(v);
        int same = got->num_levels == 3 && got->block_out[0] == 4 && got->block_out[2] == 8 &&
                   got->layers_per_block == 1 && got->latent_channels == 4 && dit_vae_num_params(v) == dit_vae_num_params(want) &&
                   !memcmp(v->params, want->params, dit_vae_total_floats(want) * sizeof(float));
        CHECK(same, "%s: widths [4, 4, 8] inferred, %d tensors identical to the synthetic model", files[i],
              dit_vae_num_params(v));
        dit_vae_free(v);
    }
    // Without the groups option the widths are not multiples of the default 32 groups.
    dit_vae *v = dit_vae_load(golden_path(files[0]), NULL);
    CHECK(!v && strstr(dit_last_error(), "layout_diffusers.safetensors") && strstr(dit_last_error(), "GroupNorm"),
          "4-channel levels with the default 32 groups refused: %s", dit_last_error());
    dit_vae_free(v);

    // A file lacking one tensor, and one with a wrong shape: messages name the file and the tensor.
    tensor_file f;
    if (safetensors_read(golden_path(files[0]), &f) == DIT_OK) {
        tensor_out *outs = calloc(f.count, sizeof *outs);
        int count = 0, shrunk = 0;
        for (int i = 0; i < f.count; i++) {
            const tensor_view *t = &f.tensors[i];
            if (!strcmp(t->name, "decoder.up_blocks.1.upsamplers.0.conv.bias")) continue;
            outs[count] = (tensor_out){t->name, t->dtype, t->ndim, {0}, t->data};
            memcpy(outs[count].shape, t->shape, sizeof t->shape);
            count++;
        }
        const char *missing = scratch_path("vae_missing.safetensors");
        safetensors_write(missing, outs, count, NULL, NULL, 0);
        v = dit_vae_load(missing, &opts);
        CHECK(!v && strstr(dit_last_error(), "vae_missing.safetensors") &&
              strstr(dit_last_error(), "decoder.up_blocks.1.upsamplers.0.conv.bias"),
              "missing tensor named: %s", dit_last_error());
        dit_vae_free(v);
        for (int i = 0; i < count; i++)
            if (!strcmp(outs[i].name, "encoder.mid_block.attentions.0.to_k.weight")) {
                outs[i].shape[0] = 4;
                outs[i].shape[1] = 16;
                shrunk = 1;
            }
        const char *bad = scratch_path("vae_badshape.safetensors");
        safetensors_write(bad, outs, count, NULL, NULL, 0);
        v = dit_vae_load(bad, &opts);
        CHECK(shrunk && !v && strstr(dit_last_error(), "vae_badshape.safetensors") &&
              strstr(dit_last_error(), "to_k.weight has shape [4, 16], expected [8, 8]"),
              "wrong shape named: %s", dit_last_error());
        dit_vae_free(v);
        free(outs);
        tensor_file_free(&f);
    }
    v = dit_vae_load(golden_path("io/python.safetensors"), NULL);
    CHECK(!v && strstr(dit_last_error(), "no autoencoder weights"), "a non-VAE file refused: %s", dit_last_error());
    dit_vae_free(want);
}

// ---- images --------------------------------------------------------------------------------------

static uint8_t *golden_u8(const char *name, int64_t shape[3]) {
    npy_array a;
    if (npy_read(golden_path(name), &a) != DIT_OK || a.dtype != DT_U8 || a.ndim != 3) {
        printf("     cannot read %s as uint8 (H, W, 3)\n", name);
        if (a.data) npy_free(&a);
        return NULL;
    }
    memcpy(shape, a.shape, 3 * sizeof *shape);
    return a.data;   // owned by the caller
}

static int count_diffs(const uint8_t *a, const uint8_t *b, size_t n, int *worst) {
    int diffs = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        diffs += d != 0;
        *worst = d > *worst ? d : *worst;
    }
    return diffs;
}

static void test_images(void) {
    static const struct { const char *file; int sizes[2]; } cases[] = {
        {"tiny.png", {16, 0}}, {"gray.png", {16, 0}}, {"rgba.png", {16, 0}}, {"palette.png", {16, 0}},
        {"photo.jpg", {16, 40}}, {"gray.jpg", {16, 0}}, {"large.png", {64, 100}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128], stem[128], name[160];
        snprintf(path, sizeof path, "vae/img_%s", cases[i].file);
        snprintf(stem, sizeof stem, "vae/img_%s", cases[i].file);
        stem[strlen(stem) - 4] = '_';
        image_u8 im;
        if (!CHECK(image_read_rgb(golden_path(path), &im) == DIT_OK, "read %s", path)) continue;
        int64_t shape[3];
        int worst;
        snprintf(name, sizeof name, "%s_rgb.npy", stem);
        uint8_t *want = strcmp(cases[i].file, "large.png") ? golden_u8(name, shape) : NULL;
        if (want) {
            int ok = shape[0] == im.height && shape[1] == im.width;
            int diffs = ok ? count_diffs(im.pixels, want, (size_t)im.width * im.height * 3, &worst) : -1;
            CHECK(ok && diffs == 0, "%s decoded %dx%d RGB = PIL's convert(\"RGB\") (%d values differ)", path, im.width,
                  im.height, diffs);
            free(want);
        }
        for (int s = 0; s < 2 && cases[i].sizes[s]; s++) {
            const int size = cases[i].sizes[s];
            image_u8 crop;
            snprintf(name, sizeof name, "%s_crop%d.npy", stem, size);
            want = golden_u8(name, shape);
            if (want && CHECK(image_center_crop(&im, size, &crop) == DIT_OK, "center crop %s to %d", path, size)) {
                int diffs = count_diffs(crop.pixels, want, (size_t)size * size * 3, &worst);
                // exact: the resampler is Pillow's fixed-point arithmetic, step for step
                CHECK(diffs == 0 && shape[0] == size && shape[1] == size,
                      "%s center_crop_arr %d = PIL (BOX halvings + BICUBIC): %d values differ, worst %d", path, size,
                      diffs, worst);
                image_free(&crop);
            }
            free(want);
        }
        image_free(&im);
    }
    // ToTensor + Normalize(0.5, 0.5)
    uint8_t px[3] = {0, 128, 255};
    image_u8 one = {px, 1, 1};
    float f[3];
    image_to_float_chw(&one, f);
    CHECK(f[0] == -1.0f && fabsf(f[1] - 0.003921628f) < 1e-7f && f[2] == 1.0f, "pixels 0, 128, 255 -> %g %g %g", f[0], f[1], f[2]);

    // Bad inputs: truncated PNG and JPEG, not an image, missing file.
    static const char *const sources[] = {"vae/img_large.png", "vae/img_photo.jpg"};
    for (int i = 0; i < 2; i++) {
        FILE *in = fopen(golden_path(sources[i]), "rb");
        if (!in) continue;
        static unsigned char bytes[200000];
        size_t n = fread(bytes, 1, sizeof bytes, in);
        fclose(in);
        const char *cut = scratch_path(i ? "truncated.jpg" : "truncated.png");
        FILE *out = fopen(cut, "wb");
        fwrite(bytes, 1, n / 2, out);
        fclose(out);
        image_u8 im;
        CHECK(image_read_rgb(cut, &im) == DIT_ERR && strstr(dit_last_error(), cut), "truncated %s refused: %s",
              i ? "JPEG" : "PNG", dit_last_error());
    }
    image_u8 im;
    CHECK(image_read_rgb(golden_path("vae/small_z.npy"), &im) == DIT_ERR && strstr(dit_last_error(), "not a PNG or JPEG"),
          "a .npy read as an image refused: %s", dit_last_error());
    CHECK(image_read_rgb(scratch_path("no_such.png"), &im) == DIT_ERR && strstr(dit_last_error(), "cannot open"),
          "missing image: %s", dit_last_error());
}

// ---- the command line ----------------------------------------------------------------------------

static const char *dit_bin(void) {
    const char *bin = getenv("DIT_BIN");
    return bin ? bin : "build/dit";
}

static void test_cli(void) {
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s vae --help", dit_bin());
    int help_rc = run_command(cmd, &out);
    CHECK(help_rc == 0 && out && strstr(out, "encode") && strstr(out, "decode"),
          "dit vae --help exits 0 and names encode and decode (exit %d)", help_rc);
    free(out);
    // A diffusers-layout file of the reduced config, written from the synthetic table.
    dit_vae_config c;
    small_config(&c);
    dit_vae *v = dit_vae_synthetic(&c, 3);
    tensor_out *outs = calloc(dit_vae_num_params(v), sizeof *outs);
    for (int i = 0; i < dit_vae_num_params(v); i++) {
        outs[i].dtype = DT_F32;
        outs[i].data = dit_vae_param(v, i, &outs[i].name, &outs[i].ndim, outs[i].shape);
    }
    const char *vae_file = scratch_path("vae_small.safetensors");
    safetensors_write(vae_file, outs, dit_vae_num_params(v), NULL, NULL, 0);
    free(outs);
    const char *lat = scratch_path("vae_lat.npy"), *dec = scratch_path("vae_dec.npy"), *png = scratch_path("vae_grid.png");
    snprintf(cmd, sizeof cmd, "%s vae encode --vae %s %s %s --image-size 32 --mean -o %s -t 2", dit_bin(), vae_file,
             golden_path("vae/img_photo.jpg"), golden_path("vae/img_large.png"), lat);
    int rc = run_command(cmd, &out);
    CHECK(rc == 0, "dit vae encode two images (exit %d: %s)", rc, out ? out : "");
    free(out);
    int64_t n, shape[4];
    float *z = read_floats(lat, &n, shape);
    if (z && CHECK(n == 2 * 4 * 4 * 4 && shape[0] == 2 && shape[1] == 4, "latents (2, 4, 4, 4)")) {
        // In-process: crop, encode, mean, times 0.18215.
        float *x = malloc(2 * 3 * 32 * 32 * sizeof *x), *want = malloc(n * sizeof *want);
        const char *imgs[2] = {"vae/img_photo.jpg", "vae/img_large.png"};
        for (int i = 0; i < 2; i++) {
            image_u8 im, crop;
            image_read_rgb(golden_path(imgs[i]), &im);
            image_center_crop(&im, 32, &crop);
            image_to_float_chw(&crop, x + i * 3 * 32 * 32);
            image_free(&im);
            image_free(&crop);
        }
        dit_vae_encode(v, x, 2, 32, 32, NULL, want);
        for (int64_t i = 0; i < n; i++) want[i] *= 0.18215f;
        CHECK_CLOSE("dit vae encode --mean = crop + encode + mean x 0.18215 in process", z, want, n, 1e-6, 1e-6);
        free(x);
        free(want);
    }
    free(z);
    static const char *const outputs[2] = {"vae_dec.npy", "vae_grid.png"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "%s vae decode --vae %s %s -o %s -t 2", dit_bin(), vae_file, lat, i ? png : dec);
        rc = run_command(cmd, &out);
        CHECK(rc == 0, "dit vae decode to %s (exit %d: %s)", outputs[i], rc, out ? out : "");
        free(out);
    }
    float *img = read_floats(dec, &n, shape);
    CHECK(img && shape[0] == 2 && shape[1] == 3 && shape[2] == 32 && shape[3] == 32, "decoded (2, 3, 32, 32)");
    free(img);
    FILE *f = fopen(png, "rb");
    CHECK(f != NULL, "PNG grid written");
    if (f) fclose(f);
    // Posterior samples (no --mean): the same seed repeats exactly, and differs from the mean.
    const char *runs[3] = {"--seed 4", "--seed 4", "--mean"};
    float *lats[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "%s vae encode --vae %s %s --image-size 32 %s -o %s", dit_bin(), vae_file,
                 golden_path("vae/img_tiny.png"), runs[i], lat);
        rc = run_command(cmd, &out);
        free(out);
        if (rc == 0) lats[i] = read_floats(lat, &n, shape);
    }
    CHECK(lats[0] && lats[1] && lats[2] && !memcmp(lats[0], lats[1], 64 * sizeof(float)) &&
          memcmp(lats[0], lats[2], 64 * sizeof(float)), "encode --seed 4 twice: identical samples, not the mean");
    for (int i = 0; i < 3; i++) free(lats[i]);
    // Latents with the wrong channel count: a clear error.
    snprintf(cmd, sizeof cmd, "%s vae decode --vae %s %s -o %s", dit_bin(), vae_file, golden_path("vae/small_x.npy"), dec);
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && out && strstr(out, "small_x.npy") && strstr(out, "expected latents (N, 4, h, w)"),
          "3-channel latents refused: %s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s vae encode --vae %s %s -o %s", dit_bin(), vae_file, scratch_path("truncated.png"), lat);
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && out && strstr(out, "truncated.png"), "truncated image refused by the CLI: %s", out ? out : "");
    free(out);
    dit_vae_free(v);
}

// The multiply-add count against bench/ref_vae.py --count-macs (PyTorch hooks on every conv and linear, plus
// attention's two T x T x C products) for the SD autoencoder: exact integers at 32 x 32 and 64 x 64 latents.
static void test_gmacs(void) {
    dit_vae_config sd;
    dit_vae_config_sd(&sd);
    static const struct { int latent; double decode, encode; } want[] = {
        {32, 311093641216.0, 136361082880.0},
        {64, 1257259466752.0, 558329233408.0},
    };
    for (int i = 0; i < 2; i++) {
        const double d = dit_vae_config_gmacs(&sd, want[i].latent, want[i].latent, 0) * 1e9;
        const double e = dit_vae_config_gmacs(&sd, want[i].latent, want[i].latent, 1) * 1e9;
        CHECK(fabs(d - want[i].decode) < 1 && fabs(e - want[i].encode) < 1, "SD VAE multiply-adds at latent %d: "
              "decode %.0f (PyTorch count %.0f), encode %.0f (%.0f)", want[i].latent, d, want[i].decode, e,
              want[i].encode);
    }
}

void test_vae(void) {
    test_gmacs();
    test_conv();
    test_groupnorm();
    test_upsample();
    test_spatial_attention();
    test_table_order();
    test_small_golden();
    test_full_width_blocks();
    test_layouts();
    test_images();
    test_cli();
}
