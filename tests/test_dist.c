// The communication layer (src/dist) and multi-process runs: the rank-order reduction and bf16 rounding, row
// shares, the single-process world; then, where this build has MPI and mpirun is installed, `mpirun -np 2 dit
// train` against one process with --grad-shards 2 (byte-identical checkpoints), resume with another rank count,
// `mpirun -np 2 dit sample` against one process (byte-identical .npz, PNGs, latents), a batch that does not
// divide, and a rank killed (SIGKILL) or stopped (SIGSTOP) mid-run: every rank must exit within seconds.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "dit_vae.h"
#include "io/tensors.h"
#include "models/inception.h"
#include "test.h"

static void test_share_and_reduce(void) {
    int ok = 1;
    for (int total = 0; total < 40 && ok; total++)
        for (int size = 1; size <= 7 && ok; size++) {
            int64_t expect = 0;
            for (int r = 0; r < size; r++) {
                int64_t lo, hi;
                dist_share(total, r, size, &lo, &hi);
                ok &= lo == expect && hi >= lo && hi - lo <= total / size + 1 && hi - lo >= total / size;
                expect = hi;
            }
            ok &= expect == total;
        }
    CHECK(ok, "dist_share: contiguous rank-order shares covering 0..total, sizes within one (total < 40, 1-7 ranks)");

    // the reduction is left to right in part order: (a + b) + c, which differs from a + (b + c) here
    const float a[2] = {1.0f, 3.0f}, b[2] = {1e-8f, -3.0f}, c[2] = {-1.0f, 1e-8f};
    const void *parts[3] = {a, b, c};
    float out[2];
    dist_reduce_parts(out, parts, 3, 2, DIST_F32, DIST_SUM);
    const float want0 = (a[0] + b[0]) + c[0], want1 = (a[1] + b[1]) + c[1];
    CHECK(out[0] == want0 && out[1] == want1 && out[0] == 0.0f,
          "rank-order sum: ((p0 + p1) + p2) exactly (got %g, %g; want %g, %g)", out[0], out[1], want0, want1);
    dist_reduce_parts(out, parts, 3, 2, DIST_F32, DIST_MEAN);
    CHECK(out[1] == ((a[1] + b[1]) + c[1]) / 3.0f, "rank-order mean: the sum divided by the number of parts");

    // bf16: round to nearest even, NaN kept, and the sum taken in float32 then rounded once
    CHECK(dist_f32_to_bf16(1.0f) == 0x3f80 && dist_bf16_to_f32(0x3f80) == 1.0f, "bf16: 1.0 = 0x3f80 both ways");
    CHECK(dist_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 && dist_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82,
          "bf16: ties go to even (1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6)");
    CHECK(isnan(dist_bf16_to_f32(dist_f32_to_bf16(NAN))), "bf16: NaN stays NaN");
    const uint16_t h[3] = {dist_f32_to_bf16(1.0f), dist_f32_to_bf16(0x1p-8f), dist_f32_to_bf16(0x1p-8f)};
    const void *hp[3] = {&h[0], &h[1], &h[2]};
    uint16_t hs;
    dist_reduce_parts(&hs, hp, 3, 1, DIST_BF16, DIST_SUM);
    CHECK(dist_bf16_to_f32(hs) == 1.0f + 0x1p-7f, "bf16 all-reduce sums in float32 (1 + 2^-8 + 2^-8 = 1 + 2^-7, "
          "where bf16 steps would give 1): got %.9g", dist_bf16_to_f32(hs));

    dist_comm *w = dist_world();
    float v[3] = {1, 2, 3}, g[3] = {0};
    CHECK(dist_rank(w) == 0 && dist_size(w) == 1 && !strcmp(w->ops->name, "single") &&
              dist_allreduce(w, v, 3, DIST_F32, DIST_SUM) == DIT_OK && v[0] == 1 && v[2] == 3 &&
              dist_gather(w, v, sizeof v, g, 0) == DIT_OK && g[1] == 2 && dist_barrier(w) == DIT_OK &&
              dist_gather_rows(w, v, sizeof(float), 3, 0) == DIT_OK,
          "single-process world: rank 0 of 1, all-reduce = identity, gather = copy, barrier");
}

static const char *dit_bin(void) {
    const char *bin = getenv("DIT_BIN");
    return bin ? bin : "build/dit";
}

static int files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

