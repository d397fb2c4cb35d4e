// Sample grids with row labels, and float [-1, 1] images to uint8 the way the reference writes its samples.
#include "image/grid.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

void to_uint8_nhwc(uint8_t *dst, const float *x, int N, int C, int H, int W) {
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                for (int c = 0; c < C; c++) {
                    float v = 127.5f * x[(((int64_t)n * C + c) * H + h) * W + w] + 128.0f;
                    v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
                    dst[(((int64_t)n * H + h) * W + w) * C + c] = (uint8_t)v;
                }
}

int text_width(const char *text, int scale) { return (int)strlen(text) * 6 * scale; }

void text_draw(rgb_image *img, int x, int y, const char *text, int scale, uint8_t r, uint8_t g, uint8_t b) {
    for (; *text; text++, x += 6 * scale) {
        for (int row = 0; row < 7; row++) {
            int bits = font_glyph_row(*text, row);
            for (int col = 0; col < 5; col++) {
                if (!(bits & (0x10 >> col))) continue;
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++) {
                        int px = x + col * scale + dx, py = y + row * scale + dy;
                        if (px < 0 || py < 0 || px >= img->width || py >= img->height) continue;
                        uint8_t *p = img->pixels + ((int64_t)py * img->width + px) * 3;
                        p[0] = r, p[1] = g, p[2] = b;
                    }
            }
        }
    }
}

dit_status grid_compose(rgb_image *out, const uint8_t *images, int n, int H, int W, int C, int cols,
                        const char *const *row_labels, int padding) {
    if (n <= 0 || cols <= 0 || H <= 0 || W <= 0 || (C != 1 && C != 3))
        return dit_set_error("grid: bad layout (%d images of %dx%dx%d in %d columns)", n, H, W, C, cols);
    const int rows = (n + cols - 1) / cols;
    const int scale = H / 20 < 1 ? 1 : H / 20 > 4 ? 4 : H / 20;
    int margin = 0;
    for (int r = 0; row_labels && r < rows; r++) {
        int w = text_width(row_labels[r] ? row_labels[r] : "", scale);
        if (w > margin) margin = w;
    }
    if (margin) margin += 2 * padding + scale * 2;
    out->width = margin + cols * W + (cols + 1) * padding;
    out->height = rows * H + (rows + 1) * padding;
    if ((int64_t)out->width * out->height > ((int64_t)1 << 31))
        return dit_set_error("grid: %d x %d pixels is too large", out->width, out->height);
    out->pixels = dit_try_malloc((size_t)out->width * out->height * 3, "the grid");
    if (!out->pixels) return DIT_ERR;
    memset(out->pixels, 255, (size_t)out->width * out->height * 3);   // white background
    for (int i = 0; i < n; i++) {
        int r = i / cols, c = i % cols;
        int x0 = margin + padding + c * (W + padding), y0 = padding + r * (H + padding);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const uint8_t *src = images + (((int64_t)i * H + y) * W + x) * C;
                uint8_t *dst = out->pixels + ((int64_t)(y0 + y) * out->width + x0 + x) * 3;
                dst[0] = src[0];
                dst[1] = src[C == 3 ? 1 : 0];
                dst[2] = src[C == 3 ? 2 : 0];
            }
    }
    for (int r = 0; row_labels && r < rows; r++) {
        if (!row_labels[r]) continue;
        int y = padding + r * (H + padding) + (H - 7 * scale) / 2;
        text_draw(out, padding, y, row_labels[r], scale, 0, 0, 0);
    }
    return DIT_OK;
}
