// Tests of the file formats in src/io and src/base/fileio.c: round trips for every format and dtype,
// files written by numpy/zipfile (tests/golden/io, made by tests/ref/make_io_fixtures.py), and above
// all bad input: truncations at every length, lying headers, corrupt bytes. Run under `make asan`.
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/tensors.h"
#include "io/zip.h"
#include "test.h"

// ---- helpers -----------------------------------------------------------------------------------

static void clear_error(void) { dit_set_error("%s", ""); }

static void write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "test: cannot write %s\n", path);
        exit(2);
    }
}

static uint8_t *read_whole_file(const char *path, size_t *size) {
    mapped_file m;
    if (map_file(path, &m) != DIT_OK) {
        fprintf(stderr, "test: %s\n", dit_last_error());
        exit(2);
    }
    uint8_t *copy = dit_malloc(m.size);
    if (m.size) memcpy(copy, m.data, m.size);
    *size = m.size;
    unmap_file(&m);
    return copy;
}

// A failing call must return DIT_ERR with a message that mentions `mention` (usually the file name).
static void expect_failure(dit_status status, const char *mention, const char *what) {
    const char *message = status == DIT_ERR ? dit_last_error() : "(accepted)";
    CHECK(status == DIT_ERR && strstr(message, mention) != NULL, "%s is rejected: %s", what, message);
}

static int failed_naming(dit_status status, const char *mention) {
    return status == DIT_ERR && strstr(dit_last_error(), mention) != NULL;
}

// No "<name>.tmp.<pid>" file may remain in the scratch directory after a write, failed or not.
static int scratch_has_temp_files(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", scratch_path(""));
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) found |= strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return found;
}

static float bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Example tensors of every dtype: element i holds a value derived from i, in the dtype's own encoding.
static void fill_example(dit_dtype dt, void *data, size_t count) {
    for (size_t i = 0; i < count; i++) {
        double v = (double)i * 1.5 - 3;
        uint8_t *p = (uint8_t *)data + i * dtype_size(dt);
        switch (dt) {
        case DT_F32: { float x = (float)v; memcpy(p, &x, 4); break; }
        case DT_F64: { memcpy(p, &v, 8); break; }
        case DT_F16: { uint16_t h = (uint16_t)(0x3C00 + i); memcpy(p, &h, 2); break; }   // 1 + i/1024
        case DT_BF16: { uint16_t h = (uint16_t)(0x3F80 + i); memcpy(p, &h, 2); break; }  // 1 + i/128
        case DT_U8: p[0] = (uint8_t)(i * 7); break;
        case DT_I8: p[0] = (uint8_t)(int8_t)(-(int)i); break;
        case DT_I16: { int16_t x = (int16_t)(-300 * (int)i); memcpy(p, &x, 2); break; }
        case DT_I32: { int32_t x = (int32_t)(-70000 * (int)i); memcpy(p, &x, 4); break; }
        case DT_I64: { int64_t x = -(int64_t)i * 5000000000LL; memcpy(p, &x, 8); break; }
        case DT_BOOL: p[0] = (uint8_t)(i % 3 == 0); break;
        }
    }
}

static const dit_dtype all_dtypes[] = {DT_F32, DT_F16, DT_BF16, DT_F64, DT_U8, DT_I8, DT_I16, DT_I32, DT_I64, DT_BOOL};
#define DTYPE_COUNT ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))

// ---- dtypes and conversion -----------------------------------------------------------------------

static void test_dtypes(void) {
    static const char *names[] = {"F32", "F16", "BF16", "F64", "U8", "I8", "I16", "I32", "I64", "BOOL"};
    static const size_t sizes[] = {4, 2, 2, 8, 1, 1, 2, 4, 8, 1};
    int ok = 1;
    for (int i = 0; i < DTYPE_COUNT; i++)
        ok &= strcmp(dtype_name(all_dtypes[i]), names[i]) == 0 && dtype_size(all_dtypes[i]) == sizes[i];
    CHECK(ok, "dtype names and sizes follow the safetensors spellings");
}

