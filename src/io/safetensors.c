// safetensors (huggingface/safetensors format): 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data.
// Reading maps the file and points the tensors into it; writing is atomic and pads the header to 8 bytes.
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/tensors.h"

// The reference implementation refuses headers over 100 MB; no real checkpoint comes close.
#define SAFETENSORS_MAX_HEADER (100u << 20)
// JSON numbers are doubles: integers above 2^53 cannot be represented exactly.
#define JSON_MAX_EXACT_INTEGER 9007199254740992.0

static int parse_dtype(const char *s, dit_dtype *dt) {
    static const dit_dtype all[] = {DT_F32, DT_F16, DT_BF16, DT_F64, DT_U8, DT_I8, DT_I16, DT_I32, DT_I64, DT_BOOL};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, dtype_name(all[i])) == 0) return *dt = all[i], 1;
    return 0;
}

static int json_to_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= JSON_MAX_EXACT_INTEGER) || v != (double)(uint64_t)v) return 0;
    *out = (uint64_t)v;
    return 1;
}

typedef struct {
    uint64_t begin, end;
    int index;
} byte_range;

static int compare_ranges(const void *a, const void *b) {
    const byte_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static dit_status read_metadata(const cJSON *meta, tensor_file *out) {
    if (!cJSON_IsObject(meta)) return dit_set_error("%s: __metadata__ is not a JSON object", out->path);
    int n = cJSON_GetArraySize(meta);
    out->meta_keys = dit_calloc((size_t)n, sizeof(char *));
    out->meta_values = dit_calloc((size_t)n, sizeof(char *));
    if (!out->meta_keys || !out->meta_values) return DIT_ERR;
    for (const cJSON *item = meta->child; item; item = item->next) {
        if (!cJSON_IsString(item))
            return dit_set_error("%s: __metadata__ value '%s' is not a string", out->path, item->string);
        out->meta_keys[out->meta_count] = dit_strdup(item->string);
        out->meta_values[out->meta_count] = dit_strdup(item->valuestring);
        out->meta_count++;   // counted now so that tensor_file_free releases both on failure
        if (!out->meta_keys[out->meta_count - 1] || !out->meta_values[out->meta_count - 1]) return DIT_ERR;
    }
    return DIT_OK;
}

static dit_status read_tensor_entry(const cJSON *item, tensor_view *t, byte_range *range, const char *path) {
    const char *name = item->string;
    if (!cJSON_IsObject(item)) return dit_set_error("%s: tensor '%s' is not a JSON object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return dit_set_error("%s: tensor '%s' needs string \"dtype\", array \"shape\" and array \"data_offsets\"",
                             path, name);
    if (!parse_dtype(dtype->valuestring, &t->dtype))
        return dit_set_error("%s: tensor '%s' has unknown dtype '%s'", path, name, dtype->valuestring);

    int ndim = cJSON_GetArraySize(shape);
    if (ndim > TENSOR_MAX_DIMS)
        return dit_set_error("%s: tensor '%s' has %d dimensions, at most %d are supported", path, name, ndim,
                             TENSOR_MAX_DIMS);
    t->ndim = ndim;
    uint64_t bytes = dtype_size(t->dtype);
    int overflow = 0;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t extent;
        if (!json_to_u64(dim, &extent))
            return dit_set_error("%s: tensor '%s' has an invalid shape (dimensions must be integers >= 0)", path, name);
        t->shape[d] = (int64_t)extent;
        if (extent != 0 && bytes > UINT64_MAX / extent) overflow = 1;
        else bytes *= extent;
    }
    if (overflow) bytes = UINT64_MAX;   // unless another dimension is 0 this cannot match the offsets

    uint64_t begin, end;
    if (cJSON_GetArraySize(offsets) != 2 || !json_to_u64(offsets->child, &begin) ||
        !json_to_u64(offsets->child->next, &end) || begin > end)
        return dit_set_error("%s: tensor '%s' has invalid data_offsets (expected [begin, end] with begin <= end)",
                             path, name);
    int has_zero_dim = 0;
    for (int i = 0; i < ndim; i++) has_zero_dim |= t->shape[i] == 0;
    if (has_zero_dim) bytes = 0;
    if (bytes != end - begin)
        return dit_set_error("%s: tensor '%s' (%s, %d dims) needs %llu bytes but data_offsets span %llu", path, name,
                             dtype_name(t->dtype), ndim, (unsigned long long)bytes,
                             (unsigned long long)(end - begin));
    range->begin = begin;
    range->end = end;
    return DIT_OK;
}

