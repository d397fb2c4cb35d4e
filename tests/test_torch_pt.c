// Tests of the torch .pt reader (src/io/torch_pt.c) and its restricted unpickler (src/io/pickle.c):
// fixtures from tests/ref/make_pt_fixtures.py (values f(i, k) = ((7i + 13k) mod 97 - 48) / 32, exact in
// every float dtype, so comparisons are exact), then hostile inputs: truncations, byte flips, nasty pickles.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/pickle.h"
#include "io/tensors.h"
#include "io/torch_pt.h"
#include "io/zip.h"
#include "test.h"

#define PWNED_FILE "/tmp/dit_pickle_must_not_run"

static float formula(int64_t i, int k) { return (float)((i * 7 + k * 13) % 97 - 48) / 32.0f; }

// The message for a status, read after the call (CHECK's arguments are evaluated in no fixed order).
static const char *msg(dit_status st) { return st ? dit_last_error() : "ok"; }

static int starts_with(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

// Whole file as a malloc'd copy of exactly its size (so ASan sees any read past the end).
static uint8_t *read_all(const char *path, size_t *size) {
    mapped_file m;
    if (map_file(path, &m)) return NULL;
    uint8_t *copy = malloc(m.size ? m.size : 1);
    if (m.size) memcpy(copy, m.data, m.size);
    *size = m.size;
    unmap_file(&m);
    return copy;
}

// Checks name, dtype, shape of one tensor and returns its values as f32 (malloc'd), or NULL.
static float *get_tensor(const tensor_file *f, const char *name, dit_dtype dtype, int ndim, const int64_t *shape) {
    const tensor_view *t = tensor_file_find(f, name);
    if (!CHECK(t != NULL, "%s: tensor '%s' present", f->path, name)) return NULL;
    int same = t->dtype == dtype && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!CHECK(same, "%s: '%s' is %s with %d dims (want %s, %d dims, shape as stated)", f->path, name,
               dtype_name(t->dtype), t->ndim, dtype_name(dtype), ndim))
        return NULL;
    int64_t n = tensor_numel(t);
    CHECK(t->nbytes == (size_t)n * dtype_size(dtype), "%s: '%s' nbytes %zu", f->path, name, t->nbytes);
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    tensor_to_f32(t, v);
    return v;
}

// A float tensor holding f(i, k): compared exactly (the values are multiples of 1/32).
static void check_formula(const tensor_file *f, const char *name, dit_dtype dtype, int ndim, const int64_t *shape,
                          int k) {
    float *got = get_tensor(f, name, dtype, ndim, shape);
    if (!got) return;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *want = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) want[i] = formula(i, k);
    char what[256];
    snprintf(what, sizeof what, "%s: %s = f(i, %d) exactly", f->path, name, k);
    CHECK_CLOSE(what, got, want, (size_t)n, 0.0, 0.0);
    free(got);
    free(want);
}

static const char *const official_names[] = {"pos_embed", "x_embedder.proj.weight", "x_embedder.proj.bias",
                                             "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias"};
static const int64_t official_shapes[][4] = {{1, 4, 8}, {8, 4, 2, 2}, {8}, {24, 8}, {24}};
static const int official_ndims[] = {3, 4, 1, 2, 1};

static void check_state_dict(const tensor_file *f, const char *prefix, int k0) {
    for (int k = 0; k < 5; k++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s", prefix, official_names[k]);
        check_formula(f, name, DT_F32, official_ndims[k], official_shapes[k], k0 + k);
    }
}

static void test_official(void) {
    tensor_file f;
    dit_status st;
    const char *path = golden_path("pt/official_sd.pt");
    st = torch_pt_read(path, &f);
    if (!CHECK(st == DIT_OK, "read %s: %s", path, msg(st))) return;
    CHECK(f.count == 5, "%s: 5 tensors (got %d); the OrderedDict's _metadata is not one", path, f.count);
    int order = f.count == 5;
    for (int k = 0; order && k < 5; k++) order = !strcmp(f.tensors[k].name, official_names[k]);
    CHECK(order, "%s: tensors in state_dict order", path);
    check_state_dict(&f, "", 0);
    // Contiguous tensors point into the mapping: no copy.
    const tensor_view *t = tensor_file_find(&f, "pos_embed");
    CHECK(t && (const uint8_t *)t->data >= (const uint8_t *)f.map &&
              (const uint8_t *)t->data < (const uint8_t *)f.map + f.map_size,
          "%s: pos_embed points into the file mapping", path);
    tensor_file_free(&f);
}

