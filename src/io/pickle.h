// A restricted unpickler for torch .pt files: a pickle virtual machine (protocols 0-5) over a byte buffer
// that imports and executes nothing. GLOBAL yields an inert class reference; REDUCE/NEWOBJ evaluate only an
// allow-list of pure data constructors (OrderedDict, set, torch tensor/parameter rebuilds); anything else
// becomes an inert "opaque object". All values live in one arena, released by pickle_doc_free.
#ifndef DIT_IO_PICKLE_H
#define DIT_IO_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"
#include "io/tensors.h"

typedef enum {
    PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_BYTES,
    PV_LIST,      // list, set and frozenset
    PV_TUPLE,
    PV_DICT,      // dict and collections.OrderedDict (insertion order kept; repeated keys appended)
    PV_CLASS,     // a GLOBAL: module + name, never imported
    PV_OPAQUE,    // anything built by a constructor outside the allow-list (and ints wider than 64 bits)
    PV_STORAGE,   // a torch persistent id ('storage', <class>, key, location, numel)
    PV_TENSOR,    // torch._utils._rebuild_tensor*(storage, offset, size, stride, ...)
} pickle_kind;

typedef struct pickle_value pickle_value;

typedef struct {
    const char *module, *name;      // class reference (PV_CLASS) or the class of an opaque object
} pickle_class;

typedef struct {
    int dtype;                      // a dit_dtype, or -1 when the storage class is not a known typed one
    const char *class_name;         // "FloatStorage", ...
    const char *key;                // the member name under "<archive>/data/"
    const char *location;           // "cpu", "cuda:0", ...
    int64_t numel;                  // elements (bytes for an untyped storage)
} pickle_storage;

typedef struct {
    const pickle_value *storage;    // a PV_STORAGE value
    int dtype;                      // explicit dtype (_rebuild_tensor_v3), else -1: the storage's
    int ndim;
    int64_t offset;                 // in elements
    int64_t size[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];
} pickle_tensor;

struct pickle_value {
    pickle_kind kind;
    union {
        int64_t i;                  // PV_INT, PV_BOOL
        double f;                   // PV_FLOAT
        struct { const char *data; size_t len; } str;                 // PV_STR, PV_BYTES (NUL-terminated)
        struct { pickle_value **items; size_t count, cap; } seq;      // PV_LIST, PV_TUPLE
        struct { pickle_value **keys, **values; size_t count, cap; } dict;
        pickle_class cls;           // PV_CLASS, PV_OPAQUE
        pickle_storage storage;
        pickle_tensor tensor;
    } u;
};

typedef struct pickle_block pickle_block;

typedef struct {
    pickle_value *root;             // the value STOP returned
    pickle_block *blocks;           // the arena
    size_t arena_bytes;
    size_t value_count;
} pickle_doc;

// Run the pickle in data[0..size). `what` names the input in error messages ("model.pt: data.pkl").
// On failure everything is freed and *doc is left empty.
dit_status pickle_parse(const uint8_t *data, size_t size, const char *what, pickle_doc *doc);
void pickle_doc_free(pickle_doc *doc);

// Small helpers over values.
const char *pickle_kind_name(pickle_kind kind);
// Torch storage class name ("FloatStorage", "HalfStorage", ...) to a dit_dtype, or -1.
int pickle_storage_dtype(const char *class_name);

#endif