// Parse the JSON header and fill out->tensors, pointing into `data` (the byte buffer after the header).
static dit_status read_header(const char *json, const uint8_t *data, uint64_t data_size, tensor_file *out) {
    const char *path = out->path;
    cJSON *root = cJSON_ParseWithOpts(json, NULL, 1);
    if (!root) return dit_set_error("%s: safetensors header is not valid JSON", path);
    dit_status status = DIT_OK;
    byte_range *ranges = NULL;
    if (!cJSON_IsObject(root)) {
        status = dit_set_error("%s: safetensors header is not a JSON object", path);
        goto done;
    }
    int n = cJSON_GetArraySize(root);
    out->tensors = dit_calloc((size_t)n, sizeof *out->tensors);
    ranges = dit_calloc((size_t)n, sizeof *ranges);
    if (!out->tensors || !ranges) {
        status = DIT_ERR;
        goto done;
    }
    for (const cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (out->meta_keys) {
                status = dit_set_error("%s: __metadata__ appears twice", path);
                goto done;
            }
            if ((status = read_metadata(item, out)) != DIT_OK) goto done;
            continue;
        }
        if (tensor_file_find(out, item->string)) {
            status = dit_set_error("%s: tensor '%s' appears twice", path, item->string);
            goto done;
        }
        tensor_view *t = &out->tensors[out->count];
        byte_range *range = &ranges[out->count];
        t->name = dit_strdup(item->string);
        out->count++;   // counted now so that tensor_file_free releases the name on failure
        if (!t->name) {
            status = DIT_ERR;
            goto done;
        }
        if ((status = read_tensor_entry(item, t, range, path)) != DIT_OK) goto done;
        if (range->end > data_size) {
            status = dit_set_error("%s: tensor '%s' data [%llu, %llu) lies beyond the %llu data bytes of the file",
                                   path, t->name, (unsigned long long)range->begin,
                                   (unsigned long long)range->end, (unsigned long long)data_size);
            goto done;
        }
        range->index = out->count - 1;
        t->data = data + range->begin;
        t->nbytes = (size_t)(range->end - range->begin);
    }
    // Tensors must not share bytes: a writer never does that, and a file that does is corrupt.
    qsort(ranges, (size_t)out->count, sizeof *ranges, compare_ranges);
    for (int i = 1; i < out->count; i++)
        if (ranges[i].begin < ranges[i - 1].end) {
            status = dit_set_error("%s: tensors '%s' and '%s' overlap in the data buffer", path,
                                   out->tensors[ranges[i - 1].index].name, out->tensors[ranges[i].index].name);
            goto done;
        }
done:
    free(ranges);
    cJSON_Delete(root);
    return status;
}

dit_status safetensors_parse(const uint8_t *bytes, size_t size, const char *path, tensor_file *out) {
    memset(out, 0, sizeof *out);
    out->path = dit_strdup(path);
    dit_status status = DIT_OK;
    if (!out->path) {
        status = DIT_ERR;
    } else if (size < 8) {
        status = dit_set_error("%s: too short for a safetensors file (%zu bytes)", path, size);
    } else {
        uint64_t header_len = 0;
        for (int i = 7; i >= 0; i--) header_len = header_len << 8 | bytes[i];
        if (header_len > size - 8 || header_len > SAFETENSORS_MAX_HEADER) {
            status = dit_set_error("%s: safetensors header length %llu does not fit the %zu-byte file", path,
                                   (unsigned long long)header_len, size);
        } else {
            // The JSON is not NUL-terminated in the file; parse a terminated copy.
            char *json = dit_malloc((size_t)header_len + 1);
            if (json) {
                memcpy(json, bytes + 8, (size_t)header_len);
                json[header_len] = '\0';
                status = read_header(json, bytes + 8 + header_len, size - 8 - header_len, out);
                free(json);
            } else {
                status = DIT_ERR;
            }
        }
    }
    if (status != DIT_OK) tensor_file_free(out);
    return status;
}

dit_status safetensors_read(const char *path, tensor_file *out) {
    memset(out, 0, sizeof *out);
    mapped_file m;
    if (map_file(path, &m) != DIT_OK) return DIT_ERR;
    if (safetensors_parse(m.data, m.size, path, out) != DIT_OK) {
        unmap_file(&m);
        return DIT_ERR;
    }
    out->map = m.data;   // the views point into the mapping, which tensor_file_free releases
    out->map_size = m.size;
    return DIT_OK;
}

// ---- writer ------------------------------------------------------------------------------------

typedef struct {
    char *text;
    size_t length, capacity;
    int out_of_memory;   // set by the first append that could not grow the text; later appends do nothing
} text_buffer;

