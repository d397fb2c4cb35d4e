// Fuzz target: .npy header dict, dtypes, byte order, Fortran order (npy_parse).
#include "fuzz.h"
#include "io/tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    npy_array a;
    if (npy_parse(data, size, "fuzz.npy", &a) != DIT_OK) return 0;
    // the element count as the parser defines it: a zero dimension makes it 0 whatever the others (whose product
    // may overflow); without one, an accepted shape's product must fit
    int64_t n = 1;
    for (int i = 0; i < a.ndim; i++)
        if (a.shape[i] == 0) n = 0;
    for (int i = 0; n != 0 && i < a.ndim; i++)
        if (__builtin_mul_overflow(n, a.shape[i], &n)) abort();
    if (a.nbytes != (size_t)n * dtype_size(a.dtype)) abort();
    fuzz_touch(a.data, a.nbytes);
    npy_free(&a);
    return 0;
}
