// A minimal HTTP/1.1 client over POSIX sockets for the serving tests and the load test (see http_client.h).
#include "http_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static int send_all(int fd, const char *data, size_t n) {
    while (n) {
        ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        data += k, n -= (size_t)k;
    }
    return 0;
}

int http_send(int port, const char *method, const char *path, const char *body, size_t body_size) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s",
                     method, path, port, body ? "Content-Type: application/json\r\n" : "");
    if (body) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", body_size);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (send_all(fd, head, (size_t)n) != 0) {
        close(fd);
        return -1;
    }
    // A server may answer (413) and close before taking a whole large body: the answer is still read.
    if (body) send_all(fd, body, body_size);
    return fd;
}

// Decode a chunked body in place; returns the decoded size.
static size_t dechunk(char *body, size_t size) {
    size_t in = 0, out = 0;
    while (in < size) {
        char *end;
        unsigned long len = strtoul(body + in, &end, 16);
        char *line_end = strstr(end, "\r\n");
        if (!line_end || len == 0) break;
        in = (size_t)(line_end - body) + 2;
        if (in + len > size) len = size - in;
        memmove(body + out, body + in, len);
        out += len, in += len + 2;
    }
    body[out] = '\0';
    return out;
}

int http_request(int port, const char *method, const char *path, const char *body, size_t body_size,
                 http_response *out) {
    memset(out, 0, sizeof *out);
    int fd = http_send(port, method, path, body, body_size);
    if (fd < 0) return -1;
    size_t size = 0, cap = 65536;
    char *buf = malloc(cap);
    long long content_length = -1;
    size_t head_end = 0;
    for (;;) {   // until the server closes, or the body of a known Content-Length is complete
        if (cap - size < 4096) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + size, cap - size - 1, 0);
        if (k <= 0) break;
        size += (size_t)k;
        buf[size] = '\0';
        if (!head_end) {
            char *split = strstr(buf, "\r\n\r\n");
            if (split) {
                head_end = (size_t)(split - buf) + 4;
                for (char *line = buf; line < split; line = strstr(line, "\r\n") + 2)
                    if (!strncasecmp(line, "Content-Length:", 15)) content_length = atoll(line + 15);
            }
        }
        if (head_end && content_length >= 0 && size >= head_end + (size_t)content_length) break;
    }
    close(fd);
    buf[size] = '\0';
    char *split = strstr(buf, "\r\n\r\n");
    if (!split || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1) {
        free(buf);
        out->status = 0;
        return -1;
    }
    size_t head = (size_t)(split - buf);
    out->headers = malloc(head + 1);
    memcpy(out->headers, buf, head);
    out->headers[head] = '\0';
    out->body_size = size - head - 4;
    out->body = malloc(out->body_size + 1);
    memcpy(out->body, split + 4, out->body_size);
    out->body[out->body_size] = '\0';
    free(buf);
    char te[64];
    if (http_header(out, "Transfer-Encoding", te, sizeof te) && !strcasecmp(te, "chunked"))
        out->body_size = dechunk(out->body, out->body_size);
    return 0;
}

const char *http_header(const http_response *r, const char *name, char *buf, size_t cap) {
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        if (!end) end = line + strlen(line);
        if (!strncasecmp(line, name, n) && line[n] == ':') {
            const char *v = line + n + 1;
            while (v < end && *v == ' ') v++;
            size_t len = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
            memcpy(buf, v, len);
            buf[len] = '\0';
            return buf;
        }
        line = *end ? end + 2 : end;
    }
    return NULL;
}

void http_response_free(http_response *r) {
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

uint8_t *base64_decode(const char *text, size_t *size) {
    size_t n = strlen(text);
    if (n % 4) return NULL;
    uint8_t *out = malloc(n / 4 * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = text[i + j];
            int d = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
                  : c == '+' ? 62 : c == '/' ? 63 : c == '=' ? (pad++, 0) : -1;
            if (d < 0) {
                free(out);
                return NULL;
            }
            v = v << 6 | (uint32_t)d;
        }
        out[k++] = (uint8_t)(v >> 16);
        if (pad < 2) out[k++] = (uint8_t)(v >> 8);
        if (pad < 1) out[k++] = (uint8_t)v;
    }
    *size = k;
    return out;
}
