// PyTorch .pt files (the zip format of torch >= 1.6, torch/serialization.py `_save`): "<archive>/data.pkl"
// run through the restricted unpickler of pickle.c, storages in "<archive>/data/<key>", optional
// "<archive>/byteorder". Nested dicts/lists are flattened into named tensors ("ema.blocks.0.attn.qkv.weight").
#include "io/torch_pt.h"

#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/pickle.h"
#include "io/zip.h"

// Bounds on what a hostile pickle can make the flattening do.
#define FLATTEN_MAX_DEPTH 64
#define FLATTEN_MAX_VISITS ((size_t)4 << 20)     // shared values can make a DAG exponentially wide
#define FLATTEN_MAX_TENSORS (1 << 20)
#define FLATTEN_MAX_NAME ((size_t)64 * 1024)
// Non-contiguous views (expand with stride 0 included) are gathered into owned buffers: at most
// this many bytes beyond four times the file size in all.
#define GATHER_SLACK_BYTES ((size_t)64 << 20)

typedef struct {
    const zip_entry *entry;
    const uint8_t *data;    // resolved (and CRC-checked) on first use
} storage_member;

typedef struct {
    const char *path;
    const zip_archive *zip;
    const char *prefix;             // "<archive>"
    storage_member *members;        // the zip's entries sorted by name
    int member_count;
    tensor_file *out;
    int tensor_cap;
    int *name_slots;                // open-addressing set of tensor indices by name (-1 empty)
    size_t slot_cap;
    char *name;
    size_t name_len, name_cap;
    size_t visits;
    size_t gathered, gather_limit;
} flattener;

static int member_cmp(const void *a, const void *b) {
    return strcmp(((const storage_member *)a)->entry->name, ((const storage_member *)b)->entry->name);
}

static int member_key_cmp(const void *key, const void *m) {
    return strcmp((const char *)key, ((const storage_member *)m)->entry->name);
}