static void test_train_checkpoint(void) {
    tensor_file f;
    dit_status st;
    const char *path = golden_path("pt/train_ckpt.pt");
    st = torch_pt_read(path, &f);
    if (!CHECK(st == DIT_OK, "read %s: %s", path, msg(st))) return;
    // 5 model + 5 ema + 4 trainable parameters x (step, exp_avg, exp_avg_sq); args and extra hold none.
    CHECK(f.count == 22, "%s: 22 tensors (got %d)", path, f.count);
    check_state_dict(&f, "model.", 0);
    check_state_dict(&f, "ema.", 100);
    CHECK(tensor_file_find(&f, "opt.state.0.exp_avg") == NULL, "%s: no optimizer state for frozen pos_embed", path);
    for (int k = 1; k < 5; k++) {
        char name[128];
        snprintf(name, sizeof name, "opt.state.%d.step", k);
        float *step = get_tensor(&f, name, DT_F32, 0, NULL);
        if (step) CHECK(step[0] == 1.0f, "%s: %s = %g, want 1", path, name, step[0]);
        free(step);
        int64_t n = 1;
        for (int d = 0; d < official_ndims[k]; d++) n *= official_shapes[k][d];
        float *m_want = malloc(sizeof(float) * (size_t)n), *v_want = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            double g = formula(i, 200 + k);
            m_want[i] = (float)(0.1 * g);
            v_want[i] = (float)(0.001 * g * g);
        }
        // AdamW's first step from zero moments: m = (1 - 0.9) g, v = (1 - 0.999) g^2, rounded by torch in
        // f32 through lerp/addcmul: 1e-6 relative covers a few ulp.
        snprintf(name, sizeof name, "opt.state.%d.exp_avg", k);
        float *m = get_tensor(&f, name, DT_F32, official_ndims[k], official_shapes[k]);
        if (m) CHECK_CLOSE(name, m, m_want, (size_t)n, 1e-12, 1e-6);
        snprintf(name, sizeof name, "opt.state.%d.exp_avg_sq", k);
        float *v = get_tensor(&f, name, DT_F32, official_ndims[k], official_shapes[k]);
        if (v) CHECK_CLOSE(name, v, v_want, (size_t)n, 1e-12, 1e-6);
        free(m);
        free(v);
        free(m_want);
        free(v_want);
    }
    int stray = 0;
    for (int i = 0; i < f.count; i++) stray += starts_with(f.tensors[i].name, "args") || starts_with(f.tensors[i].name, "extra");
    CHECK(stray == 0, "%s: argparse.Namespace, torch.device, numpy scalars, big ints give no tensors", path);
    tensor_file_free(&f);
}

static void test_dtypes(void) {
    tensor_file f;
    dit_status st;
    const char *path = golden_path("pt/dtypes.pt");
    st = torch_pt_read(path, &f);
    if (!CHECK(st == DIT_OK, "read %s: %s", path, msg(st))) return;
    CHECK(f.count == 14, "%s: 14 tensors (got %d)", path, f.count);
    check_formula(&f, "half", DT_F16, 2, (int64_t[]){3, 5}, 1);
    check_formula(&f, "bf16", DT_BF16, 2, (int64_t[]){2, 3}, 2);
    check_formula(&f, "f64", DT_F64, 1, (int64_t[]){4}, 3);
    check_formula(&f, "nested.0", DT_F32, 1, (int64_t[]){2}, 4);
    check_formula(&f, "nested.1.0", DT_F32, 1, (int64_t[]){3}, 5);
    check_formula(&f, "nested.1.1.7", DT_F32, 1, (int64_t[]){1}, 6);
    static const struct { const char *name; dit_dtype dtype; int64_t n; float first; } ints[] = {
        {"i64", DT_I64, 6, -3}, {"i32", DT_I32, 4, -2}, {"u8", DT_U8, 6, 250}, {"i8", DT_I8, 6, -3},
        {"i16", DT_I16, 6, -3},
    };
    for (size_t j = 0; j < sizeof ints / sizeof ints[0]; j++) {
        float *got = get_tensor(&f, ints[j].name, ints[j].dtype, 1, &ints[j].n);
        if (!got) continue;
        float want[8];
        for (int64_t i = 0; i < ints[j].n; i++) want[i] = ints[j].first + (float)i;
        CHECK_CLOSE(ints[j].name, got, want, (size_t)ints[j].n, 0.0, 0.0);
        free(got);
    }
    const tensor_view *b = tensor_file_find(&f, "bool");
    CHECK(b && b->dtype == DT_BOOL && b->ndim == 1 && b->shape[0] == 3 && b->nbytes == 3 &&
              !memcmp(b->data, "\1\0\1", 3),
          "%s: bool [3] = {1, 0, 1}", path);
    float *s = get_tensor(&f, "scalar", DT_F32, 0, NULL);
    if (s) CHECK(s[0] == 2.5f, "%s: 0-dim scalar = %g, want 2.5", path, s[0]);
    free(s);
    const tensor_view *e = tensor_file_find(&f, "empty");
    CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 3 && e->nbytes == 0, "%s: empty [0, 3]", path);
    tensor_file_free(&f);
}

