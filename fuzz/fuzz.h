// Shared helpers of the libFuzzer harnesses (one file per target, fuzz/fuzz_<target>.c; `make fuzz`).
// Each harness feeds untrusted bytes to one parser; a harness may only crash on a bug in that parser.
#ifndef DIT_FUZZ_H
#define DIT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

// The input as a file, for readers that take a path: one memory-backed file (memfd) per process, rewritten
// for every input and named through /proc/self/fd, so nothing touches the disk.
static inline const char *fuzz_input_path(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("dit-fuzz", 0);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz input file");
        abort();
    }
    return path;
}

// Read every byte of a view so AddressSanitizer sees any view that reaches outside its storage.
static inline void fuzz_touch(const void *data, size_t n) {
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) sink ^= ((const uint8_t *)data)[i];
    (void)sink;
}

#endif
