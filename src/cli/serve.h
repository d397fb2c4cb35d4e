// `dit serve` inside: the job queue and the one worker thread that owns the model. HTTP threads (one per
// connection, libmicrohttpd) push jobs and wait on `changed`; the worker batches compatible queued jobs
// (same sampler, steps, guidance) onto one dit_sample call. Only the public API (dit.h) touches the model.
#ifndef DIT_CLI_SERVE_H
#define DIT_CLI_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "dit.h"
#include "dit_vae.h"

typedef enum { JOB_NEW = 0, JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_CANCELLED } serve_job_state;

typedef struct serve_job {
    // the request: set before serve_queue_push, read-only after
    int count;                    // images
    dit_sample_item *items;       // count
    dit_sample_options opt;       // sampler, steps, cfg_scale, eta (progress fields are the worker's)
    // under the queue lock
    serve_job_state state;
    int step, total;              // progress of the batch the job runs in
    int abandoned;                // the client went away: drop the job, or cancel its batch when alone
    int batch_jobs;               // jobs in the batch it ran in (1 = alone)
    char error[512];
    uint8_t **png;                // count PNG images when JOB_DONE
    size_t *png_size;
    int refs;
    double enqueued, started, finished;   // seconds (now_seconds, base/clock.h)
    struct serve_job *next;
} serve_job;

typedef struct serve_queue {
    pthread_mutex_t lock;
    pthread_cond_t changed;       // broadcast on every job state or progress change
    pthread_cond_t work;          // the worker waits here for jobs
    serve_job *head, *tail;
    int length, max_length;       // queued jobs (not running) and the limit
    int max_batch_images;         // images gathered into one dit_sample call
    int stopping;
    dit_model *model;
    dit_vae *vae;
    int height, width, channels;  // of the images
    long completed, failed, cancelled, images_made, batches;
    int running;                  // jobs in the batch being sampled
    int threads;
    pthread_t worker;
} serve_queue;

// threads: compute threads of the worker (<= 0: all cores).
dit_status serve_queue_start(serve_queue *q, dit_model *model, dit_vae *vae, int max_length, int max_batch_images,
                             int threads);
// Stops the worker after its current batch; queued jobs fail with "the server is stopping". Then, once no
// HTTP thread uses the queue, serve_queue_destroy.
void serve_queue_stop(serve_queue *q);
void serve_queue_destroy(serve_queue *q);

serve_job *serve_job_new(int count);
// 1 when queued (the queue holds a reference), 0 when the queue is full or stopping.
int serve_queue_push(serve_queue *q, serve_job *j);
// A client's reference: add one, drop one (the last frees the job).
void serve_job_retain(serve_queue *q, serve_job *j);
void serve_job_release(serve_queue *q, serve_job *j);
// The client is gone: a queued job leaves the queue at once (its slot is free); a running one is cancelled
// when nobody else is in its batch. Idempotent.
void serve_job_abandon(serve_queue *q, serve_job *j);
// Position in the queue (0 = next), -1 when not queued. Under the lock.
int serve_queue_position(const serve_queue *q, const serve_job *j);

#endif