static uint64_t name_hash(const char *s) {   // FNV-1a
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static dit_status name_table_grow(flattener *f) {
    size_t cap = f->slot_cap ? f->slot_cap * 2 : 64;
    int *slots = dit_malloc(cap * sizeof *slots);
    if (!slots) return DIT_ERR;
    for (size_t i = 0; i < cap; i++) slots[i] = -1;
    for (size_t i = 0; i < f->slot_cap; i++) {
        int t = f->name_slots[i];
        if (t < 0) continue;
        size_t j = name_hash(f->out->tensors[t].name) & (cap - 1);
        while (slots[j] >= 0) j = (j + 1) & (cap - 1);
        slots[j] = t;
    }
    free(f->name_slots);
    f->name_slots = slots;
    f->slot_cap = cap;
    return DIT_OK;
}

// The slot of `name` in the set: holding its tensor index if present, else the empty slot to fill.
static size_t name_slot(flattener *f, const char *name) {
    size_t j = name_hash(name) & (f->slot_cap - 1);
    while (f->name_slots[j] >= 0 && strcmp(f->out->tensors[f->name_slots[j]].name, name))
        j = (j + 1) & (f->slot_cap - 1);
    return j;
}

static dit_status name_append(flattener *f, const char *part, size_t len) {
    size_t dot = f->name_len ? 1 : 0;
    if (f->name_len + dot + len >= FLATTEN_MAX_NAME)
        return dit_set_error("%s: a tensor name is longer than %zu bytes", f->path, FLATTEN_MAX_NAME);
    if (f->name_len + dot + len + 1 > f->name_cap) {
        char *grown = dit_realloc(f->name, (f->name_len + dot + len + 1) * 2);
        if (!grown) return DIT_ERR;
        f->name = grown;
        f->name_cap = (f->name_len + dot + len + 1) * 2;
    }
    if (dot) f->name[f->name_len++] = '.';
    memcpy(f->name + f->name_len, part, len);
    f->name_len += len;
    f->name[f->name_len] = 0;
    return DIT_OK;
}

// Keep p (malloc'd) with the file, for tensor_file_free; p is freed at once if that fails.
static dit_status keep_owned(tensor_file *out, void *p) {
    void **grown = dit_realloc(out->owned, (size_t)(out->owned_count + 1) * sizeof *grown);
    if (!grown) {
        free(p);
        return DIT_ERR;
    }
    out->owned = grown;
    out->owned[out->owned_count++] = p;
    return DIT_OK;
}

// The storage member's bytes, found once and CRC-checked once however many tensors share it.
static dit_status storage_bytes(flattener *f, const char *key, const uint8_t **data, uint64_t *size) {
    size_t n = strlen(f->prefix) + strlen(key) + 8;
    char *member = dit_malloc(n);
    if (!member) return DIT_ERR;
    snprintf(member, n, "%s/data/%s", f->prefix, key);
    storage_member *m = bsearch(member, f->members, (size_t)f->member_count, sizeof *f->members, member_key_cmp);
    if (!m) {
        dit_set_error("%s: tensor %s: storage member '%s' is missing", f->path, f->name, member);
        free(member);
        return DIT_ERR;
    }
    free(member);
    if (!m->data) {
        const uint8_t *bytes;
        uint8_t *owned;
        if (zip_entry_data(f->zip, m->entry, &bytes, &owned)) return DIT_ERR;
        // a deflated member (torch stores them uncompressed, other writers may not)
        if (owned && keep_owned(f->out, owned)) return DIT_ERR;
        m->data = bytes;
    }
    *data = m->data;
    *size = m->entry->size;
    return DIT_OK;
}

static dit_status add_tensor(flattener *f, const pickle_tensor *t) {
    if ((size_t)(f->out->count + 1) * 2 > f->slot_cap && name_table_grow(f)) return DIT_ERR;
    size_t slot = name_slot(f, f->name);
    if (f->name_slots[slot] >= 0) return DIT_OK;   // a repeated name: the first one wins
    const pickle_storage *s = &t->storage->u.storage;
    int dtype = t->dtype >= 0 ? t->dtype : s->dtype;
    if (dtype < 0)
        return dit_set_error("%s: tensor %s: storage class torch.%s is not supported", f->path, f->name,
                             s->class_name);
    size_t elem = dtype_size((dit_dtype)dtype);
    // Untyped storages count bytes; typed ones count elements of their own dtype.
    size_t storage_elem = s->dtype >= 0 ? dtype_size((dit_dtype)s->dtype) : 1;
    if (s->dtype < 0 && strcmp(s->class_name, "UntypedStorage"))
        return dit_set_error("%s: tensor %s: storage class torch.%s is not supported", f->path, f->name,
                             s->class_name);
    uint64_t need_bytes;
    if (__builtin_mul_overflow((uint64_t)s->numel, (uint64_t)storage_elem, &need_bytes))
        return dit_set_error("%s: tensor %s: storage size overflows", f->path, f->name);

    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++)
        if (__builtin_mul_overflow(numel, t->size[i], &numel) || numel > INT64_MAX / (int64_t)elem)
            return dit_set_error("%s: tensor %s: element count overflows", f->path, f->name);

    const uint8_t *base;
    uint64_t member_size;
    if (storage_bytes(f, s->key, &base, &member_size)) return DIT_ERR;
    if (member_size < need_bytes)
        return dit_set_error("%s: tensor %s: storage '%s' holds %llu bytes, its header says %llu", f->path,
                             f->name, s->key, (unsigned long long)member_size, (unsigned long long)need_bytes);
    uint64_t capacity = need_bytes / elem;   // elements of the tensor's dtype

    int contiguous = 1;
    if (numel > 0) {
        // The largest element index the view touches: offset + sum (size - 1) * stride.
        int64_t last = t->offset, term;
        for (int i = 0; i < t->ndim; i++)
            if (__builtin_mul_overflow(t->size[i] - 1, t->stride[i], &term) || __builtin_add_overflow(last, term, &last))
                return dit_set_error("%s: tensor %s: view extent overflows", f->path, f->name);
        if ((uint64_t)last >= capacity)
            return dit_set_error("%s: tensor %s: view reaches element %lld of a storage of %llu", f->path, f->name,
                                 (long long)last, (unsigned long long)capacity);
        int64_t expected = 1;
        for (int i = t->ndim - 1; i >= 0; i--) {
            if (t->size[i] != 1 && t->stride[i] != expected) contiguous = 0;
            expected *= t->size[i];
        }
    }

    if (f->out->count >= FLATTEN_MAX_TENSORS)
        return dit_set_error("%s: more than %d tensors", f->path, FLATTEN_MAX_TENSORS);
    if (f->out->count == f->tensor_cap) {
        const int cap = f->tensor_cap ? f->tensor_cap * 2 : 64;
        tensor_view *grown = dit_realloc(f->out->tensors, (size_t)cap * sizeof *grown);
        if (!grown) return DIT_ERR;
        f->out->tensors = grown;
        f->tensor_cap = cap;
    }
    size_t nbytes = (size_t)numel * elem;
    const void *data = base;
    if (numel > 0 && contiguous) {
        data = base + (size_t)t->offset * elem;
    } else if (numel > 0) {
        if (nbytes > f->gather_limit - f->gathered)
            return dit_set_error("%s: tensor %s: a strided view of %zu bytes exceeds the %zu bytes allowed for "
                                 "gathering views", f->path, f->name, nbytes, f->gather_limit);
        f->gathered += nbytes;
        uint8_t *dst = dit_try_malloc(nbytes, "a strided view");
        if (!dst) {
            dit_prefix_error("%s: tensor %s", f->path, f->name);
            return DIT_ERR;
        }
        int64_t index[TENSOR_MAX_DIMS] = {0};
        int64_t src = t->offset;
        for (int64_t e = 0; e < numel; e++) {
            memcpy(dst + (size_t)e * elem, base + (size_t)src * elem, elem);
            for (int d = t->ndim - 1; d >= 0; d--) {   // odometer over the multi-index
                src += t->stride[d];
                if (++index[d] < t->size[d]) break;
                src -= t->size[d] * t->stride[d];
                index[d] = 0;
            }
        }
        if (keep_owned(f->out, dst)) return DIT_ERR;
        data = dst;
    }
    tensor_view *v = &f->out->tensors[f->out->count];
    memset(v, 0, sizeof *v);
    if (!(v->name = dit_strdup(f->name))) return DIT_ERR;
    v->dtype = (dit_dtype)dtype;
    v->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) v->shape[i] = t->size[i];
    v->data = data;
    v->nbytes = nbytes;
    f->name_slots[slot] = f->out->count++;
    return DIT_OK;
}

