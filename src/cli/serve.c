// `dit serve`: one model loaded once behind HTTP (libmicrohttpd, one thread per connection, loopback by
// default). POST /v1/images/generations (JSON in; PNG images, as base64 JSON, raw PNG or a server-sent-event
// stream with progress), GET /v1/models, GET /health, and the web page at /. Requests become jobs of the
// queue in serve_queue.c, whose single worker owns the model. Protocol and limits: docs/serve.md.
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/serve.h"

extern const unsigned char dit_serve_page[];
extern const unsigned long dit_serve_page_size;

typedef struct {
    int max_images;      // images per request (classes x n)
    int max_steps;
    size_t max_body;     // bytes
} serve_limits;

typedef struct {
    serve_queue queue;
    serve_limits limits;
    dit_model *model;
    const char *model_id;
    char *models_json;   // GET /v1/models, made once
} server;

// One HTTP request (libmicrohttpd's per-connection context).
typedef struct {
    double start;
    char method[16];
    char path[256];
    char *body;
    size_t body_size;
    int body_too_large;
    int status;           // what we answered (for the log); 499 = the client went away
    serve_job *job;       // the client's reference
} request;

static void log_request(const request *r) {
    char line[512], when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(line, sizeof line, "%s %s %s %d %.3fs\n", when, r->method, r->path, r->status, now_seconds() - r->start);
    fputs(line, stderr);
}

// ---- responses -------------------------------------------------------------------------------------------

static enum MHD_Result send_bytes(struct MHD_Connection *c, request *r, int status, const char *type, void *data,
                                  size_t size, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(size, data, mode);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, request *r, int status, cJSON *json) {
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (!text) return MHD_NO;
    return send_bytes(c, r, status, "application/json", text, strlen(text), MHD_RESPMEM_MUST_FREE);
}

// {"error": {"message", "type", "param", "code"}} as the OpenAI API; param names the offending field.
static cJSON *error_json(int status, const char *param, const char *message) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", status == 429 || status == 503 ? "server_busy"
                                       : status == 404 ? "not_found"
                                       : status >= 500 ? "server_error" : "invalid_request_error");
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNumberToObject(e, "code", status);
    return root;
}

__attribute__((format(printf, 5, 6)))
static enum MHD_Result send_error(struct MHD_Connection *c, request *r, int status, const char *param,
                                  const char *fmt, ...) {
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return send_json(c, r, status, error_json(status, param, message));
}

static char *base64(const uint8_t *data, size_t n) {
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < n ? (uint32_t)data[i + 1] << 8 : 0) | (i + 2 < n ? data[i + 2] : 0);
        *p++ = table[v >> 18 & 63];
        *p++ = table[v >> 12 & 63];
        *p++ = i + 1 < n ? table[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? table[v & 63] : '=';
    }
    *p = '\0';
    return out;
}

// The answer to a finished job: {"created", "model", "data": [{"b64_json", "seed", "class", "class_name"}], ...}.
static cJSON *result_json(const server *s, const serve_job *j) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "created", (double)time(NULL));
    cJSON_AddStringToObject(root, "model", s->model_id);
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    for (int k = 0; k < j->count; k++) {
        cJSON *item = cJSON_CreateObject();
        char *b64 = base64(j->png[k], j->png_size[k]);
        cJSON_AddStringToObject(item, "b64_json", b64 ? b64 : "");
        free(b64);
        cJSON_AddNumberToObject(item, "seed", (double)j->items[k].seed);
        cJSON_AddNumberToObject(item, "class", j->items[k].label);
        const char *name = dit_model_class_name(s->model, j->items[k].label);
        if (name) cJSON_AddStringToObject(item, "class_name", name);
        else cJSON_AddNullToObject(item, "class_name");
        cJSON_AddItemToArray(data, item);
    }
    cJSON *timing = cJSON_AddObjectToObject(root, "timing");
    cJSON_AddNumberToObject(timing, "queued_s", j->started - j->enqueued);
    cJSON_AddNumberToObject(timing, "sampling_s", j->finished - j->started);
    cJSON_AddNumberToObject(timing, "batched_with", j->batch_jobs - 1);
    cJSON_AddStringToObject(root, "sampler", dit_sampler_name(j->opt.sampler));
    cJSON_AddNumberToObject(root, "steps", j->opt.steps);
    cJSON_AddNumberToObject(root, "cfg_scale", j->opt.cfg_scale);
    if (j->opt.cfg_interval[1] > 0) {   // asked for: echo it
        cJSON *interval = cJSON_AddArrayToObject(root, "cfg_interval");
        cJSON_AddItemToArray(interval, cJSON_CreateNumber(j->opt.cfg_interval[0]));
        cJSON_AddItemToArray(interval, cJSON_CreateNumber(j->opt.cfg_interval[1]));
    }
    return root;
}

