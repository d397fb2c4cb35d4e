// Fuzz target: PNG decoding to RGB (image_read_rgb through a memory-backed file; the magic picks the decoder,
// so this target's seeds are PNG files), then the ADM center crop the autoencoder applies.
#include "fuzz.h"
#include "io/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image_u8 im;
    if (image_read_rgb(fuzz_input_path(data, size), &im) != DIT_OK) return 0;
    fuzz_touch(im.pixels, (size_t)im.width * im.height * 3);
    if ((int64_t)im.width * im.height <= 4096) {   // small images only: the crop's cost grows with the size
        image_u8 crop;
        if (image_center_crop(&im, 8, &crop) == DIT_OK) image_free(&crop);
    }
    image_free(&im);
    return 0;
}
