// Whole-file mapping and atomic writes (temporary name, fsync, rename): a crash never leaves a
// half-written file under the final name.
#ifndef DIT_BASE_FILEIO_H
#define DIT_BASE_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#include "dit.h"

typedef struct {
    void *data;     // read-only mapping (NULL for an empty file)
    size_t size;
} mapped_file;

dit_status map_file(const char *path, mapped_file *m);
void unmap_file(mapped_file *m);

typedef struct {
    FILE *f;
    char *final_path;
    char *temp_path;
} atomic_file;

dit_status atomic_file_open(atomic_file *a, const char *path);
// Flush, fsync, close and rename onto the final path; on any failure the temporary file is removed.
dit_status atomic_file_commit(atomic_file *a);
void atomic_file_abort(atomic_file *a);

#endif