// ---- the generation request --------------------------------------------------------------------------

typedef struct {
    int status;
    const char *param;    // NULL, or param_copy
    char param_copy[64];
    char message[1024];
} parse_error;

__attribute__((format(printf, 4, 5)))
static int fail(parse_error *e, int status, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    e->status = status, e->param = NULL;
    if (param) {   // copied: it may point into the JSON document, freed before the answer is sent
        snprintf(e->param_copy, sizeof e->param_copy, "%s", param);
        e->param = e->param_copy;
    }
    return 0;
}

// An integer field in [min, max]; absent: *out unchanged.
static int get_int(const cJSON *root, const char *name, double min, double max, double *out, parse_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) return 1;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return fail(e, 400, name, "%s: expected an integer", name);
    if (v->valuedouble < min || v->valuedouble > max)
        return fail(e, 400, name, "%s: %.0f is out of range [%.0f, %.0f]", name, v->valuedouble, min, max);
    *out = v->valuedouble;
    return 1;
}

// Append the class(es) of one entry: an integer id, or a string of names/ids separated by commas.
static int add_classes(const server *s, const cJSON *v, int *labels, int *count, parse_error *e) {
    const int K = dit_model_config(s->model)->num_classes, max = s->limits.max_images;
    if (cJSON_IsNumber(v)) {
        if (v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble >= K)
            return fail(e, 400, "class", "class: %g is not a class id (the model has classes 0..%d)", v->valuedouble, K - 1);
        if (*count >= max) return fail(e, 400, "class", "class: more than %d classes", max);
        labels[(*count)++] = (int)v->valuedouble;
        return 1;
    }
    if (!cJSON_IsString(v)) return fail(e, 400, "class", "class: expected an id, a name or a list of them");
    const char *p = v->valuestring;
    do {
        size_t n = strcspn(p, ",");
        char name[256];
        if (n >= sizeof name) return fail(e, 400, "class", "class: a name of %zu characters", n);
        memcpy(name, p, n);
        name[n] = '\0';
        int label;
        if (dit_model_find_class(s->model, name, &label) != DIT_OK)
            return fail(e, 400, "class", "%s", dit_last_error());
        if (*count >= max) return fail(e, 400, "class", "class: more than %d classes", max);
        labels[(*count)++] = label;
        p += n;
    } while (*p++ == ',');
    return 1;
}

static uint64_t random_seed(void) {
    static _Atomic uint64_t counter;   // request threads draw concurrently; seeds need only differ, not be secret
    uint64_t x = (uint64_t)(now_seconds() * 1e9) ^ ((uint64_t)getpid() << 40) ^ (atomic_fetch_add(&counter, 1) << 20);
    x += 0x9e3779b97f4a7c15u;   // splitmix64's finalizer
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    x ^= x >> 31;
    return x % 2147483648u;   // what `dit sample --seed` accepts, so every image can be remade by the CLI
}

typedef struct {
    serve_job *job;
    int png_format, stream;
} generation;

