// Fuzz target: .npy header dict, dtypes, byte order, Fortran order (npy_parse).
#include "fuzz.h"
#include "io/tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    npy_array a;
    if (npy_parse(data, size, "fuzz.npy", &a) != DIT_OK) return 0;
    int64_t n = 1;
    for (int i = 0; i < a.ndim; i++) n *= a.shape[i];
    if (a.nbytes != (size_t)n * dtype_size(a.dtype)) abort();
    fuzz_touch(a.data, a.nbytes);
    npy_free(&a);
    return 0;
}
