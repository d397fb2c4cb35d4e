// PNG writing through libpng: 8-bit gray, RGB or RGBA rows, written to an atomic temporary file or to memory.
// libpng reports errors by longjmp; the setjmp point below releases everything on that path.
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/tensors.h"

static void on_png_error(png_structp png, png_const_charp message) {
    dit_set_error("libpng: %s", message);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;   // warnings (e.g. about ancillary chunks) do not affect the image we write
}

dit_status png_write(const char *path, const uint8_t *pixels, int width, int height, int channels) {
    int color_type = channels == 1 ? PNG_COLOR_TYPE_GRAY
                   : channels == 3 ? PNG_COLOR_TYPE_RGB
                   : channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : -1;
    if (color_type < 0) return dit_set_error("%s: PNG needs 1, 3 or 4 channels, got %d", path, channels);
    // The PNG limit is 2^31 - 1 per side; libpng's default user limit is 1,000,000.
    if (width <= 0 || height <= 0 || width > 1000000 || height > 1000000)
        return dit_set_error("%s: invalid PNG size %dx%d", path, width, height);
    size_t row_bytes = (size_t)width * (size_t)channels;

    atomic_file a;
    if (atomic_file_open(&a, path) != DIT_OK) return DIT_ERR;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        atomic_file_abort(&a);
        return dit_set_error("%s: cannot initialise libpng", path);
    }
    // Nothing that this error path reads is modified after setjmp, so no volatile is needed.
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        atomic_file_abort(&a);
        dit_prefix_error("%s", path);
        return DIT_ERR;
    }
    png_init_io(png, a.f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, pixels + (size_t)y * row_bytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return atomic_file_commit(&a);
}

// PNG into a growing memory buffer (for `dit serve` and embedders), same settings as png_write.
typedef struct {
    uint8_t *data;
    size_t size, capacity;
} png_buffer;

static void png_buffer_write(png_structp png, png_bytep bytes, png_size_t n) {
    png_buffer *b = png_get_io_ptr(png);
    if (b->size + n > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 4096;
        while (capacity < b->size + n) capacity *= 2;
        uint8_t *grown = dit_realloc(b->data, capacity);
        if (!grown) png_error(png, "out of memory");   // longjmps to dit_png_encode's setjmp, which frees b
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
}

static void png_buffer_flush(png_structp png) { (void)png; }

dit_status dit_png_encode(const uint8_t *pixels, int width, int height, int channels, uint8_t **out, size_t *size) {
    int color_type = channels == 1 ? PNG_COLOR_TYPE_GRAY
                   : channels == 3 ? PNG_COLOR_TYPE_RGB
                   : channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : -1;
    if (color_type < 0) return dit_set_error("PNG needs 1, 3 or 4 channels, got %d", channels);
    if (width <= 0 || height <= 0 || width > 1000000 || height > 1000000)
        return dit_set_error("invalid PNG size %dx%d", width, height);
    size_t row_bytes = (size_t)width * (size_t)channels;
    // On the heap: the buffer changes after setjmp, the pointer to it does not.
    png_buffer *buffer = dit_calloc(1, sizeof *buffer);
    if (!buffer) return DIT_ERR;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        free(buffer);
        return dit_set_error("cannot initialise libpng");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(buffer->data);
        free(buffer);
        return DIT_ERR;
    }
    png_set_write_fn(png, buffer, png_buffer_write, png_buffer_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, pixels + (size_t)y * row_bytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = buffer->data;
    *size = buffer->size;
    free(buffer);
    return DIT_OK;
}
