// Error reporting for the library: a thread-local message set where a failure is found,
// read once by the caller (the CLI prints it as "dit: <message>"). See docs/style.md "Errors".
#ifndef DIT_BASE_ERROR_H
#define DIT_BASE_ERROR_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "dit.h"

// dit_set_error: record a printf-style message and return DIT_ERR (so `return dit_set_error(...)` reads well).
dit_status dit_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// dit_prefix_error: prepend "prefix: " to the current message (e.g. a file name added by an outer layer).
void dit_prefix_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// DIT_CHECK: an internal invariant; failing it is a bug, never a user error.
#define DIT_CHECK(cond)                                                               \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "dit: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

// dit_try_malloc: for sizes a file or a caller asks for (tensor data, inflated members, decoded pixels):
// NULL with the message "out of memory allocating N bytes for <what>" recorded, for the caller to return.
void *dit_try_malloc(size_t n, const char *what);
void *dit_try_realloc(void *p, size_t n, const char *what);   // on failure p is left allocated

// Allocation of the library's own bookkeeping (small, or sized from already validated and bounded
// headers): out-of-memory there ends the process with file:line (see out_of_memory in error.c).
#define dit_malloc(n) dit_malloc_at((n), __FILE__, __LINE__)
#define dit_calloc(n, s) dit_calloc_at((n), (s), __FILE__, __LINE__)
#define dit_realloc(p, n) dit_realloc_at((p), (n), __FILE__, __LINE__)
void *dit_malloc_at(size_t n, const char *file, int line);
void *dit_calloc_at(size_t n, size_t s, const char *file, int line);
void *dit_realloc_at(void *p, size_t n, const char *file, int line);
char *dit_strdup(const char *s);

#endif
