// Inputs of `dit eval` (see inputs.h). ADM's sample batches are np.savez archives of one uint8 array arr_0
// (N, H, W, 3); a stored (uncompressed) member is read in place from the file mapping, batch by batch, so a
// 50,000-image batch never has to fit in memory (ADM's evaluator streams it the same way).
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/fileio.h"
#include "eval/inputs.h"
#include "io/image.h"
#include "io/zip.h"

struct image_source {
    const char *path;
    // .npz
    mapped_file map;
    uint8_t *owned;             // inflated arr_0 (compressed archives) or a transposed Fortran array
    const uint8_t *pixels;      // (count, H, W, 3)
    int height, width;
    // folder
    char **files;
    uint8_t *batch;             // decoded images of the current batch
    size_t batch_capacity;
    int64_t count, next;
    int64_t end;                // image_source_set_range's end; 0 = count
};

// ---- .npz members ------------------------------------------------------------------------------------------

typedef struct {
    mapped_file map;
    zip_archive zip;
} npz_archive;

static dit_status npz_open(npz_archive *a, const char *path) {
    if (map_file(path, &a->map) != DIT_OK) return DIT_ERR;
    if (zip_open_buffer(&a->zip, a->map.data, a->map.size, path) != DIT_OK) {
        unmap_file(&a->map);
        return DIT_ERR;
    }
    return DIT_OK;
}

static void npz_close(npz_archive *a) {
    zip_close(&a->zip);
    unmap_file(&a->map);
}

dit_status npz_read_member(const char *path, const char *name, npy_array *out, int *found) {
    memset(out, 0, sizeof *out);
    *found = 0;
    npz_archive a;
    if (npz_open(&a, path) != DIT_OK) return DIT_ERR;
    char member[128], what[1200];
    snprintf(member, sizeof member, "%s.npy", name);
    snprintf(what, sizeof what, "%s:%s", path, member);
    const zip_entry *e = zip_find(&a.zip, member);
    dit_status status = DIT_OK;
    if (e) {
        const uint8_t *bytes;
        uint8_t *inflated = NULL;
        status = zip_entry_data(&a.zip, e, &bytes, &inflated);
        if (status == DIT_OK) status = npy_parse(bytes, (size_t)e->size, what, out);
        free(inflated);
        *found = status == DIT_OK;
    }
    npz_close(&a);
    return status;
}

// The header of a .npy member without copying its data: npy_parse validates a copy of the header whose first
// dimension is rewritten to 0 (so it describes no data); the true count follows from the member size.
// *fortran: the header says fortran_order True.
static dit_status parse_images_header(const uint8_t *bytes, size_t size, const char *what, npy_array *meta,
                                      size_t *data_offset, int *fortran) {
    if (size < 10 || memcmp(bytes, "\x93NUMPY", 6) != 0) return dit_set_error("%s: not a .npy array (bad magic)", what);
    const size_t prefix = bytes[6] == 1 ? 10 : 12;
    if (size < prefix) return dit_set_error("%s: truncated .npy header", what);
    size_t header_len = (size_t)bytes[8] | (size_t)bytes[9] << 8;
    if (prefix == 12) header_len |= (size_t)bytes[10] << 16 | (size_t)bytes[11] << 24;
    if (header_len > size - prefix || header_len > 65536)
        return dit_set_error("%s: .npy header length %zu runs past the end", what, header_len);
    char *copy = dit_malloc(prefix + header_len + 1);
    if (!copy) return DIT_ERR;
    memcpy(copy, bytes, prefix + header_len);
    copy[prefix + header_len] = '\0';
    char *text = copy + prefix;
    *fortran = strstr(text, "True") != NULL;   // the only key with a True/False value is fortran_order
    char *shape = strstr(text, "shape");
    char *open = shape ? strchr(shape, '(') : NULL;
    if (open) {
        char *p = open + 1;
        while (*p == ' ') p++;
        if (*p >= '0' && *p <= '9') {
            *p++ = '0';
            while (*p >= '0' && *p <= '9') *p++ = ' ';
        }
    }
    dit_status status = npy_parse((const uint8_t *)copy, prefix + header_len, what, meta);
    free(copy);
    if (status != DIT_OK) return DIT_ERR;
    *data_offset = prefix + header_len;
    return DIT_OK;
}

