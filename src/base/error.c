// Thread-local error message and checked allocation.
#include "base/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

static _Thread_local char error_message[1024];

dit_status dit_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return DIT_ERR;
}

void dit_prefix_error(const char *fmt, ...) {
    char prefix[512], old[sizeof error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof old);
    // Truncation is fine here: the message is for people, and its start names the file.
    size_t used = strlen(prefix);
    if (used > sizeof error_message - 3) used = sizeof error_message - 3;
    memcpy(error_message, prefix, used);
    memcpy(error_message + used, ": ", 2);
    size_t rest = sizeof error_message - used - 3;
    size_t old_len = strnlen(old, rest);
    memcpy(error_message + used + 2, old, old_len);
    error_message[used + 2 + old_len] = '\0';
}

const char *dit_last_error(void) { return error_message[0] ? error_message : "unknown error"; }
int dit_error_is_out_of_memory(void) { return strstr(error_message, "out of memory") != NULL; }

// The test hook: allocations are counted, and once `fail_at` is reached (>= 0) every one fails.
static _Atomic long alloc_count, fail_at = -1;

void dit_alloc_fail_after(long allowed) { fail_at = allowed < 0 ? -1 : alloc_count + allowed; }
long dit_alloc_count(void) { return alloc_count; }

static int should_fail(void) {
    long k = alloc_count++;
    long at = fail_at;
    return at >= 0 && k >= at;
}

// Every buffer starts on a cache line (64 bytes): the AMX tile loads and AVX-512 loads that read
// activations and packed operands run up to twice as fast when their rows do not straddle two lines.
static void *aligned_malloc(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n ? n : 1) == 0 ? p : NULL;
}

static void *counted_malloc(size_t n) { return should_fail() ? NULL : aligned_malloc(n); }
static void *counted_calloc(size_t n, size_t s) { return should_fail() ? NULL : calloc(n ? n : 1, s ? s : 1); }
static void *counted_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }

void *dit_try_malloc(size_t n, const char *what) {
    void *p = counted_malloc(n);
    if (!p) dit_set_error("out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *dit_try_realloc(void *p, size_t n, const char *what) {
    void *q = counted_realloc(p, n);
    if (!q) dit_set_error("out of memory allocating %zu bytes for %s", n, what);
    return q;
}

static void out_of_memory(size_t n, const char *file, int line) {
    dit_set_error("out of memory allocating %zu bytes at %s:%d", n, file, line);
}

void *dit_malloc_at(size_t n, const char *file, int line) {
    void *p = counted_malloc(n);
    if (!p) out_of_memory(n, file, line);
    return p;
}

void *dit_calloc_at(size_t n, size_t s, const char *file, int line) {
    void *p = s && n > SIZE_MAX / s ? NULL : counted_calloc(n, s);
    if (!p) out_of_memory(s && n > SIZE_MAX / s ? SIZE_MAX : n * s, file, line);
    return p;
}

void *dit_realloc_at(void *p, size_t n, const char *file, int line) {
    void *q = counted_realloc(p, n);
    if (!q) out_of_memory(n, file, line);
    return q;
}

char *dit_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *d = dit_malloc_at(n, file, line);
    if (d) memcpy(d, s, n);
    return d;
}