static void test_views(void) {
    tensor_file f;
    dit_status st;
    const char *path = golden_path("pt/views.pt");
    st = torch_pt_read(path, &f);
    if (!CHECK(st == DIT_OK, "read %s: %s", path, msg(st))) return;
    CHECK(f.count == 7, "%s: 7 tensors (got %d)", path, f.count);
    float base[4][6], want[24];
    for (int i = 0; i < 24; i++) base[i / 6][i % 6] = formula(i, 0);
    check_formula(&f, "base", DT_F32, 2, (int64_t[]){4, 6}, 0);
    float *got;
    if ((got = get_tensor(&f, "t", DT_F32, 2, (int64_t[]){6, 4}))) {   // stride (1, 6): gathered
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 4; c++) want[r * 4 + c] = base[c][r];
        CHECK_CLOSE("views.pt: t = base.t()", got, want, 24, 0.0, 0.0);
        free(got);
    }
    if ((got = get_tensor(&f, "slice", DT_F32, 2, (int64_t[]){2, 3}))) {   // offset 8, stride (6, 1)
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 3; c++) want[r * 3 + c] = base[1 + r][2 + c];
        CHECK_CLOSE("views.pt: slice = base[1:3, 2:5]", got, want, 6, 0.0, 0.0);
        free(got);
    }
    if ((got = get_tensor(&f, "step", DT_F32, 2, (int64_t[]){4, 3}))) {   // stride (6, 2)
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 3; c++) want[r * 3 + c] = base[r][2 * c];
        CHECK_CLOSE("views.pt: step = base[:, ::2]", got, want, 12, 0.0, 0.0);
        free(got);
    }
    if ((got = get_tensor(&f, "row", DT_F32, 1, (int64_t[]){6}))) {
        CHECK_CLOSE("views.pt: row = base[2]", got, base[2], 6, 0.0, 0.0);
        free(got);
    }
    const tensor_view *tb = tensor_file_find(&f, "base"), *tr = tensor_file_find(&f, "row");
    CHECK(tb && tr && (const float *)tr->data == (const float *)tb->data + 12,
          "%s: row shares base's storage at element offset 12 (no copy)", path);
    if ((got = get_tensor(&f, "elem", DT_F32, 0, NULL))) {
        CHECK(got[0] == base[1][1], "%s: elem = base[1, 1] = %g (got %g)", path, base[1][1], got[0]);
        free(got);
    }
    if ((got = get_tensor(&f, "expand", DT_F32, 2, (int64_t[]){3, 4}))) {   // stride (1, 0)
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) want[r * 4 + c] = (float)r;
        CHECK_CLOSE("views.pt: expand = arange(3).view(3, 1).expand(3, 4)", got, want, 12, 0.0, 0.0);
        free(got);
    }
    tensor_file_free(&f);
}

static void test_parameter_protocols_malicious(void) {
    tensor_file f;
    dit_status st;
    const char *path = golden_path("pt/parameter.pt");
    st = torch_pt_read(path, &f);
    if (CHECK(st == DIT_OK, "read %s: %s", path, msg(st))) {
        CHECK(f.count == 1, "%s: one tensor, named \"\" (the root object itself)", path);
        check_formula(&f, "", DT_F32, 2, (int64_t[]){2, 3}, 9);
        tensor_file_free(&f);
    }
    static const int protocols[] = {1, 4, 5};
    for (size_t j = 0; j < 3; j++) {
        {
            int p = protocols[j];
            char name[64];
            snprintf(name, sizeof name, "pt/proto%d.pt", p);
            path = golden_path(name);
            st = torch_pt_read(path, &f);
            if (!CHECK(st == DIT_OK, "read %s (pickle protocol %d): %s", path, p,
                       msg(st)))
                continue;
            CHECK(f.count == 3, "%s: 3 tensors (got %d)", path, f.count);
            check_formula(&f, "a", DT_F32, 2, (int64_t[]){2, 3}, 0);
            check_formula(&f, "b.0", DT_F32, 1, (int64_t[]){2}, 1);
            check_formula(&f, "c", DT_F16, 1, (int64_t[]){3}, 2);
            tensor_file_free(&f);
        }
    }

    unlink(PWNED_FILE);
    path = golden_path("pt/malicious.pt");
    st = torch_pt_read(path, &f);
    if (CHECK(st == DIT_OK, "read %s (os.system and eval reductions): %s", path,
              msg(st))) {
        CHECK(f.count == 1, "%s: only tensor w (got %d)", path, f.count);
        check_formula(&f, "w", DT_F32, 1, (int64_t[]){2}, 0);
        tensor_file_free(&f);
    }
    CHECK(access(PWNED_FILE, F_OK) != 0, "%s: the pickled os.system/eval did not run (%s absent)", path, PWNED_FILE);

    path = golden_path("pt/legacy.pt");
    char copy[512];
    snprintf(copy, sizeof copy, "%s", path);
    st = torch_pt_read(copy, &f);
    CHECK(st != DIT_OK && starts_with(dit_last_error(), copy) &&
              strstr(dit_last_error(), "legacy"),
          "legacy format refused clearly: %s", msg(st));
    const char *missing = scratch_path("no_such_file.pt");
    st = torch_pt_read(missing, &f);
    CHECK(st != DIT_OK && starts_with(dit_last_error(), missing),
          "missing file: %s", msg(st));
}

// ---- hostile inputs ----------------------------------------------------------------------------

// Every prefix of a fixture must fail cleanly, with the path first.
static void test_truncations(void) {
    const char *path = golden_path("pt/official_sd.pt");
    char name[512];
    snprintf(name, sizeof name, "%s", path);
    size_t size = 0;
    uint8_t *all = read_all(name, &size);
    if (!CHECK(all != NULL, "read %s", name)) return;
    int accepted = 0, unprefixed = 0;
    for (size_t n = 0; n < size; n++) {
        uint8_t *buf = malloc(n ? n : 1);
        memcpy(buf, all, n);
        tensor_file f;
        if (torch_pt_parse(buf, n, name, &f) == DIT_OK) {
            accepted++;
            tensor_file_free(&f);
        } else if (!starts_with(dit_last_error(), name)) {
            unprefixed++;
        }
        free(buf);
    }
    CHECK(accepted == 0 && unprefixed == 0, "%s: all %zu truncations refused (%d accepted, %d messages without "
          "the path)", name, size, accepted, unprefixed);
    free(all);
}

// Rewrites the central-directory CRC of `member` so that byte flips reach the unpickler.
static void fix_crc(uint8_t *zip, size_t size, const char *member, const uint8_t *data, size_t len) {
    size_t name_len = strlen(member);
    for (size_t i = 0; i + 46 <= size; i++) {
        if (memcmp(zip + i, "PK\1\2", 4)) continue;
        size_t n = zip[i + 28] | (size_t)zip[i + 29] << 8;
        if (n != name_len || i + 46 + n > size || memcmp(zip + i + 46, member, n)) continue;
        uint32_t crc = (uint32_t)crc32(0L, data, (uInt)len);
        for (int b = 0; b < 4; b++) zip[i + 16 + b] = (uint8_t)(crc >> (8 * b));
    }
}

