// Training data: IDX pairs (MNIST / Fashion-MNIST, gzip'd or not), image folders (one subfolder per class, as
// torchvision's ImageFolder, with ADM's center_crop_arr and a random horizontal flip, reference.md §3.1),
// and latent caches written by `dit cache-latents`. Shuffling is a Philox permutation per epoch.
// Every file is hostile: magics, dimensions, counts and lengths are checked before use.
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include "base/error.h"
#include "io/image.h"
#include "io/tensors.h"
#include "train/train.h"

#define IDX_MAX_BYTES ((size_t)1 << 31)   // 2 GiB of decompressed data at most
#define IDX_MAX_SIDE 4096

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
static const char *const fashion_dir = "/usr/share/datasets/fashion-mnist";

// The whole (decompressed) content of a file: gzread reads plain files as they are.
static dit_status read_all_gz(const char *path, uint8_t **data, size_t *len) {
    gzFile f = gzopen(path, "rb");
    if (!f) return dit_set_error("%s: cannot open (%s)", path, strerror(errno ? errno : ENOENT));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = dit_malloc(cap);
    if (!buf) {
        gzclose(f);
        return DIT_ERR;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= IDX_MAX_BYTES) {
                free(buf);
                gzclose(f);
                return dit_set_error("%s: more than %zu bytes of data, not an IDX file dit reads", path, IDX_MAX_BYTES);
            }
            uint8_t *bigger = dit_try_realloc(buf, cap * 2, "the decompressed data");
            if (!bigger) {
                free(buf);
                gzclose(f);
                dit_prefix_error("%s", path);
                return DIT_ERR;
            }
            buf = bigger;
            cap *= 2;
        }
        int got = gzread(f, buf + n, (unsigned)(cap - n < (1u << 30) ? cap - n : (1u << 30)));
        if (got < 0) break;
        if (got == 0) break;
        n += (size_t)got;
    }
    int err = Z_OK;
    const char *msg = gzerror(f, &err);
    if (err != Z_OK && err != Z_STREAM_END) {
        dit_set_error("%s: corrupt or truncated gzip data (%s)", path, msg);
        free(buf);
        gzclose(f);
        return DIT_ERR;
    }
    gzclose(f);
    *data = buf;
    *len = n;
    return DIT_OK;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

// Parse the header: magic 0x0000 08 ndim (unsigned bytes), then ndim big-endian sizes; the payload must have
// exactly their product bytes.
static dit_status idx_parse(const char *path, const uint8_t *data, size_t len, int want_ndim, uint32_t *dims) {
    if (len < 4 || data[0] != 0 || data[1] != 0 || data[2] != 0x08 || data[3] != want_ndim)
        return dit_set_error("%s: not an IDX file of unsigned bytes with %d dimensions (bad magic %02x %02x %02x %02x, "
                             "expected 00 00 08 %02x)", path, want_ndim, len > 0 ? data[0] : 0, len > 1 ? data[1] : 0,
                             len > 2 ? data[2] : 0, len > 3 ? data[3] : 0, want_ndim);
    size_t header = 4 + 4 * (size_t)want_ndim;
    if (len < header) return dit_set_error("%s: IDX header truncated (%zu bytes)", path, len);
    uint64_t total = 1;
    for (int i = 0; i < want_ndim; i++) {
        dims[i] = be32(data + 4 + 4 * i);
        if (dims[i] == 0 || (i > 0 && dims[i] > IDX_MAX_SIDE) || dims[i] > (1u << 30))
            return dit_set_error("%s: IDX dimension %d is %u, outside 1..%d", path, i, dims[i],
                                 i > 0 ? IDX_MAX_SIDE : (1 << 30));
        total *= dims[i];
        if (total > IDX_MAX_BYTES) return dit_set_error("%s: IDX header claims %llu bytes of data", path, (unsigned long long)total);
    }
    if (len - header != total)
        return dit_set_error("%s: IDX header says %llu bytes of data, the file has %zu", path, (unsigned long long)total,
                             len - header);
    return DIT_OK;
}