static int parse_generation(const server *s, const char *body, size_t size, generation *g, parse_error *e) {
    const dit_config *cfg = dit_model_config(s->model);
    cJSON *root = cJSON_ParseWithLength(body, size);
    if (!root) return fail(e, 400, NULL, "the body is not valid JSON");
    int ok = 0;
    int *labels = malloc(sizeof(int) * (size_t)s->limits.max_images);
    int num_labels = 0;
    if (!cJSON_IsObject(root)) {
        fail(e, 400, NULL, "the body must be a JSON object");
        goto done;
    }
    static const char *const known[] = {"class", "n", "steps", "sampler", "cfg_scale", "cfg_interval", "seed",
                                        "response_format", "stream", "eta", "model", "user"};
    for (const cJSON *f = root->child; f; f = f->next) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(f->string, known[i])) i++;
        if (i == sizeof known / sizeof known[0]) {
            fail(e, 400, f->string, "unknown field '%s' (fields: class, n, steps, sampler, cfg_scale, cfg_interval, "
                 "seed, response_format, stream, eta)", f->string);
            goto done;
        }
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "class");
    if (!cls) {
        fail(e, 400, "class", "class is required: an id, a name, or a list of them");
        goto done;
    }
    if (cJSON_IsArray(cls)) {
        if (cJSON_GetArraySize(cls) == 0) {
            fail(e, 400, "class", "class: an empty list");
            goto done;
        }
        for (const cJSON *v = cls->child; v; v = v->next)
            if (!add_classes(s, v, labels, &num_labels, e)) goto done;
    } else if (!add_classes(s, cls, labels, &num_labels, e)) {
        goto done;
    }
    double n = 1, steps = 0, seed = -1, cfg_scale = cfg->class_dropout_prob > 0 ? 4.0 : 1.0, eta = 0;
    if (!get_int(root, "n", 1, s->limits.max_images, &n, e)) goto done;
    if (num_labels * (int)n > s->limits.max_images) {
        fail(e, 400, "n", "n: %d classes x %d images is more than the server's limit of %d images a request",
             num_labels, (int)n, s->limits.max_images);
        goto done;
    }
    if (!get_int(root, "steps", 1, s->limits.max_steps, &steps, e)) goto done;
    if (!get_int(root, "seed", 0, 9007199254740991.0, &seed, e)) goto done;
    // the fast solver by default: DPM-Solver++ (25 steps) for eps models, flow-heun (25 steps) for v-flow models
    const int flow = dit_model_objective(s->model) == DIT_OBJECTIVE_V_FLOW;
    dit_sampler sampler = flow ? DIT_SAMPLER_HEUN : DIT_SAMPLER_DPMPP_2M;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "sampler");
    if (v && !cJSON_IsNull(v) && (!cJSON_IsString(v) || dit_sampler_parse(v->valuestring, &sampler) != DIT_OK ||
                                  dit_sampler_objective(sampler) != dit_model_objective(s->model))) {
        fail(e, 400, "sampler", flow ? "sampler: this is a v-flow model: expected \"flow-euler\", \"flow-heun\" or \"flow-em\""
                                     : "sampler: expected \"ddpm\", \"ddim\" or \"dpm++2m\"");
        goto done;
    }
    if (!steps) {
        steps = dit_sampler_default_steps(sampler);
        if (steps > s->limits.max_steps) steps = s->limits.max_steps;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "cfg_scale")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > 50) {
            fail(e, 400, "cfg_scale", "cfg_scale: expected a number in [0, 50] (> 1 guides, <= 1 does not)");
            goto done;
        }
        cfg_scale = v->valuedouble;
    }
    if (cfg_scale > 1 && cfg->class_dropout_prob <= 0) {
        fail(e, 400, "cfg_scale", "cfg_scale: the model has no null class (trained without label dropout): use 1");
        goto done;
    }
    float interval[2] = {0, 0};   // every step
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "cfg_interval")) && !cJSON_IsNull(v)) {
        const cJSON *lo = cJSON_GetArrayItem(v, 0), *hi = cJSON_GetArrayItem(v, 1);
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsNumber(lo) || !cJSON_IsNumber(hi) ||
            !(lo->valuedouble >= 0 && hi->valuedouble <= 1 && lo->valuedouble < hi->valuedouble)) {
            fail(e, 400, "cfg_interval", "cfg_interval: expected [lo, hi] with 0 <= lo < hi <= 1 (noise levels "
                 "that get guidance; 1 = pure noise)");
            goto done;
        }
        interval[0] = (float)lo->valuedouble, interval[1] = (float)hi->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "eta")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > 1 ||
            (v->valuedouble > 0 && sampler != DIT_SAMPLER_DDIM)) {
            fail(e, 400, "eta", "eta: a number in [0, 1], for the ddim sampler only");
            goto done;
        }
        eta = v->valuedouble;
    }
    g->png_format = 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "response_format")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || (strcmp(v->valuestring, "b64_json") && strcmp(v->valuestring, "png"))) {
            fail(e, 400, "response_format", "response_format: expected \"b64_json\" or \"png\"");
            goto done;
        }
        g->png_format = !strcmp(v->valuestring, "png");
    }
    g->stream = 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "stream")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) {
            fail(e, 400, "stream", "stream: expected true or false");
            goto done;
        }
        g->stream = cJSON_IsTrue(v);
    }
    const int count = num_labels * (int)n;
    if (g->png_format && (count != 1 || g->stream)) {
        fail(e, 400, "response_format", "response_format \"png\" answers one image without streaming; "
             "use \"b64_json\" for %d images", count);
        goto done;
    }
    if (!(g->job = serve_job_new(count))) {
        fail(e, 503, NULL, "out of memory");
        goto done;
    }
    const uint64_t first_seed = seed >= 0 ? (uint64_t)seed : random_seed();
    for (int k = 0; k < count; k++)   // image k: class k / n, seed first_seed + k, noise index 0
        g->job->items[k] = (dit_sample_item){.label = labels[k / (int)n], .seed = first_seed + (uint64_t)k, .index = 0};
    g->job->opt = (dit_sample_options){.sampler = sampler, .steps = (int)steps, .cfg_scale = (float)cfg_scale,
                                       .eta = (float)eta, .cfg_interval = {interval[0], interval[1]}};
    ok = 1;
