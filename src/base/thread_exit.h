// Work to do when a thread ends: freeing the scratch that a thread keeps for itself (thread-local buffers that
// only grow). An OpenMP runtime retires threads when a team shrinks (fewer threads asked for than before);
// without this, each retired thread's scratch would be lost. The main thread's hooks do not run: its
// buffers stay reachable until the process ends.
#ifndef DIT_BASE_THREAD_EXIT_H
#define DIT_BASE_THREAD_EXIT_H

#include <stddef.h>

typedef struct thread_exit_hook {
    void (*run)(void *arg);
    void *arg;
    struct thread_exit_hook *next;
    int registered;
} thread_exit_hook;

// Run hook->run(hook->arg) when the calling thread ends. hook must be thread-local (one per thread) and
// outlive the thread's use of it; registering it again is a no-op.
void thread_exit_register(thread_exit_hook *hook);

// A work buffer a thread keeps for itself (declare it _Thread_local) and that only grows, so a steady state
// allocates nothing; freed when its thread ends.
typedef struct {
    void *data;
    size_t bytes;
    thread_exit_hook on_exit;
} grow_buffer;

// At least `bytes` of b (its old contents not kept when it grows); NULL when out of memory (error set).
void *grow_buffer_get(grow_buffer *b, size_t bytes);

#endif