// 32 synthetic 8x8 images in 4 classes (raw IDX), the training set of these tests.
static void make_idx(char *images, size_t n) {
    snprintf(images, n, "%s", scratch_path("dist-train-images-idx3-ubyte"));
    FILE *f = fopen(images, "wb"), *l = fopen(scratch_path("dist-train-labels-idx1-ubyte"), "wb");
    const unsigned char ih[16] = {0, 0, 8, 3, 0, 0, 0, 32, 0, 0, 0, 8, 0, 0, 0, 8}, lh[8] = {0, 0, 8, 1, 0, 0, 0, 32};
    fwrite(ih, 1, 16, f);
    fwrite(lh, 1, 8, l);
    for (int i = 0; i < 32; i++) {
        unsigned char px[64], y = (unsigned char)(i % 4);
        for (int k = 0; k < 64; k++) px[k] = (unsigned char)(((k / 8 + (k % 8) * y) / 2 % 2) * 255);
        fwrite(px, 1, 64, f);
        fwrite(&y, 1, 1, l);
    }
    fclose(f);
    fclose(l);
}

// "mpirun -np 2 ..." as root or not, on however few cores; the environment lets Open MPI run as root. Under
// `make asan` the leak checker is off for these runs: Open MPI's own allocations outlive MPI_Finalize.
#define MPIRUN "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 " \
               "ASAN_OPTIONS=detect_leaks=0 " \
               "timeout 300 mpirun -np 2"

static void test_mpi_train(const char *images) {
    char cmd[4096], *out = NULL;
    const char *model = "--image-size 8 --depth 2 --hidden 32 --heads 2 --patch 4 --batch 8 --log-every 2 -t 1";
    const char *two = scratch_path("mpi2"), *one = scratch_path("shards2"), *plain = scratch_path("plain");
    // 2 ranks vs one process computing the same 2 shards: the same bits after 6 steps
    snprintf(cmd, sizeof cmd, MPIRUN " %s train --data %s %s --steps 6 --ckpt-every 3 -o %s", dit_bin(), images, model,
             two);
    int rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "2 ranks (mpi), 4 samples each") && strstr(out, "comm ") &&
              strstr(out, "trained to step 6"),
          "mpirun -np 2 dit train: 6 steps, rank 0 logs the communication time%s%s", rc ? ": " : "", rc && out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s train --data %s %s --steps 6 --ckpt-every 3 --grad-shards 2 -o %s && "
             "%s train --data %s %s --steps 6 --ckpt-every 3 -o %s", dit_bin(), images, model, one, dit_bin(), images,
             model, plain);
    rc = run_command(cmd, &out);
    CHECK(rc == 0, "one process, --grad-shards 2 and unsharded%s%s", rc ? ": " : "", rc && out ? out : "");
    free(out);
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/checkpoints/0000006.safetensors", two);
    snprintf(b, sizeof b, "%s/checkpoints/0000006.safetensors", one);
    CHECK(files_equal(a, b), "2 ranks = 1 process with 2 gradient shards: step-6 checkpoints (weights, EMA, Adam "
          "moments, cursor) byte-identical");
    // the unsharded run differs only by float32 summation order inside the weight gradients
    snprintf(cmd, sizeof cmd, "cmp -s %s %s/checkpoints/0000006.safetensors", a, plain);
    printf("note: unsharded single-process checkpoint %s the sharded one (summation order)\n",
           run_command(cmd, NULL) == 0 ? "equals" : "differs from");

    // resume with another number of ranks: the 2-rank step-3 checkpoint, continued by one process with the
    // same 2 shards, reaches the 2-rank step-6 bits; plain single-process resume works too
    const char *resumed = scratch_path("resumed"), *resumed1 = scratch_path("resumed1");
    snprintf(cmd, sizeof cmd, "%s train --resume %s/checkpoints/0000003.safetensors --steps 6 --grad-shards 2 -o %s && "
             "%s train --resume %s/checkpoints/0000003.safetensors --steps 5 -o %s",
             dit_bin(), two, resumed, dit_bin(), two, resumed1);
    rc = run_command(cmd, &out);
    snprintf(b, sizeof b, "%s/checkpoints/0000006.safetensors", resumed);
    CHECK(rc == 0 && files_equal(a, b), "2-rank checkpoint resumed by one process (--grad-shards 2) = the 2-rank run, "
          "byte for byte; resumed unsharded to step 5%s%s", rc ? ": " : "", rc && out ? out : "");
    free(out);
    // and the other way: a single-process checkpoint continued by 2 ranks
    snprintf(cmd, sizeof cmd, MPIRUN " %s train --resume %s/checkpoints/0000003.safetensors --steps 6 -o %s",
             dit_bin(), one, scratch_path("resumed2"));
    rc = run_command(cmd, &out);
    snprintf(b, sizeof b, "%s/checkpoints/0000006.safetensors", scratch_path("resumed2"));
    CHECK(rc == 0 && files_equal(a, b), "--grad-shards 2 checkpoint resumed by mpirun -np 2 = the same bits%s%s",
          rc ? ": " : "", rc && out ? out : "");
    free(out);

    // a global batch that does not divide: one clear line, non-zero exit, no hang
    snprintf(cmd, sizeof cmd, MPIRUN " %s train --data %s --image-size 8 --depth 1 --hidden 32 --heads 2 --batch 7 "
             "--steps 2 -t 1 -o %s", dit_bin(), images, scratch_path("odd"));
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && out && strstr(out, "--batch 7 is not divisible by 2 ranks"),
          "mpirun -np 2 dit train --batch 7: refused with one line%s%s", out ? ": " : "", out ? out : "");
    free(out);

    // a subcommand that does not share its work refuses to run as one of many (each rank would do all of it)
    snprintf(cmd, sizeof cmd, MPIRUN " %s info", dit_bin());
    rc = run_command(cmd, &out);
    CHECK(rc != 0 && out && strstr(out, "dit: info runs as one process: start it without mpirun"),
          "mpirun -np 2 dit info: refused with one line%s%s", out ? ": " : "", out ? out : "");
    free(out);
}