done:
    free(labels);
    cJSON_Delete(root);
    return ok;
}

// 1 when the peer closed its end (a recv that peeks sees end of file or an error).
static int client_gone(int fd) {
    if (fd < 0) return 0;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info ? info->connect_fd : -1;
}

// Wait (lock held) up to 100 ms for the queue to report a change.
static void wait_changed(serve_queue *q) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&q->changed, &q->lock, &ts);
}

static int job_finished(const serve_job *j) { return j->state >= JOB_DONE; }

// ---- server-sent events: "progress" {step, total, position} ..., then "result" or "error" ----------------

typedef struct {
    server *s;
    serve_job *job;
    int fd;
    int last_step, last_position, finished;
    char *out;                // pending bytes of the current event
    size_t out_size, out_sent;
} event_stream;

static void stream_set(event_stream *es, const char *event, const char *data) {
    free(es->out);
    size_t n = strlen(event) + strlen(data) + 32;
    es->out = malloc(n);
    es->out_size = es->out ? (size_t)snprintf(es->out, n, "event: %s\ndata: %s\n\n", event, data) : 0;
    es->out_sent = 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    event_stream *es = cls;
    serve_queue *q = &es->s->queue;
    for (;;) {
        if (es->out_sent < es->out_size) {
            size_t n = es->out_size - es->out_sent < max ? es->out_size - es->out_sent : max;
            memcpy(buf, es->out + es->out_sent, n);
            es->out_sent += n;
            return (ssize_t)n;
        }
        if (es->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(es->fd)) {
            serve_job_abandon(q, es->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        pthread_mutex_lock(&q->lock);
        serve_job *j = es->job;
        int position = serve_queue_position(q, j);
        if (!job_finished(j) && j->step == es->last_step && position == es->last_position) wait_changed(q);
        position = serve_queue_position(q, j);
        const int state = j->state, step = j->step, total = j->total;
        pthread_mutex_unlock(&q->lock);
        if (step != es->last_step || (state == JOB_QUEUED && position != es->last_position)) {
            char data[128];   // every step is reported, the last one too, before the result
            snprintf(data, sizeof data, "{\"step\":%d,\"total\":%d,\"queue_position\":%d}", step, total, position);
            stream_set(es, "progress", data);
            es->last_step = step, es->last_position = position;
        } else if (state == JOB_DONE) {
            cJSON *json = result_json(es->s, j);
            char *data = cJSON_PrintUnformatted(json);
            cJSON_Delete(json);
            stream_set(es, "result", data ? data : "{}");
            free(data);
            es->finished = 1;
        } else if (state == JOB_FAILED || state == JOB_CANCELLED) {
            cJSON *json = error_json(500, NULL, state == JOB_CANCELLED ? "cancelled" : j->error);
            char *data = cJSON_PrintUnformatted(json);
            cJSON_Delete(json);
            stream_set(es, "error", data ? data : "{}");
            free(data);
            es->finished = 1;
        }
    }
}

static void stream_free(void *cls) {
    event_stream *es = cls;
    if (!es->finished) serve_job_abandon(&es->s->queue, es->job);
    serve_job_release(&es->s->queue, es->job);
    free(es->out);
    free(es);
}

static enum MHD_Result handle_generation(server *s, struct MHD_Connection *c, request *r) {
    if (r->body_too_large)
        return send_error(c, r, 413, "body", "the body is larger than the server's limit of %zu bytes", s->limits.max_body);
    generation g = {0};
    parse_error e = {0};
    if (!parse_generation(s, r->body ? r->body : "", r->body_size, &g, &e))
        return send_error(c, r, e.status, e.param, "%s", e.message);
    serve_job *j = g.job;
    if (!serve_queue_push(&s->queue, j)) {
        serve_job_release(&s->queue, j);
        return send_error(c, r, 429, "queue", "the queue is full (%d jobs waiting); retry later", s->queue.max_length);
    }
    r->job = j;   // the client's reference, dropped when the request ends
    const int fd = connection_fd(c);
    if (g.stream) {
        event_stream *es = calloc(1, sizeof *es);
        if (!es) return MHD_NO;
        *es = (event_stream){.s = s, .job = j, .fd = fd, .last_step = -1, .last_position = -2};
        serve_job_retain(&s->queue, j);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, es,
                                                                      stream_free);
        if (!resp) {
            stream_free(es);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        return ret;
    }
    // Wait for the job, watching the client: one that hangs up gives its job (and queue slot) back.
    pthread_mutex_lock(&s->queue.lock);
    while (!job_finished(j)) {
        wait_changed(&s->queue);
        if (!job_finished(j) && client_gone(fd)) {
            pthread_mutex_unlock(&s->queue.lock);
            serve_job_abandon(&s->queue, j);
            r->status = 499;
            return MHD_NO;   // closes the connection
        }
    }
    pthread_mutex_unlock(&s->queue.lock);
    if (j->state != JOB_DONE)
        return send_error(c, r, j->state == JOB_CANCELLED ? 503 : 500, NULL, "%s",
                          j->state == JOB_CANCELLED ? "cancelled" : j->error);
    if (g.png_format) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(j->png_size[0], j->png[0], MHD_RESPMEM_MUST_COPY);
        if (!resp) return MHD_NO;
        char seed[32], label[16];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)j->items[0].seed);
        snprintf(label, sizeof label, "%d", j->items[0].label);
        MHD_add_response_header(resp, "Content-Type", "image/png");
        MHD_add_response_header(resp, "X-Dit-Seed", seed);
        MHD_add_response_header(resp, "X-Dit-Class", label);
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        return ret;
    }
    return send_json(c, r, 200, result_json(s, j));
}

