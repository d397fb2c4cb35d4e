// NumPy .npy (format spec: numpy/lib/format.py, versions 1.0-3.0) and .npz (a zip of .npy members,
// stored by np.savez, deflated by np.savez_compressed). Arrays come out C-ordered and little-endian:
// big-endian data is byte-swapped and Fortran-ordered data transposed on read.
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/tensors.h"
#include "io/zip.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGNMENT 64   // numpy pads the header so the data starts at a multiple of 64

// ---- header dictionary -------------------------------------------------------------------------
// The header is a Python literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
// We accept exactly the three keys, in any order, with either quote style, spaces and trailing commas.

typedef struct {
    const char *p, *end;
} cursor;

static void skip_spaces(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int accept(cursor *c, char ch) {
    skip_spaces(c);
    if (c->p < c->end && *c->p == ch) return c->p++, 1;
    return 0;
}

// A quoted string into buf (at most size - 1 characters); no escapes appear in the three keys or dtypes.
static int parse_string(cursor *c, char *buf, size_t size) {
    skip_spaces(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || n + 1 >= size) return 0;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    buf[n] = '\0';
    return 1;
}

static int parse_word(cursor *c, const char *word) {
    skip_spaces(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return 0;
    c->p += n;
    return 1;
}

// (d0, d1, ...) with an optional trailing comma; "(5,)" and "()" included. Python 2 wrote "5L".
static int parse_shape(cursor *c, int *ndim, int64_t *shape) {
    if (!accept(c, '(')) return 0;
    *ndim = 0;
    for (;;) {
        if (accept(c, ')')) return 1;
        skip_spaces(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            int digit = *c->p++ - '0';
            if (v > (INT64_MAX - digit) / 10) return 0;
            v = v * 10 + digit;
        }
        if (c->p < c->end && *c->p == 'L') c->p++;
        if (*ndim == TENSOR_MAX_DIMS) return 0;
        shape[(*ndim)++] = v;
        if (accept(c, ',')) continue;
        if (accept(c, ')')) return 1;
        return 0;
    }
}

typedef struct {
    char descr[32];
    int fortran_order;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} npy_header;

static dit_status parse_header_dict(const char *text, size_t length, const char *what, npy_header *h) {
    cursor c = {text, text + length};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!accept(&c, '{')) return dit_set_error("%s: npy header is not a dictionary", what);
    while (!accept(&c, '}')) {
        char key[32];
        if (!parse_string(&c, key, sizeof key) || !accept(&c, ':'))
            return dit_set_error("%s: malformed npy header dictionary", what);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (!parse_string(&c, h->descr, sizeof h->descr))
                return dit_set_error("%s: npy 'descr' is not a simple dtype string (structured arrays are not supported)", what);
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (parse_word(&c, "True")) h->fortran_order = 1;
            else if (parse_word(&c, "False")) h->fortran_order = 0;
            else return dit_set_error("%s: npy 'fortran_order' must be True or False", what);
            have_order = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (!parse_shape(&c, &h->ndim, h->shape))
                return dit_set_error("%s: npy 'shape' must be a tuple of at most %d non-negative integers", what,
                                     TENSOR_MAX_DIMS);
            have_shape = 1;
        } else {
            return dit_set_error("%s: unexpected or repeated key '%s' in npy header", what, key);
        }
        if (!accept(&c, ',')) {
            if (!accept(&c, '}')) return dit_set_error("%s: malformed npy header dictionary", what);
            break;
        }
    }
    skip_spaces(&c);
    if (c.p != c.end) return dit_set_error("%s: unexpected text after the npy header dictionary", what);
    if (!have_descr || !have_order || !have_shape)
        return dit_set_error("%s: npy header lacks %s", what, !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
    return DIT_OK;
}

// '<f4' etc. → dtype and whether the data is big-endian. Single-byte types have no byte order ('|').
static int parse_descr(const char *descr, dit_dtype *dt, int *big_endian) {
    static const struct { const char *code; dit_dtype dtype; } codes[] = {
        {"f2", DT_F16}, {"f4", DT_F32}, {"f8", DT_F64}, {"i1", DT_I8}, {"i2", DT_I16},
        {"i4", DT_I32}, {"i8", DT_I64}, {"u1", DT_U8}, {"b1", DT_BOOL},
    };
    char order = descr[0];
    if (order != '<' && order != '>' && order != '|') return 0;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (strcmp(descr + 1, codes[i].code) != 0) continue;
        if (order == '|' && dtype_size(codes[i].dtype) != 1) return 0;
        *dt = codes[i].dtype;
        *big_endian = order == '>' && dtype_size(codes[i].dtype) > 1;
        return 1;
    }
    return 0;
}

