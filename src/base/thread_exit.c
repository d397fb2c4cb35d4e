// Hooks run at thread exit (thread_exit.h): a per-thread list of hooks, handed to a POSIX thread-specific key
// whose destructor runs them when the thread ends.
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

#include "base/error.h"
#include "base/thread_exit.h"

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static int exit_key_ok;

static void run_hooks(void *list) {
    for (thread_exit_hook *h = list; h;) {
        thread_exit_hook *next = h->next;
        h->registered = 0;
        h->run(h->arg);
        h = next;
    }
}

static void make_exit_key(void) { exit_key_ok = pthread_key_create(&exit_key, run_hooks) == 0; }

void thread_exit_register(thread_exit_hook *hook) {
    if (hook->registered) return;
    pthread_once(&exit_key_once, make_exit_key);
    if (!exit_key_ok) return;   // no key: the scratch stays until the process ends, as without hooks
    hook->next = pthread_getspecific(exit_key);   // the thread's list so far
    hook->registered = 1;
    pthread_setspecific(exit_key, hook);   // the new head; the destructor walks the list from it
}

static void free_grow_buffer(void *arg) {
    grow_buffer *b = arg;
    free(b->data);
    b->data = NULL, b->bytes = 0;
}

void *grow_buffer_get(grow_buffer *b, size_t bytes) {
    if (b->bytes < bytes) {
        free(b->data);
        b->bytes = 0;
        if (!(b->data = dit_malloc(bytes))) return NULL;
        b->bytes = bytes;
        b->on_exit.run = free_grow_buffer, b->on_exit.arg = b;
        thread_exit_register(&b->on_exit);
    }
    return b->data;
}
