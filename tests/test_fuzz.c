// Regression inputs: every file in tests/golden/fuzz-regressions/ is a hostile input that once crashed,
// leaked, hung or over-allocated in a parser (found by `make fuzz` or written by hand for a hardening fix;
// the folder's README says which). Each must now be refused with a clean error that names the file.
// The reader is chosen by the name: <target>-<what>.<ext> (targets as in fuzz/: safetensors, zip, pickle,
// torch_pt, npy, npz, png, jpeg, idx, config; "model" loads a whole model file, "classifier" a classifier file).
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "dit.h"
#include "io/image.h"
#include "io/pickle.h"
#include "io/tensors.h"
#include "io/zip.h"
#include "models/classifier.h"
#include "test.h"
#include "train/train.h"

static uint8_t *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n + 1 : 1);
    *size = fread(b, 1, n > 0 ? (size_t)n : 0, f);
    b[*size] = '\0';
    fclose(f);
    return b;
}

static int starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

// Run the reader the name picks on path; DIT_ERR expected. *known = 0 when the name picks none.
static dit_status read_as(const char *name, const char *path, int *known) {
    *known = 1;
    size_t size = 0;
    if (starts(name, "safetensors-")) {
        tensor_file f;
        dit_status s = safetensors_read(path, &f);
        if (!s) tensor_file_free(&f);
        return s;
    }
    if (starts(name, "torch_pt-")) {
        tensor_file f;
        dit_status s = torch_pt_read(path, &f);
        if (!s) tensor_file_free(&f);
        return s;
    }
    if (starts(name, "npz-")) {
        tensor_file f;
        dit_status s = npz_read(path, &f);
        if (!s) tensor_file_free(&f);
        return s;
    }
    if (starts(name, "npy-")) {
        npy_array a;
        dit_status s = npy_read(path, &a);
        if (!s) npy_free(&a);
        return s;
    }
    if (starts(name, "png-") || starts(name, "jpeg-")) {
        image_u8 im;
        dit_status s = image_read_rgb(path, &im);
        if (!s) image_free(&im);
        return s;
    }
    if (starts(name, "idx-")) {
        uint8_t *data = NULL;
        int count, rows, cols;
        dit_status s = idx_read_images(path, &data, &count, &rows, &cols);
        free(data);
        return s;
    }
    if (starts(name, "classifier-")) {
        classifier *c = classifier_load(path);
        classifier_free(c);
        return c ? DIT_OK : DIT_ERR;
    }
    if (starts(name, "model-")) {
        dit_model *m = dit_model_load(path, NULL);
        dit_model_free(m);
        return m ? DIT_OK : DIT_ERR;
    }
    uint8_t *bytes = read_bytes(path, &size);
    if (!bytes) return dit_set_error("%s: cannot read", path);
    dit_status s = DIT_ERR;
    if (starts(name, "pickle-")) {
        pickle_doc doc;
        s = pickle_parse(bytes, size, path, &doc);
        if (!s) pickle_doc_free(&doc);
    } else if (starts(name, "zip-")) {
        zip_archive z;
        s = zip_open_buffer(&z, bytes, size, path);
        if (s == DIT_OK) {   // on failure the archive is already released
            for (int i = 0; !s && i < z.count; i++) {
                const uint8_t *data;
                uint8_t *owned;
                s = zip_entry_data(&z, &z.entries[i], &data, &owned);
                free(owned);
            }
            zip_close(&z);
        }
    } else if (starts(name, "config-")) {
        dit_config cfg;
        s = dit_config_from_json(&cfg, (const char *)bytes, path);
    } else {
        *known = 0;
    }
    free(bytes);
    return s;
}

// Where a refusal must come from (a file refused later, after the over-allocation it guards against, would
// still be refused): the message of the early check. Files not listed need only a clean error naming them.
static const struct { const char *file, *message; } expected[] = {
    {"png-header-declares-800MB.png", "more than its 69 bytes can hold"},
    {"model-config-xl2-in-4-bytes.safetensors", "the config needs 674834720 parameters, the file holds 1 values"},
    {"config-absurd-sizes.json", "sizes out of range"},
    {"classifier-config-asks-70-TB.safetensors", "classifier.config needs 17592337731584 weights, the file holds 1"},
};

void test_fuzz(void) {
    const char *dir = golden_path("fuzz-regressions");
    DIR *d = opendir(dir);
    if (!CHECK(d != NULL, "open %s", dir)) return;
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "README.md")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        dit_set_error("(no message)");
        int known;
        dit_status s = read_as(e->d_name, path, &known);
        const char *msg = dit_last_error();
        const char *want = "";
        for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
            if (!strcmp(expected[i].file, e->d_name)) want = expected[i].message;
        CHECK(known && s == DIT_ERR && strstr(msg, e->d_name) && strstr(msg, want), "%s refused naming the file%s%s: %s",
              e->d_name, *want ? " with " : "", want, !known ? "no reader for this name" : s == DIT_OK ? "accepted" : msg);
        files++;
    }
    closedir(d);
    CHECK(files > 0, "%d regression inputs in tests/golden/fuzz-regressions", files);
}