static dit_status visit(flattener *f, const pickle_value *v, int depth) {
    if (++f->visits > FLATTEN_MAX_VISITS)
        return dit_set_error("%s: the pickled object graph has more than %zu nodes", f->path, FLATTEN_MAX_VISITS);
    if (depth > FLATTEN_MAX_DEPTH)
        return dit_set_error("%s: containers nested deeper than %d levels (or cyclic) at '%s'", f->path,
                             FLATTEN_MAX_DEPTH, f->name);
    size_t saved = f->name_len;
    char digits[32];
    switch (v->kind) {
    case PV_TENSOR:
        return add_tensor(f, &v->u.tensor);
    case PV_DICT:
        for (size_t i = 0; i < v->u.dict.count; i++) {
            const pickle_value *key = v->u.dict.keys[i];
            if (key->kind == PV_STR) {
                if (name_append(f, key->u.str.data, strlen(key->u.str.data))) return DIT_ERR;
            } else if (key->kind == PV_INT) {
                int n = snprintf(digits, sizeof digits, "%lld", (long long)key->u.i);
                if (name_append(f, digits, (size_t)n)) return DIT_ERR;
            } else {
                continue;   // keys we cannot name (tuples, None...)
            }
            if (visit(f, v->u.dict.values[i], depth + 1)) return DIT_ERR;
            f->name_len = saved;
            f->name[saved] = 0;
        }
        return DIT_OK;
    case PV_LIST:
    case PV_TUPLE:
        for (size_t i = 0; i < v->u.seq.count; i++) {
            int n = snprintf(digits, sizeof digits, "%zu", i);
            if (name_append(f, digits, (size_t)n) || visit(f, v->u.seq.items[i], depth + 1)) return DIT_ERR;
            f->name_len = saved;
            f->name[saved] = 0;
        }
        return DIT_OK;
    default:
        return DIT_OK;   // numbers, strings, opaque objects (args, devices...) carry no tensors for us
    }
}

// torch < 1.6 wrote a bare pickle stream starting with the magic number 0x1950a86a20f9469cfc6c
// (PROTO 2, LONG1 of 10 bytes).
static int is_legacy_torch(const uint8_t *d, size_t n) {
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    return n >= sizeof magic && !memcmp(d, magic, sizeof magic);
}