static const char *numpy_descr(dit_dtype dt) {
    switch (dt) {
    case DT_F32: return "<f4";
    case DT_F16: return "<f2";
    case DT_F64: return "<f8";
    case DT_U8: return "|u1";
    case DT_I8: return "|i1";
    case DT_I16: return "<i2";
    case DT_I32: return "<i4";
    case DT_I64: return "<i8";
    case DT_BOOL: return "|b1";
    case DT_BF16: return NULL;   // numpy has no bfloat16
    }
    return NULL;
}

// ---- reading -----------------------------------------------------------------------------------

static void byteswap_elements(uint8_t *data, size_t count, size_t item) {
    for (size_t i = 0; i < count; i++, data += item)
        for (size_t a = 0, b = item - 1; a < b; a++, b--) {
            uint8_t t = data[a];
            data[a] = data[b];
            data[b] = t;
        }
}

// Fortran order stores the first index fastest; walk the C-ordered destination with a multi-index and
// read each element from its column-major position.
static void fortran_to_c_order(uint8_t *dst, const uint8_t *src, const int64_t *shape, int ndim, size_t item,
                               size_t count) {
    if (count == 0) return;   // a zero dimension: the others may be anything, and their product overflow
    int64_t index[TENSOR_MAX_DIMS] = {0}, fortran_stride[TENSOR_MAX_DIMS];
    int64_t stride = 1;
    for (int d = 0; d < ndim; d++) fortran_stride[d] = stride, stride *= shape[d];
    for (size_t i = 0; i < count; i++) {
        int64_t offset = 0;
        for (int d = 0; d < ndim; d++) offset += index[d] * fortran_stride[d];
        memcpy(dst + i * item, src + (size_t)offset * item, item);
        for (int d = ndim - 1; d >= 0; d--) {   // advance the C-order multi-index
            if (++index[d] < shape[d]) break;
            index[d] = 0;
        }
    }
}