dit_status idx_read_images(const char *path, uint8_t **pixels, int *count, int *rows, int *cols) {
    uint8_t *data;
    size_t len;
    uint32_t dims[3] = {0};
    if (read_all_gz(path, &data, &len)) return DIT_ERR;
    if (idx_parse(path, data, len, 3, dims)) {
        free(data);
        return DIT_ERR;
    }
    memmove(data, data + 16, len - 16);
    *pixels = data;
    *count = (int)dims[0], *rows = (int)dims[1], *cols = (int)dims[2];
    return DIT_OK;
}

dit_status idx_read_labels(const char *path, uint8_t **labels, int *count) {
    uint8_t *data;
    size_t len;
    uint32_t dims[1] = {0};
    if (read_all_gz(path, &data, &len)) return DIT_ERR;
    if (idx_parse(path, data, len, 1, dims)) {
        free(data);
        return DIT_ERR;
    }
    memmove(data, data + 8, len - 8);
    *labels = data;
    *count = (int)dims[0];
    return DIT_OK;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// d->class_names = copies of names (count = d->num_classes); on failure (out of memory) the copies made so far
// stay for train_data_free.
static dit_status set_class_names(train_data *d, const char *const *names) {
    if (!(d->class_names = dit_calloc(d->num_classes, sizeof *d->class_names))) return DIT_ERR;
    for (int i = 0; i < d->num_classes; i++)
        if (!(d->class_names[i] = dit_strdup(names[i]))) return DIT_ERR;
    return DIT_OK;
}

// The pair of files of an IDX spec: "fashion-mnist", a folder, or the images file.
static dit_status idx_paths(const char *spec, char *images, char *labels, size_t n) {
    const char *dir = !strcmp(spec, "fashion-mnist") ? fashion_dir : is_dir(spec) ? spec : NULL;
    if (dir) {
        static const char *const suffixes[] = {".gz", ""};
        for (int s = 0; s < 2; s++) {
            snprintf(images, n, "%s/train-images-idx3-ubyte%s", dir, suffixes[s]);
            snprintf(labels, n, "%s/train-labels-idx1-ubyte%s", dir, suffixes[s]);
            if (is_file(images) && is_file(labels)) return DIT_OK;
        }
        return dit_set_error("%s: no train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] there%s", dir,
                             dir == fashion_dir ? " (install Debian's dataset-fashion-mnist: scripts/setup.sh)" : "");
    }
    snprintf(images, n, "%s", spec);
    const char *at = strstr(spec, "images-idx3");
    if (!at) return dit_set_error("%s: an IDX images file should be named *images-idx3*, its labels *labels-idx1*", spec);
    snprintf(labels, n, "%.*slabels-idx1%s", (int)(at - spec), spec, at + strlen("images-idx3"));
    if (!is_file(labels)) return dit_set_error("%s: the labels file %s is missing", spec, labels);
    return DIT_OK;
}

dit_status train_data_open_idx(train_data *d, const char *spec, int image_size) {
    char images_path[4096], labels_path[4096];
    memset(d, 0, sizeof *d);
    if (idx_paths(spec, images_path, labels_path, sizeof images_path)) return DIT_ERR;
    uint8_t *pixels = NULL, *labels = NULL;
    int count, rows, cols, label_count;
    if (idx_read_images(images_path, &pixels, &count, &rows, &cols)) return DIT_ERR;
    if (idx_read_labels(labels_path, &labels, &label_count)) {
        free(pixels);
        return DIT_ERR;
    }
    if (label_count != count || rows != cols) {
        dit_set_error("%s: %d images of %dx%d but %s has %d labels (need as many labels as square images)",
                      images_path, count, rows, cols, labels_path, label_count);
        free(pixels);
        free(labels);
        return DIT_ERR;
    }
    const int native = rows, S = image_size > 0 ? image_size : native;
    if (S < 2 || S > IDX_MAX_SIDE) {
        free(pixels);
        free(labels);
        return dit_set_error("--image-size %d: expected 2..%d", S, IDX_MAX_SIDE);
    }
    d->kind = DATA_PIXELS;
    d->count = count, d->channels = 1, d->size = S;
    d->source = dit_strdup(spec);
    d->labels = dit_malloc((size_t)count * sizeof(int));
    if (!d->source || !d->labels) {
        free(pixels);
        free(labels);
        train_data_free(d);
        return DIT_ERR;
    }
    int max_label = 0;
    for (int i = 0; i < count; i++) d->labels[i] = labels[i], max_label = labels[i] > max_label ? labels[i] : max_label;
    const int fashion = !strcmp(spec, "fashion-mnist") || strcasestr(images_path, "fashion");
    d->num_classes = fashion ? 10 : max_label + 1;
    if (max_label >= d->num_classes) {
        free(pixels);
        free(labels);
        train_data_free(d);
        return dit_set_error("%s: label %d, but Fashion-MNIST has 10 classes", labels_path, max_label);
    }
    dit_status st = fashion ? set_class_names(d, fashion_names) : DIT_OK;
    if (st == DIT_OK && !(d->pixels = dit_malloc((size_t)count * S * S * sizeof(float)))) st = DIT_ERR;
    const int pad = (S - native) / 2;
    for (int i = 0; i < count && st == DIT_OK; i++) {
        const uint8_t *src = pixels + (size_t)i * native * native;
        float *dst = d->pixels + (size_t)i * S * S;
        if (S == native || S == native + 4) {
            // as is, or padded by 2 pixels each side with the background (-1): 28 -> 32 keeps every pixel
            for (int k = 0; k < S * S; k++) dst[k] = -1.0f;
            for (int y = 0; y < native; y++)
                for (int x = 0; x < native; x++)
                    dst[(y + pad) * S + x + pad] = ((float)src[y * native + x] / 255.0f - 0.5f) / 0.5f;
        } else {
            // PIL BICUBIC resize (the gray value replicated to RGB, channel 0 kept)
            image_u8 in = {dit_malloc((size_t)native * native * 3), native, native}, out = {0};
            if (!in.pixels) {
                st = DIT_ERR;
                break;
            }
            for (int k = 0; k < native * native; k++) in.pixels[3 * k] = in.pixels[3 * k + 1] = in.pixels[3 * k + 2] = src[k];
            st = image_resize(&in, S, S, RESAMPLE_BICUBIC, &out);
            for (int k = 0; st == DIT_OK && k < S * S; k++) dst[k] = ((float)out.pixels[3 * k] / 255.0f - 0.5f) / 0.5f;
            image_free(&in);
            image_free(&out);
        }
    }
    free(pixels);
    free(labels);
    if (st) train_data_free(d);
    return st;
}

// ---- image folders -----------------------------------------------------------------------------------

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static void free_names(char **names, int count) {
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}

// Sorted entries of a directory that are folders (want_dirs) or image files; hidden names skipped. A folder
// that cannot be opened has no entries. DIT_ERR (nothing kept) when out of memory.
static dit_status list_dir(const char *dir, int want_dirs, char ***names_out, int *count) {
    *names_out = NULL;
    *count = 0;
    DIR *dp = opendir(dir);
    if (!dp) return DIT_OK;
    char **names = NULL;
    struct dirent *e;
    char path[4096 + 512];
    dit_status st = DIT_OK;
    while (st == DIT_OK && (e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (want_dirs ? !is_dir(path) : !(is_file(path) && has_image_extension(e->d_name))) continue;
        char **grown = dit_realloc(names, (*count + 1) * sizeof *names);
        if (grown) names = grown;
        if (!grown || !(names[*count] = dit_strdup(e->d_name))) st = DIT_ERR;
        else (*count)++;
    }
    closedir(dp);
    if (st != DIT_OK) {
        free_names(names, *count);
        *count = 0;
        return DIT_ERR;
    }
    if (*count) qsort(names, *count, sizeof *names, compare_strings);
    *names_out = names;
    return DIT_OK;
}

dit_status train_data_open_folder(train_data *d, const char *dir, int image_size) {
    memset(d, 0, sizeof *d);
    if (image_size < 8 || image_size > 4096)
        return dit_set_error("%s: an image folder needs --image-size (8..4096), got %d", dir, image_size);
    int num_classes;
    char **classes;
    DIT_TRY(list_dir(dir, 1, &classes, &num_classes));
    if (!num_classes) return dit_set_error("%s: no class subfolders (expected DIR/<class>/<image>.png|jpg)", dir);
    d->kind = DATA_IMAGE_FOLDER;
    d->channels = 3, d->size = image_size, d->num_classes = num_classes;
    d->class_names = classes;
    if (!(d->source = dit_strdup(dir))) {
        train_data_free(d);
        return DIT_ERR;
    }
    char path[4096];
    for (int c = 0; c < num_classes; c++) {
        snprintf(path, sizeof path, "%s/%s", dir, classes[c]);
        int n;
        char **files;
        dit_status st = list_dir(path, 0, &files, &n);
        if (st == DIT_OK) {
            char **paths = dit_realloc(d->paths, (size_t)(d->count + n + 1) * sizeof *d->paths);
            if (paths) d->paths = paths;
            int *labels = paths ? dit_realloc(d->labels, (size_t)(d->count + n + 1) * sizeof *d->labels) : NULL;
            if (labels) d->labels = labels;
            else st = DIT_ERR;
        }
        for (int i = 0; st == DIT_OK && i < n; i++) {
            snprintf(path, sizeof path, "%s/%s/%s", dir, classes[c], files[i]);
            if (!(d->paths[d->count] = dit_strdup(path))) st = DIT_ERR;
            else d->labels[d->count++] = c;
        }
        free_names(files, n);
        if (st != DIT_OK) {
            train_data_free(d);
            return DIT_ERR;
        }
    }
    if (!d->count) {
        train_data_free(d);
        return dit_set_error("%s: the class folders hold no .png/.jpg/.jpeg files", dir);
    }
    return DIT_OK;
}

// ---- latent caches -------------------------------------------------------------------------------------

dit_status train_data_open_cache(train_data *d, const char *path) {
    memset(d, 0, sizeof *d);
    tensor_file *f = dit_calloc(1, sizeof *f);
    if (!f) return DIT_ERR;
    if (safetensors_read(path, f)) {
        free(f);
        return DIT_ERR;
    }
    const tensor_view *lat = tensor_file_find(f, "latents"), *lab = tensor_file_find(f, "labels");
    dit_status st = DIT_OK;
    if (!lat || !lab) st = dit_set_error("%s: not a latent cache (needs tensors \"latents\" and \"labels\")", path);
    else if (lat->dtype != DT_F32 || lat->ndim != 5 || lat->shape[1] != 2 || lat->shape[3] != lat->shape[4] ||
             lat->shape[0] < 1 || lat->shape[0] > (1 << 30) || lat->shape[2] < 1 || lat->shape[2] > 64)
        st = dit_set_error("%s: \"latents\" must be F32 (N, 2, C, h, h), found %s with %d dimensions", path,
                           dtype_name(lat->dtype), lat->ndim);
    else if ((lab->dtype != DT_I32 && lab->dtype != DT_I64) || lab->ndim != 1 || lab->shape[0] != lat->shape[0])
        st = dit_set_error("%s: \"labels\" must be I32/I64 (N) with N = %lld", path, (long long)lat->shape[0]);
    if (st) {
        tensor_file_free(f);
        free(f);
        return st;
    }
    d->kind = DATA_LATENT_CACHE;
    d->count = (int)lat->shape[0], d->channels = (int)lat->shape[2], d->size = (int)lat->shape[3];
    d->latents = (float *)lat->data;
    d->owner = f;
    d->source = dit_strdup(path);
    d->labels = dit_malloc((size_t)d->count * sizeof(int));
    if (!d->source || !d->labels) {
        train_data_free(d);
        return DIT_ERR;
    }
    int64_t max_label = 0;
    for (int i = 0; i < d->count; i++) {
        int64_t v = lab->dtype == DT_I32 ? ((const int32_t *)lab->data)[i] : ((const int64_t *)lab->data)[i];
        if (v < 0 || v > 1000000) {
            train_data_free(d);
            return dit_set_error("%s: label %lld of sample %d is outside 0..1000000", path, (long long)v, i);
        }
        d->labels[i] = (int)v;
        max_label = v > max_label ? v : max_label;
    }
    d->num_classes = (int)max_label + 1;
    const char *nc = tensor_file_meta(f, "num_classes");
    if (nc) {
        int v = atoi(nc);
        if (v <= max_label || v > 1000000) {
            train_data_free(d);
            return dit_set_error("%s: metadata num_classes %s does not cover label %lld", path, nc, (long long)max_label);
        }
        d->num_classes = v;
    }
    const char *names = tensor_file_meta(f, "dit.class_names");
    if (names) {   // a JSON list of num_classes strings, as in dit's model files
        cJSON *list = cJSON_Parse(names);
        if (cJSON_IsArray(list) && cJSON_GetArraySize(list) == d->num_classes) {
            d->class_names = dit_calloc(d->num_classes, sizeof *d->class_names);
            for (int i = 0; d->class_names && i < d->num_classes && st == DIT_OK; i++) {
                const cJSON *item = cJSON_GetArrayItem(list, i);
                d->class_names[i] = dit_strdup(cJSON_IsString(item) ? item->valuestring : "?");
                if (!d->class_names[i]) st = DIT_ERR;
            }
            if (!d->class_names) st = DIT_ERR;
        }
        cJSON_Delete(list);
    }
    if (st != DIT_OK) train_data_free(d);
    return st;
}

dit_status train_data_open(train_data *d, const char *spec, int image_size) {
    size_t n = strlen(spec);
    if (n > 12 && !strcmp(spec + n - 12, ".safetensors")) return train_data_open_cache(d, spec);
    if (!strcmp(spec, "fashion-mnist") || strstr(spec, "idx3")) return train_data_open_idx(d, spec, image_size);
    if (!is_dir(spec)) return dit_set_error("--data %s: no such folder or file (expected fashion-mnist, an IDX "
                                            "images file, a folder of IDX files or class folders, or a .safetensors "
                                            "latent cache)", spec);
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", spec);
    int idx = is_file(probe);
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte", spec);
    idx = idx || is_file(probe);
    return idx ? train_data_open_idx(d, spec, image_size) : train_data_open_folder(d, spec, image_size);
}

void train_data_free(train_data *d) {
    if (d->class_names)
        for (int i = 0; i < d->num_classes; i++) free(d->class_names[i]);
    free(d->class_names);
    for (int i = 0; d->paths && i < d->count; i++) free(d->paths[i]);
    free(d->paths);
    free(d->labels);
    free(d->pixels);
    free(d->source);
    if (d->owner) {
        tensor_file_free(d->owner);
        free(d->owner);
    }
    memset(d, 0, sizeof *d);
}

void train_data_permutation(int count, uint64_t seed, int64_t epoch, int *perm) {
    for (int i = 0; i < count; i++) perm[i] = i;
    for (int i = count - 1; i > 0; i--) {
        int j = (int)train_rng_below(seed, (uint32_t)i, (uint32_t)epoch, 0, RNG_STREAM_SHUFFLE, (uint32_t)i + 1);
        int tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
}

static void flip_rows(float *x, int C, int S) {
    for (int c = 0; c < C; c++)
        for (int y = 0; y < S; y++) {
            float *row = x + ((size_t)c * S + y) * S;
            for (int a = 0, b = S - 1; a < b; a++, b--) {
                float t = row[a];
                row[a] = row[b], row[b] = t;
            }
        }
}

dit_status train_data_get(const train_data *d, int i, int flip, float *dst) {
    const size_t per = (size_t)d->channels * d->size * d->size;
    switch (d->kind) {
    case DATA_PIXELS:
        memcpy(dst, d->pixels + (size_t)i * per, per * sizeof(float));
        if (flip) flip_rows(dst, d->channels, d->size);
        return DIT_OK;
    case DATA_LATENT_CACHE:
        memcpy(dst, d->latents + ((size_t)2 * i + (flip ? 1 : 0)) * per, per * sizeof(float));
        return DIT_OK;
    case DATA_IMAGE_FOLDER: {
        image_u8 im = {0}, crop = {0};
        if (image_read_rgb(d->paths[i], &im)) return DIT_ERR;
        dit_status st = image_center_crop(&im, d->size, &crop);
        image_free(&im);
        if (st) {
            dit_prefix_error("%s", d->paths[i]);
            return DIT_ERR;
        }
        image_to_float_chw(&crop, dst);
        image_free(&crop);
        if (flip) flip_rows(dst, 3, d->size);
        return DIT_OK;
    }
    }
    return dit_set_error("unknown data kind");
}
