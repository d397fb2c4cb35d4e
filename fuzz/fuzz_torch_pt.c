// Fuzz target: PyTorch .pt files, zip + pickle + storages + tensor views (torch_pt_parse).
#include "fuzz.h"
#include "io/torch_pt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tensor_file f;
    if (torch_pt_parse(data, size, "fuzz.pt", &f) != DIT_OK) return 0;
    for (int i = 0; i < f.count; i++) {
        const tensor_view *t = &f.tensors[i];
        if (t->nbytes != (size_t)tensor_numel(t) * dtype_size(t->dtype)) abort();
        fuzz_touch(t->data, t->nbytes);
    }
    tensor_file_free(&f);
    return 0;
}