static dit_status check_image_array(const char *what, const npy_array *meta) {
    if (meta->dtype != DT_U8)
        return dit_set_error("%s: arr_0 has dtype %s, expected uint8 images (N, H, W, 3) in [0, 255] as ADM's "
                             "sample batches", what, dtype_name(meta->dtype));
    if (meta->ndim != 4)
        return dit_set_error("%s: arr_0 has %d dimensions, expected 4: uint8 images (N, H, W, 3)", what, meta->ndim);
    if (meta->shape[3] != 3)
        return dit_set_error("%s: arr_0 has %lld channels (last axis), expected 3: uint8 images (N, H, W, 3)", what,
                             (long long)meta->shape[3]);
    if (meta->shape[1] < 1 || meta->shape[2] < 1 || meta->shape[1] > 16384 || meta->shape[2] > 16384)
        return dit_set_error("%s: arr_0 images are %lldx%lld, expected sides in [1, 16384]", what,
                             (long long)meta->shape[2], (long long)meta->shape[1]);
    return DIT_OK;
}

static image_source *open_npz(const char *path, int required, int *has_images) {
    *has_images = 1;
    npz_archive a;
    if (npz_open(&a, path) != DIT_OK) return NULL;
    const zip_entry *e = zip_find(&a.zip, "arr_0.npy");
    if (!e) {
        *has_images = 0;
        npz_close(&a);
        if (required) dit_set_error("%s: no arr_0 in the archive (ADM batches hold uint8 images (N, H, W, 3) as arr_0)", path);
        return NULL;
    }
    char what[1100];
    snprintf(what, sizeof what, "%s:arr_0.npy", path);
    image_source *s = dit_calloc(1, sizeof *s);
    if (!s) {
        npz_close(&a);
        return NULL;
    }
    s->path = path;
    const uint8_t *bytes;
    uint8_t *inflated = NULL;
    npy_array meta;
    size_t offset = 0;
    int fortran = 0;
    dit_status status = zip_entry_data(&a.zip, e, &bytes, &inflated);
    if (status == DIT_OK) status = parse_images_header(bytes, (size_t)e->size, what, &meta, &offset, &fortran);
    if (status == DIT_OK) {
        free(meta.data);   // the header-only parse owns an empty buffer; the shape and dtype stay readable
        meta.data = NULL;
        status = check_image_array(what, &meta);
    }
    if (status == DIT_OK) {
        const size_t image_bytes = (size_t)meta.shape[1] * meta.shape[2] * 3, data = (size_t)e->size - offset;
        if (data % image_bytes)
            status = dit_set_error("%s: %zu bytes of data is not a whole number of %lldx%lldx3 images", what, data,
                                   (long long)meta.shape[1], (long long)meta.shape[2]);
        s->count = (int64_t)(data / image_bytes);
        s->height = (int)meta.shape[1];
        s->width = (int)meta.shape[2];
        if (status == DIT_OK && fortran) {   // rare: let npy_parse transpose a full copy
            npy_array full;
            status = npy_parse(bytes, (size_t)e->size, what, &full);
            if (status == DIT_OK) {
                free(inflated);
                inflated = full.data;
                bytes = full.data;
                offset = 0;
            }
        }
    }
    if (status != DIT_OK) {
        free(inflated);
        npz_close(&a);
        free(s);
        return NULL;
    }
    s->owned = inflated;
    s->pixels = bytes + offset;
    if (s->owned) {   // the data lives in the copy; the mapping can go
        npz_close(&a);
    } else {
        zip_close(&a.zip);
        s->map = a.map;
    }
    return s;
}

image_source *image_source_open_npz_if_images(const char *path, int *has_images) {
    return open_npz(path, 0, has_images);
}

