// Inputs of `dit eval`: ADM .npz batches (arr_0 uint8 (N, H, W, 3)) streamed batch by batch from the file
// mapping, folders of PNG/JPEG images, and the small arrays of a reference/statistics .npz (mu, sigma, ...)
// read without loading the archive's image array.
#ifndef DIT_EVAL_INPUTS_H
#define DIT_EVAL_INPUTS_H

#include <stdint.h>

#include "dit.h"
#include "io/tensors.h"

typedef struct image_source image_source;

// path: an .npz holding arr_0, or a directory of .png/.jpg/.jpeg files (read in name order).
image_source *image_source_open(const char *path);
// An .npz archive that may hold arr_0: NULL with *has_images = 0 when it does not, NULL with *has_images = 1
// (and an error) when arr_0 is unusable.
image_source *image_source_open_npz_if_images(const char *path, int *has_images);
int64_t image_source_count(const image_source *s);
// Read only images [first, end) from now on (a rank's share in multi-process evaluation); the count stays the total.
void image_source_set_range(image_source *s, int64_t first, int64_t end);
// The next images, at most max, all of one size: *pixels (count, H, W, 3) stays valid until the next call.
// Returns the count, 0 at the end, -1 on error.
int image_source_next(image_source *s, int max, const uint8_t **pixels, int *height, int *width);
void image_source_close(image_source *s);

// One array of an .npz, read fully (the other members stay untouched). *found = 0 when absent.
dit_status npz_read_member(const char *path, const char *name, npy_array *out, int *found);

#endif
