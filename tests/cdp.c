// A small Chrome DevTools Protocol client (see cdp.h): Chromium with --remote-debugging-port=0 writes its
// port to DevToolsActivePort in the profile; /json/list names the page's WebSocket; commands are JSON
// text frames (RFC 6455, client frames masked), answers are matched by id.
#include "cdp.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"

static void pause_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int read_port(const char *profile) {
    char path[1200];
    snprintf(path, sizeof path, "%s/DevToolsActivePort", profile);
    FILE *f = fopen(path, "r");
    int port = 0;
    if (f) {
        if (fscanf(f, "%d", &port) != 1) port = 0;
        fclose(f);
    }
    return port;
}

static int send_all(int fd, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static int recv_all(int fd, void *data, size_t n) {
    uint8_t *p = data;
    while (n) {
        ssize_t k = recv(fd, p, n, 0);
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static int ws_connect(int port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    struct timeval tv = {120, 0};   // no answer for 2 minutes: give up
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", path, port);
    char head[4096];
    size_t got = 0;
    if (send_all(fd, req, (size_t)n) != 0) goto fail;
    while (got < sizeof head - 1) {   // read the 101 answer up to its blank line, one byte at a time
        if (recv(fd, head + got, 1, 0) != 1) goto fail;
        got++;
        head[got] = '\0';
        if (got >= 4 && !memcmp(head + got - 4, "\r\n\r\n", 4)) break;
    }
    if (strncmp(head, "HTTP/1.1 101", 12)) goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

static int ws_send_text(int fd, const char *text) {
    size_t n = strlen(text);
    uint8_t head[14];
    size_t h = 0;
    head[h++] = 0x81;   // FIN, text
    if (n < 126) {
        head[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        head[h++] = 0x80 | 126;
        head[h++] = (uint8_t)(n >> 8), head[h++] = (uint8_t)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) head[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    for (int i = 0; i < 4; i++) head[h++] = 0;   // a zero mask key leaves the payload as it is
    return send_all(fd, head, h) == 0 && send_all(fd, text, n) == 0 ? 0 : -1;
}

// One whole message (continuation frames joined); control frames are skipped. NULL on error.
static char *ws_receive(int fd) {
    char *msg = NULL;
    size_t size = 0;
    for (;;) {
        uint8_t h[2];
        if (recv_all(fd, h, 2) != 0) break;
        uint64_t n = h[1] & 0x7f;
        if (n == 126 || n == 127) {
            uint8_t ext[8];
            int k = n == 126 ? 2 : 8;
            if (recv_all(fd, ext, (size_t)k) != 0) break;
            n = 0;
            for (int i = 0; i < k; i++) n = n << 8 | ext[i];
        }
        if (n > (256u << 20)) break;
        char *payload = malloc(n + 1);
        if (recv_all(fd, payload, n) != 0) {
            free(payload);
            break;
        }
        int opcode = h[0] & 0x0f;
        if (opcode >= 8) {   // ping, pong, close
            free(payload);
            if (opcode == 8) break;
            continue;
        }
        msg = realloc(msg, size + n + 1);
        memcpy(msg + size, payload, n);
        size += n;
        msg[size] = '\0';
        free(payload);
        if (h[0] & 0x80) return msg;
    }
    free(msg);
    return NULL;
}

// Send a command and return the "result" object of its answer (the whole answer parsed), NULL on error.
static cJSON *call(cdp_browser *b, const char *method, cJSON *params) {
    cJSON *cmd = cJSON_CreateObject();
    const int id = ++b->next_id;
    cJSON_AddNumberToObject(cmd, "id", id);
    cJSON_AddStringToObject(cmd, "method", method);
    cJSON_AddItemToObject(cmd, "params", params ? params : cJSON_CreateObject());
    char *text = cJSON_PrintUnformatted(cmd);
    cJSON_Delete(cmd);
    int sent = ws_send_text(b->fd, text) == 0;
    free(text);
    while (sent) {
        char *msg = ws_receive(b->fd);
        if (!msg) return NULL;
        cJSON *answer = cJSON_Parse(msg);
        free(msg);
        const cJSON *v = cJSON_GetObjectItem(answer, "id");
        if (cJSON_IsNumber(v) && v->valueint == id) return answer;
        cJSON_Delete(answer);   // an event
    }
    return NULL;
}

int cdp_open(cdp_browser *b, const char *chromium, const char *url, const char *dir, int timeout_ms) {
    memset(b, 0, sizeof *b);
    b->fd = -1;
    snprintf(b->profile, sizeof b->profile, "%s/chromium-profile", dir);
    fflush(stdout);
    b->pid = fork();
    if (b->pid == 0) {
        char profile_flag[1200];
        snprintf(profile_flag, sizeof profile_flag, "--user-data-dir=%s", b->profile);
        FILE *devnull = freopen("/dev/null", "w", stderr);
        (void)devnull;
        execl(chromium, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-extensions", "--remote-debugging-port=0", "--window-size=1100,640", profile_flag, "about:blank",
              (char *)NULL);
        _exit(127);
    }
    int port = 0;
    for (int t = 0; t < timeout_ms && !port; t += 100) {
        pause_ms(100);
        port = read_port(b->profile);
    }
    if (!port) return -1;
    // The page target's WebSocket path, from /json/list.
    for (int t = 0; t < timeout_ms && b->fd < 0; t += 200) {
        http_response r;
        if (http_request(port, "GET", "/json/list", NULL, 0, &r) == 0 && r.status == 200) {
            cJSON *list = cJSON_Parse(r.body), *target;
            cJSON_ArrayForEach(target, list) {
                const cJSON *type = cJSON_GetObjectItem(target, "type"), *ws = cJSON_GetObjectItem(target, "webSocketDebuggerUrl");
                if (cJSON_IsString(type) && !strcmp(type->valuestring, "page") && cJSON_IsString(ws)) {
                    const char *path = strstr(ws->valuestring + 5, "/devtools/");
                    if (path) b->fd = ws_connect(port, path);
                    break;
                }
            }
            cJSON_Delete(list);
        }
        http_response_free(&r);
        if (b->fd < 0) pause_ms(200);
    }
    if (b->fd < 0) return -1;
    // Attaching to a page given on the command line while it loads can stall the handshake: start blank,
    // then navigate.
    cJSON *metrics = cJSON_CreateObject();   // a fixed viewport, so screenshots have one size
    cJSON_AddNumberToObject(metrics, "width", 1100);
    cJSON_AddNumberToObject(metrics, "height", 760);
    cJSON_AddNumberToObject(metrics, "deviceScaleFactor", 1);
    cJSON_AddBoolToObject(metrics, "mobile", 0);
    cJSON_Delete(call(b, "Emulation.setDeviceMetricsOverride", metrics));
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "url", url);
    cJSON *answer = call(b, "Page.navigate", params);
    int ok = answer && cJSON_GetObjectItem(answer, "result");
    cJSON_Delete(answer);
    return ok ? 0 : -1;
}

int cdp_eval(cdp_browser *b, const char *expression, char **out) {
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "expression", expression);
    cJSON_AddBoolToObject(params, "returnByValue", 1);
    cJSON *answer = call(b, "Runtime.evaluate", params);
    const cJSON *value = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(answer, "result"), "result"), "value");
    int status = -1;
    if (value) {
        *out = cJSON_IsString(value) ? strdup(value->valuestring) : cJSON_PrintUnformatted(value);
        status = 0;
    }
    cJSON_Delete(answer);
    return status;
}

int cdp_screenshot(cdp_browser *b, const char *path) {
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "format", "png");
    cJSON *answer = call(b, "Page.captureScreenshot", params);
    const cJSON *data = cJSON_GetObjectItem(cJSON_GetObjectItem(answer, "result"), "data");
    int status = -1;
    size_t size;
    uint8_t *png = cJSON_IsString(data) ? base64_decode(data->valuestring, &size) : NULL;
    FILE *f = png ? fopen(path, "wb") : NULL;
    if (f) {
        status = fwrite(png, 1, size, f) == size ? 0 : -1;
        fclose(f);
    }
    free(png);
    cJSON_Delete(answer);
    return status;
}

void cdp_close(cdp_browser *b) {
    if (b->fd >= 0) close(b->fd);
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        for (int t = 0; t < 5000; t += 100) {
            if (waitpid(b->pid, NULL, WNOHANG) == b->pid) return;
            pause_ms(100);
        }
        kill(b->pid, SIGKILL);
        waitpid(b->pid, NULL, 0);
    }
}