// ---- folders ---------------------------------------------------------------------------------------------

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static image_source *open_folder(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) {
        dit_set_error("%s: cannot open the image folder", path);
        return NULL;
    }
    image_source *s = dit_calloc(1, sizeof *s);
    if (!s) {
        closedir(dir);
        return NULL;
    }
    s->path = path;
    size_t cap = 0;
    int out_of_memory = 0;
    struct dirent *ent;
    while (!out_of_memory && (ent = readdir(dir))) {
        if (ent->d_name[0] == '.' || !is_image_name(ent->d_name)) continue;
        if ((size_t)s->count == cap) {
            const size_t grown_cap = cap ? 2 * cap : 256;
            char **grown = dit_realloc(s->files, grown_cap * sizeof *s->files);
            if (!grown) {
                out_of_memory = 1;
                break;
            }
            s->files = grown;
            cap = grown_cap;
        }
        s->files[s->count] = dit_strdup(ent->d_name);
        if (s->files[s->count]) s->count++;
        else out_of_memory = 1;
    }
    closedir(dir);
    if (out_of_memory) {
        image_source_close(s);
        return NULL;
    }
    if (s->count == 0) {
        dit_set_error("%s: no .png/.jpg/.jpeg images in the folder", path);
        image_source_close(s);
        return NULL;
    }
    qsort(s->files, (size_t)s->count, sizeof *s->files, compare_names);
    return s;
}

image_source *image_source_open(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        dit_set_error("%s: no such file or folder", path);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) return open_folder(path);
    if (!zip_file_has_magic(path)) {
        dit_set_error("%s: expected an .npz batch (uint8 arr_0 (N, H, W, 3)) or a folder of PNG/JPEG images", path);
        return NULL;
    }
    int has_images;
    return open_npz(path, 1, &has_images);
}

int64_t image_source_count(const image_source *s) { return s->count; }

void image_source_set_range(image_source *s, int64_t first, int64_t end) {
    s->end = end < s->count ? end : s->count;
    s->next = first < s->end ? first : s->end;
    if (s->end == 0) s->next = s->count;   // an empty range: nothing left to read
}

int image_source_next(image_source *s, int max, const uint8_t **pixels, int *height, int *width) {
    const int64_t end = s->end ? s->end : s->count;
    if (s->next >= end || max < 1) return 0;
    if (!s->files) {
        const int n = (int)(end - s->next < max ? end - s->next : max);
        *pixels = s->pixels + (size_t)s->next * s->height * s->width * 3;
        *height = s->height;
        *width = s->width;
        s->next += n;
        return n;
    }
    // Folders: decode until max images or until an image of another size (which starts the next batch).
    int n = 0, h = 0, w = 0;
    while (n < max && s->next < end) {
        char *full = dit_malloc(strlen(s->path) + strlen(s->files[s->next]) + 2);
        if (!full) return -1;
        sprintf(full, "%s/%s", s->path, s->files[s->next]);
        image_u8 im;
        dit_status status = image_read_rgb(full, &im);
        free(full);
        if (status != DIT_OK) return -1;
        if (n > 0 && (im.height != h || im.width != w)) {
            image_free(&im);
            break;   // read again as the first of the next batch
        }
        h = im.height, w = im.width;
        const size_t bytes = (size_t)h * w * 3;
        if ((size_t)(n + 1) * bytes > s->batch_capacity) {
            const size_t capacity = (size_t)(n + 1) * bytes * 2;
            uint8_t *grown = dit_realloc(s->batch, capacity);
            if (!grown) {
                image_free(&im);
                return -1;
            }
            s->batch = grown;
            s->batch_capacity = capacity;
        }
        memcpy(s->batch + (size_t)n * bytes, im.pixels, bytes);
        image_free(&im);
        n++;
        s->next++;
    }
    *pixels = s->batch;
    *height = h;
    *width = w;
    return n;
}

void image_source_close(image_source *s) {
    if (!s) return;
    if (s->map.data || s->map.size) unmap_file(&s->map);
    free(s->owned);
    for (int64_t i = 0; s->files && i < s->count; i++) free(s->files[i]);
    free(s->files);
    free(s->batch);
    free(s);
}
