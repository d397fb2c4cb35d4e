// Load test of `dit serve` (loopback only, bounded): C clients each send R generation requests one after the
// other, all at once; then the bad-request set. Prints a markdown report: answers by status, latency p50/p95/max,
// throughput, and the server's resident memory (VmRSS of --pid) sampled every 100 ms across the run.
// usage: serve_load --port P --pid PID [--clients 8] [--requests 10] [--body JSON]   (bench/serve_load.sh runs it)
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tests/http_client.h"
#include "base/clock.h"

static int port, server_pid, clients = 8, requests = 10;
static const char *body = "{\"class\": \"sneaker\", \"n\": 1, \"steps\": 5}";
static double *latency;
static int *status;
static volatile int running = 1;
static long rss_first = -1, rss_min = -1, rss_max = -1, rss_last = -1;
static _Atomic int completed;          // requests answered so far
static long rss_at[101];               // VmRSS when the k-th tenth of the requests had been answered

static long rss_kib(void) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", server_pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = atol(line + 6);
    if (f) fclose(f);
    return kib;
}

static void *sample_rss(void *arg) {
    (void)arg;
    while (running) {
        long kib = rss_kib();
        if (kib > 0) {
            if (rss_first < 0) rss_first = kib;
            if (rss_min < 0 || kib < rss_min) rss_min = kib;
            if (kib > rss_max) rss_max = kib;
            rss_last = kib;
            int tenth = completed * 10 / (clients * requests);
            if (!rss_at[tenth]) rss_at[tenth] = kib;
        }
        usleep(100000);
    }
    return NULL;
}

static void *client(void *arg) {
    const int c = (int)(long)arg;
    for (int r = 0; r < requests; r++) {
        http_response resp;
        const double t0 = now_seconds();
        int k = c * requests + r;
        status[k] = http_request(port, "POST", "/v1/images/generations", body, strlen(body), &resp) == 0 ? resp.status : 0;
        latency[k] = now_seconds() - t0;
        completed++;
        http_response_free(&resp);
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bad_requests(void) {
    static const char *const bad[] = {
        "{not json", "[1, 2]", "{}", "{\"class\": \"unicorn\"}", "{\"class\": 10}", "{\"class\": \"shirt\", \"steps\": -1}",
        "{\"class\": 0, \"steps\": 1001}", "{\"class\": 0, \"n\": 0}", "{\"class\": 0, \"n\": 100}",
        "{\"class\": 0, \"sampler\": \"euler\"}", "{\"class\": 0, \"cfg_scale\": \"high\"}", "{\"class\": 0, \"seed\": -3}",
        "{\"class\": 0, \"response_format\": \"url\"}", "{\"class\": 0, \"stepz\": 3}", ""};
    static char big[70000];   // the last one: a body over the 64 KiB limit
    memset(big, ' ', sizeof big - 1);
    memcpy(big, "{\"class\": 0}", 12);
    printf("\n| bad request | status | error |\n|---|---|---|\n");
    const int count = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < count; i++) {
        const char *b = i < count - 1 ? bad[i] : big;
        http_response r;
        http_request(port, "POST", "/v1/images/generations", b, strlen(b), &r);
        char *msg = r.body ? strstr(r.body, "\"message\":\"") : NULL, *end = msg ? strstr(msg + 11, "\",\"") : NULL;
        if (end) *end = '\0';
        if (msg) {   // JSON's \" back to "
            char *q = msg;
            for (const char *p = msg; *p; p++)
                if (!(p[0] == '\\' && p[1] == '"')) *q++ = *p;
            *q = '\0';
        }
        printf("| `%s` | %d | %s |\n", i < count - 1 ? b : "(70,000-byte body)", r.status, msg ? msg + 11 : "");
        http_response_free(&r);
    }
    const char *const other[][2] = {{"GET", "/v1/images/generations"}, {"GET", "/nope"}};
    for (int i = 0; i < 2; i++) {
        http_response r;
        http_request(port, other[i][0], other[i][1], NULL, 0, &r);
        printf("| `%s %s` | %d | |\n", other[i][0], other[i][1], r.status);
        http_response_free(&r);
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pid")) server_pid = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--clients")) clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--requests")) requests = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--body")) body = argv[i + 1];
    }
    if (port <= 0 || clients < 1 || clients > 64 || requests < 1 || requests > 100) {
        fprintf(stderr, "usage: serve_load --port P --pid PID [--clients 1..64] [--requests 1..100] [--body JSON]\n");
        return 2;
    }
    const int total = clients * requests;
    latency = calloc((size_t)total, sizeof *latency);
    status = calloc((size_t)total, sizeof *status);
    http_response warm;   // one request first: the model's buffers exist before memory is watched
    http_request(port, "POST", "/v1/images/generations", body, strlen(body), &warm);
    http_response_free(&warm);
    pthread_t sampler, threads[64];
    pthread_create(&sampler, NULL, sample_rss, NULL);
    usleep(200000);
    const double t0 = now_seconds();
    for (int c = 0; c < clients; c++) pthread_create(&threads[c], NULL, client, (void *)(long)c);
    for (int c = 0; c < clients; c++) pthread_join(threads[c], NULL);
    const double wall = now_seconds() - t0;
    usleep(200000);
    running = 0;
    pthread_join(sampler, NULL);
    int ok = 0, codes[600] = {0};
    for (int k = 0; k < total; k++) {
        ok += status[k] == 200;
        if (status[k] >= 0 && status[k] < 600) codes[status[k]]++;
    }
    qsort(latency, (size_t)total, sizeof *latency, by_value);
    printf("| clients x requests | answered 200 | other answers | p50 latency | p95 latency | max | wall | throughput |\n"
           "|---|---|---|---|---|---|---|---|\n");
    printf("| %d x %d | %d / %d |", clients, requests, ok, total);
    int others = 0;
    for (int s = 0; s < 600; s++)
        if (s != 200 && codes[s]) printf(" %d: %d", s, codes[s]), others++;
    printf("%s | %.2f s | %.2f s | %.2f s | %.1f s | %.2f requests/s |\n", others ? "" : " none", latency[total / 2],
           latency[(int)(0.95 * (total - 1) + 0.5)], latency[total - 1], wall, total / wall);
    printf("\nserver RSS (VmRSS, sampled every 100 ms from after the warm-up request to the end): first %ld KiB, "
           "min %ld KiB, max %ld KiB, last %ld KiB (change %+ld KiB)\n", rss_first, rss_min, rss_max, rss_last,
           rss_last - rss_first);
    printf("server RSS when 0%%, 10%%, ..., 100%% of the requests had been answered (KiB):");
    for (int t = 0; t <= 10; t++) printf(" %ld", rss_at[t] ? rss_at[t] : rss_last);
    printf("\n");
    bad_requests();
    return ok == total ? 0 : 1;
}