static void test_mpi_sample(const char *two) {
    char cmd[4096], *out = NULL;
    const char *m = scratch_path("mpi-sample"), *s = scratch_path("one-sample");
    // 9 images over 2 ranks (5 + 4), batches of 2 on each rank against batches of 4 in one process
    const char *args = "--class 1,2,3 -n 3 --sampler ddim --steps 4 -t 1 --cfg-scale 2";
    snprintf(cmd, sizeof cmd, MPIRUN " %s sample -m %s/checkpoints/0000006.safetensors %s --batch 2 --npz %s.npz "
             "--out-dir %s.d --save-latents %s.npy -o %s.png", dit_bin(), two, args, m, m, m, m);
    int rc = run_command(cmd, &out);
    CHECK(rc == 0, "mpirun -np 2 dit sample: 9 images, .npz, PNGs, latents, grid%s%s", rc ? ": " : "",
          rc && out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s sample -m %s/checkpoints/0000006.safetensors %s --batch 4 --npz %s.npz "
             "--out-dir %s.d --save-latents %s.npy -o %s.png", dit_bin(), two, args, s, s, s, s);
    rc = run_command(cmd, &out);
    CHECK(rc == 0, "one process: the same samples%s%s", rc ? ": " : "", rc && out ? out : "");
    free(out);
    char a[1024], b[1024];
    int same = 1;
    const char *ext[] = {".npz", ".npy", ".png", ".d/000000.png", ".d/000004.png", ".d/000005.png", ".d/000008.png"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        snprintf(a, sizeof a, "%s%s", m, ext[i]);
        snprintf(b, sizeof b, "%s%s", s, ext[i]);
        if (!files_equal(a, b)) {
            same = 0;
            printf("note: %s differs from %s\n", a, b);
        }
    }
    CHECK(same, "2-rank sampling = 1 process: .npz, latents, grid and per-image PNGs byte-identical");
}