// One reader outcome of a corrupted file: read (every view's byte count must be its numel times the dtype
// size, and every byte is touched so ASan sees a view outside its storage) or refused naming the file.
static void outcome(dit_status st, tensor_file *f, const char *name, int *ok, int *failed, int *bad) {
    if (st != DIT_OK) {
        (*failed)++;
        *bad += !strstr(dit_last_error(), name);
        return;
    }
    (*ok)++;
    for (int i = 0; i < f->count; i++) {
        const tensor_view *t = &f->tensors[i];
        *bad += t->nbytes != (size_t)tensor_numel(t) * dtype_size(t->dtype);
        volatile uint8_t sink = 0;
        for (size_t k = 0; k < t->nbytes; k++) sink ^= ((const uint8_t *)t->data)[k];
        (void)sink;
    }
    tensor_file_free(f);
}

static void test_byte_flips(void) {
    char name[512];
    snprintf(name, sizeof name, "%s", golden_path("pt/train_ckpt.pt"));
    size_t size = 0;
    uint8_t *all = read_all(name, &size);
    if (!CHECK(all != NULL, "read %s", name)) return;
    zip_archive z;
    if (!CHECK(zip_open_buffer(&z, all, size, name) == DIT_OK, "open %s as zip", name)) {
        free(all);
        return;
    }
    const zip_entry *e = zip_find(&z, "train_ckpt/data.pkl");
    CHECK(e != NULL, "%s: train_ckpt/data.pkl found", name);
    size_t pkl_offset = e ? (size_t)e->data_offset : 0, pkl_size = e ? (size_t)e->size : 0;
    zip_close(&z);

    // 1. Each byte of data.pkl inside the zip, CRC repaired, XOR'd with three masks: the whole reader.
    static const uint8_t masks[] = {0xff, 0x01, 0x80};
    int ok = 0, failed = 0, bad = 0;
    uint8_t *buf = malloc(size);
    for (size_t i = 0; i < pkl_size; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            memcpy(buf, all, size);
            buf[pkl_offset + i] ^= masks[m];
            fix_crc(buf, size, "train_ckpt/data.pkl", buf + pkl_offset, pkl_size);
            tensor_file f;
            outcome(torch_pt_parse(buf, size, name, &f), &f, name, &ok, &failed, &bad);
        }
    }
    CHECK(bad == 0 && failed > 0, "%s: %zu byte flips of data.pkl (CRC repaired): %d read, %d refused, %d refused "
          "without naming the file or read with inconsistent views", name, pkl_size * sizeof masks, ok, failed, bad);

    // 2. Each byte of the whole file XOR 0xff (zip structures, storages, CRCs).
    ok = failed = bad = 0;
    for (size_t i = 0; i < size; i++) {
        memcpy(buf, all, size);
        buf[i] ^= 0xff;
        tensor_file f;
        outcome(torch_pt_parse(buf, size, name, &f), &f, name, &ok, &failed, &bad);
    }
    CHECK(bad == 0 && failed > 0, "%s: %zu whole-file byte flips: %d read, %d refused, %d refused without naming "
          "the file or read with inconsistent views", name, size, ok, failed, bad);

    // 3. The VM alone on data.pkl: every byte set to every opcode-ish value of a sample, every prefix,
    //    and random multi-byte mutations from a fixed LCG seed.
    uint8_t *pkl = malloc(pkl_size);
    memcpy(pkl, all + pkl_offset, pkl_size);
    pickle_doc doc;
    int vm_ok = 0, vm_failed = 0, vm_bad = 0, prefix_accepted = 0;
    static const uint8_t values[] = {0x00, 0x28, 0x29, 0x2e, 0x30, 0x31, 0x32, 0x51, 0x52, 0x5d, 0x61, 0x62,
                                     0x65, 0x68, 0x71, 0x72, 0x73, 0x74, 0x75, 0x7d, 0x81, 0x85, 0x86, 0x87,
                                     0x8a, 0x8b, 0x93, 0x94, 0xff};
    for (size_t i = 0; i < pkl_size; i++) {
        for (size_t v = 0; v < sizeof values; v++) {
            uint8_t saved = pkl[i];
            pkl[i] = values[v];
            if (pickle_parse(pkl, pkl_size, "fuzz", &doc) == DIT_OK) {
                vm_ok++;
                vm_bad += doc.root == NULL;
                pickle_doc_free(&doc);
            } else {
                vm_failed++;
                vm_bad += !strstr(dit_last_error(), "fuzz");
            }
            pkl[i] = saved;
        }
    }
    for (size_t n = 0; n < pkl_size; n++) {
        uint8_t *prefix = malloc(n ? n : 1);
        memcpy(prefix, pkl, n);
        if (pickle_parse(prefix, n, "fuzz", &doc) == DIT_OK) {
            prefix_accepted++;
            pickle_doc_free(&doc);
        }
        free(prefix);
    }
    uint64_t state = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t *mutant = malloc(pkl_size);
        memcpy(mutant, pkl, pkl_size);
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        int changes = 1 + (int)(state >> 62);
        for (int c = 0; c < changes; c++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            mutant[(state >> 33) % pkl_size] = (uint8_t)(state >> 20);
        }
        if (pickle_parse(mutant, pkl_size, "fuzz", &doc) == DIT_OK) {
            vm_ok++;
            vm_bad += doc.root == NULL;
            pickle_doc_free(&doc);
        } else {
            vm_failed++;
            vm_bad += !strstr(dit_last_error(), "fuzz");
        }
        free(mutant);
    }
    CHECK(prefix_accepted == 0, "pickle VM: all %zu strict prefixes of data.pkl refused (%d accepted)", pkl_size,
          prefix_accepted);
    CHECK(vm_bad == 0 && vm_failed > 0, "pickle VM: %d mutated pickles run (%d accepted, %d refused; %d refused "
          "without naming the input or accepted without a root value)", vm_ok + vm_failed, vm_ok, vm_failed, vm_bad);
    free(pkl);
    free(buf);
    free(all);
}

