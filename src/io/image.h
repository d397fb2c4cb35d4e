// Image input for the autoencoder: PNG (libpng) and JPEG (libjpeg-turbo) decoded to 8-bit RGB, and the
// ADM center_crop_arr of DiT's train.py (reference.md §3.1) with PIL-compatible BOX and BICUBIC
// resampling, so crops match the reference pixel for pixel.
#ifndef DIT_IO_IMAGE_H
#define DIT_IO_IMAGE_H

#include <stdint.h>

#include "dit.h"

typedef struct {
    uint8_t *pixels;   // RGB, row-major (H, W, 3), owned
    int width, height;
} image_u8;

// Read a PNG or JPEG (chosen by the file's magic bytes) as RGB, as PIL's Image.open(...).convert("RGB"):
// gray is replicated, palettes expanded, alpha dropped (not composited), 16-bit samples keep their high
// byte. Truncated or corrupt files are errors naming the file.
dit_status image_read_rgb(const char *path, image_u8 *out);
void image_free(image_u8 *im);

// PIL's Image.resize(size, resample) for 8-bit RGB: separable, horizontal pass first, filter support scaled
// by the downscale factor, fixed-point coefficients with 22 fractional bits (Pillow's Resample.c).
typedef enum { RESAMPLE_BOX, RESAMPLE_BICUBIC } resample_filter;
dit_status image_resize(const image_u8 *in, int width, int height, resample_filter filter, image_u8 *out);

// center_crop_arr: while min side >= 2 size, halve (w // 2, h // 2) with BOX; then BICUBIC to
// (round(w s), round(h s)), s = size / min side (Python's round: half to even); crop size x size at
// ((w - size) // 2, (h - size) // 2).
dit_status image_center_crop(const image_u8 *in, int size, image_u8 *out);

// dst (3, H, W) = ToTensor + Normalize(0.5, 0.5): (p / 255 - 0.5) / 0.5, in float32 as torchvision.
void image_to_float_chw(const image_u8 *im, float *dst);

#endif
