// Sample grids: images laid out in rows with an optional text label per row (5x7 bitmap font), and the
// conversion of model outputs in [-1, 1] to 8-bit pixels.
#ifndef DIT_IMAGE_GRID_H
#define DIT_IMAGE_GRID_H

#include <stdint.h>

#include "dit.h"

typedef struct {
    uint8_t *pixels;   // RGB, row-major, owned
    int width, height;
} rgb_image;

// The bits of one glyph row (bit 4 = leftmost column), rows 0..6; unknown characters draw as '?'.
int font_glyph_row(char ch, int row);
int text_width(const char *text, int scale);
void text_draw(rgb_image *img, int x, int y, const char *text, int scale, uint8_t r, uint8_t g, uint8_t b);

// to_uint8_nhwc: x (N, C, H, W) float in [-1, 1] -> (N, H, W, C) uint8 as the reference sample_ddp.py:
// clamp(127.5 x + 128, 0, 255) truncated.
void to_uint8_nhwc(uint8_t *dst, const float *x, int N, int C, int H, int W);

// grid_compose: n images (uint8 NHWC, C = 1 or 3) in rows of `cols`; row_labels (one per row, or NULL) are
// drawn in a margin on the left. padding pixels between cells. *out is allocated (free out->pixels).
dit_status grid_compose(rgb_image *out, const uint8_t *images, int n, int H, int W, int C, int cols,
                        const char *const *row_labels, int padding);

#endif