// ---- models, health, routing -------------------------------------------------------------------------

static char *make_models_json(const server *s) {
    const dit_config *c = dit_model_config(s->model);
    cJSON *root = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(root, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", s->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    char config[1024];
    if (dit_config_to_json(c, config, sizeof config) == DIT_OK) cJSON_AddItemToObject(m, "config", cJSON_Parse(config));
    cJSON_AddStringToObject(m, "config_name", cli_config_name(c));
    cJSON_AddNumberToObject(m, "params", (double)dit_config_param_count(c));
    cJSON_AddNumberToObject(m, "gflops", dit_config_gmacs(c));
    cJSON_AddNumberToObject(m, "image_size", s->queue.width);
    cJSON_AddNumberToObject(m, "image_channels", s->queue.channels);
    cJSON_AddBoolToObject(m, "guidance", c->class_dropout_prob > 0);
    cJSON *names = cJSON_AddArrayToObject(m, "class_names");
    for (int k = 0; k < c->num_classes; k++) {
        const char *name = dit_model_class_name(s->model, k);
        cJSON_AddItemToArray(names, name ? cJSON_CreateString(name) : cJSON_CreateNull());
    }
    cJSON *samplers = cJSON_AddArrayToObject(m, "samplers");
    for (int k = DIT_SAMPLER_DDPM; k <= DIT_SAMPLER_EULER_MARUYAMA; k++)   // the samplers of the model's objective
        if (dit_sampler_objective((dit_sampler)k) == dit_model_objective(s->model))
            cJSON_AddItemToArray(samplers, cJSON_CreateString(dit_sampler_name((dit_sampler)k)));
    cJSON *limits = cJSON_AddObjectToObject(m, "limits");
    cJSON_AddNumberToObject(limits, "max_images", s->limits.max_images);
    cJSON_AddNumberToObject(limits, "max_steps", s->limits.max_steps);
    cJSON_AddNumberToObject(limits, "max_body_bytes", (double)s->limits.max_body);
    cJSON_AddNumberToObject(limits, "max_queue", s->queue.max_length);
    cJSON_AddNumberToObject(limits, "max_batch_images", s->queue.max_batch_images);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static enum MHD_Result handle_health(server *s, struct MHD_Connection *c, request *r) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", "ok");
    cJSON_AddStringToObject(root, "model", s->model_id);
    pthread_mutex_lock(&s->queue.lock);
    cJSON_AddNumberToObject(root, "queued", s->queue.length);
    cJSON_AddNumberToObject(root, "running", s->queue.running);
    cJSON_AddNumberToObject(root, "completed", (double)s->queue.completed);
    cJSON_AddNumberToObject(root, "failed", (double)s->queue.failed);
    cJSON_AddNumberToObject(root, "cancelled", (double)s->queue.cancelled);
    cJSON_AddNumberToObject(root, "batches", (double)s->queue.batches);
    cJSON_AddNumberToObject(root, "images", (double)s->queue.images_made);
    pthread_mutex_unlock(&s->queue.lock);
    return send_json(c, r, 200, root);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    server *s = cls;
    request *r = *con_cls;
    if (!r) {   // first call: headers only
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->start = now_seconds();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        *con_cls = r;
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > s->limits.max_body) r->body_too_large = 1;
        if (r->body_too_large)   // answer before reading (and before a 100-continue)
            return send_error(c, r, 413, "body", "the body is larger than the server's limit of %zu bytes",
                              s->limits.max_body);
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->body_too_large) {
            if (r->body_size + *upload_data_size > s->limits.max_body) {
                r->body_too_large = 1;
                free(r->body);
                r->body = NULL;
            } else {
                char *grown = realloc(r->body, r->body_size + *upload_data_size + 1);
                if (!grown) return MHD_NO;
                r->body = grown;
                memcpy(r->body + r->body_size, upload_data, *upload_data_size);
                r->body_size += *upload_data_size;
                r->body[r->body_size] = '\0';
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/v1/images/generations")) {
        if (post) return handle_generation(s, c, r);
        return send_error(c, r, 405, NULL, "%s %s: use POST", method, url);
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (get) return send_bytes(c, r, 200, "text/html; charset=utf-8", (void *)dit_serve_page, dit_serve_page_size,
                                   MHD_RESPMEM_PERSISTENT);
    } else if (!strcmp(url, "/v1/models")) {
        if (get) return send_bytes(c, r, 200, "application/json", s->models_json, strlen(s->models_json),
                                   MHD_RESPMEM_PERSISTENT);
    } else if (!strcmp(url, "/health")) {
        if (get) return handle_health(s, c, r);
    } else {
        return send_error(c, r, 404, NULL, "no such path: %s (see GET /v1/models, POST /v1/images/generations)", url);
    }
    return send_error(c, r, 405, NULL, "%s %s: use GET", method, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
    (void)c;
    server *s = cls;
    request *r = *con_cls;
    if (!r) return;
    if (code != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status < 400) r->status = 499;
    if (!r->status) r->status = 499;
    if (r->job) {
        serve_job_abandon(&s->queue, r->job);   // a no-op for finished jobs
        serve_job_release(&s->queue, r->job);
    }
    log_request(r);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void print_help(void) {
    printf("usage: dit serve -m FILE [options]\n"
           "\n"
           "HTTP server for one model: POST /v1/images/generations, GET /v1/models, GET /health, and a web page\n"
           "at / (docs/serve.md). One worker thread owns the model; concurrent requests queue and are batched.\n"
           "\n"
           "  -m, --model FILE        model file (any layout dit sample reads)\n"
           "  --vae FILE              SD VAE for a latent-space model (required for those)\n"
           "  --host ADDR             IPv4 address to listen on (default 127.0.0.1: this machine only)\n"
           "  --port N                TCP port (default 8080; 0 picks a free one)\n"
           "  -t, --threads N         compute threads (default: all cores)\n"
           "  --max-images N          images per request, classes x n (default 16)\n"
           "  --max-steps N           sampler steps per request (default 250)\n"
           "  --max-body N            request body bytes (default 65536)\n"
           "  --max-queue N           jobs waiting; more answer 429 (default 64)\n"
           "  --max-batch N           images sampled together (default 16)\n"
           "  --max-connections N     open connections (default 128)\n"
           "  --heads H, --image-size N   for model files that do not say them\n");
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *vae_path = NULL, *host = "127.0.0.1";
    int port = 8080, threads = 0, max_images = 16, max_steps = 250, max_body = 65536, max_queue = 64, max_batch = 16;
    int max_connections = 128, heads = 0, image_size = 0;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (cli_take(&a, "-m", "--model")) model_path = a.value;
        else if (cli_take(&a, NULL, "--vae")) vae_path = a.value;
        else if (cli_take(&a, NULL, "--host")) host = a.value;
        else if (cli_take_int(&a, NULL, "--port", 0, 65535, &port)) continue;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (cli_take_int(&a, NULL, "--max-images", 1, 1024, &max_images)) continue;
        else if (cli_take_int(&a, NULL, "--max-steps", 1, 1000, &max_steps)) continue;
        else if (cli_take_int(&a, NULL, "--max-body", 64, 16 << 20, &max_body)) continue;
        else if (cli_take_int(&a, NULL, "--max-queue", 1, 100000, &max_queue)) continue;
        else if (cli_take_int(&a, NULL, "--max-batch", 1, 1024, &max_batch)) continue;
        else if (cli_take_int(&a, NULL, "--max-connections", 1, 100000, &max_connections)) continue;
        else if (cli_take_int(&a, NULL, "--heads", 1, 65536, &heads)) continue;
        else if (cli_take_int(&a, NULL, "--image-size", 8, 32768, &image_size)) continue;
        else if (a.failed) return 2;
        else return cli_usage_error("serve: unknown option '%s' (see dit serve --help)", arg);
    }
    if (!model_path) return cli_usage_error("serve: -m FILE is required (see dit serve --help)");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return cli_usage_error("--host: expected an IPv4 address like 127.0.0.1, got '%s'", host);
    dit_load_options opts = {.num_heads = heads, .input_size = image_size / 8};
    server s = {.limits = {.max_images = max_images, .max_steps = max_steps, .max_body = (size_t)max_body}};
    if (!(s.model = dit_model_load(model_path, &opts))) return cli_fail();
    dit_vae *vae = NULL;
    const int C = dit_model_config(s.model)->in_channels;
    if (vae_path && C != 1 && C != 3 && !(vae = dit_vae_load(vae_path, NULL))) {
        cli_fail();
        dit_model_free(s.model);
        return 1;
    }
    const char *slash = strrchr(model_path, '/');
    s.model_id = slash ? slash + 1 : model_path;

    // SIGINT/SIGTERM are taken by sigwait below; every thread started from here on inherits the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (serve_queue_start(&s.queue, s.model, vae, max_queue, max_batch, threads) != DIT_OK) {
        if (strstr(dit_last_error(), "latent-space")) fprintf(stderr, "dit: %s: %s: pass --vae FILE\n", model_path, dit_last_error());
        else cli_fail();
        dit_vae_free(vae);
        dit_model_free(s.model);
        return 1;
    }
    s.models_json = make_models_json(&s);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
        on_request, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
        MHD_OPTION_END);
    int status = 1;
    if (!d) {
        fprintf(stderr, "dit: serve: cannot listen on %s:%d (%s)\n", host, port, strerror(errno));
    } else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
        struct sockaddr_in bound;
        socklen_t len = sizeof bound;
        if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &len) == 0) port = ntohs(bound.sin_port);
        const dit_config *c = dit_model_config(s.model);
        fprintf(stderr, "dit serve: %s (%s, %d classes, %dx%d images), listening on http://%s:%d/\n", s.model_id,
                cli_config_name(c), c->num_classes, s.queue.width, s.queue.height, host, port);
        int sig;
        sigwait(&stop_signals, &sig);
        fprintf(stderr, "dit serve: stopping (signal %d)\n", sig);
        status = 0;
    }
    serve_queue_stop(&s.queue);   // waiting requests answer "the server is stopping"
    if (d) MHD_stop_daemon(d);
    serve_queue_destroy(&s.queue);
    cJSON_free(s.models_json);
    dit_vae_free(vae);
    dit_model_free(s.model);
    return status;
}
