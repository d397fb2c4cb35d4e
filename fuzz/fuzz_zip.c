// Fuzz target: ZIP central directory, zip64 records, local headers, stored and deflated members (zip.c).
#include "fuzz.h"
#include "io/zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    zip_archive z;
    if (zip_open_buffer(&z, data, size, "fuzz.zip") != DIT_OK) return 0;
    for (int i = 0; i < z.count; i++) {
        const uint8_t *bytes;
        uint8_t *owned = NULL;
        if (zip_entry_data(&z, &z.entries[i], &bytes, &owned) == DIT_OK) fuzz_touch(bytes, (size_t)z.entries[i].size);
        free(owned);
    }
    if (z.count > 0 && zip_find(&z, z.entries[0].name) == NULL) abort();
    zip_close(&z);
    return 0;
}
