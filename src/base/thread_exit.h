// Work to do when a thread ends: freeing the scratch that a thread keeps for itself (thread-local buffers that
// only grow). An OpenMP runtime retires threads when a team shrinks (fewer threads asked for than before);
// without this, each retired thread's scratch would be lost. The main thread's hooks do not run: its
// buffers stay reachable until the process ends.
#ifndef DIT_BASE_THREAD_EXIT_H
#define DIT_BASE_THREAD_EXIT_H

typedef struct thread_exit_hook {
    void (*run)(void *arg);
    void *arg;
    struct thread_exit_hook *next;
    int registered;
} thread_exit_hook;

// Run hook->run(hook->arg) when the calling thread ends. hook must be thread-local (one per thread) and
// outlive the thread's use of it; registering it again is a no-op.
void thread_exit_register(thread_exit_hook *hook);

#endif