// ---- hand-made pickles -------------------------------------------------------------------------

typedef struct {
    uint8_t *data;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static void op(bytes *b, uint8_t c) { put(b, &c, 1); }
static void ops(bytes *b, const char *s) { put(b, s, strlen(s)); }
static void str(bytes *b, const char *s) {   // BINUNICODE
    uint32_t n = (uint32_t)strlen(s);
    uint8_t h[5] = {'X', (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    put(b, h, 5);
    put(b, s, n);
}
static void integer(bytes *b, int64_t v) {   // LONG1 of 8 bytes
    uint8_t h[10] = {0x8a, 8};
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)v >> (8 * i));
    put(b, h, 10);
}
static void global(bytes *b, const char *module, const char *name) {
    op(b, 'c');
    ops(b, module);
    op(b, '\n');
    ops(b, name);
    op(b, '\n');
}
// _rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
static void tensor(bytes *b, const char *cls, const char *key, int64_t numel, int64_t offset, int ndim,
                   const int64_t *size, const int64_t *stride) {
    global(b, "torch._utils", "_rebuild_tensor_v2");
    ops(b, "((");
    str(b, "storage");
    global(b, "torch", cls);
    str(b, key);
    str(b, "cpu");
    integer(b, numel);
    ops(b, "tQ");
    integer(b, offset);
    op(b, '(');
    for (int i = 0; i < ndim; i++) integer(b, size[i]);
    ops(b, "t(");
    for (int i = 0; i < ndim; i++) integer(b, stride[i]);
    ops(b, "t\x89");
    global(b, "collections", "OrderedDict");
    ops(b, ")Rt" "R");
}

// _rebuild_tensor_v3 (torch 2.x, dtype given explicitly) over an untyped storage of numel_bytes bytes.
static void tensor_v3(bytes *b, const char *dtype, int64_t numel_bytes, int64_t offset, int64_t size) {
    global(b, "torch._utils", "_rebuild_tensor_v3");
    ops(b, "((");
    str(b, "storage");
    global(b, "torch", "UntypedStorage");
    str(b, "0");
    str(b, "cpu");
    integer(b, numel_bytes);
    ops(b, "tQ");
    integer(b, offset);
    op(b, '(');
    integer(b, size);
    ops(b, "t(");
    integer(b, 1);
    ops(b, "t\x89");
    global(b, "collections", "OrderedDict");
    ops(b, ")R");
    global(b, "torch", dtype);
    ops(b, "tR");
}

// Writes archive/data.pkl, archive/data/0 (numel f32 values 0, 1, 2...) and an optional byteorder.
static const char *write_pt(const char *file, const bytes *pkl, int numel, const char *byteorder) {
    const char *path = scratch_path(file);
    FILE *fp = fopen(path, "wb");
    if (!fp) return path;
    zip_writer *w = zip_writer_open(fp, path);
    zip_writer_add(w, "archive/data.pkl", pkl->data, pkl->len);
    if (byteorder) zip_writer_add(w, "archive/byteorder", byteorder, strlen(byteorder));
    float *values = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
    for (int i = 0; i < numel; i++) values[i] = (float)i;
    zip_writer_add(w, "archive/data/0", values, sizeof(float) * (size_t)numel);
    free(values);
    zip_writer_finish(w);
    fclose(fp);
    return path;
}

// Runs one pickle through the whole reader; expects failure with a message containing `expect`.
static void expect_pt_error(const char *what, const bytes *pkl, int numel, const char *byteorder,
                            const char *expect) {
    const char *path = write_pt("hostile.pt", pkl, numel, byteorder);
    tensor_file f;
    dit_status st = torch_pt_read(path, &f);
    if (st == DIT_OK) tensor_file_free(&f);
    CHECK(st != DIT_OK && starts_with(dit_last_error(), path) && strstr(dit_last_error(), expect),
          "%s: refused with '%s': %s", what, expect, st ? dit_last_error() : "accepted");
}

static void test_hostile_tensors(void) {
    bytes b = {0};
    int64_t size[2], stride[2];

    // A view past the end of its storage (size 5 on 4 elements).
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "FloatStorage", "0", 4, 0, 1, (size[0] = 5, size), (stride[0] = 1, stride));
    ops(&b, "u.");
    expect_pt_error("view beyond its storage", &b, 4, NULL, "view reaches");
    b.len = 0;
    // Offset past the end.
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "FloatStorage", "0", 4, 4, 1, (size[0] = 1, size), (stride[0] = 1, stride));
    ops(&b, "u.");
    expect_pt_error("offset beyond its storage", &b, 4, NULL, "view reaches");
    b.len = 0;
    // Extent overflowing int64.
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "FloatStorage", "0", 4, 0, 2, (size[0] = 4, size[1] = 2, size),
           (stride[0] = INT64_MAX / 2, stride[1] = 1, stride));
    ops(&b, "u.");
    expect_pt_error("stride overflow", &b, 4, NULL, "overflows");
    b.len = 0;
    // Element count overflowing.
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "FloatStorage", "0", 4, 0, 2, (size[0] = (int64_t)1 << 40, size[1] = (int64_t)1 << 40, size),
           (stride[0] = 0, stride[1] = 0, stride));
    ops(&b, "u.");
    expect_pt_error("numel overflow", &b, 4, NULL, "overflows");
    b.len = 0;
    // A huge stride-0 expand of one element: refused instead of allocating terabytes.
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "FloatStorage", "0", 1, 0, 1, (size[0] = (int64_t)1 << 40, size), (stride[0] = 0, stride));
    ops(&b, "u.");
    expect_pt_error("huge expand", &b, 1, NULL, "gathering");
    b.len = 0;
    // Storage header larger than the member.
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "FloatStorage", "0", 100, 0, 1, (size[0] = 1, size), (stride[0] = 1, stride));
    ops(&b, "u.");
    expect_pt_error("storage larger than its member", &b, 4, NULL, "holds 16 bytes");
    b.len = 0;
    // Missing storage member, unsupported storage class, big-endian.
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "FloatStorage", "7", 4, 0, 1, (size[0] = 4, size), (stride[0] = 1, stride));
    ops(&b, "u.");
    expect_pt_error("missing storage", &b, 4, NULL, "archive/data/7' is missing");
    expect_pt_error("big-endian byteorder", &b, 4, "big", "big-endian");
    b.len = 0;
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "ComplexFloatStorage", "0", 2, 0, 1, (size[0] = 2, size), (stride[0] = 1, stride));
    ops(&b, "u.");
    expect_pt_error("complex storage", &b, 4, NULL, "ComplexFloatStorage is not supported");
    b.len = 0;

    // Duplicate names: the first one wins; an explicit little byteorder is accepted.
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor(&b, "FloatStorage", "0", 4, 0, 1, (size[0] = 2, size), (stride[0] = 1, stride));
    str(&b, "w");
    tensor(&b, "FloatStorage", "0", 4, 2, 1, (size[0] = 2, size), (stride[0] = 1, stride));
    ops(&b, "u.");
    const char *path = write_pt("dup.pt", &b, 4, "little");
    tensor_file f;
    dit_status st = torch_pt_read(path, &f);
    if (CHECK(st == DIT_OK, "duplicate names read: %s", st ? dit_last_error() : "ok")) {
        float w[2] = {-1, -1};   // our zip writer does not align members: read through memcpy
        if (f.count == 1 && f.tensors[0].nbytes == sizeof w) memcpy(w, f.tensors[0].data, sizeof w);
        CHECK(w[0] == 0.0f && w[1] == 1.0f, "duplicate name 'w': one tensor, the first (values 0, 1)");
        tensor_file_free(&f);
    }
    b.len = 0;

    // torch 2.x's _rebuild_tensor_v3 over an UntypedStorage (16 bytes = 4 floats 0..3): elements 1, 2.
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor_v3(&b, "float32", 16, 1, 2);
    ops(&b, "u.");
    path = write_pt("v3.pt", &b, 4, NULL);
    st = torch_pt_read(path, &f);
    if (CHECK(st == DIT_OK, "_rebuild_tensor_v3 over an UntypedStorage read: %s", msg(st))) {
        float w[2] = {-1, -1};
        if (f.count == 1 && f.tensors[0].dtype == DT_F32 && f.tensors[0].nbytes == sizeof w)
            memcpy(w, f.tensors[0].data, sizeof w);
        CHECK(w[0] == 1.0f && w[1] == 2.0f, "_rebuild_tensor_v3: w = float32 [2] at offset 1 = {1, 2}");
        tensor_file_free(&f);
    }
    b.len = 0;
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor_v3(&b, "float32", 16, 3, 2);
    ops(&b, "u.");
    expect_pt_error("_rebuild_tensor_v3 past its untyped storage", &b, 4, NULL, "view reaches");
    b.len = 0;
    ops(&b, "\x80\x02}(");
    str(&b, "w");
    tensor_v3(&b, "complex64", 16, 0, 2);
    ops(&b, "u.");
    expect_pt_error("_rebuild_tensor_v3 with complex64", &b, 4, NULL, "unsupported dtype torch.complex64");
    b.len = 0;

    // Deep nesting (100k lists) and a list containing itself: refused by the flattening, no stack overflow.
    ops(&b, "\x80\x02");
    for (int i = 0; i < 100000; i++) op(&b, ']');
    for (int i = 0; i < 99999; i++) op(&b, 'a');
    op(&b, '.');
    expect_pt_error("100000 nested lists", &b, 4, NULL, "nested deeper");
    b.len = 0;
    put(&b, "\x80\x02]q\x00h\x00" "a.", 9);
    expect_pt_error("a list containing itself", &b, 4, NULL, "nested deeper");
    b.len = 0;
    // A DAG of 60 levels [x, x]: 2^60 paths, refused by the visit bound.
    ops(&b, "\x80\x02N");
    for (int i = 0; i < 60; i++) ops(&b, "2\x86");
    op(&b, '.');
    expect_pt_error("exponential DAG", &b, 4, NULL, "more than");
    free(b.data);

    // Not a zip at all, a bare pickle, an empty file.
    bytes raw = {0};
    ops(&raw, "\x80\x02}.");
    path = scratch_path("bare.pt");
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fwrite(raw.data, 1, raw.len, fp);
        fclose(fp);
    }
    st = torch_pt_read(path, &f);
    CHECK(st != DIT_OK && strstr(dit_last_error(), "bare pickle"), "bare pickle: %s",
          msg(st));
    free(raw.data);
    path = scratch_path("empty.pt");
    fp = fopen(path, "wb");
    if (fp) fclose(fp);
    st = torch_pt_read(path, &f);
    CHECK(st != DIT_OK && starts_with(dit_last_error(), path), "empty file: %s",
          msg(st));
}