// A latent model (4 channels) decoded through a small synthetic VAE (as tests/test_sample_cli.c): each rank
// decodes the images it sampled; rank 0 gathers the decoded images. 5 images over 2 ranks vs one process.
static void test_mpi_sample_vae(void) {
    dit_vae_config vcfg;
    dit_vae_config_sd(&vcfg);
    vcfg.num_levels = 2;
    vcfg.block_out[0] = vcfg.block_out[1] = 32;
    vcfg.layers_per_block = 1;
    dit_vae *v = dit_vae_synthetic(&vcfg, 3);
    int n = v ? dit_vae_num_params(v) : 0;
    tensor_out *outs = calloc(n ? n : 1, sizeof *outs);
    for (int i = 0; i < n; i++) {
        int ndim;
        int64_t shape[4];
        outs[i].data = dit_vae_param(v, i, &outs[i].name, &ndim, shape);
        outs[i].dtype = DT_F32;
        outs[i].ndim = ndim;
        for (int d = 0; d < ndim; d++) outs[i].shape[d] = shape[d];
    }
    const char *vae = scratch_path("dist-vae.safetensors"), *model = scratch_path("dist-latent.safetensors");
    int ok = v && safetensors_write(vae, outs, n, NULL, NULL, 0) == DIT_OK;
    free(outs);
    dit_vae_free(v);
    dit_config cfg = {.input_size = 4, .patch_size = 2, .in_channels = 4, .hidden_size = 32, .depth = 1,
                      .num_heads = 2, .mlp_ratio = 4.0f, .num_classes = 4, .class_dropout_prob = 0.1f,
                      .learn_sigma = 1};
    dit_model *m = dit_model_synthetic(&cfg, 9);
    ok = ok && m && dit_model_save(m, model) == DIT_OK;
    dit_model_free(m);
    if (!CHECK(ok, "a latent model and a small VAE saved")) return;
    char cmd[4096], *out = NULL, a[1024], b[1024];
    const char *args = "--class 0,3 -n 2 --sampler ddim --steps 3 -t 1 --batch 2";   // with --class 1: 6 images
    snprintf(a, sizeof a, "%s", scratch_path("dist-vae-2.npz"));
    snprintf(b, sizeof b, "%s", scratch_path("dist-vae-1.npz"));
    snprintf(cmd, sizeof cmd, MPIRUN " %s sample -m %s --vae %s %s --class 1 --npz %s && %s sample -m %s --vae %s %s "
             "--class 1 --npz %s", dit_bin(), model, vae, args, a, dit_bin(), model, vae, args, b);
    int rc = run_command(cmd, &out);
    CHECK(rc == 0 && files_equal(a, b), "latent model + VAE, 6 images: 2 ranks (each decodes its share) = 1 process, "
          ".npz byte-identical%s%s", rc ? ": " : "", rc && out ? out : "");
    free(out);
}

// Start a long 2-rank run, wait for its first checkpoint, then `sig` rank 1. Returns the seconds from the signal
// to the exit of mpirun (negative when the run never got going), the output in *out.
static double run_and_signal(const char *images, const char *dir, const char *sig, const char *env, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s " MPIRUN " %s train --data %s --image-size 8 --depth 1 --hidden 32 --heads 2 --batch 4 --steps 1000000 "
             "--ckpt-every 20 --log-every 1000 -t 1 -o %s > %s.log 2>&1 & mp=$!; "
             "for i in $(seq 600); do test -s %s/checkpoints/latest && break; sleep 0.1; done; "
             "r1=; for p in $(pgrep -P $(pgrep -P $mp mpirun || echo $mp)); do "
             "  grep -qz '^OMPI_COMM_WORLD_RANK=1$' /proc/$p/environ 2>/dev/null && r1=$p; done; "
             "test -n \"$r1\" || { echo 'test: rank 1 not found'; kill $mp; exit 3; }; "
             "t0=$(date +%%s.%%N); kill -%s $r1; wait $mp; rc=$?; t1=$(date +%%s.%%N); cat %s.log; "
             "echo \"rc=$rc seconds=$(awk \"BEGIN{print $t1 - $t0}\")\"",
             env, dit_bin(), images, dir, dir, dir, sig, dir);
    int rc = run_command(cmd, out);
    const char *s = *out ? strstr(*out, "seconds=") : NULL;
    return rc == 0 && s ? atof(s + 8) : -1;
}

