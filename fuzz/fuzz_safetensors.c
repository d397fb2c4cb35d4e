// Fuzz target: safetensors header (JSON, dtypes, shapes, offsets) and data views (safetensors_parse).
#include <string.h>

#include "fuzz.h"
#include "io/tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tensor_file f;
    if (safetensors_parse(data, size, "fuzz.safetensors", &f) != DIT_OK) return 0;
    for (int i = 0; i < f.count; i++) {
        const tensor_view *t = &f.tensors[i];
        if (t->nbytes != (size_t)tensor_numel(t) * dtype_size(t->dtype)) abort();
        fuzz_touch(t->data, t->nbytes);
        if (tensor_is_float(t) && t->nbytes <= (1u << 20)) {   // the conversion every loader runs
            float *values = malloc((size_t)tensor_numel(t) * sizeof *values + 1);
            tensor_to_f32(t, values);
            free(values);
        }
    }
    for (int i = 0; i < f.meta_count; i++) fuzz_touch(f.meta_values[i], strlen(f.meta_values[i]));
    tensor_file_free(&f);
    return 0;
}
