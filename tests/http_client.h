// A minimal HTTP/1.1 client for the serving tests and the load test (bench/serve_load.c): one request per
// connection (Connection: close) to 127.0.0.1, chunked bodies decoded. Loopback only, by construction.
#ifndef DIT_TESTS_HTTP_CLIENT_H
#define DIT_TESTS_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int status;         // 0 when no response came
    char *headers;      // the header block, NUL-terminated
    char *body;         // NUL-terminated (the NUL is not counted in body_size)
    size_t body_size;
} http_response;

// Send one request and read the whole response. body may be NULL. Returns 0 when a response was read.
int http_request(int port, const char *method, const char *path, const char *body, size_t body_size,
                 http_response *out);
// Send a request and return the connected socket without reading (for disconnect tests); -1 on failure.
int http_send(int port, const char *method, const char *path, const char *body, size_t body_size);
// The value of a header (case-insensitive name) copied into buf; NULL when absent.
const char *http_header(const http_response *r, const char *name, char *buf, size_t cap);
void http_response_free(http_response *r);
// Standard base64 decoding; *size gets the byte count. NULL on a malformed string.
uint8_t *base64_decode(const char *text, size_t *size);

#endif