dit_status npy_parse(const uint8_t *bytes, size_t size, const char *what, npy_array *out) {
    memset(out, 0, sizeof *out);
    if (size < NPY_MAGIC_LEN || memcmp(bytes, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return dit_set_error("%s: not a .npy file (bad magic)", what);
    if (size < NPY_MAGIC_LEN + 2) return dit_set_error("%s: truncated .npy header", what);
    int major = bytes[6], minor = bytes[7];
    size_t prefix, header_len;
    if (major == 1 && size >= 10) {
        prefix = 10;
        header_len = (size_t)bytes[8] | (size_t)bytes[9] << 8;
    } else if ((major == 2 || major == 3) && size >= 12) {
        prefix = 12;
        header_len = (size_t)bytes[8] | (size_t)bytes[9] << 8 | (size_t)bytes[10] << 16 | (size_t)bytes[11] << 24;
    } else if (major >= 1 && major <= 3) {
        return dit_set_error("%s: truncated .npy header", what);
    } else {
        return dit_set_error("%s: unsupported .npy format version %d.%d", what, major, minor);
    }
    if (minor != 0) return dit_set_error("%s: unsupported .npy format version %d.%d", what, major, minor);
    if (header_len > size - prefix)
        return dit_set_error("%s: .npy header length %zu runs past the end (%zu bytes)", what, header_len, size);

    npy_header h;
    memset(&h, 0, sizeof h);
    if (parse_header_dict((const char *)bytes + prefix, header_len, what, &h) != DIT_OK) return DIT_ERR;
    dit_dtype dtype;
    int big_endian;
    if (!parse_descr(h.descr, &dtype, &big_endian))
        return dit_set_error("%s: expected float16/float32/float64/int8/int16/int32/int64/uint8/bool data, found '%s'",
                             what, h.descr);

    size_t item = dtype_size(dtype), count = 1;
    int overflow = 0;
    for (int d = 0; d < h.ndim; d++) {
        if (h.shape[d] != 0 && count > SIZE_MAX / item / (uint64_t)h.shape[d]) overflow = 1;
        else count *= (size_t)h.shape[d];
    }
    for (int d = 0; d < h.ndim; d++)
        if (h.shape[d] == 0) overflow = 0, count = 0;
    size_t data_size = size - prefix - header_len;
    if (overflow || count * item != data_size)
        return dit_set_error("%s: shape needs %s%zu bytes of %s data, the file has %zu", what,
                             overflow ? "more than " : "", overflow ? SIZE_MAX : count * item, h.descr, data_size);

    const uint8_t *src = bytes + prefix + header_len;
    uint8_t *data = dit_try_malloc(data_size, "the array");
    if (!data) {
        dit_prefix_error("%s", what);
        return DIT_ERR;
    }
    if (h.fortran_order && h.ndim > 1) fortran_to_c_order(data, src, h.shape, h.ndim, item, count);
    else if (data_size) memcpy(data, src, data_size);
    if (big_endian) byteswap_elements(data, count, item);

    out->dtype = dtype;
    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof h.shape);
    out->data = data;
    out->nbytes = data_size;
    return DIT_OK;
}

dit_status npy_read(const char *path, npy_array *out) {
    memset(out, 0, sizeof *out);
    mapped_file m;
    if (map_file(path, &m) != DIT_OK) return DIT_ERR;
    dit_status status = npy_parse(m.data, m.size, path, out);
    unmap_file(&m);
    return status;
}

void npy_free(npy_array *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

// ---- writing -----------------------------------------------------------------------------------

// The version 1.0 header for a, padded with spaces and ended by '\n' so the data starts at a multiple of 64.
static dit_status npy_header_bytes(const npy_array *a, const char *what, char *header, size_t capacity,
                                   size_t *length) {
    const char *descr = numpy_descr(a->dtype);
    if (!descr) return dit_set_error("%s: %s has no numpy dtype", what, dtype_name(a->dtype));
    if (a->ndim < 0 || a->ndim > TENSOR_MAX_DIMS) return dit_set_error("%s: %d dimensions", what, a->ndim);
    size_t count = 1;
    for (int d = 0; d < a->ndim; d++) {
        if (a->shape[d] < 0) return dit_set_error("%s: negative dimension", what);
        count *= (size_t)a->shape[d];
    }
    if (count * dtype_size(a->dtype) != a->nbytes)
        return dit_set_error("%s: shape needs %zu bytes, the array has %zu", what, count * dtype_size(a->dtype),
                             a->nbytes);
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < a->ndim; d++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld, ", (long long)a->shape[d]);
    if (a->ndim == 1) n -= 1;   // "(5,)": Python needs the comma for a one-element tuple
    else if (a->ndim > 1) n -= 2;
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");

    size_t total = 10 + (size_t)n + 1;   // magic, version, length, dict, '\n'
    total = (total + NPY_ALIGNMENT - 1) / NPY_ALIGNMENT * NPY_ALIGNMENT;
    DIT_CHECK(total <= capacity);
    size_t dict_area = total - 10;
    memcpy(header, NPY_MAGIC, NPY_MAGIC_LEN);
    header[6] = 1;
    header[7] = 0;
    header[8] = (char)(dict_area & 0xFF);
    header[9] = (char)(dict_area >> 8);
    memcpy(header + 10, dict, (size_t)n);
    memset(header + 10 + n, ' ', dict_area - (size_t)n - 1);
    header[total - 1] = '\n';
    *length = total;
    return DIT_OK;
}

#define NPY_HEADER_CAPACITY 512

dit_status npy_write(const char *path, const npy_array *a) {
    char header[NPY_HEADER_CAPACITY];
    size_t header_len;
    if (npy_header_bytes(a, path, header, sizeof header, &header_len) != DIT_OK) return DIT_ERR;
    atomic_file f;
    if (atomic_file_open(&f, path) != DIT_OK) return DIT_ERR;
    if (fwrite(header, 1, header_len, f.f) != header_len ||
        (a->nbytes && fwrite(a->data, 1, a->nbytes, f.f) != a->nbytes)) {
        atomic_file_abort(&f);
        return dit_set_error("%s: write failed", path);
    }
    return atomic_file_commit(&f);
}

// ---- npz ---------------------------------------------------------------------------------------

dit_status npz_read(const char *path, tensor_file *out) {
    memset(out, 0, sizeof *out);
    mapped_file m;
    if (map_file(path, &m) != DIT_OK) return DIT_ERR;
    zip_archive z;
    if (zip_open_buffer(&z, m.data, m.size, path) != DIT_OK) {
        unmap_file(&m);
        return DIT_ERR;
    }
    out->path = dit_strdup(path);
    out->tensors = dit_calloc((size_t)(z.count ? z.count : 1), sizeof *out->tensors);
    out->owned = dit_calloc((size_t)(z.count ? z.count : 1), sizeof *out->owned);
    dit_status status = out->path && out->tensors && out->owned ? DIT_OK : DIT_ERR;
    for (int i = 0; i < z.count && status == DIT_OK; i++) {
        const zip_entry *e = &z.entries[i];
        const uint8_t *bytes;
        uint8_t *inflated;
        if ((status = zip_entry_data(&z, e, &bytes, &inflated)) != DIT_OK) break;
        size_t what_len = strlen(path) + strlen(e->name) + 2;
        char *what = dit_malloc(what_len);
        if (!what) {
            free(inflated);
            status = DIT_ERR;
            break;
        }
        snprintf(what, what_len, "%s:%s", path, e->name);
        npy_array a;
        status = npy_parse(bytes, (size_t)e->size, what, &a);
        free(what);
        free(inflated);
        if (status != DIT_OK) break;

        // np.savez names members "<key>.npy"; np.load strips the suffix, and so do we.
        size_t name_len = strlen(e->name);
        if (name_len > 4 && strcmp(e->name + name_len - 4, ".npy") == 0) name_len -= 4;
        char *name = dit_malloc(name_len + 1);
        if (!name) {
            npy_free(&a);
            status = DIT_ERR;
            break;
        }
        memcpy(name, e->name, name_len);
        name[name_len] = '\0';
        if (tensor_file_find(out, name)) {
            status = dit_set_error("%s: array '%s' appears twice", path, name);
            free(name);
            npy_free(&a);
            break;
        }
        tensor_view *t = &out->tensors[out->count++];
        t->name = name;
        t->dtype = a.dtype;
        t->ndim = a.ndim;
        memcpy(t->shape, a.shape, sizeof a.shape);
        t->data = a.data;
        t->nbytes = a.nbytes;
        out->owned[out->owned_count++] = a.data;
    }
    zip_close(&z);
    unmap_file(&m);   // every array was copied out of the mapping
    if (status != DIT_OK) tensor_file_free(out);
    return status;
}

dit_status npz_write(const char *path, const char *const *names, const npy_array *arrays, int count) {
    atomic_file f;
    if (atomic_file_open(&f, path) != DIT_OK) return DIT_ERR;
    zip_writer *w = zip_writer_open(f.f, path);
    if (!w) {
        atomic_file_abort(&f);
        return DIT_ERR;
    }
    dit_status status = DIT_OK;
    for (int i = 0; i < count && status == DIT_OK; i++) {
        char header[NPY_HEADER_CAPACITY];
        size_t header_len;
        if ((status = npy_header_bytes(&arrays[i], path, header, sizeof header, &header_len)) != DIT_OK) break;
        // A member is one contiguous buffer: the .npy header followed by the array bytes.
        uint8_t *member = dit_try_malloc(header_len + arrays[i].nbytes, "an .npz member");
        size_t name_len = strlen(names[i]) + 5;
        char *member_name = member ? dit_malloc(name_len) : NULL;
        if (!member_name) {
            free(member);
            status = DIT_ERR;
            break;
        }
        memcpy(member, header, header_len);
        if (arrays[i].nbytes) memcpy(member + header_len, arrays[i].data, arrays[i].nbytes);
        snprintf(member_name, name_len, "%s.npy", names[i]);
        status = zip_writer_add(w, member_name, member, header_len + arrays[i].nbytes);
        free(member_name);
        free(member);
    }
    if (status != DIT_OK) {
        char first_error[1024];   // finishing the writer must not overwrite the first message
        snprintf(first_error, sizeof first_error, "%s", dit_last_error());
        zip_writer_finish(w);
        atomic_file_abort(&f);
        return dit_set_error("%s", first_error);
    }
    if (zip_writer_finish(w) != DIT_OK) {
        atomic_file_abort(&f);
        return DIT_ERR;
    }
    return atomic_file_commit(&f);
}