static void test_half_conversion(void) {
    // Bit patterns and their exact float32 values; the source buffer is offset by one byte so the
    // conversion is exercised on unaligned data.
    static const uint16_t half_bits[] = {0x0000, 0x8000, 0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400,
                                         0x8001, 0x3555, 0x7C00, 0xFC00};
    const float half_want[] = {0.0f, -0.0f, 1.0f, -2.0f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f,
                               -0x1p-24f, 0x1.554p-2f, INFINITY, -INFINITY};
    enum { N = sizeof half_bits / sizeof half_bits[0] };
    uint8_t raw[2 * N + 1];
    memcpy(raw + 1, half_bits, sizeof half_bits);
    tensor_view t = {.name = "half", .dtype = DT_F16, .ndim = 1, .shape = {N}, .data = raw + 1, .nbytes = 2 * N};
    float got[N];
    tensor_to_f32(&t, got);
    CHECK_CLOSE("f16 -> f32 of zero, normals, max, subnormals, inf (unaligned source)", got, half_want, N, 0, 0);
    CHECK(signbit(got[1]) && !signbit(got[0]), "f16 -0 keeps its sign");

    uint16_t nan_bits[2] = {0x7E00, 0x7C01};   // quiet NaN and a signalling payload: both stay NaN
    tensor_view tn = {.name = "nan", .dtype = DT_F16, .ndim = 1, .shape = {2}, .data = nan_bits, .nbytes = 4};
    float nans[2];
    tensor_to_f32(&tn, nans);
    CHECK(isnan(nans[0]) && isnan(nans[1]), "f16 NaNs (quiet and signalling payload) convert to NaN");

    static const uint16_t bf16_bits[] = {0x3F80, 0xC000, 0x0001, 0x7F80, 0xFF80, 0x8000, 0x4049};
    const float bf16_want[] = {1.0f, -2.0f, bits_to_float(0x00010000), INFINITY, -INFINITY, -0.0f,
                               bits_to_float(0x40490000)};
    enum { M = sizeof bf16_bits / sizeof bf16_bits[0] };
    uint8_t raw_bf[2 * M + 1];
    memcpy(raw_bf + 1, bf16_bits, sizeof bf16_bits);
    tensor_view tb = {.name = "bf", .dtype = DT_BF16, .ndim = 1, .shape = {M}, .data = raw_bf + 1, .nbytes = 2 * M};
    float got_bf[M];
    tensor_to_f32(&tb, got_bf);
    CHECK_CLOSE("bf16 -> f32 of normals, subnormal, inf, -0, pi (unaligned source)", got_bf, bf16_want, M, 0, 0);
    uint16_t bf_nan = 0x7FC0;
    tensor_view tbn = {.name = "bfnan", .dtype = DT_BF16, .ndim = 0, .data = &bf_nan, .nbytes = 2};
    float got_nan;
    tensor_to_f32(&tbn, &got_nan);
    CHECK(isnan(got_nan), "bf16 NaN converts to NaN (0-d tensor)");

    // Integer and f64 sources, unaligned.
    struct { dit_dtype dt; float want[4]; } cases[] = {
        {DT_F64, {-3, -1.5f, 0, 1.5f}},
        {DT_U8, {0, 7, 14, 21}},
        {DT_I8, {0, -1, -2, -3}},
        {DT_I16, {0, -300, -600, -900}},
        {DT_I32, {0, -70000, -140000, -210000}},
        {DT_I64, {0, -5e9f, -1e10f, -1.5e10f}},
        {DT_BOOL, {1, 0, 0, 1}},
        {DT_F32, {-3, -1.5f, 0, 1.5f}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t buffer[8 * 4 + 1];
        fill_example(cases[c].dt, buffer + 1, 4);
        tensor_view tc = {.name = "x", .dtype = cases[c].dt, .ndim = 2, .shape = {2, 2}, .data = buffer + 1,
                          .nbytes = 4 * dtype_size(cases[c].dt)};
        float out[4];
        tensor_to_f32(&tc, out);
        char what[64];
        snprintf(what, sizeof what, "%s -> f32 (unaligned source)", dtype_name(cases[c].dt));
        CHECK_CLOSE(what, out, cases[c].want, 4, 0, 0);
        CHECK(tensor_is_float(&tc) == (cases[c].dt == DT_F32 || cases[c].dt == DT_F64), "tensor_is_float(%s)",
              dtype_name(cases[c].dt));
    }

    // numpy's own float16 -> float32 conversion of edge values.
    npy_array half, want;
    if (npy_read(golden_path("io/half_edges.npy"), &half) == DIT_OK &&
        npy_read(golden_path("io/half_edges_f32.npy"), &want) == DIT_OK) {
        tensor_view th = {.name = "h", .dtype = half.dtype, .ndim = half.ndim, .data = half.data, .nbytes = half.nbytes};
        memcpy(th.shape, half.shape, sizeof th.shape);
        float converted[16];
        int n = (int)tensor_numel(&th);
        CHECK(half.dtype == DT_F16 && n == 12 && want.dtype == DT_F32, "half_edges.npy is '<f2' with 12 values");
        if (n <= 16) {
            tensor_to_f32(&th, converted);
            CHECK_CLOSE("f16 -> f32 matches numpy's astype(float32) on edge values", converted, (float *)want.data,
                        (size_t)n, 0, 0);
        }
        npy_free(&half);
        npy_free(&want);
    } else {
        CHECK(0, "read io/half_edges.npy: %s", dit_last_error());
    }
}

// ---- file basics -------------------------------------------------------------------------------

static void test_fileio(void) {
    mapped_file m;
    const char *missing = scratch_path("does-not-exist.bin");
    expect_failure(map_file(missing, &m), missing, "mapping a missing file");
    expect_failure(map_file(scratch_path(""), &m), scratch_path(""), "mapping a directory");
    const char *empty = scratch_path("empty.bin");
    write_file(empty, "", 0);
    CHECK(map_file(empty, &m) == DIT_OK && m.size == 0 && m.data == NULL, "an empty file maps to (NULL, 0)");
    unmap_file(&m);

    const char *target = scratch_path("atomic.txt");
    atomic_file a;
    CHECK(atomic_file_open(&a, target) == DIT_OK, "atomic_file_open %s", target);
    fputs("first", a.f);
    CHECK(access(target, F_OK) != 0, "the final name does not exist before commit");
    CHECK(atomic_file_commit(&a) == DIT_OK, "atomic_file_commit");
    size_t size;
    uint8_t *text = read_whole_file(target, &size);
    CHECK(size == 5 && memcmp(text, "first", 5) == 0, "committed file holds what was written");
    free(text);
    CHECK(atomic_file_open(&a, target) == DIT_OK, "atomic_file_open over an existing file");
    fputs("second, aborted", a.f);
    atomic_file_abort(&a);
    text = read_whole_file(target, &size);
    CHECK(size == 5 && memcmp(text, "first", 5) == 0, "an aborted write leaves the old file untouched");
    free(text);
    CHECK(!scratch_has_temp_files(), "no temporary file remains after commit and abort");
    const char *bad_dir = scratch_path("no/such/dir/out.bin");
    expect_failure(atomic_file_open(&a, bad_dir), bad_dir, "atomic write into a missing directory");
}

// ---- zip ---------------------------------------------------------------------------------------

// Build an archive in memory with our writer.
static uint8_t *build_zip(const char *const *names, const char *const *contents, int count, int force_zip64,
                          size_t *size) {
    char *buffer = NULL;
    size_t length = 0;
    FILE *f = open_memstream(&buffer, &length);
    zip_writer *w = zip_writer_open(f, "memory.zip");
    if (force_zip64) zip_writer_force_zip64(w);
    int ok = 1;
    for (int i = 0; i < count; i++) ok &= zip_writer_add(w, names[i], contents[i], strlen(contents[i])) == DIT_OK;
    ok &= zip_writer_finish(w) == DIT_OK;
    fclose(f);
    DIT_CHECK(ok);
    *size = length;
    return (uint8_t *)buffer;
}

// Open an archive and read every member; DIT_OK only when all of it succeeds. Never crashes.
static dit_status read_all_members(const uint8_t *data, size_t size, const char *path) {
    zip_archive z;
    if (zip_open_buffer(&z, data, size, path) != DIT_OK) return DIT_ERR;
    dit_status status = DIT_OK;
    for (int i = 0; i < z.count && status == DIT_OK; i++) {
        const uint8_t *bytes;
        uint8_t *owned;
        status = zip_entry_data(&z, &z.entries[i], &bytes, &owned);
        if (status == DIT_OK) {
            volatile uint8_t sink = 0;   // touch every byte so ASan sees any out-of-bounds view
            for (uint64_t k = 0; k < z.entries[i].size; k++) sink ^= bytes[k];
            (void)sink;
        }
        free(owned);
    }
    zip_close(&z);
    return status;
}

static int member_equals(const zip_archive *z, const char *name, const void *want, size_t size) {
    const zip_entry *e = zip_find(z, name);
    if (!e || e->size != size) return 0;
    const uint8_t *bytes;
    uint8_t *owned;
    if (zip_entry_data(z, e, &bytes, &owned) != DIT_OK) return 0;
    int same = size == 0 || memcmp(bytes, want, size) == 0;
    free(owned);
    return same;
}

static void test_zip_valid(void) {
    const char *names[] = {"one.txt", "dir/two.bin", "empty"};
    const char *contents[] = {"abc", "hello, zip", ""};
    for (int force = 0; force <= 1; force++) {
        size_t size;
        uint8_t *data = build_zip(names, contents, 3, force, &size);
        zip_archive z;
        dit_status s = zip_open_buffer(&z, data, size, "memory.zip");
        CHECK(s == DIT_OK && z.count == 3, "zip writer%s: archive of 3 stored members reopens",
              force ? " (forced zip64)" : "");
        if (s == DIT_OK) {
            int ok = 1;
            for (int i = 0; i < 3; i++) ok &= member_equals(&z, names[i], contents[i], strlen(contents[i]));
            CHECK(ok, "zip writer%s: every member reads back byte for byte with a valid CRC", force ? " (zip64)" : "");
            CHECK(zip_find(&z, "missing") == NULL, "zip_find of an absent name is NULL");
            zip_close(&z);
        }
        free(data);
    }

    // Python's zipfile: deflated members, an archive comment containing a fake end record, and a
    // local header with a zip64 extra field that the central header lacks.
    size_t size;
    const char *path = golden_path("io/comment.zip");
    uint8_t *data = read_whole_file(path, &size);
    zip_archive z;
    dit_status s = zip_open_buffer(&z, data, size, path);
    CHECK(s == DIT_OK && z.count == 2, "comment.zip (Python zipfile, deflate, archive comment) opens");
    if (s == DIT_OK) {
        uint8_t expected[200];
        for (int i = 0; i < 200; i++) expected[i] = (uint8_t)i;
        const zip_entry *e = zip_find(&z, "zip64.bin");
        CHECK(member_equals(&z, "hello.txt", "hello hello hello hello\n", 24), "comment.zip: hello.txt inflates");
        CHECK(e && e->method == 8 && member_equals(&z, "zip64.bin", expected, 200),
              "comment.zip: zip64.bin (zip64 local extra) inflates to bytes 0..199");
        zip_close(&z);
    }
    free(data);

    // More than 65535 members needs the zip64 end records.
    enum { MANY = 65540 };
    char *buffer = NULL;
    size_t length = 0;
    FILE *f = open_memstream(&buffer, &length);
    zip_writer *w = zip_writer_open(f, "many.zip");
    int ok = 1;
    for (int i = 0; i < MANY; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%d", i);
        ok &= zip_writer_add(w, name, name, strlen(name)) == DIT_OK;
    }
    ok &= zip_writer_finish(w) == DIT_OK;
    fclose(f);
    s = zip_open_buffer(&z, (uint8_t *)buffer, length, "many.zip");
    CHECK(ok && s == DIT_OK && z.count == MANY && member_equals(&z, "m65539", "m65539", 6),
          "zip with %d members (zip64 end records) round-trips", MANY);
    if (s == DIT_OK) zip_close(&z);
    free(buffer);
}

static void put_u32_at(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// Byte layout of build_zip({"one"}, {"abc"}): local header 0..29, name 30..32, data 33..35,
// central header 36..81, name 82..84, end record 85..106.
enum { ONE_CD = 36, ONE_EOCD = 85, ONE_SIZE = 107 };

static void test_zip_hostile(void) {
    const char *names[] = {"one"};
    const char *contents[] = {"abc"};
    size_t size;
    uint8_t *good = build_zip(names, contents, 1, 0, &size);
    DIT_CHECK(size == ONE_SIZE);
    uint8_t bad[ONE_SIZE];
    const char *path = "hostile.zip";

#define MUTATE(offset, value, what)                                          \
    do {                                                                     \
        memcpy(bad, good, size);                                             \
        put_u32_at(bad + (offset), (value));                                 \
        expect_failure(read_all_members(bad, size, path), path, what);       \
    } while (0)
    MUTATE(ONE_EOCD + 16, 1000, "zip whose end record puts the central directory past the end");
    MUTATE(ONE_EOCD + 12, 0x7FFFFFFF, "zip whose central directory size is a lie");
    MUTATE(ONE_EOCD + 8, 0x00500050, "zip claiming 80 entries in a 49-byte central directory");
    MUTATE(ONE_EOCD + 8, 0xFFFFFFFF, "zip claiming 0xFFFF entries without zip64 records");
    MUTATE(ONE_CD + 42, 5000, "zip whose member's local header offset is out of range");
    MUTATE(ONE_CD + 42, 2, "zip whose member's local header offset points at garbage");
    MUTATE(ONE_CD + 20, 0xFFFFFFF0, "stored member whose sizes run past the buffer");
    MUTATE(ONE_CD + 24, 4, "stored member whose size differs from its compressed size");
    MUTATE(ONE_CD + 16, 0x12345678, "stored member with a wrong CRC");
    MUTATE(ONE_CD + 28, 0x00000500, "central header whose name length overruns the directory");
    MUTATE(ONE_CD + 20, 0xFFFFFFFF, "member with all-ones sizes and no zip64 extra field");
    MUTATE(ONE_CD + 10, 0x00000063, "member compressed with unsupported method 99");
    MUTATE(ONE_CD + 8, 0x00000001, "encrypted member");
    MUTATE(0 + 26, 0x00000040, "local header whose own name length pushes the data past the directory");
#undef MUTATE

    // Deflated members whose declared sizes lie: take Python's comment.zip and edit "hello.txt".
    const char *zpath = golden_path("io/comment.zip");
    size_t zsize;
    uint8_t *zdata = read_whole_file(zpath, &zsize);
    zip_archive z;
    if (zip_open_buffer(&z, zdata, zsize, zpath) == DIT_OK) {
        const zip_entry *e = zip_find(&z, "hello.txt");
        zip_entry lie = *e;
        const uint8_t *bytes;
        uint8_t *owned;
        lie.size = 10;
        expect_failure(zip_entry_data(&z, &lie, &bytes, &owned), "hello.txt", "deflated member larger than declared");
        lie.size = 100;
        expect_failure(zip_entry_data(&z, &lie, &bytes, &owned), "hello.txt", "deflated member smaller than declared");
        lie.size = (uint64_t)1 << 50;
        expect_failure(zip_entry_data(&z, &lie, &bytes, &owned), "hello.txt",
                       "deflated member claiming 2^50 bytes (beyond any deflate ratio)");
        lie = *e;
        lie.crc32 ^= 1;
        expect_failure(zip_entry_data(&z, &lie, &bytes, &owned), "CRC", "deflated member with a wrong CRC");
        lie = *e;
        lie.compressed_size = 3;
        expect_failure(zip_entry_data(&z, &lie, &bytes, &owned), "hello.txt", "truncated deflate stream");
        zip_close(&z);
    }

    // Every prefix of both archives, and every single byte set to 0x00 / 0xFF / +1: no crash, no leak,
    // and every prefix is an error (the end record is at the very end).
    int prefix_errors = 0, corrupt_runs = 0;
    for (size_t n = 0; n < zsize; n++) prefix_errors += failed_naming(read_all_members(zdata, n, zpath), zpath);
    for (size_t n = 0; n < size; n++) prefix_errors += failed_naming(read_all_members(good, n, path), path);
    CHECK(prefix_errors == (int)(zsize + size), "all %zu truncated prefixes of two zip files fail naming the file",
          zsize + size);
    // A corruption is handled when it is read (every member byte touched) or refused with a message naming
    // the file; a crash or an ASan report ends the run, an unnamed error fails here. Some must be refused
    // (else the corruptions never reached the parser).
    uint8_t *copy = dit_malloc(zsize);
    int corrupt_refused = 0, corrupt_unnamed = 0;
    for (size_t pos = 0; pos < zsize; pos++)
        for (int kind = 0; kind < 3; kind++) {
            memcpy(copy, zdata, zsize);
            copy[pos] = kind == 0 ? 0x00 : kind == 1 ? 0xFF : (uint8_t)(copy[pos] + 1);
            dit_status cs = read_all_members(copy, zsize, zpath);
            corrupt_refused += cs != DIT_OK;
            corrupt_unnamed += cs != DIT_OK && !failed_naming(cs, zpath);
            corrupt_runs++;
        }
    CHECK(corrupt_unnamed == 0 && corrupt_refused > 0,
          "%d single-byte corruptions of comment.zip: %d refused, %d of them without naming the file", corrupt_runs,
          corrupt_refused, corrupt_unnamed);
    free(copy);

    // The zip64 end records and extra fields: every prefix and every corrupted byte of a forced-zip64 archive.
    size_t size64;
    uint8_t *zip64 = build_zip(names, contents, 1, 1, &size64);
    prefix_errors = 0;
    for (size_t n = 0; n < size64; n++) prefix_errors += failed_naming(read_all_members(zip64, n, path), path);
    CHECK(prefix_errors == (int)size64, "all %zu truncated prefixes of a zip64 archive fail naming the file", size64);
    copy = dit_malloc(size64);
    corrupt_refused = corrupt_unnamed = 0;
    for (size_t pos = 0; pos < size64; pos++) {
        memcpy(copy, zip64, size64);
        copy[pos] ^= 0xFF;
        dit_status cs = read_all_members(copy, size64, path);
        corrupt_refused += cs != DIT_OK;
        corrupt_unnamed += cs != DIT_OK && !failed_naming(cs, path);
    }
    CHECK(corrupt_unnamed == 0 && corrupt_refused > 0,
          "%zu single-byte corruptions of a zip64 archive: %d refused, %d of them without naming the file", size64,
          corrupt_refused, corrupt_unnamed);
    free(copy);
    free(zip64);
    free(zdata);
    free(good);
}

// ---- safetensors -------------------------------------------------------------------------------

static void test_safetensors_round_trip(void) {
    // One tensor per dtype (shapes vary, including a 0-d scalar and an empty tensor), then metadata.
    tensor_out tensors[DTYPE_COUNT + 2];
    void *buffers[DTYPE_COUNT + 2];
    int count = 0;
    for (int i = 0; i < DTYPE_COUNT; i++, count++) {
        tensor_out *t = &tensors[count];
        static char names[DTYPE_COUNT][32];
        snprintf(names[i], sizeof names[i], "layer.%d.%s", i, dtype_name(all_dtypes[i]));
        t->name = names[i];
        t->dtype = all_dtypes[i];
        t->ndim = 2;
        t->shape[0] = 3;
        t->shape[1] = i + 1;
        buffers[count] = dit_malloc(3 * (size_t)(i + 1) * dtype_size(t->dtype));
        fill_example(t->dtype, buffers[count], 3 * (size_t)(i + 1));
        t->data = buffers[count];
    }
    double scalar = 2.75;
    tensors[count] = (tensor_out){.name = "scalar", .dtype = DT_F64, .ndim = 0, .data = &scalar};
    buffers[count++] = NULL;
    tensors[count] = (tensor_out){.name = "empty \"quoted\"", .dtype = DT_F32, .ndim = 3, .shape = {2, 0, 5}, .data = NULL};
    buffers[count++] = NULL;
    const char *keys[] = {"config", "tricky"};
    const char *values[] = {"{\"depth\": 28}", "tab\there\nnewline \\ backslash"};

    const char *path = scratch_path("round.safetensors");
    CHECK(safetensors_write(path, tensors, count, keys, values, 2) == DIT_OK, "safetensors_write %d tensors of every dtype", count);
    size_t size;
    uint8_t *raw = read_whole_file(path, &size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | raw[i];
    CHECK(header_len % 8 == 0 && memcmp(raw + 8, "{\"__metadata__\"", 15) == 0,
          "header is padded to a multiple of 8 (%llu) and starts with __metadata__", (unsigned long long)header_len);
    free(raw);

    tensor_file f;
    dit_status s = safetensors_read(path, &f);
    CHECK(s == DIT_OK, "safetensors_read of what we wrote: %s", s ? dit_last_error() : "ok");
    if (s != DIT_OK) goto cleanup;
    int same = f.count == count;
    for (int i = 0; i < count && same; i++) {
        const tensor_view *t = &f.tensors[i];   // the file order is the written order
        same &= strcmp(t->name, tensors[i].name) == 0 && t->dtype == tensors[i].dtype && t->ndim == tensors[i].ndim;
        for (int d = 0; d < t->ndim; d++) same &= t->shape[d] == tensors[i].shape[d];
        size_t bytes = (size_t)tensor_numel(t) * dtype_size(t->dtype);
        same &= t->nbytes == bytes && (bytes == 0 || memcmp(t->data, tensors[i].data, bytes) == 0);
    }
    CHECK(same, "every tensor reads back with its name, dtype, shape, bytes and order");
    CHECK(f.count > 0 && ((const uint8_t *)f.tensors[0].data - (const uint8_t *)f.map) % 8 == 0,
          "the data buffer starts 8-byte aligned in the file");
    CHECK(tensor_file_find(&f, "scalar") && tensor_numel(tensor_file_find(&f, "scalar")) == 1,
          "0-d tensor has one element");
    CHECK(tensor_file_meta(&f, "config") && strcmp(tensor_file_meta(&f, "config"), values[0]) == 0 &&
              tensor_file_meta(&f, "tricky") && strcmp(tensor_file_meta(&f, "tricky"), values[1]) == 0 &&
              tensor_file_meta(&f, "absent") == NULL,
          "metadata strings with quotes, tabs, newlines and backslashes survive");
    tensor_file_free(&f);
    CHECK(!scratch_has_temp_files(), "safetensors_write leaves no temporary file");

    // No metadata, no tensors: still a valid file.
    const char *empty = scratch_path("empty.safetensors");
    s = safetensors_write(empty, NULL, 0, NULL, NULL, 0);
    CHECK(s == DIT_OK && safetensors_read(empty, &f) == DIT_OK && f.count == 0 && f.meta_count == 0,
          "a safetensors file with no tensors round-trips");
    if (s == DIT_OK) tensor_file_free(&f);
cleanup:
    for (int i = 0; i < count; i++) free(buffers[i]);
}

static void test_safetensors_python(void) {
    const char *path = golden_path("io/python.safetensors");
    tensor_file f;
    dit_status s = safetensors_read(path, &f);
    CHECK(s == DIT_OK, "read python.safetensors (Python json header, unaligned data): %s", s ? dit_last_error() : "ok");
    if (s != DIT_OK) return;
    const tensor_view *brain = tensor_file_find(&f, "brain"), *half = tensor_file_find(&f, "half");
    CHECK(brain && brain->dtype == DT_BF16 && brain->ndim == 1 && brain->shape[0] == 3, "brain is BF16 [3]");
    CHECK(half && half->dtype == DT_F16 && half->ndim == 2 && half->shape[0] == 2 && half->shape[1] == 2, "half is F16 [2, 2]");
    if (brain && half) {
        float got[4];
        const float want_brain[] = {1.0f, -2.0f, 0.5f}, want_half[] = {1.0f, 0.5f, -1.0f, 2.0f};
        tensor_to_f32(brain, got);
        CHECK_CLOSE("python.safetensors brain (bf16)", got, want_brain, 3, 0, 0);
        tensor_to_f32(half, got);
        CHECK_CLOSE("python.safetensors half (f16)", got, want_half, 4, 0, 0);
    }
    const char *note = tensor_file_meta(&f, "note");
    CHECK(note && strcmp(note, "quote \" and \\ backslash") == 0 && tensor_file_meta(&f, "format"),
          "python.safetensors __metadata__ with JSON escapes");
    tensor_file_free(&f);
}

// Write "<8-byte length><json><data_len zero bytes>" (length = strlen(json) unless forced) and read it.
static dit_status read_crafted_safetensors(const char *path, const char *json, size_t data_len, uint64_t forced_len) {
    size_t json_len = strlen(json);
    size_t size = 8 + json_len + data_len;
    uint8_t *bytes = dit_calloc(size, 1);
    uint64_t len = forced_len ? forced_len : json_len;
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(len >> (8 * i));
    memcpy(bytes + 8, json, json_len);
    write_file(path, bytes, size);
    free(bytes);
    tensor_file f;
    clear_error();
    dit_status s = safetensors_read(path, &f);
    if (s == DIT_OK) tensor_file_free(&f);
    return s;
}

static void test_safetensors_hostile(void) {
    const char *path = scratch_path("hostile.safetensors");
    CHECK(read_crafted_safetensors(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0) == DIT_OK,
          "the crafted-file helper accepts a valid file");
    static const struct { const char *json; size_t data; const char *what; } cases[] = {
        {"", 0, "empty header"},
        {"{\"a\": ", 0, "invalid JSON"},
        {"[1, 2]", 0, "header that is not an object"},
        {"{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 8, "unknown dtype"},
        {"{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 8, "numeric dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "shape/size mismatch"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 8, "data_offsets beyond the data"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "begin > end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, "negative offset"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 8, "offset 1e300"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8, "one data offset"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 8, "missing data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 8, "negative dimension"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 8, "fractional dimension"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,0]}}", 8,
         "shape whose size overflows 64 bits"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 8, "nine dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, "overlapping tensors"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "a tensor named twice"},
        {"{\"a\":[1]}", 8, "tensor entry that is not an object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "non-string metadata value"},
        {"{\"__metadata__\":[\"k\"]}", 0, "metadata that is not an object"},
        {"{} trailing", 0, "text after the JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_failure(read_crafted_safetensors(path, cases[i].json, cases[i].data, 0), "hostile.safetensors",
                       cases[i].what);
    const char *valid = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_failure(read_crafted_safetensors(path, valid, 8, 1000), "hostile.safetensors", "header length past the end");
    expect_failure(read_crafted_safetensors(path, valid, 8, (uint64_t)1 << 63), "hostile.safetensors",
                   "header length 2^63");
    expect_failure(read_crafted_safetensors(path, valid, 8, 20), "hostile.safetensors", "header length too short");

    // Every prefix of a real file, and single-byte corruptions of it.
    size_t size;
    uint8_t *good = read_whole_file(golden_path("io/python.safetensors"), &size);
    int prefix_errors = 0;
    for (size_t n = 0; n < size; n++) {
        write_file(path, good, n);
        tensor_file f;
        clear_error();
        dit_status s = safetensors_read(path, &f);
        if (s == DIT_OK) tensor_file_free(&f);
        prefix_errors += failed_naming(s, "hostile.safetensors");
    }
    CHECK(prefix_errors == (int)size, "all %zu truncated prefixes of python.safetensors fail naming the file", size);
    // Each corruption is read or refused naming the file (a crash ends the run; an unnamed error fails).
    uint8_t *copy = dit_malloc(size);
    int runs = 0, refused = 0, unnamed = 0;
    for (size_t pos = 0; pos < size; pos++) {
        memcpy(copy, good, size);
        copy[pos] ^= 0x5A;
        write_file(path, copy, size);
        tensor_file f;
        dit_status cs = safetensors_read(path, &f);
        if (cs == DIT_OK) tensor_file_free(&f);
        refused += cs != DIT_OK;
        unnamed += cs != DIT_OK && !failed_naming(cs, "hostile.safetensors");
        runs++;
    }
    CHECK(unnamed == 0 && refused > 0, "%d single-byte corruptions of python.safetensors: %d refused, %d of them "
          "without naming the file", runs, refused, unnamed);
    free(copy);
    free(good);

    tensor_out bad = {.name = "x", .dtype = DT_F32, .ndim = 1, .shape = {-2}, .data = NULL};
    expect_failure(safetensors_write(scratch_path("bad.safetensors"), &bad, 1, NULL, NULL, 0), "bad.safetensors",
                   "writing a negative shape");
    const char *unwritable = scratch_path("missing-dir/x.safetensors");
    float one = 1;
    tensor_out ok_tensor = {.name = "x", .dtype = DT_F32, .ndim = 1, .shape = {1}, .data = &one};
    expect_failure(safetensors_write(unwritable, &ok_tensor, 1, NULL, NULL, 0), unwritable, "writing into a missing directory");
}

// ---- npy / npz ---------------------------------------------------------------------------------

static int npy_matches(const npy_array *a, dit_dtype dt, int ndim, const int64_t *shape) {
    if (a->dtype != dt || a->ndim != ndim) return 0;
    for (int d = 0; d < ndim; d++)
        if (a->shape[d] != shape[d]) return 0;
    return 1;
}

// A Fortran-ordered array with a zero dimension holds nothing, whatever its other dimensions: it loads as an
// empty array (the reordering once multiplied the other dimensions and overflowed; found by make fuzz).
static void test_npy_fortran_empty(void) {
    char bytes[128];
    const char *dict = "{'descr': '>i4', 'fortran_order': True, 'shape': (8888888888888281, 888281, 3, 0, 8881, 3, 9, 4), }";
    memset(bytes, ' ', sizeof bytes);
    memcpy(bytes, "\x93NUMPY\x01\x00", 8);
    bytes[8] = (char)(sizeof bytes - 10), bytes[9] = 0;
    memcpy(bytes + 10, dict, strlen(dict));
    bytes[sizeof bytes - 1] = '\n';
    npy_array a;
    const dit_status s = npy_parse((const uint8_t *)bytes, sizeof bytes, "empty.npy", &a);
    CHECK(s == DIT_OK && a.ndim == 8 && a.shape[3] == 0 && a.nbytes == 0,
          "npy: a Fortran-ordered (..., 0, ...) array with huge other dimensions loads empty: %s",
          s ? dit_last_error() : "ok");
    if (s == DIT_OK) npy_free(&a);
}

static void test_npy_round_trip(void) {
    int failures = 0, checked = 0;
    for (int i = 0; i < DTYPE_COUNT; i++) {
        for (int shape_kind = 0; shape_kind < 3; shape_kind++) {
            // (2, 3), 0-d scalar, (4, 0)
            npy_array a = {.dtype = all_dtypes[i]};
            if (shape_kind == 0) a.ndim = 2, a.shape[0] = 2, a.shape[1] = 3;
            if (shape_kind == 2) a.ndim = 2, a.shape[0] = 4, a.shape[1] = 0;
            size_t count = shape_kind == 0 ? 6 : shape_kind == 1 ? 1 : 0;
            a.nbytes = count * dtype_size(a.dtype);
            a.data = dit_malloc(a.nbytes);
            fill_example(a.dtype, a.data, count);
            const char *path = scratch_path("round.npy");
            dit_status s = npy_write(path, &a);
            if (a.dtype == DT_BF16) {
                expect_failure(s, "round.npy", "writing bfloat16 to .npy (numpy has no such dtype)");
                free(a.data);
                break;
            }
            npy_array b;
            size_t file_size = 0;
            uint8_t *raw = s == DIT_OK ? read_whole_file(path, &file_size) : NULL;
            int ok = s == DIT_OK && npy_read(path, &b) == DIT_OK;
            ok = ok && npy_matches(&b, a.dtype, a.ndim, a.shape) && b.nbytes == a.nbytes &&
                 (a.nbytes == 0 || memcmp(a.data, b.data, a.nbytes) == 0) && (file_size - a.nbytes) % 64 == 0;
            if (s == DIT_OK && ok) npy_free(&b);
            failures += !ok;
            checked++;
            free(raw);
            free(a.data);
        }
    }
    CHECK(failures == 0, "npy round trip of %d arrays (9 dtypes x shapes (2,3), (), (4,0)), data 64-aligned", checked);

    // npz with several arrays.
    npy_array arrays[3] = {
        {.dtype = DT_F32, .ndim = 1, .shape = {5}},
        {.dtype = DT_I64, .ndim = 2, .shape = {2, 2}},
        {.dtype = DT_U8, .ndim = 0},
    };
    const char *names[] = {"weights", "labels", "flag"};
    for (int i = 0; i < 3; i++) {
        size_t count = (size_t)(arrays[i].ndim == 0 ? 1 : arrays[i].ndim == 1 ? 5 : 4);
        arrays[i].nbytes = count * dtype_size(arrays[i].dtype);
        arrays[i].data = dit_malloc(arrays[i].nbytes);
        fill_example(arrays[i].dtype, arrays[i].data, count);
    }
    const char *path = scratch_path("round.npz");
    CHECK(npz_write(path, names, arrays, 3) == DIT_OK, "npz_write 3 arrays");
    tensor_file f;
    dit_status s = npz_read(path, &f);
    CHECK(s == DIT_OK && f.count == 3, "npz_read of what we wrote: %s", s ? dit_last_error() : "ok");
    if (s == DIT_OK) {
        int same = 1;
        for (int i = 0; i < 3; i++) {
            const tensor_view *t = tensor_file_find(&f, names[i]);
            same &= t && t->dtype == arrays[i].dtype && t->ndim == arrays[i].ndim && t->nbytes == arrays[i].nbytes &&
                    memcmp(t->data, arrays[i].data, t->nbytes) == 0;
        }
        CHECK(same, "npz members read back as tensors named without '.npy'");
        tensor_file_free(&f);
    }
    for (int i = 0; i < 3; i++) free(arrays[i].data);
    CHECK(!scratch_has_temp_files(), "npy/npz writes leave no temporary file");

    // numpy itself reads what we wrote (skipped when no Python with numpy is around).
    if (run_command("/usr/bin/python3 -c 'import numpy'", NULL) == 0) {
        npy_array a = {.dtype = DT_F32, .ndim = 2, .shape = {2, 3}, .nbytes = 24};
        a.data = dit_malloc(24);
        fill_example(DT_F32, a.data, 6);
        npy_write(scratch_path("for_numpy.npy"), &a);
        free(a.data);
        char command[4096];
        snprintf(command, sizeof command,
                 "/usr/bin/python3 -c \"import numpy as np; a = np.load('%s'); z = np.load('%s');"
                 " assert a.shape == (2, 3) and a.dtype == np.float32 and a[1, 2] == 4.5;"
                 " assert sorted(z.files) == ['flag', 'labels', 'weights'] and z['labels'][1, 1] == -15000000000\"",
                 scratch_path("for_numpy.npy"), path);
        char *output = NULL;
        int rc = run_command(command, &output);
        CHECK(rc == 0, "numpy.load reads our .npy and .npz%s%s", rc ? ": " : "", rc ? output : "");
        free(output);
    } else {
        SKIP("numpy.load reads our .npy and .npz: no /usr/bin/python3 with numpy on this machine");
    }
}

static void test_npy_numpy_files(void) {
    npy_array a;
    float got[24];
    dit_status s;

    s = npy_read(golden_path("io/f32_2x3.npy"), &a);
    CHECK(s == DIT_OK && npy_matches(&a, DT_F32, 2, (int64_t[]){2, 3}), "f32_2x3.npy is float32 (2, 3)");
    if (s == DIT_OK) {
        const float want[] = {-1, -0.5f, 0, 0.5f, 1, 1.5f};
        CHECK_CLOSE("f32_2x3.npy values", (float *)a.data, want, 6, 0, 0);
        npy_free(&a);
    }

    s = npy_read(golden_path("io/fortran_i4.npy"), &a);
    CHECK(s == DIT_OK && npy_matches(&a, DT_I32, 3, (int64_t[]){2, 3, 4}), "fortran_i4.npy is int32 (2, 3, 4)");
    if (s == DIT_OK) {
        float want[24];
        for (int i = 0; i < 24; i++) want[i] = (float)i;
        tensor_view t = {.name = "f", .dtype = a.dtype, .ndim = 1, .shape = {24}, .data = a.data, .nbytes = a.nbytes};
        tensor_to_f32(&t, got);
        CHECK_CLOSE("fortran_order=True data transposed into C order", got, want, 24, 0, 0);
        npy_free(&a);
    }

    s = npy_read(golden_path("io/be_f4.npy"), &a);
    CHECK(s == DIT_OK && npy_matches(&a, DT_F32, 1, (int64_t[]){5}), "be_f4.npy ('>f4') reads as float32 (5)");
    if (s == DIT_OK) {
        const float want[] = {0.25f, 1.25f, 2.25f, 3.25f, 4.25f};
        CHECK_CLOSE("big-endian float32 byte-swapped", (float *)a.data, want, 5, 0, 0);
        npy_free(&a);
    }

    s = npy_read(golden_path("io/be_i8.npy"), &a);
    CHECK(s == DIT_OK && npy_matches(&a, DT_I64, 1, (int64_t[]){3}), "be_i8.npy ('>i8') reads as int64 (3)");
    if (s == DIT_OK) {
        int64_t v[3];
        memcpy(v, a.data, sizeof v);
        CHECK(v[0] == 0 && v[1] == -1000 && v[2] == -2000, "big-endian int64 byte-swapped (0, -1000, -2000)");
        npy_free(&a);
    }

    s = npy_read(golden_path("io/v2_f8.npy"), &a);
    CHECK(s == DIT_OK && npy_matches(&a, DT_F64, 1, (int64_t[]){4}), "v2_f8.npy (format 2.0) is float64 (4)");
    if (s == DIT_OK) {
        double v[4];
        memcpy(v, a.data, sizeof v);
        CHECK(v[0] == 0 && v[1] == 0.25 && v[2] == 0.5 && v[3] == 0.75, "format 2.0 values");
        npy_free(&a);
    }

    s = npy_read(golden_path("io/scalar_f8.npy"), &a);
    CHECK(s == DIT_OK && a.ndim == 0 && a.nbytes == 8 && *(double *)a.data == 3.5, "scalar_f8.npy is a 0-d 3.5");
    if (s == DIT_OK) npy_free(&a);

    tensor_file f;
    s = npz_read(golden_path("io/stored.npz"), &f);
    CHECK(s == DIT_OK && f.count == 3, "stored.npz (np.savez) has 3 arrays");
    if (s == DIT_OK) {
        const tensor_view *u8 = tensor_file_find(&f, "u8"), *b1 = tensor_file_find(&f, "b1"), *i8 = tensor_file_find(&f, "i8");
        CHECK(u8 && u8->dtype == DT_U8 && b1 && b1->dtype == DT_BOOL && i8 && i8->dtype == DT_I64,
              "stored.npz members u8/b1/i8 have dtypes U8/BOOL/I64");
        if (u8 && b1 && i8) {
            float want_u8[] = {0, 1, 2, 3}, want_b1[] = {1, 0, 1}, want_i8[] = {-1, 0, 1};
            tensor_to_f32(u8, got);
            CHECK_CLOSE("stored.npz u8", got, want_u8, 4, 0, 0);
            tensor_to_f32(b1, got);
            CHECK_CLOSE("stored.npz b1", got, want_b1, 3, 0, 0);
            tensor_to_f32(i8, got);
            CHECK_CLOSE("stored.npz i8", got, want_i8, 3, 0, 0);
        }
        tensor_file_free(&f);
    }

    s = npz_read(golden_path("io/compressed.npz"), &f);
    CHECK(s == DIT_OK && f.count == 2, "compressed.npz (np.savez_compressed) has 2 arrays");
    if (s == DIT_OK) {
        const tensor_view *ta = tensor_file_find(&f, "a"), *tb = tensor_file_find(&f, "b");
        CHECK(ta && ta->dtype == DT_F32 && ta->ndim == 2 && ta->shape[0] == 4 && ta->shape[1] == 8 && tb &&
                  tb->dtype == DT_I16 && tb->shape[0] == 10,
              "compressed.npz: a is float32 (4, 8), b is int16 (10)");
        if (ta && tb && tensor_numel(ta) == 32 && tensor_numel(tb) == 10) {
            float values[32], want[32];
            tensor_to_f32(ta, values);
            for (int i = 0; i < 32; i++) want[i] = 1.5f;
            CHECK_CLOSE("compressed.npz a (inflated)", values, want, 32, 0, 0);
            tensor_to_f32(tb, values);
            for (int i = 0; i < 10; i++) want[i] = (float)i;
            CHECK_CLOSE("compressed.npz b (inflated)", values, want, 10, 0, 0);
        }
        tensor_file_free(&f);
    }
}

// Build a version 1.0 .npy in memory from a header dictionary text and data, and parse it.
static dit_status parse_crafted_npy(const char *dict, const void *data, size_t data_len, npy_array *out) {
    size_t dict_len = strlen(dict);
    size_t size = 10 + dict_len + data_len;
    uint8_t *bytes = dit_malloc(size);
    memcpy(bytes, "\x93NUMPY\x01\x00", 8);
    bytes[8] = (uint8_t)dict_len;
    bytes[9] = (uint8_t)(dict_len >> 8);
    memcpy(bytes + 10, dict, dict_len);
    if (data_len) memcpy(bytes + 10 + dict_len, data, data_len);
    clear_error();
    dit_status s = npy_parse(bytes, size, "crafted.npy", out);
    free(bytes);
    return s;
}

static void test_npy_hostile(void) {
    float four[4] = {1, 2, 3, 4};
    npy_array a;
    static const char *tolerated[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n",
        "{\"shape\": (4,), \"descr\": \"<f4\", \"fortran_order\": False}",
        "{ 'fortran_order' : True , 'shape' : ( 4 , ) , 'descr' : '<f4' , }   \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4L,), }",
        "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 4), }",
    };
    int accepted = 0;
    for (size_t i = 0; i < sizeof tolerated / sizeof tolerated[0]; i++) {
        if (parse_crafted_npy(tolerated[i], four, sizeof four, &a) == DIT_OK) {
            accepted += a.nbytes == 16 && memcmp(a.data, four, 16) == 0;
            npy_free(&a);
        } else {
            printf("  rejected: %s\n", dit_last_error());
        }
    }
    CHECK(accepted == (int)(sizeof tolerated / sizeof tolerated[0]),
          "header dicts in any key order, either quotes, spaces, trailing commas, 'L' suffixes are accepted");

    static const struct { const char *dict; size_t data; const char *mention; const char *what; } cases[] = {
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, "found '<c8'", "complex64 data"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 12, "crafted.npy", "data shorter than the shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 16, "crafted.npy", "data longer than the shape"},
        {"{'descr': '<f4', 'fortran_order': False, }", 16, "'shape'", "missing shape"},
        {"{'descr': '<f4', 'shape': (4,), }", 16, "'fortran_order'", "missing fortran_order"},
        {"{'fortran_order': False, 'shape': (4,), }", 16, "'descr'", "missing descr"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'extra': 1}", 16, "extra", "unknown key"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", 16, "descr", "repeated key"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", 16, "structured", "structured dtype"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (4,), }", 16, "fortran_order", "fortran_order not a bool"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", 16, "shape", "negative dimension"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 16, "shape", "dimension overflow"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", 16, "crafted.npy",
         "shape whose size overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,4), }", 16, "shape", "nine dimensions"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': 4, }", 16, "shape", "shape not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), } junk", 16, "after", "text after the dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,)", 16, "crafted.npy", "unterminated dict"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (4,)}", 16, "crafted.npy", "unterminated string"},
        {"{'descr': '|f4', 'fortran_order': False, 'shape': (4,)}", 16, "'|f4'", "'|' order on a 4-byte type"},
        {"['descr', '<f4']", 16, "dictionary", "header that is a list"},
        {"", 16, "crafted.npy", "empty header"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dit_status s = parse_crafted_npy(cases[i].dict, four, cases[i].data, &a);
        if (s == DIT_OK) npy_free(&a);
        expect_failure(s, cases[i].mention, cases[i].what);
    }

    // Magic, version and header length.
    uint8_t valid[128];
    memset(valid, ' ', sizeof valid);
    memcpy(valid, "\x93NUMPY\x01\x00\x76\x00{'descr': '|u1', 'fortran_order': False, 'shape': (0,), }", 67);
    valid[127] = '\n';
    clear_error();
    dit_status s = npy_parse(valid, sizeof valid, "crafted.npy", &a);
    CHECK(s == DIT_OK && a.nbytes == 0, "a hand-built empty uint8 .npy parses");
    if (s == DIT_OK) npy_free(&a);
    uint8_t bad[128];
    memcpy(bad, valid, sizeof bad);
    bad[0] = 'x';
    expect_failure(npy_parse(bad, sizeof bad, "crafted.npy", &a), "magic", "bad magic");
    memcpy(bad, valid, sizeof bad);
    bad[6] = 4;
    expect_failure(npy_parse(bad, sizeof bad, "crafted.npy", &a), "version", "format version 4.0");
    memcpy(bad, valid, sizeof bad);
    bad[8] = 0xFF, bad[9] = 0xFF;
    expect_failure(npy_parse(bad, sizeof bad, "crafted.npy", &a), "crafted.npy", "header length past the end");
    memcpy(bad, valid, sizeof bad);
    bad[6] = 2;   // version 2 reads a 4-byte length: "\x76\x00{'" is a huge number
    expect_failure(npy_parse(bad, sizeof bad, "crafted.npy", &a), "crafted.npy", "v2 header length past the end");

    // Every prefix of real files: an .npy, and both kinds of .npz.
    static const char *files[] = {"io/f32_2x3.npy", "io/v2_f8.npy", "io/fortran_i4.npy"};
    int prefixes = 0, prefix_errors = 0;
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        size_t size;
        uint8_t *good = read_whole_file(golden_path(files[k]), &size);
        for (size_t n = 0; n < size; n++) {
            uint8_t *prefix = dit_malloc(n);   // exact-size copy so ASan catches any read past n
            memcpy(prefix, good, n);
            clear_error();
            dit_status ps = npy_parse(prefix, n, "prefix.npy", &a);
            if (ps == DIT_OK) npy_free(&a);
            prefix_errors += failed_naming(ps, "prefix.npy");
            prefixes++;
            free(prefix);
        }
        free(good);
    }
    CHECK(prefix_errors == prefixes, "all %d truncated prefixes of three .npy files fail naming the data", prefixes);
    const char *bad_path = scratch_path("bad.npy");
    CHECK(npy_read(golden_path("io/missing.npy"), &a) == DIT_ERR && strstr(dit_last_error(), "missing.npy"),
          "npy_read of a missing file names it");
    write_file(bad_path, "\x93NUMPY", 6);
    expect_failure(npy_read(bad_path, &a), "bad.npy", "npy_read of a 6-byte file (magic only)");

    static const char *archives[] = {"io/stored.npz", "io/compressed.npz"};
    const char *path = scratch_path("hostile.npz");
    prefixes = prefix_errors = 0;
    int corruptions = 0, corrupt_refused = 0, corrupt_unnamed = 0;
    for (size_t k = 0; k < 2; k++) {
        size_t size;
        uint8_t *good = read_whole_file(golden_path(archives[k]), &size);
        tensor_file f;
        for (size_t n = 0; n < size; n++) {
            write_file(path, good, n);
            clear_error();
            dit_status ns = npz_read(path, &f);
            if (ns == DIT_OK) tensor_file_free(&f);
            prefix_errors += failed_naming(ns, "hostile.npz");
            prefixes++;
        }
        uint8_t *copy = dit_malloc(size);
        for (size_t pos = 0; pos < size; pos++) {
            memcpy(copy, good, size);
            copy[pos] ^= 0x81;
            write_file(path, copy, size);
            dit_status cs = npz_read(path, &f);
            if (cs == DIT_OK) tensor_file_free(&f);
            corrupt_refused += cs != DIT_OK;
            corrupt_unnamed += cs != DIT_OK && !failed_naming(cs, "hostile.npz");
            corruptions++;
        }
        // A flipped byte inside a stored member's data must be caught by the CRC.
        if (k == 0) {
            zip_archive z;
            if (zip_open_buffer(&z, good, size, path) == DIT_OK) {
                memcpy(copy, good, size);
                copy[z.entries[0].data_offset + z.entries[0].size - 1] ^= 1;
                zip_close(&z);
                write_file(path, copy, size);
                dit_status cs = npz_read(path, &f);
                if (cs == DIT_OK) tensor_file_free(&f);
                expect_failure(cs, "CRC", "stored .npz member with one flipped data bit");
            }
        }
        free(copy);
        free(good);
    }
    CHECK(prefix_errors == prefixes, "all %d truncated prefixes of stored.npz and compressed.npz fail naming the file", prefixes);
    CHECK(corruptions > 0 && corrupt_refused > 0 && corrupt_unnamed == 0,
          "%d single-byte corruptions of .npz files: %d refused, %d of them without naming the file", corruptions,
          corrupt_refused, corrupt_unnamed);

    // A member that is not a valid .npy names both the archive and the member.
    char *buffer = NULL;
    size_t length = 0;
    FILE *mf = open_memstream(&buffer, &length);
    zip_writer *w = zip_writer_open(mf, path);
    zip_writer_add(w, "x.npy", "not numpy", 9);
    zip_writer_finish(w);
    fclose(mf);
    write_file(path, buffer, length);
    free(buffer);
    tensor_file f;
    expect_failure(npz_read(path, &f), "hostile.npz:x.npy", "an .npz member that is not .npy");
}

// ---- random corruption -------------------------------------------------------------------------

// Deterministic random edits (1 to 4 bytes, biased towards small and all-ones values, which make the
// most interesting lengths and offsets) of in-memory files; the readers must never crash or leak.
static void test_random_corruption(void) {
    uint64_t state = 0x9E3779B97F4A7C15ull;
#define NEXT_RANDOM() (state = state * 6364136223846793005ull + 1442695040888963407ull, (uint32_t)(state >> 33))
    static const char *files[] = {"io/compressed.npz", "io/stored.npz", "io/comment.zip", "io/fortran_i4.npy"};
    int runs = 0, accepted = 0, unnamed = 0;
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        size_t size;
        uint8_t *good = read_whole_file(golden_path(files[k]), &size);
        uint8_t *copy = dit_malloc(size);
        for (int iteration = 0; iteration < 3000; iteration++) {
            memcpy(copy, good, size);
            int edits = 1 + (int)(NEXT_RANDOM() % 4);
            for (int e = 0; e < edits; e++) {
                uint32_t r = NEXT_RANDOM();
                uint8_t value = r % 4 == 0 ? 0xFF : r % 4 == 1 ? 0x00 : (uint8_t)(r >> 8);
                copy[NEXT_RANDOM() % size] = value;
            }
            dit_status s;
            if (strstr(files[k], ".npy")) {
                npy_array a;
                s = npy_parse(copy, size, "random.npy", &a);
                if (s == DIT_OK) npy_free(&a);
            } else {
                s = read_all_members(copy, size, "random.zip");
                if (s == DIT_OK) {   // also parse the members as .npy when the archive survived
                    zip_archive z;
                    if (zip_open_buffer(&z, copy, size, "random.zip") == DIT_OK) {
                        for (int i = 0; i < z.count; i++) {
                            const uint8_t *bytes;
                            uint8_t *owned;
                            npy_array a;
                            if (zip_entry_data(&z, &z.entries[i], &bytes, &owned) == DIT_OK &&
                                npy_parse(bytes, (size_t)z.entries[i].size, "member", &a) == DIT_OK)
                                npy_free(&a);
                            free(owned);
                        }
                        zip_close(&z);
                    }
                }
            }
            accepted += s == DIT_OK;
            unnamed += s != DIT_OK && !failed_naming(s, "random.");
            runs++;
        }
        free(copy);
        free(good);
    }
#undef NEXT_RANDOM
    // Read or refused naming the input, never a crash (which would end the run); some must be refused.
    CHECK(unnamed == 0 && accepted < runs, "%d random multi-byte corruptions of .npz/.zip/.npy: %d still valid, "
          "%d refused without naming the input", runs, accepted, unnamed);
}

// ---- png ---------------------------------------------------------------------------------------

static uint32_t read_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_png(void) {
    enum { W = 5, H = 3 };
    uint8_t pixels[W * H * 4];
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 13);
    static const int channel_counts[] = {1, 3, 4};
    static const int color_types[] = {0, 2, 6};   // PNG spec: gray, truecolor, truecolor with alpha
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "image%d.png", channel_counts[k]);
        const char *path = scratch_path(name);
        dit_status s = png_write(path, pixels, W, H, channel_counts[k]);
        size_t size = 0;
        uint8_t *raw = s == DIT_OK ? read_whole_file(path, &size) : NULL;
        CHECK(s == DIT_OK && size > 33 && memcmp(raw, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(raw + 12, "IHDR", 4) == 0 &&
                  read_be32(raw + 16) == W && read_be32(raw + 20) == H && raw[24] == 8 && raw[25] == color_types[k],
              "png_write %d-channel %dx%d: signature and IHDR (8-bit, color type %d)", channel_counts[k], W, H,
              color_types[k]);
        free(raw);
        if (s == DIT_OK && run_command("/usr/bin/python3 -c 'import PIL'", NULL) == 0) {
            char command[4096];
            snprintf(command, sizeof command,
                     "/usr/bin/python3 -c \"from PIL import Image; import sys; im = Image.open('%s');"
                     " d = list(im.tobytes()); want = [(i * 13) %% 256 for i in range(%d)];"
                     " sys.exit(0 if d == want else 1)\"",
                     path, W * H * channel_counts[k]);
            char *output = NULL;
            int rc = run_command(command, &output);
            CHECK(rc == 0, "PIL decodes %s to the written pixels%s%s", name, rc ? ": " : "", rc ? output : "");
            free(output);
        }
    }
    expect_failure(png_write(scratch_path("two.png"), pixels, W, H, 2), "two.png", "a 2-channel PNG");
    expect_failure(png_write(scratch_path("zero.png"), pixels, 0, H, 3), "zero.png", "a 0-wide PNG");
    const char *unwritable = scratch_path("missing-dir/x.png");
    expect_failure(png_write(unwritable, pixels, W, H, 3), unwritable, "a PNG in a missing directory");
    CHECK(!scratch_has_temp_files(), "png_write leaves no temporary file");
}

void test_io(void) {
    test_dtypes();
    test_half_conversion();
    test_fileio();
    test_zip_valid();
    test_zip_hostile();
    test_safetensors_round_trip();
    test_safetensors_python();
    test_safetensors_hostile();
    test_npy_round_trip();
    test_npy_fortran_empty();
    test_npy_numpy_files();
    test_npy_hostile();
    test_random_corruption();
    test_png();
}