static void append(text_buffer *b, const char *s, size_t n) {
    if (b->out_of_memory) return;
    if (b->length + n + 1 > b->capacity) {
        char *grown = dit_realloc(b->text, (b->length + n + 1) * 2);
        if (!grown) {
            b->out_of_memory = 1;
            return;
        }
        b->text = grown;
        b->capacity = (b->length + n + 1) * 2;
    }
    memcpy(b->text + b->length, s, n);
    b->length += n;
    b->text[b->length] = '\0';
}

static void append_str(text_buffer *b, const char *s) { append(b, s, strlen(s)); }

static void append_json_string(text_buffer *b, const char *s) {
    append_str(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char escaped[8];
        if (*p == '"' || *p == '\\') {
            escaped[0] = '\\', escaped[1] = (char)*p, escaped[2] = '\0';
        } else if (*p < 0x20) {
            snprintf(escaped, sizeof escaped, "\\u%04x", *p);
        } else {
            escaped[0] = (char)*p, escaped[1] = '\0';
        }
        append_str(b, escaped);
    }
    append_str(b, "\"");
}

static void append_u64(text_buffer *b, uint64_t v) {
    char digits[24];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    append_str(b, digits);
}

dit_status safetensors_write(const char *path, const tensor_out *tensors, int count,
                             const char *const *meta_keys, const char *const *meta_values, int meta_count) {
    uint64_t offset = 0;
    size_t *sizes = dit_calloc((size_t)(count > 0 ? count : 1), sizeof *sizes);
    if (!sizes) return DIT_ERR;
    for (int i = 0; i < count; i++) {
        const tensor_out *t = &tensors[i];
        uint64_t bytes = dtype_size(t->dtype);
        if (t->ndim < 0 || t->ndim > TENSOR_MAX_DIMS) {
            free(sizes);
            return dit_set_error("%s: tensor '%s' has %d dimensions", path, t->name, t->ndim);
        }
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || (t->shape[d] > 0 && bytes > SIZE_MAX / (uint64_t)t->shape[d])) {
                free(sizes);
                return dit_set_error("%s: tensor '%s' has an invalid shape", path, t->name);
            }
            bytes *= (uint64_t)t->shape[d];
        }
        sizes[i] = (size_t)bytes;
        if (strcmp(t->name, "__metadata__") == 0) {
            free(sizes);
            return dit_set_error("%s: a tensor cannot be named __metadata__", path);
        }
    }

    text_buffer header = {0};
    append_str(&header, "{");
    if (meta_count > 0) {
        append_str(&header, "\"__metadata__\":{");
        for (int i = 0; i < meta_count; i++) {
            if (i) append_str(&header, ",");
            append_json_string(&header, meta_keys[i]);
            append_str(&header, ":");
            append_json_string(&header, meta_values[i]);
        }
        append_str(&header, "}");
    }
    for (int i = 0; i < count; i++) {
        const tensor_out *t = &tensors[i];
        if (i || meta_count > 0) append_str(&header, ",");
        append_json_string(&header, t->name);
        append_str(&header, ":{\"dtype\":\"");
        append_str(&header, dtype_name(t->dtype));
        append_str(&header, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) append_str(&header, ",");
            append_u64(&header, (uint64_t)t->shape[d]);
        }
        append_str(&header, "],\"data_offsets\":[");
        append_u64(&header, offset);
        append_str(&header, ",");
        offset += sizes[i];
        append_u64(&header, offset);
        append_str(&header, "]}");
    }
    append_str(&header, "}");
    // Spaces (valid JSON whitespace) pad the header so the data starts 8-byte aligned.
    while (header.length % 8 && !header.out_of_memory) append_str(&header, " ");
    if (header.out_of_memory) {
        free(header.text);
        free(sizes);
        return DIT_ERR;
    }

    uint8_t length_bytes[8];
    for (int i = 0; i < 8; i++) length_bytes[i] = (uint8_t)((uint64_t)header.length >> (8 * i));
    atomic_file a;
    dit_status status = atomic_file_open(&a, path);
    if (status == DIT_OK) {
        int ok = fwrite(length_bytes, 1, 8, a.f) == 8 && fwrite(header.text, 1, header.length, a.f) == header.length;
        for (int i = 0; i < count && ok; i++)
            ok = sizes[i] == 0 || fwrite(tensors[i].data, 1, sizes[i], a.f) == sizes[i];
        if (ok) {
            status = atomic_file_commit(&a);
        } else {
            const int err = errno;   // before the abort's own calls
            atomic_file_abort(&a);
            status = dit_set_error("%s: write failed (%s); the previous file under this name is untouched", path,
                                   strerror(err));
        }
    }
    free(header.text);
    free(sizes);
    return status;
}
