// Named tensors read from files (safetensors, torch .pt, .npz): one view per tensor, pointing into the
// file mapping or into storage the file object owns. Every loader bounds-checks everything.
#ifndef DIT_IO_TENSORS_H
#define DIT_IO_TENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"

typedef enum {
    DT_F32, DT_F16, DT_BF16, DT_F64, DT_U8, DT_I8, DT_I16, DT_I32, DT_I64, DT_BOOL
} dit_dtype;

size_t dtype_size(dit_dtype dt);
const char *dtype_name(dit_dtype dt);   // safetensors spelling: "F32", "BF16", "I64", ...

#define TENSOR_MAX_DIMS 8

typedef struct {
    char *name;
    dit_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    const void *data;   // contiguous, C order, little-endian; valid while the owning tensor_file lives
    size_t nbytes;      // = numel * dtype_size
} tensor_view;

typedef struct {
    char *path;
    tensor_view *tensors;
    int count;
    // string metadata (safetensors __metadata__); NULL-free arrays of meta_count entries
    char **meta_keys;
    char **meta_values;
    int meta_count;
    // backing storage, released by tensor_file_free
    void *map;
    size_t map_size;
    void **owned;
    int owned_count;
} tensor_file;

int64_t tensor_numel(const tensor_view *t);
const tensor_view *tensor_file_find(const tensor_file *f, const char *name);
const char *tensor_file_meta(const tensor_file *f, const char *key);   // NULL when absent
void tensor_file_free(tensor_file *f);
// Convert F32/F16/BF16/F64 (or integer) data to float32; dst holds tensor_numel(t) floats.
void tensor_to_f32(const tensor_view *t, float *dst);
int tensor_is_float(const tensor_view *t);
// Convert n float32 values to F32, F16 or BF16 (round to nearest even) into dst (n * dtype_size bytes).
dit_status tensor_from_f32(dit_dtype dtype, const float *src, int64_t n, void *dst);

// safetensors: mmap'd read; write with string metadata, atomically (temporary name, fsync, rename).
dit_status safetensors_read(const char *path, tensor_file *out);
// The same over bytes[0..size) the caller keeps alive while *out lives (out->map stays NULL); `path` names the
// input in messages. On failure *out is left empty.
dit_status safetensors_parse(const uint8_t *bytes, size_t size, const char *path, tensor_file *out);
typedef struct {
    const char *name;
    dit_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    const void *data;   // numel * dtype_size bytes
} tensor_out;
dit_status safetensors_write(const char *path, const tensor_out *tensors, int count,
                             const char *const *meta_keys, const char *const *meta_values, int meta_count);

// PyTorch .pt (zip + pickle) through a restricted unpickler that executes nothing. Nested dicts are
// flattened with "." ("ema.blocks.0.attn.qkv.weight"); list/tuple items by index; non-tensor leaves skipped.
dit_status torch_pt_read(const char *path, tensor_file *out);

// .npy / .npz
typedef struct {
    dit_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    void *data;         // owned, C order, little-endian
    size_t nbytes;
} npy_array;
dit_status npy_read(const char *path, npy_array *out);
dit_status npy_parse(const uint8_t *bytes, size_t size, const char *what, npy_array *out);
dit_status npy_write(const char *path, const npy_array *a);
void npy_free(npy_array *a);
// .npz: entries appear as tensors named without the ".npy" suffix (stored or deflated members).
dit_status npz_read(const char *path, tensor_file *out);
dit_status npz_write(const char *path, const char *const *names, const npy_array *arrays, int count);

// PNG (8-bit gray, RGB or RGBA, row-major HWC), written atomically.
dit_status png_write(const char *path, const uint8_t *pixels, int width, int height, int channels);

#endif