static dit_status parse(const uint8_t *data, size_t size, const char *path, tensor_file *out, zip_archive *zip,
                        flattener *f, pickle_doc *doc) {
    if (size == 0) return dit_set_error("%s: empty file", path);
    if (is_legacy_torch(data, size))
        return dit_set_error("%s: PyTorch's legacy (torch < 1.6, non-zip) format is not supported; re-save it "
                             "with torch >= 1.6: torch.save(torch.load(\"old.pt\"), \"new.pt\")", path);
    if (data[0] == 0x80)
        return dit_set_error("%s: a bare pickle, not a PyTorch zip checkpoint (torch.save of torch >= 1.6)", path);
    if (zip_open_buffer(zip, data, size, path)) return DIT_ERR;

    const zip_entry *pkl = NULL;
    for (int i = 0; i < zip->count && !pkl; i++) {
        const char *name = zip->entries[i].name;
        size_t len = strlen(name);
        const char *slash = strchr(name, '/');
        if (len > 9 && !strcmp(name + len - 9, "/data.pkl") && slash == name + len - 9) pkl = &zip->entries[i];
    }
    if (!pkl) return dit_set_error("%s: no <archive>/data.pkl in the zip: not a torch.save checkpoint", path);
    size_t prefix_len = strlen(pkl->name) - 9;
    char *prefix = dit_malloc(prefix_len + 1);
    if (!prefix) return DIT_ERR;
    memcpy(prefix, pkl->name, prefix_len);
    prefix[prefix_len] = 0;
    f->prefix = prefix;

    size_t n = prefix_len + 16;
    char *member = dit_malloc(n);
    if (!member) return DIT_ERR;
    snprintf(member, n, "%s/byteorder", prefix);
    const zip_entry *order = zip_find(zip, member);
    free(member);
    if (order) {
        const uint8_t *bytes;
        uint8_t *owned;
        if (zip_entry_data(zip, order, &bytes, &owned)) return DIT_ERR;
        int little = order->size == 6 && !memcmp(bytes, "little", 6);
        free(owned);
        if (!little)
            return dit_set_error("%s: storages are saved in big-endian byte order; only \"little\" is supported",
                                 path);
    }

    const uint8_t *pkl_bytes;
    uint8_t *pkl_owned;
    if (zip_entry_data(zip, pkl, &pkl_bytes, &pkl_owned)) return DIT_ERR;
    size_t what_len = strlen(path) + strlen(pkl->name) + 3;
    char *what = dit_malloc(what_len);
    if (!what) {
        free(pkl_owned);
        return DIT_ERR;
    }
    snprintf(what, what_len, "%s: %s", path, pkl->name);
    dit_status st = pickle_parse(pkl_bytes, (size_t)pkl->size, what, doc);
    free(what);
    free(pkl_owned);
    if (st) return DIT_ERR;

    f->path = path;
    f->zip = zip;
    f->out = out;
    f->member_count = zip->count;
    f->members = dit_calloc((size_t)zip->count + 1, sizeof *f->members);
    f->name_cap = 256;
    f->name = dit_malloc(f->name_cap);
    if (!f->members || !f->name) return DIT_ERR;
    for (int i = 0; i < zip->count; i++) f->members[i].entry = &zip->entries[i];
    qsort(f->members, (size_t)zip->count, sizeof *f->members, member_cmp);
    f->name[0] = 0;
    f->gather_limit = size > (SIZE_MAX - GATHER_SLACK_BYTES) / 4 ? SIZE_MAX : size * 4 + GATHER_SLACK_BYTES;
    return visit(f, doc->root, 0);
}

dit_status torch_pt_parse(const uint8_t *data, size_t size, const char *path, tensor_file *out) {
    memset(out, 0, sizeof *out);
    if (!(out->path = dit_strdup(path))) return DIT_ERR;
    zip_archive zip;
    memset(&zip, 0, sizeof zip);
    flattener f;
    memset(&f, 0, sizeof f);
    pickle_doc doc;
    memset(&doc, 0, sizeof doc);
    dit_status st = parse(data, size, path, out, &zip, &f, &doc);
    free((char *)f.prefix);
    free(f.members);
    free(f.name_slots);
    free(f.name);
    pickle_doc_free(&doc);
    zip_close(&zip);
    if (st) {
        tensor_file_free(out);
        memset(out, 0, sizeof *out);
    }
    return st;
}

dit_status torch_pt_read(const char *path, tensor_file *out) {
    memset(out, 0, sizeof *out);
    mapped_file m;
    if (map_file(path, &m)) return DIT_ERR;
    if (torch_pt_parse(m.data, m.size, path, out)) {
        unmap_file(&m);
        return DIT_ERR;
    }
    out->map = m.data;
    out->map_size = m.size;
    return DIT_OK;
}
