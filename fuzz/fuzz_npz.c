// Fuzz target: .npz archives, zip members parsed as .npy (npz_read, through a memory-backed file).
#include "fuzz.h"
#include "io/tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tensor_file f;
    if (npz_read(fuzz_input_path(data, size), &f) != DIT_OK) return 0;
    for (int i = 0; i < f.count; i++) fuzz_touch(f.tensors[i].data, f.tensors[i].nbytes);
    tensor_file_free(&f);
    return 0;
}
