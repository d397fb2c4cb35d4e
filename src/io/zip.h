// ZIP archives over a memory buffer (mmap'd file): central directory parsing with zip64, stored and
// deflated members (zlib). Used by torch .pt and numpy .npz. A small writer for stored members.
#ifndef DIT_IO_ZIP_H
#define DIT_IO_ZIP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dit.h"

typedef struct {
    char *name;
    uint64_t data_offset;   // offset of the member's data in the buffer (after the local header)
    uint64_t compressed_size;
    uint64_t size;
    int method;             // 0 stored, 8 deflate
    uint32_t crc32;
} zip_entry;

typedef struct {
    const uint8_t *data;
    size_t size;
    zip_entry *entries;
    int count;
    const char *path;       // for error messages (not owned)
} zip_archive;

// 1 when the file starts with a ZIP local header ("PK\3\4"): torch .pt/.ckpt and .npz files do.
int zip_file_has_magic(const char *path);

dit_status zip_open_buffer(zip_archive *z, const uint8_t *data, size_t size, const char *path);
const zip_entry *zip_find(const zip_archive *z, const char *name);
// Member data: stored members point into the buffer (*owned = NULL); deflated ones are inflated into a
// new buffer returned in *owned (free it). The CRC is checked for inflated members.
dit_status zip_entry_data(const zip_archive *z, const zip_entry *e, const uint8_t **data, uint8_t **owned);
void zip_close(zip_archive *z);

// Writer of stored (uncompressed) members, zip64 when needed.
typedef struct zip_writer zip_writer;
zip_writer *zip_writer_open(FILE *f, const char *path);
dit_status zip_writer_add(zip_writer *w, const char *name, const void *data, size_t size);
dit_status zip_writer_finish(zip_writer *w);   // writes the central directory and frees w
// (call zip_writer_finish even after a failed zip_writer_add: it frees w and reports the failure)
// Tests: write zip64 records and extra fields even for small archives, to exercise the zip64 reader.
void zip_writer_force_zip64(zip_writer *w);

#endif
