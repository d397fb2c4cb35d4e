// `dit serve` end to end on the shipped Fashion-MNIST model, over loopback: the endpoints, the images (equal
// to `dit sample`'s), progress events, every bad request and its status, the queue limit, clients that hang
// up (their slot is freed, a lone running job is cancelled), batching of concurrent requests, the request log,
// the web page in headless Chromium (skipped where Chromium is not installed), and a clean stop on SIGTERM.
#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cdp.h"
#include "http_client.h"
#include "test.h"

typedef struct {
    pid_t pid;
    int port;
    char log[1024];
} server_proc;

static const char *dit_bin(void) {
    const char *bin = getenv("DIT_BIN");
    return bin ? bin : "build/dit";
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Start `dit serve ARGS --port 0` with its output in a log; wait (<= 60 s) for "listening on ...:PORT/".
static int server_start(server_proc *s, const char *args) {
    snprintf(s->log, sizeof s->log, "%s", scratch_path("serve.log"));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s serve %s --port 0 > %s 2>&1", dit_bin(), args, s->log);
    fflush(stdout);
    s->pid = fork();
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 600; i++) {
        sleep_ms(100);
        char *text = read_text(s->log);
        const char *at = text ? strstr(text, "listening on http://127.0.0.1:") : NULL;
        if (at && sscanf(at, "listening on http://127.0.0.1:%d/", &s->port) == 1) {
            free(text);
            return 1;
        }
        free(text);
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) return 0;   // it exited
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return 0;
}