// Runs a pickle given as bytes through the VM alone.
static dit_status vm(const char *p, size_t n, pickle_doc *doc) {
    uint8_t *copy = malloc(n ? n : 1);   // exact size, so ASan sees over-reads
    memcpy(copy, p, n);
    dit_status st = pickle_parse(copy, n, "nasty", doc);
    free(copy);   // values are copies: the doc does not point into the input
    return st;
}

#define VM_ERR(lit, expect)                                                                          \
    do {                                                                                             \
        pickle_doc d_;                                                                               \
        dit_status st_ = vm(lit, sizeof(lit) - 1, &d_);                                              \
        if (st_ == DIT_OK) pickle_doc_free(&d_);                                                     \
        CHECK(st_ != DIT_OK && strstr(dit_last_error(), expect), "pickle %s refused: %s", #lit,    \
              st_ ? dit_last_error() : "accepted");                                                  \
    } while (0)

static void test_nasty_pickles(void) {
    VM_ERR("\x80\x02h\x05.", "never set");                        // GET of an unset memo index
    VM_ERR("\x80\x02j\x00\x10\x00\x00.", "never set");            // LONG_BINGET far away
    VM_ERR("\x80\x02]r\xff\xff\xff\xff.", "beyond the limit");    // huge LONG_BINPUT
    VM_ERR("\x80\x02]p99999999999\n.", "beyond the limit");        // huge PUT
    VM_ERR(".", "underflow");                                     // STOP with an empty stack
    VM_ERR("\x80\x02.", "underflow");
    VM_ERR("N(.", "underflow");                                   // STOP right after MARK
    VM_ERR("0", "underflow");                                     // POP on empty
    VM_ERR("", "empty pickle");
    VM_ERR("\x80\x02J\x01\x02", "truncated");                     // truncated BININT
    VM_ERR("\x80\x02X\x05\x00\x00\x00" "ab.", "truncated");       // BINUNICODE length past the end
    VM_ERR("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff" "a.", "truncated");   // BINUNICODE8 2^64-1
    VM_ERR("\x80\x02\x8e\x00\x00\x00\x00\x00\x00\x00\x80" "a.", "truncated");   // BINBYTES8 2^63
    VM_ERR("\x80\x02T\xff\xff\xff\xff.", "negative");             // BINSTRING of negative length
    VM_ERR("\x80\x02\x8b\xff\xff\xff\x7f.", "truncated");         // LONG4 of 2^31-1 bytes
    VM_ERR("\x80\x02\x8b\x00\x00\x00\x80.", "negative");          // LONG4 negative length
    VM_ERR("\x80\x02\x8a\x05\x01", "truncated");                  // LONG1 past the end
    VM_ERR("\x80\x02\x95\x01\x00", "truncated");                  // FRAME header cut
    VM_ERR("\x80\x02" "cos\nsys", "newline");                     // GLOBAL without its newline
    VM_ERR("\x80\x02N", "without STOP");
    VM_ERR("\x80\x06N.", "protocol");
    VM_ERR("\x80\x02\xff.", "unknown opcode");
    VM_ERR("\x80\x02K\x01K\x02" "a.", "APPEND to a int");
    VM_ERR("\x80\x02}(K\x01u.", "odd");
    VM_ERR("\x80\x02K\x01" "e.", "no MARK");
    VM_ERR("\x80\x02(a.", "underflow");                           // APPEND can't reach below MARK
    VM_ERR("\x80\x02(K\x01tQ.", "persistent id");                 // malformed persistent id
    VM_ERR("\x80\x02P0\n.", "persistent id");                     // text persistent id
    VM_ERR("\x80\x02\x82\x01.", "extension registry");
    VM_ERR("\x80\x05\x97.", "out-of-band");
    VM_ERR("\x80\x02K\x01K\x02\x93.", "STACK_GLOBAL");
    VM_ERR("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n(K\x01K\x02K\x03K\x04tR.", "not a storage");
    VM_ERR("\x80\x02I12x\n.", "malformed");
    VM_ERR("\x80\x02" "F1.5x\n.", "malformed");
    VM_ERR("\x80\x02" "S'abc\n.", "malformed");
    VM_ERR("\x80\x02" "cmod\0x\nname\n.", "NUL");

    // Deep MARKs and a deep stack hit their bounds (no unbounded growth).
    size_t n = 1100000;
    char *deep = malloc(n + 1);
    memset(deep, '(', n);
    deep[n] = '.';
    pickle_doc d;
    dit_status st = vm(deep, n + 1, &d);
    CHECK(st != DIT_OK && strstr(dit_last_error(), "MARK"), "1.1M nested MARKs refused: %s", dit_last_error());
    memset(deep, 'N', n);
    st = vm(deep, n + 1, &d);
    CHECK(st != DIT_OK && strstr(dit_last_error(), "stack deeper"), "1.1M stack entries refused: %s",
          dit_last_error());
    free(deep);

    // 100k nested lists are fine for the (iterative) VM itself.
    bytes b = {0};
    for (int i = 0; i < 100000; i++) op(&b, ']');
    for (int i = 0; i < 99999; i++) op(&b, 'a');
    op(&b, '.');
    st = vm((const char *)b.data, b.len, &d);
    if (CHECK(st == DIT_OK, "pickle VM: 100000 nested lists build iteratively: %s", st ? dit_last_error() : "ok"))
        pickle_doc_free(&d);
    free(b.data);

    // os.system via GLOBAL + REDUCE is an inert opaque object.
    static const char evil[] = "cposix\nsystem\n(S'touch " PWNED_FILE "'\ntR.";
    unlink(PWNED_FILE);
    st = vm(evil, sizeof evil - 1, &d);
    if (CHECK(st == DIT_OK && d.root->kind == PV_OPAQUE && !strcmp(d.root->u.cls.module, "posix") &&
                  !strcmp(d.root->u.cls.name, "system"),
              "GLOBAL posix.system + REDUCE gives an opaque object, not a call"))
        pickle_doc_free(&d);
    CHECK(access(PWNED_FILE, F_OK) != 0, "pickled os.system did not run");

    // Protocol 0 text opcodes: dict with str keys, text ints/bools/floats, a too-wide LONG, memo PUT/GET.
    static const char p0[] = "(dp0\nS'a'\np1\nI5\nsS'b'\np2\n(lp3\nF1.5\naL123456789012345678901234567890L\n"
                             "aI01\nag1\nasV\\u00e9t\\u00e9\np4\nL-7L\ns.";
    st = vm(p0, sizeof p0 - 1, &d);
    if (CHECK(st == DIT_OK, "protocol 0 pickle runs: %s", st ? dit_last_error() : "ok")) {
        const pickle_value *r = d.root;
        int good = r->kind == PV_DICT && r->u.dict.count == 3 && !strcmp(r->u.dict.keys[0]->u.str.data, "a") &&
                   r->u.dict.values[0]->kind == PV_INT && r->u.dict.values[0]->u.i == 5 &&
                   r->u.dict.values[2]->kind == PV_INT && r->u.dict.values[2]->u.i == -7;
        const pickle_value *l = good ? r->u.dict.values[1] : NULL;
        good = good && l->kind == PV_LIST && l->u.seq.count == 4 && l->u.seq.items[0]->kind == PV_FLOAT &&
               l->u.seq.items[0]->u.f == 1.5 && l->u.seq.items[1]->kind == PV_OPAQUE &&
               l->u.seq.items[2]->kind == PV_BOOL && l->u.seq.items[2]->u.i == 1 &&
               l->u.seq.items[3] == r->u.dict.keys[0];
        CHECK(good, "protocol 0: {'a': 5, 'b': [1.5, <wide int>, True, 'a' (memo)], ...: -7}");
        pickle_doc_free(&d);
    }

    // Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, EMPTY_SET/ADDITEMS, FROZENSET,
    // NEWOBJ_EX, TUPLE3, binary ints and floats, LONG1 sign extension.
    static const char p4[] =
        "\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00"
        "\x8c\x0b" "collections\x94\x8c\x0b" "OrderedDict\x94\x93\x94)R\x94"
        "(\x8c\x01x\x94J\xff\xff\xff\xff\x8c\x01y\x94\x8f(K\x01K\x02\x90\x8c\x01z\x94(K\x03\x91"
        "\x8c\x01w\x94G\x3f\xf8\x00\x00\x00\x00\x00\x00\x8c\x01v\x94\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff"
        "\x8c\x01u\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01"
        "\x8c\x01t\x94\x8c\x08" "argparse\x8c\x09Namespace\x93)}\x92}\x8c\x01k\x88sb"
        "\x8c\x01s\x94K\x01M\x02\x01\x8a\x03\x00\x80\x00\x87u.";
    st = vm(p4, sizeof p4 - 1, &d);
    if (CHECK(st == DIT_OK, "protocol 4 pickle runs: %s", st ? dit_last_error() : "ok")) {
        const pickle_value *r = d.root;
        int good = r->kind == PV_DICT && r->u.dict.count == 8;
        pickle_value **v = good ? r->u.dict.values : NULL;
        good = good && v[0]->kind == PV_INT && v[0]->u.i == -1 && v[1]->kind == PV_LIST && v[1]->u.seq.count == 2 &&
               v[2]->kind == PV_LIST && v[2]->u.seq.count == 1 && v[3]->kind == PV_FLOAT && v[3]->u.f == 1.5 &&
               v[4]->kind == PV_INT && v[4]->u.i == -1 && v[5]->kind == PV_OPAQUE && v[6]->kind == PV_OPAQUE &&
               !strcmp(v[6]->u.cls.name, "Namespace") && v[7]->kind == PV_TUPLE && v[7]->u.seq.count == 3 &&
               v[7]->u.seq.items[1]->u.i == 258 && v[7]->u.seq.items[2]->u.i == 32768;
        CHECK(good, "protocol 4: OrderedDict{x: -1, y: set(2), z: frozenset(1), w: 1.5, v: -1 (9-byte LONG1), "
                    "u: <wide int>, t: <Namespace>, s: (1, 258, 32768)}");
        pickle_doc_free(&d);
    }
}

void test_torch_pt(void) {
    test_official();
    test_train_checkpoint();
    test_dtypes();
    test_views();
    test_parameter_protocols_malicious();
    test_truncations();
    test_byte_flips();
    test_hostile_tensors();
    test_nasty_pickles();
}
