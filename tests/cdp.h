// A small Chrome DevTools Protocol client for the browser test of the web page: starts headless Chromium
// on a page, evaluates JavaScript in it and takes screenshots, over the DevTools WebSocket (loopback only).
#ifndef DIT_TESTS_CDP_H
#define DIT_TESTS_CDP_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int fd;          // the page's WebSocket
    int next_id;
    char profile[1024];
} cdp_browser;

// Start `chromium` headless on url with a fresh profile under dir; 0 on success (within timeout_ms).
int cdp_open(cdp_browser *b, const char *chromium, const char *url, const char *dir, int timeout_ms);
// Evaluate a JavaScript expression; its value as a string (JSON for objects) in *out (malloc'd). 0 on success.
int cdp_eval(cdp_browser *b, const char *expression, char **out);
// Save a PNG screenshot of the page. 0 on success.
int cdp_screenshot(cdp_browser *b, const char *path);
void cdp_close(cdp_browser *b);

#endif