static int server_stop(server_proc *s) {
    kill(s->pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 300; i++) {   // 30 s
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        sleep_ms(100);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

static cJSON *post_json(int port, const char *body, int *status) {
    http_response r;
    *status = 0;
    if (http_request(port, "POST", "/v1/images/generations", body, strlen(body), &r) != 0) return NULL;
    *status = r.status;
    cJSON *json = cJSON_Parse(r.body);
    http_response_free(&r);
    return json;
}

static double health_number(int port, const char *field) {
    http_response r;
    if (http_request(port, "GET", "/health", NULL, 0, &r) != 0) return -1;
    cJSON *json = cJSON_Parse(r.body);
    const cJSON *v = cJSON_GetObjectItem(json, field);
    double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
    cJSON_Delete(json);
    http_response_free(&r);
    return x;
}

// Poll /health until field == want (<= timeout_ms); returns the last value.
static double wait_health(int port, const char *field, double want, int timeout_ms) {
    double v = -1;
    for (int t = 0; t <= timeout_ms; t += 50) {
        if ((v = health_number(port, field)) == want) break;
        sleep_ms(50);
    }
    return v;
}

static void test_endpoints(int port) {
    http_response r;
    char buf[256];
    int sent = http_request(port, "GET", "/health", NULL, 0, &r) == 0;
    CHECK(sent && r.status == 200 && strstr(r.body, "\"status\":\"ok\""),
          "GET /health -> %d %s", r.status, r.body ? r.body : "");
    http_response_free(&r);
    http_request(port, "GET", "/v1/models", NULL, 0, &r);
    cJSON *json = cJSON_Parse(r.body), *m = cJSON_GetArrayItem(cJSON_GetObjectItem(json, "data"), 0);
    cJSON *names = cJSON_GetObjectItem(m, "class_names"), *config = cJSON_GetObjectItem(m, "config");
    CHECK(r.status == 200 && cJSON_GetArraySize(names) == 10 &&
              !strcmp(cJSON_GetArrayItem(names, 7)->valuestring, "Sneaker") &&
              cJSON_GetObjectItem(config, "hidden_size")->valueint == 256 &&
              cJSON_GetObjectItem(m, "params")->valuedouble == 7391760,
          "GET /v1/models: config (hidden 256), params 7,391,760, 10 class names (7: Sneaker)");
    cJSON_Delete(json);
    http_response_free(&r);
    http_request(port, "GET", "/", NULL, 0, &r);
    CHECK(r.status == 200 && http_header(&r, "Content-Type", buf, sizeof buf) && strstr(buf, "text/html") &&
              strstr(r.body, "<title>dit</title>") && !strstr(r.body, "http://") && !strstr(r.body, "https://"),
          "GET / -> the page (text/html, no external resources)");
    http_response_free(&r);
}

static void test_images(int port, const char *model) {
    int status;
    cJSON *json = post_json(port, "{\"class\": [\"sneaker\", 0], \"n\": 1, \"steps\": 4, \"seed\": 5}", &status);
    cJSON *data = cJSON_GetObjectItem(json, "data");
    cJSON *a = cJSON_GetArrayItem(data, 0), *b = cJSON_GetArrayItem(data, 1);
    int ok = status == 200 && cJSON_GetArraySize(data) == 2 && cJSON_GetObjectItem(a, "seed")->valuedouble == 5 &&
             cJSON_GetObjectItem(a, "class")->valueint == 7 &&
             !strcmp(cJSON_GetObjectItem(a, "class_name")->valuestring, "Sneaker") &&
             cJSON_GetObjectItem(b, "seed")->valuedouble == 6 && cJSON_GetObjectItem(b, "class")->valueint == 0;
    CHECK(ok, "POST class [\"sneaker\", 0], seed 5 -> 200, 2 images: Sneaker seed 5, class 0 seed 6");
    if (ok) {
        // image 1 must be `dit sample --class 0 --seed 6`'s first image, byte for byte
        size_t size;
        uint8_t *png = base64_decode(cJSON_GetObjectItem(b, "b64_json")->valuestring, &size);
        char dir[1024], cmd[4096], path[1100];
        snprintf(dir, sizeof dir, "%s", scratch_path("serve_cli"));
        snprintf(cmd, sizeof cmd, "%s sample -m %s --class 0 -n 1 --steps 4 --sampler flow-heun --seed 6 --out-dir %s",
                 dit_bin(), model, dir);
        int rc = run_command(cmd, NULL);
        snprintf(path, sizeof path, "%s/000000.png", dir);
        char *cli = read_text(path);
        FILE *f = fopen(path, "rb");
        size_t cli_size = 0;
        if (f) fseek(f, 0, SEEK_END), cli_size = (size_t)ftell(f), fclose(f);
        CHECK(rc == 0 && png && cli && size == cli_size && !memcmp(png, cli, size),
              "the served PNG equals `dit sample --class 0 --seed 6`'s (%zu bytes)", size);
        free(png), free(cli);
    }
    cJSON_Delete(json);

    http_response r;
    char seed[32] = "", type[64] = "";
    const char *body = "{\"class\": 3, \"steps\": 3, \"seed\": 1, \"response_format\": \"png\"}";
    http_request(port, "POST", "/v1/images/generations", body, strlen(body), &r);
    CHECK(r.status == 200 && http_header(&r, "Content-Type", type, sizeof type) && !strcmp(type, "image/png") &&
              http_header(&r, "X-Dit-Seed", seed, sizeof seed) && !strcmp(seed, "1") && r.body_size > 8 &&
              !memcmp(r.body, "\x89PNG", 4), "response_format png -> %d %s, X-Dit-Seed %s", r.status, type, seed);
    http_response_free(&r);

    body = "{\"class\": \"Bag\", \"n\": 2, \"steps\": 5, \"stream\": true}";
    http_request(port, "POST", "/v1/images/generations", body, strlen(body), &r);
    int progress = 0;
    for (const char *p = r.body; p && (p = strstr(p, "event: progress")); p++) progress++;
    CHECK(r.status == 200 && http_header(&r, "Content-Type", type, sizeof type) && !strcmp(type, "text/event-stream") &&
              progress >= 5 && strstr(r.body, "\"step\":5,\"total\":5") && strstr(r.body, "event: result\ndata: {") &&
              strstr(r.body, "\"class_name\":\"Bag\""),
          "stream: text/event-stream with %d progress events up to step 5/5, then the result", progress);
    http_response_free(&r);
}

typedef struct {
    const char *body;   // NULL: a body of 5000 bytes
    int status;
    const char *param;  // NULL: the error names no field
} bad_request;

static void test_bad_requests(int port) {
    static const bad_request bad[] = {
        {"{not json", 400, NULL},
        {"", 400, NULL},
        {"[1, 2]", 400, NULL},
        {"{}", 400, "class"},
        {"{\"class\": \"unicorn\"}", 400, "class"},
        {"{\"class\": 10}", 400, "class"},
        {"{\"class\": []}", 400, "class"},
        {"{\"class\": {\"id\": 1}}", 400, "class"},
        {"{\"class\": 0, \"steps\": -1}", 400, "steps"},
        {"{\"class\": 0, \"steps\": 101}", 400, "steps"},
        {"{\"class\": 0, \"steps\": \"ten\"}", 400, "steps"},
        {"{\"class\": 0, \"n\": 0}", 400, "n"},
        {"{\"class\": [0, 1, 2], \"n\": 3}", 400, "n"},
        {"{\"class\": 0, \"sampler\": \"euler\"}", 400, "sampler"},
        {"{\"class\": 0, \"sampler\": \"ddpm\"}", 400, "sampler"},   // an eps sampler for the v-flow model
        {"{\"class\": 0, \"cfg_scale\": \"high\"}", 400, "cfg_scale"},
        {"{\"class\": 0, \"cfg_scale\": 1e9}", 400, "cfg_scale"},
        {"{\"class\": 0, \"cfg_interval\": [0.7, 0.2]}", 400, "cfg_interval"},
        {"{\"class\": 0, \"cfg_interval\": 0.5}", 400, "cfg_interval"},
        {"{\"class\": 0, \"cfg_interval\": [0, 0.5, 1]}", 400, "cfg_interval"},
        {"{\"class\": 0, \"seed\": -3}", 400, "seed"},
        {"{\"class\": 0, \"seed\": 1.5}", 400, "seed"},
        {"{\"class\": 0, \"eta\": 0.5}", 400, "eta"},
        {"{\"class\": 0, \"response_format\": \"url\"}", 400, "response_format"},
        {"{\"class\": 0, \"n\": 2, \"response_format\": \"png\"}", 400, "response_format"},
        {"{\"class\": 0, \"stream\": \"yes\"}", 400, "stream"},
        {"{\"class\": 0, \"stepz\": 3}", 400, "stepz"},
        {NULL, 413, "body"},
    };
    char *big = malloc(5001);
    memset(big, ' ', 5000);
    big[5000] = '\0';
    memcpy(big, "{\"class\": 0}", 12);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *body = bad[i].body ? bad[i].body : big;
        int status;
        cJSON *json = post_json(port, body, &status);
        cJSON *e = cJSON_GetObjectItem(json, "error"), *param = cJSON_GetObjectItem(e, "param");
        const char *got = cJSON_IsString(param) ? param->valuestring : NULL;
        const cJSON *msg = cJSON_GetObjectItem(e, "message");
        int ok = status == bad[i].status && cJSON_IsString(msg) && cJSON_GetObjectItem(e, "code") &&
                 cJSON_GetObjectItem(e, "code")->valueint == status &&
                 (bad[i].param ? got && !strcmp(got, bad[i].param) : cJSON_IsNull(param));
        CHECK(ok, "bad request %.40s -> %d, param %s: \"%s\"", bad[i].body ? bad[i].body : "(5000 bytes)", status,
              got ? got : "null", cJSON_IsString(msg) ? msg->valuestring : "?");
        cJSON_Delete(json);
    }
    free(big);
    http_response r;
    http_request(port, "GET", "/v1/images/generations", NULL, 0, &r);
    CHECK(r.status == 405 && strstr(r.body, "use POST"), "GET /v1/images/generations -> %d", r.status);
    http_response_free(&r);
    http_request(port, "GET", "/nope", NULL, 0, &r);
    CHECK(r.status == 404 && strstr(r.body, "\"error\""), "GET /nope -> %d", r.status);
    http_response_free(&r);
    CHECK(health_number(port, "completed") >= 0, "the server still answers after the bad requests");
}

// The queue limit (429), and clients that hang up: a queued job leaves the queue at once, a running job
// alone in its batch is cancelled. The server runs with --max-queue 2.
static void test_queue_and_disconnects(int port) {
    const char *slow = "{\"class\": 0, \"n\": 8, \"steps\": 100, \"sampler\": \"flow-em\", \"seed\": 1}";
    const char *other = "{\"class\": 1, \"n\": 8, \"steps\": 99, \"sampler\": \"flow-euler\", \"seed\": 1}";
    const double cancelled0 = health_number(port, "cancelled");
    int running = http_send(port, "POST", "/v1/images/generations", slow, strlen(slow));
    double r = wait_health(port, "running", 1, 20000);
    int queued1 = http_send(port, "POST", "/v1/images/generations", other, strlen(other));
    int queued2 = http_send(port, "POST", "/v1/images/generations", other, strlen(other));
    double q = wait_health(port, "queued", 2, 10000);
    CHECK(running >= 0 && r == 1 && q == 2, "a running job and 2 queued ones (running %g, queued %g)", r, q);
    int status;
    cJSON *json = post_json(port, "{\"class\": 2, \"steps\": 2}", &status);
    const cJSON *param = cJSON_GetObjectItem(cJSON_GetObjectItem(json, "error"), "param");
    CHECK(status == 429 && cJSON_IsString(param) && !strcmp(param->valuestring, "queue"),
          "a request beyond --max-queue 2 -> %d, param queue", status);
    cJSON_Delete(json);
    close(queued1);
    q = wait_health(port, "queued", 1, 5000);
    CHECK(q == 1, "a queued client that hangs up frees its slot (queued %g)", q);
    close(queued2);
    q = wait_health(port, "queued", 0, 5000);
    close(running);
    r = wait_health(port, "running", 0, 10000);
    double c = health_number(port, "cancelled");
    CHECK(q == 0 && r == 0 && c == cancelled0 + 3,
          "the running client hangs up: its job is cancelled (running %g, cancelled %g -> %g)", r, cancelled0, c);
    json = post_json(port, "{\"class\": 2, \"steps\": 2}", &status);
    CHECK(status == 200, "the next request is served (%d)", status);
    cJSON_Delete(json);
}

typedef struct {
    int port, index, status;
    char *body;
} concurrent_request;

static void *concurrent_main(void *arg) {
    concurrent_request *c = arg;
    char body[256];
    snprintf(body, sizeof body, "{\"class\": %d, \"n\": 1, \"steps\": 6, \"seed\": %d}", c->index % 10, 100 + c->index);
    http_response r;
    if (http_request(c->port, "POST", "/v1/images/generations", body, strlen(body), &r) == 0) {
        c->status = r.status;
        c->body = r.body;
        r.body = NULL;
    }
    http_response_free(&r);
    return NULL;
}

static const char *first_b64(cJSON *json) {
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(json, "data"), 0), "b64_json");
    return cJSON_IsString(v) ? v->valuestring : "";
}

