// The queue of `dit serve` and its worker: one thread owns the model (which is not thread-safe) and runs
// batches of compatible jobs through the public API (dit_sample, dit_decode_images, dit_png_encode).
// Batching does not change any image: each image's noise is its own (seed, index) (dit.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "cli/serve.h"

serve_job *serve_job_new(int count) {
    serve_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->count = count;
    j->items = calloc((size_t)count, sizeof *j->items);
    j->png = calloc((size_t)count, sizeof *j->png);
    j->png_size = calloc((size_t)count, sizeof *j->png_size);
    if (!j->items || !j->png || !j->png_size) {
        free(j->items), free(j->png), free(j->png_size), free(j);
        return NULL;
    }
    j->refs = 1;   // the client's
    return j;
}

static void job_free(serve_job *j) {
    for (int k = 0; k < j->count; k++) dit_free(j->png[k]);
    free(j->png), free(j->png_size), free(j->items), free(j);
}

// Under the lock.
static void job_release_locked(serve_job *j) {
    if (--j->refs == 0) job_free(j);
}

void serve_job_retain(serve_queue *q, serve_job *j) {
    pthread_mutex_lock(&q->lock);
    j->refs++;
    pthread_mutex_unlock(&q->lock);
}

void serve_job_release(serve_queue *q, serve_job *j) {
    pthread_mutex_lock(&q->lock);
    job_release_locked(j);
    pthread_mutex_unlock(&q->lock);
}

static void unlink_locked(serve_queue *q, serve_job *j) {
    serve_job **p = &q->head, *prev = NULL;
    while (*p && *p != j) prev = *p, p = &(*p)->next;
    if (!*p) return;
    *p = j->next;
    if (q->tail == j) q->tail = prev;
    j->next = NULL;
    q->length--;
}

void serve_job_abandon(serve_queue *q, serve_job *j) {
    pthread_mutex_lock(&q->lock);
    if (!j->abandoned) {
        j->abandoned = 1;
        if (j->state == JOB_QUEUED) {   // free its slot now
            unlink_locked(q, j);
            j->state = JOB_CANCELLED;
            q->cancelled++;
            job_release_locked(j);       // the queue's reference
        }
        pthread_cond_broadcast(&q->changed);
    }
    pthread_mutex_unlock(&q->lock);
}

int serve_queue_push(serve_queue *q, serve_job *j) {
    pthread_mutex_lock(&q->lock);
    int ok = !q->stopping && q->length < q->max_length;
    if (ok) {
        j->refs++;
        j->state = JOB_QUEUED;
        j->enqueued = now_seconds();
        if (q->tail) q->tail->next = j;
        else q->head = j;
        q->tail = j;
        q->length++;
        pthread_cond_signal(&q->work);
    }
    pthread_mutex_unlock(&q->lock);
    return ok;
}

int serve_queue_position(const serve_queue *q, const serve_job *j) {
    int k = 0;
    for (const serve_job *p = q->head; p; p = p->next, k++)
        if (p == j) return k;
    return -1;
}

static int compatible(const serve_job *a, const serve_job *b) {
    return a->opt.sampler == b->opt.sampler && a->opt.steps == b->opt.steps && a->opt.cfg_scale == b->opt.cfg_scale &&
           a->opt.eta == b->opt.eta && a->opt.guide_all_channels == b->opt.guide_all_channels &&
           a->opt.cfg_interval[0] == b->opt.cfg_interval[0] && a->opt.cfg_interval[1] == b->opt.cfg_interval[1];
}

typedef struct {
    serve_queue *q;
    serve_job **jobs;
    int num_jobs;
} batch_progress;

// Progress of a batch into each of its jobs; cancel when every client of the batch is gone.
static int on_progress(void *ctx, int step, int total) {
    batch_progress *b = ctx;
    pthread_mutex_lock(&b->q->lock);
    int alive = 0;
    for (int i = 0; i < b->num_jobs; i++) {
        b->jobs[i]->step = step, b->jobs[i]->total = total;
        alive += !b->jobs[i]->abandoned;
    }
    int stop = alive == 0 || b->q->stopping;
    pthread_cond_broadcast(&b->q->changed);
    pthread_mutex_unlock(&b->q->lock);
    return stop;
}

