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
// dit_error_is_out_of_memory: whether the current message says "out of memory" (as every allocation failure's
// does), for code that treats a bad file as "try the next one" and must not take out of memory for a bad file.
int dit_error_is_out_of_memory(void);

// DIT_CHECK: an internal invariant; failing it is a bug, never a user error.
#define DIT_CHECK(cond)                                                               \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "dit: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

// DIT_TRY: return DIT_ERR from the enclosing function when a call fails (its message is already recorded).
#define DIT_TRY(call)                          \
    do {                                       \
        if ((call) != DIT_OK) return DIT_ERR;  \
    } while (0)

// Allocation never ends the process: out of memory is an error like any other. Every allocator returns NULL
// with a message recorded, for the caller to free what it holds and return DIT_ERR (or NULL) in turn.
// dit_try_malloc names what the bytes are for (sizes a file or a caller asks for: tensor data, inflated
// members, decoded pixels): "out of memory allocating N bytes for <what>".
void *dit_try_malloc(size_t n, const char *what);
void *dit_try_realloc(void *p, size_t n, const char *what);   // on failure p is left allocated
// dit_malloc and friends (activations, scratch, bookkeeping) name the place instead:
// "out of memory allocating N bytes at src/models/dit_forward.c:26". dit_realloc leaves p allocated on failure.
#define dit_malloc(n) dit_malloc_at((n), __FILE__, __LINE__)
#define dit_calloc(n, s) dit_calloc_at((n), (s), __FILE__, __LINE__)
#define dit_realloc(p, n) dit_realloc_at((p), (n), __FILE__, __LINE__)
#define dit_strdup(s) dit_strdup_at((s), __FILE__, __LINE__)
void *dit_malloc_at(size_t n, const char *file, int line);
void *dit_calloc_at(size_t n, size_t s, const char *file, int line);
void *dit_realloc_at(void *p, size_t n, const char *file, int line);
char *dit_strdup_at(const char *s, const char *file, int line);

// For tests (tests/test_oom.c): after `allowed` more allocations through the functions above, every one
// fails as if memory had run out, until dit_alloc_fail_after(-1). dit_alloc_count: allocations so far.
// Allocations made by other libraries (cJSON, libpng, OpenBLAS) are not counted and never fail on purpose.
void dit_alloc_fail_after(long allowed);
long dit_alloc_count(void);

#endif
