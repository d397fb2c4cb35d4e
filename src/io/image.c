// PNG and JPEG input as 8-bit RGB, PIL-compatible resampling and the ADM center crop (see image.h).
// The resampler follows Pillow's libImaging/Resample.c (precompute_coeffs, normalize_coeffs_8bpc,
// ImagingResampleHorizontal/Vertical_8bpc): same supports, same rounding, same pass order.
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>   // after stdio.h: it uses FILE and size_t without including them

#include "base/error.h"
#include "io/image.h"

#define IMAGE_MAX_SIDE 65535
#define IMAGE_MAX_PIXELS ((int64_t)1 << 28)

void image_free(image_u8 *im) {
    free(im->pixels);
    im->pixels = NULL;
    im->width = im->height = 0;
}

static dit_status check_size(const char *path, int64_t w, int64_t h) {
    if (w < 1 || h < 1 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || w * h > IMAGE_MAX_PIXELS)
        return dit_set_error("%s: image size %lldx%lld is outside what dit reads (sides 1..%d, at most %lld pixels)", path,
                             (long long)w, (long long)h, IMAGE_MAX_SIDE, (long long)IMAGE_MAX_PIXELS);
    return DIT_OK;
}

// ---- PNG -----------------------------------------------------------------------------------------

static void on_png_error(png_structp png, png_const_charp message) {
    dit_set_error("libpng: %s", message);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static dit_status read_png(const char *path, FILE *f, image_u8 *out) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return dit_set_error("%s: cannot set up libpng", path);
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    png_init_io(png, f);
    png_read_info(png, info);
    const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (check_size(path, w, h)) {
        png_destroy_read_struct(&png, &info, NULL);
        return DIT_ERR;
    }
    // The filtered rows ((row bytes + 1) x height) come out of zlib, which expands at most 1032:1: a header
    // declaring more than that from this file's size is refused before the pixels are allocated.
    struct stat st;
    const uint64_t raw_bytes = ((uint64_t)png_get_rowbytes(png, info) + 1) * h;
    if (fstat(fileno(f), &st) == 0 && raw_bytes > (uint64_t)st.st_size * 1032 + 4096) {
        png_destroy_read_struct(&png, &info, NULL);
        return dit_set_error("%s: PNG header declares %ux%u pixels (%llu bytes), more than its %lld bytes can hold",
                             path, (unsigned)w, (unsigned)h, (unsigned long long)raw_bytes, (long long)st.st_size);
    }
    // As PIL's convert("RGB"): palettes and low bit depths expand, 16-bit keeps the high byte, gray
    // replicates, alpha (and tRNS) is dropped rather than composited. Gamma chunks are ignored, as PIL does.
    const int color = png_get_color_type(png, info);
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) png_error(png, "unexpected row size after conversion to RGB");
    pixels = dit_try_malloc((size_t)w * h * 3, "the pixels");
    if (!pixels) {
        png_destroy_read_struct(&png, &info, NULL);
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    rows = dit_malloc(sizeof(png_bytep) * h);
    if (!rows) {
        free(pixels);
        png_destroy_read_struct(&png, &info, NULL);
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    out->pixels = pixels;
    out->width = (int)w;
    out->height = (int)h;
    return DIT_OK;
}

// ---- JPEG ----------------------------------------------------------------------------------------

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
} jpeg_error_state;

static void on_jpeg_error(j_common_ptr cinfo) {
    jpeg_error_state *err = (jpeg_error_state *)cinfo->err;
    char message[JMSG_LENGTH_MAX];
    err->base.format_message(cinfo, message);
    dit_set_error("libjpeg: %s", message);
    longjmp(err->jump, 1);
}

static void on_jpeg_message(j_common_ptr cinfo) { (void)cinfo; }   // warnings are counted, then refused below