// Sample, decode and encode the images of a batch (without the lock); 1 on success, else msg is set.
static int run_batch(serve_queue *q, serve_job **jobs, int num_jobs, char *msg, size_t msg_size) {
    int total = 0;
    for (int i = 0; i < num_jobs; i++) total += jobs[i]->count;
    const dit_config *c = dit_model_config(q->model);
    const size_t per_sample = (size_t)c->in_channels * c->input_size * c->input_size;
    const size_t per_image = (size_t)q->channels * q->height * q->width;
    dit_sample_item *items = malloc(sizeof *items * (size_t)total);
    float *samples = malloc(sizeof(float) * per_sample * (size_t)total);
    uint8_t *pixels = malloc(per_image * (size_t)total);
    int ok = items && samples && pixels;
    if (!ok) snprintf(msg, msg_size, "out of memory for %d images", total);
    for (int i = 0, k = 0; ok && i < num_jobs; i++)
        for (int m = 0; m < jobs[i]->count; m++) items[k++] = jobs[i]->items[m];
    batch_progress progress = {q, jobs, num_jobs};
    dit_sample_options opt = jobs[0]->opt;
    opt.batch = q->max_batch_images;
    opt.progress = on_progress;
    opt.progress_ctx = &progress;
    if (ok && (dit_sample(q->model, items, total, &opt, samples) != DIT_OK ||
               dit_decode_images(q->model, q->vae, samples, total, pixels) != DIT_OK)) {
        snprintf(msg, msg_size, "%s", dit_last_error());
        ok = 0;
    }
    for (int i = 0, k = 0; ok && i < num_jobs; i++)
        for (int m = 0; m < jobs[i]->count; m++, k++) {
            if (jobs[i]->abandoned) continue;   // nobody to send it to
            if (dit_png_encode(pixels + per_image * k, q->width, q->height, q->channels, &jobs[i]->png[m],
                               &jobs[i]->png_size[m]) != DIT_OK) {
                snprintf(msg, msg_size, "%s", dit_last_error());
                ok = 0;
                break;
            }
        }
    free(items), free(samples), free(pixels);
    return ok;
}

static void *worker_main(void *arg) {
    serve_queue *q = arg;
    dit_set_num_threads(q->threads);   // OpenMP's thread count is per thread: set it where the compute runs
    serve_job **jobs = malloc(sizeof *jobs * (size_t)(q->max_length + 1));
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->stopping && !q->head) pthread_cond_wait(&q->work, &q->lock);
        if (q->stopping) break;
        // The head job, and the queued jobs that can share its sampler run, up to max_batch_images.
        int num_jobs = 0, images = 0;
        for (serve_job *j = q->head, *next; j; j = next) {
            next = j->next;
            if (num_jobs > 0 && (!compatible(jobs[0], j) || images + j->count > q->max_batch_images)) continue;
            unlink_locked(q, j);
            j->state = JOB_RUNNING;
            j->started = now_seconds();
            jobs[num_jobs++] = j;
            images += j->count;
        }
        for (int i = 0; i < num_jobs; i++) jobs[i]->batch_jobs = num_jobs;
        q->running = num_jobs;
        q->batches++;
        pthread_cond_broadcast(&q->changed);
        pthread_mutex_unlock(&q->lock);

        char msg[512] = "";
        int ok = run_batch(q, jobs, num_jobs, msg, sizeof msg);

        pthread_mutex_lock(&q->lock);
        const double now = now_seconds();
        for (int i = 0; i < num_jobs; i++) {
            serve_job *j = jobs[i];
            j->finished = now;
            if (ok && !j->abandoned) {
                j->state = JOB_DONE;
                q->completed++;
                q->images_made += j->count;
            } else if (j->abandoned) {
                j->state = JOB_CANCELLED;
                q->cancelled++;
            } else {
                j->state = JOB_FAILED;
                snprintf(j->error, sizeof j->error, "%s", msg);
                q->failed++;
            }
            job_release_locked(j);   // the queue's reference
        }
        q->running = 0;
        pthread_cond_broadcast(&q->changed);
    }
    // Stopping: fail whatever is still queued.
    while (q->head) {
        serve_job *j = q->head;
        unlink_locked(q, j);
        j->state = JOB_FAILED;
        snprintf(j->error, sizeof j->error, "the server is stopping");
        job_release_locked(j);
    }
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    free(jobs);
    return NULL;
}

dit_status serve_queue_start(serve_queue *q, dit_model *model, dit_vae *vae, int max_length, int max_batch_images,
                             int threads) {
    memset(q, 0, sizeof *q);
    q->model = model, q->vae = vae, q->max_length = max_length, q->max_batch_images = max_batch_images;
    q->threads = threads;
    if (dit_image_shape(model, vae, &q->height, &q->width, &q->channels) != DIT_OK) return DIT_ERR;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->changed, NULL);
    pthread_cond_init(&q->work, NULL);
    if (pthread_create(&q->worker, NULL, worker_main, q) != 0) {
        fprintf(stderr, "dit: serve: cannot start the worker thread\n");
        return DIT_ERR;
    }
    return DIT_OK;
}

void serve_queue_stop(serve_queue *q) {
    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_cond_broadcast(&q->work);
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->worker, NULL);
}

void serve_queue_destroy(serve_queue *q) {
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->changed);
    pthread_cond_destroy(&q->work);
}
