// Fuzz target: IDX files (Fashion-MNIST format), plain or gzip'd, as images and as labels (data.c).
#include "fuzz.h"
#include "train/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_path(data, size);
    uint8_t *pixels = NULL;
    int count, rows, cols;
    if (idx_read_images(path, &pixels, &count, &rows, &cols) == DIT_OK) {
        fuzz_touch(pixels, (size_t)count * rows * cols);
        free(pixels);
    }
    uint8_t *labels = NULL;
    if (idx_read_labels(path, &labels, &count) == DIT_OK) {
        fuzz_touch(labels, (size_t)count);
        free(labels);
    }
    return 0;
}