static dit_status read_jpeg(const char *path, FILE *f, image_u8 *out) {
    struct jpeg_decompress_struct cinfo;
    jpeg_error_state err;
    uint8_t *volatile pixels = NULL;
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = on_jpeg_error;
    err.base.output_message = on_jpeg_message;
    if (setjmp(err.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    if (check_size(path, cinfo.image_width, cinfo.image_height)) {
        jpeg_destroy_decompress(&cinfo);
        return DIT_ERR;
    }
    // libjpeg's defaults are PIL's: islow DCT, fancy upsampling; gray and YCbCr convert to RGB here.
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) {
        jpeg_destroy_decompress(&cinfo);
        return dit_set_error("%s: JPEG decodes to %d components, expected RGB", path, cinfo.output_components);
    }
    const int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    pixels = dit_try_malloc((size_t)w * h * 3, "the pixels");
    if (!pixels) {
        jpeg_destroy_decompress(&cinfo);
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    while (cinfo.output_scanline < cinfo.output_height && err.base.num_warnings == 0) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    // A warning (corrupt data, premature end) refuses the file below: stop decoding at the first one rather
    // than decode a huge declared image from a few bytes.
    if (err.base.num_warnings == 0) jpeg_finish_decompress(&cinfo);
    // Corrupt data and premature ends are warnings to libjpeg (it pads with gray); PIL refuses truncated
    // files by default, and so do we.
    const long warnings = err.base.num_warnings;
    jpeg_destroy_decompress(&cinfo);
    if (warnings > 0) {
        free(pixels);
        return dit_set_error("%s: corrupt or truncated JPEG data", path);
    }
    out->pixels = pixels;
    out->width = w;
    out->height = h;
    return DIT_OK;
}

dit_status image_read_rgb(const char *path, image_u8 *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return dit_set_error("%s: cannot open image", path);
    unsigned char magic[8] = {0};
    size_t n = fread(magic, 1, sizeof magic, f);
    rewind(f);
    dit_status st;
    if (n == 8 && !png_sig_cmp(magic, 0, 8)) st = read_png(path, f, out);
    else if (n >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) st = read_jpeg(path, f, out);
    else st = dit_set_error("%s: not a PNG or JPEG image", path);
    fclose(f);
    return st;
}

// ---- PIL-compatible resampling -------------------------------------------------------------------

#define PRECISION_BITS (32 - 8 - 2)

static double box_filter(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

static double bicubic_filter(double x) {   // Keys cubic, a = -0.5
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output index, the first input index, the count,
// and ksize fixed-point weights. Returns ksize, or 0 when out of memory (nothing allocated then).
static int precompute_coeffs(int in_size, int out_size, resample_filter filter, int **bounds_out, int32_t **kk_out) {
    double (*fn)(double) = filter == RESAMPLE_BOX ? box_filter : bicubic_filter;
    const double filter_support = filter == RESAMPLE_BOX ? 0.5 : 2.0;
    const double scale = (double)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = filter_support * filterscale;
    const int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = dit_malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *kk = dit_malloc(sizeof(int32_t) * (size_t)out_size * ksize);
    double *k = dit_malloc(sizeof(double) * (size_t)ksize);
    if (!bounds || !kk || !k) {
        free(bounds);
        free(kk);
        free(k);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            k[x] = fn((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0;
            kk[(size_t)xx * ksize + x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                                               : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

dit_status image_resize(const image_u8 *in, int width, int height, resample_filter filter, image_u8 *out) {
    if (width < 1 || height < 1 || check_size("resize", width, height))
        return dit_set_error("image resize: invalid target size %dx%d", width, height);
    const int W = in->width, H = in->height;
    uint8_t *src = in->pixels, *tmp = NULL;
    int cur_w = W;
    if (width != W) {
        // Horizontal pass first (Pillow's order), 8-bit rounding in between.
        int *bounds;
        int32_t *kk;
        const int ksize = precompute_coeffs(W, width, filter, &bounds, &kk);
        if (!ksize) return DIT_ERR;
        if (!(tmp = dit_malloc((size_t)width * H * 3))) {
            free(bounds);
            free(kk);
            return DIT_ERR;
        }
        for (int y = 0; y < H; y++) {
            const uint8_t *row = src + (size_t)y * W * 3;
            uint8_t *dst = tmp + (size_t)y * width * 3;
            for (int xx = 0; xx < width; xx++) {
                const int xmin = bounds[2 * xx], xmax = bounds[2 * xx + 1];
                const int32_t *k = kk + (size_t)xx * ksize;
                int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < xmax; x++) {
                    const uint8_t *p = row + (size_t)(x + xmin) * 3;
                    s0 += p[0] * k[x];
                    s1 += p[1] * k[x];
                    s2 += p[2] * k[x];
                }
                dst[3 * xx] = clip8(s0);
                dst[3 * xx + 1] = clip8(s1);
                dst[3 * xx + 2] = clip8(s2);
            }
        }
        free(bounds);
        free(kk);
        src = tmp;
        cur_w = width;
    }
    uint8_t *result;
    if (height != H) {
        int *bounds;
        int32_t *kk;
        const int ksize = precompute_coeffs(H, height, filter, &bounds, &kk);
        result = ksize ? dit_malloc((size_t)cur_w * height * 3) : NULL;
        if (!result) {
            if (ksize) free(bounds), free(kk);
            free(tmp);
            return DIT_ERR;
        }
        for (int yy = 0; yy < height; yy++) {
            const int ymin = bounds[2 * yy], ymax = bounds[2 * yy + 1];
            const int32_t *k = kk + (size_t)yy * ksize;
            uint8_t *dst = result + (size_t)yy * cur_w * 3;
            for (int xx = 0; xx < cur_w * 3; xx++) {
                int32_t s = 1 << (PRECISION_BITS - 1);
                for (int y = 0; y < ymax; y++) s += src[(size_t)(y + ymin) * cur_w * 3 + xx] * k[y];
                dst[xx] = clip8(s);
            }
        }
        free(bounds);
        free(kk);
        free(tmp);
    } else if (tmp) {
        result = tmp;
    } else {
        if (!(result = dit_malloc((size_t)W * H * 3))) return DIT_ERR;
        memcpy(result, src, (size_t)W * H * 3);
    }
    out->pixels = result;
    out->width = cur_w;
    out->height = height;
    return DIT_OK;
}

dit_status image_center_crop(const image_u8 *in, int size, image_u8 *out) {
    if (size < 1) return dit_set_error("center crop: size %d must be positive", size);
    image_u8 cur = {0}, next;
    const image_u8 *src = in;
    while ((src->width < src->height ? src->width : src->height) >= 2 * size) {
        if (image_resize(src, src->width / 2, src->height / 2, RESAMPLE_BOX, &next)) {
            image_free(&cur);
            return DIT_ERR;
        }
        image_free(&cur);
        cur = next;
        src = &cur;
    }
    const double scale = (double)size / (src->width < src->height ? src->width : src->height);
    // Python's round() on a float: half to even, which rint does in the default rounding mode.
    const int w = (int)rint(src->width * scale), h = (int)rint(src->height * scale);
    dit_status st = image_resize(src, w, h, RESAMPLE_BICUBIC, &next);
    image_free(&cur);
    if (st) return DIT_ERR;
    if (w < size || h < size) {
        image_free(&next);
        return dit_set_error("center crop: resized image %dx%d is smaller than %d", w, h, size);
    }
    const int y0 = (h - size) / 2, x0 = (w - size) / 2;
    if (!(out->pixels = dit_malloc((size_t)size * size * 3))) {
        image_free(&next);
        return DIT_ERR;
    }
    out->width = out->height = size;
    for (int y = 0; y < size; y++)
        memcpy(out->pixels + (size_t)y * size * 3, next.pixels + ((size_t)(y0 + y) * w + x0) * 3, (size_t)size * 3);
    image_free(&next);
    return DIT_OK;
}

void image_to_float_chw(const image_u8 *im, float *dst) {
    const int64_t plane = (int64_t)im->width * im->height;
    for (int64_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            const float unit = (float)im->pixels[i * 3 + c] / 255.0f;   // ToTensor
            dst[c * plane + i] = (unit - 0.5f) / 0.5f;                  // Normalize(0.5, 0.5)
        }
}