static void test_mpi_faults(const char *images) {
    char *out = NULL, cmd[2048];
    const char *dir = scratch_path("killed");
    double seconds = run_and_signal(images, dir, "9", "", &out);
    CHECK(seconds >= 0 && seconds < 20 && out && strstr(out, "rank 1") && strstr(out, "signal 9") &&
              strstr(out, "dit: rank 0: stopped by the launcher") && !strstr(out, "rc=0 "),
          "rank 1 killed (SIGKILL) mid-run: every rank gone in %.1f s (< 20), rank 1 and the signal named, rank 0 "
          "says why it stops%s%s", seconds, out ? ": " : "", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s train --resume %s --steps $(awk -F. '{print $1 + 3}' %s/checkpoints/latest) -t 1",
             dit_bin(), dir, dir);
    int rc = run_command(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "trained to step"), "the killed run's last checkpoint loads and --resume "
          "continues%s%s", rc ? ": " : "", rc && out ? out : "");
    free(out);
    // a rank that stops answering (SIGSTOP): rank 0's deadline (DIT_DIST_TIMEOUT) names it and ends the job. The
    // limit is 6 s, not less: before the stop, rank 1 waits for rank 0's checkpoint writes under the same limit.
    dir = scratch_path("stopped");
    seconds = run_and_signal(images, dir, "STOP", "DIT_DIST_TIMEOUT=6", &out);
    CHECK(seconds >= 0 && seconds < 40 && out && strstr(out, "dit: rank 0: step ") &&
              strstr(out, "no answer from rank 1 within 6 s") && !strstr(out, "rc=0 "),
          "rank 1 stopped (SIGSTOP): rank 0 names it after the 6 s deadline, all gone in %.1f s (< 40)%s%s", seconds,
          out ? ": " : "", out ? out : "");
    free(out);
}

// The synthetic Inception weights (as tests/test_eval.c) and 5 random 16x16 images; statistics and features of
// 2 ranks (3 + 2 images, batches of 2) against one process: the network is batch-invariant and rank 0 sums
// the moments in the same batches, so the saved statistics should be byte-identical; IS printed the same.
static void test_mpi_eval(void) {
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
    const char *weights = scratch_path("dist-inception.safetensors"), *samples = scratch_path("dist-samples.npz");
    int ok = safetensors_write(weights, outs, INCEPTION_NUM_TENSORS, NULL, NULL, 0) == DIT_OK;
    for (int k = 0; k < INCEPTION_NUM_TENSORS; k++) free(data[k]);
    free(data), free(outs), free(table);
    npy_array a = {.dtype = DT_U8, .ndim = 4, .shape = {5, 16, 16, 3}, .nbytes = 5 * 16 * 16 * 3};
    a.data = malloc(a.nbytes);
    for (size_t i = 0; i < a.nbytes; i++) ((uint8_t *)a.data)[i] = (uint8_t)(i * 37 + 11);
    const char *names[1] = {"arr_0"};
    ok = ok && npz_write(samples, names, &a, 1) == DIT_OK;
    free(a.data);
    if (!CHECK(ok, "synthetic Inception weights and 5 sample images written")) return;
    char cmd[4096], *one = NULL, *two = NULL;
    const char *s1 = scratch_path("dist-stats1.npz"), *s2 = scratch_path("dist-stats2.npz");
    snprintf(cmd, sizeof cmd, "%s eval --inception %s --save-stats %s --save-features --batch 2 -t 1 %s", dit_bin(),
             weights, s1, samples);
    int rc1 = run_command(cmd, &one);
    snprintf(cmd, sizeof cmd, MPIRUN " %s eval --inception %s --save-stats %s --save-features --batch 2 -t 1 %s",
             dit_bin(), weights, s2, samples);
    int rc2 = run_command(cmd, &two);
    const char *is1 = one ? strstr(one, "Inception Score: ") : NULL, *is2 = two ? strstr(two, "Inception Score: ") : NULL;
    const size_t is_len = is1 ? strcspn(is1, "\n") : 0;   // the line only: stderr interleaves differently
    CHECK(rc1 == 0 && rc2 == 0 && is1 && is2 && !strncmp(is1, is2, is_len) && is2[is_len] == '\n' &&
              files_equal(s1, s2),
          "mpirun -np 2 dit eval = 1 process: Inception Score line and saved mu, sigma, mu_s, sigma_s, pool "
          "byte-identical%s%s%s", rc1 || rc2 ? ": " : "", rc1 && one ? one : "", rc2 && two ? two : "");
    free(one), free(two);
}

void test_dist(void) {
    test_share_and_reduce();
    if (!dist_built_with_mpi()) {
        test_skip("multi-process tests: this build has no MPI (scripts/setup.sh installs Open MPI; make says MPI=yes)");
        return;
    }
    if (run_command("command -v mpirun && command -v timeout && command -v pgrep", NULL) != 0) {
        test_skip("multi-process tests: mpirun, timeout or pgrep not found");
        return;
    }
    char images[1024];
    make_idx(images, sizeof images);
    test_mpi_train(images);
    test_mpi_sample(scratch_path("mpi2"));
    test_mpi_sample_vae();
    test_mpi_eval();
    test_mpi_faults(images);
}