// 6 concurrent requests while a blocker runs: all answered, batched together, each image as when alone.
static void test_batching(int port) {
    const char *blocker = "{\"class\": 5, \"n\": 1, \"steps\": 30, \"sampler\": \"flow-euler\"}";
    int fd = http_send(port, "POST", "/v1/images/generations", blocker, strlen(blocker));
    wait_health(port, "running", 1, 10000);
    const double batches0 = health_number(port, "batches");
    enum { N = 6 };
    concurrent_request req[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        req[i] = (concurrent_request){.port = port, .index = i};
        pthread_create(&threads[i], NULL, concurrent_main, &req[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(threads[i], NULL);
    close(fd);
    wait_health(port, "running", 0, 10000);
    int all_ok = 1, batched = 0, same = 1;
    for (int i = 0; i < N; i++) {
        cJSON *json = cJSON_Parse(req[i].body);
        all_ok &= req[i].status == 200;
        batched += cJSON_GetObjectItem(cJSON_GetObjectItem(json, "timing"), "batched_with") &&
                   cJSON_GetObjectItem(cJSON_GetObjectItem(json, "timing"), "batched_with")->valueint > 0;
        if (i < 2) {   // the same request alone gives the same image
            concurrent_request alone = {.port = port, .index = i};
            concurrent_main(&alone);
            cJSON *solo = cJSON_Parse(alone.body);
            same &= alone.status == 200 && json && !strcmp(first_b64(json), first_b64(solo));
            cJSON_Delete(solo);
            free(alone.body);
        }
        cJSON_Delete(json);
        free(req[i].body);
    }
    const double batches = health_number(port, "batches") - batches0;
    CHECK(all_ok, "%d concurrent requests all answered 200", N);
    CHECK(batched >= 2, "concurrent requests were batched (%d of %d ran with others)", batched, N);
    CHECK(same, "a batched request's image equals the same request served alone");
    (void)batches;
}

static const char *find_chromium(void) {
    static const char *const names[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (access(names[i], X_OK) == 0) return names[i];
    return NULL;
}

// The page in a real headless browser (Chromium over the DevTools protocol): it loads the class names,
// searches them, generates 2 classes x 2 images through the streaming API with a moving progress bar, and
// shows the decoded images with their names. DIT_SERVE_SCREENSHOT=FILE keeps a screenshot (docs/serve-page.png).
static void test_page_in_browser(int port) {
    const char *chromium = find_chromium();
    if (!chromium) {
        printf("skip the web page in a headless browser: chromium is not installed (scripts/setup.sh installs it)\n");
        return;
    }
    char url[256], dir[1024], *value = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/?class=7,0&n=2&steps=8&seed=1&autorun=1", port);
    snprintf(dir, sizeof dir, "%s", scratch_path("browser"));
    cdp_browser b;
    if (!CHECK(cdp_open(&b, chromium, url, dir, 60000) == 0, "headless Chromium opens the page over DevTools")) {
        cdp_close(&b);
        return;
    }
    char state[64] = "";
    for (int t = 0; t < 120000; t += 200) {   // the page sets data-state: ready, running, done or error
        if (cdp_eval(&b, "document.body.dataset.state || ''", &value) == 0) {
            snprintf(state, sizeof state, "%s", value);
            free(value);
            if (!strcmp(state, "done") || !strcmp(state, "error")) break;
        }
        sleep_ms(200);
    }
    CHECK(!strcmp(state, "done"), "the page generated its images (state '%s')", state);
    value = NULL;
    cdp_eval(&b, "JSON.stringify(window.progressLog)", &value);
    CHECK(value && strstr(value, "\"1/8\"") && strstr(value, "\"8/8\""),
          "the progress bar followed the server's events: %s", value ? value : "");
    free(value);
    value = NULL;
    cdp_eval(&b, "JSON.stringify([...document.querySelectorAll('#grid figure')].map(f => "
                 "f.querySelector('img').naturalWidth + ' ' + f.querySelector('figcaption').textContent))", &value);
    CHECK(value && !strcmp(value, "[\"32 Sneaker · seed 1 · download\",\"32 Sneaker · seed 2 · download\","
                                  "\"32 T-shirt/top · seed 3 · download\",\"32 T-shirt/top · seed 4 · download\"]"),
          "4 decoded 32x32 images in the grid, named and seeded: %s", value ? value : "");
    free(value);
    value = NULL;
    cdp_eval(&b, "document.getElementById('search').value = 'ank'; document.getElementById('search').oninput(); "
                 "[...document.querySelectorAll('#classes div')].map(d => d.textContent).join('|')", &value);
    CHECK(value && !strcmp(value, "9  Ankle boot"), "searching 'ank' leaves one class: %s", value ? value : "");
    free(value);
    const char *keep = getenv("DIT_SERVE_SCREENSHOT");
    char shot[1100];
    snprintf(shot, sizeof shot, "%s/page.png", dir);
    value = NULL;
    int cleared = cdp_eval(&b, "document.getElementById('search').value = ''; "
                               "document.getElementById('search').oninput(); 'ok'", &value) == 0;
    free(value);
    CHECK(cleared && cdp_screenshot(&b, keep ? keep : shot) == 0, "a screenshot of the page: %s", keep ? keep : shot);
    cdp_close(&b);
}

void test_serve(void) {
    const char *model = repo_path("models/dit-fmnist.safetensors");
    server_proc s;
    char args[2048];
    snprintf(args, sizeof args, "-m %s -t 1 --max-queue 2 --max-images 8 --max-steps 100 --max-body 4096", model);
    if (!CHECK(server_start(&s, args), "dit serve starts on a free loopback port (%d)", s.port)) return;
    test_endpoints(s.port);
    test_images(s.port, model);
    test_bad_requests(s.port);
    test_queue_and_disconnects(s.port);
    test_page_in_browser(s.port);
    int rc = server_stop(&s);
    CHECK(rc == 0, "SIGTERM stops the server cleanly (exit %d)", rc);
    char *log = read_text(s.log);
    CHECK(log && strstr(log, " POST /v1/images/generations 200 ") && strstr(log, " GET /health 200 ") &&
              strstr(log, " POST /v1/images/generations 400 ") && strstr(log, " POST /v1/images/generations 413 ") &&
              strstr(log, " POST /v1/images/generations 429 ") && strstr(log, " POST /v1/images/generations 499 "),
          "one log line per request: method, path, status (200, 400, 413, 429, 499 for hang-ups), time");
    free(log);

    // Batching needs room in the queue: a second server.
    snprintf(args, sizeof args, "-m %s -t 1 --max-queue 16", model);
    if (!CHECK(server_start(&s, args), "dit serve with --max-queue 16 starts (%d)", s.port)) return;
    test_batching(s.port);
    CHECK(server_stop(&s) == 0, "and stops");

    char *out = NULL;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s serve -m %s --host 0.0.0.x", dit_bin(), model);
    rc = run_command(cmd, &out);
    CHECK(rc == 2 && strstr(out, "--host"), "serve --host 0.0.0.x refused: %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s serve", dit_bin());
    rc = run_command(cmd, &out);
    CHECK(rc == 2 && strstr(out, "-m FILE is required"), "serve without -m refused: %s", out);
    free(out);
}
