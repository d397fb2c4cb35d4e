// Running a subcommand as one rank of many (`mpirun -np N dit train|sample|eval ...`): start the
// communicator, run, and on failure end every rank rather than leave the others waiting in a collective.
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "dist/dist.h"

// How long the ranks of a failed command wait for each other before the job is ended from the failing rank:
// when every rank failed the same way (a bad flag), they all arrive and exit normally with the status.
#define FAIL_AGREE_SECONDS 2.0

// The subcommands that share their work between ranks; the others would each do all of it (and write the same
// files), so they refuse to run as one of many.
static int shares_work(int argc, char **argv) {
    if (!strcmp(argv[0], "train") || !strcmp(argv[0], "sample")) return 1;
    if (strcmp(argv[0], "eval")) return 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--fmnist")) return 0;   // the Fashion-MNIST evaluator runs as one process
    return 1;
}

int cli_run_distributed(int (*run)(int, char **), int argc, char **argv) {
    if (dist_init(&argc, &argv) != DIT_OK) {
        fprintf(stderr, "dit: %s\n", dit_last_error());
        return 1;
    }
    dist_comm *c = dist_world();
    if (c->size > 1 && !shares_work(argc, argv)) {
        if (c->rank == 0)
            fprintf(stderr, "dit: %s%s runs as one process: start it without mpirun/srun (train, sample and eval "
                            "share their work between ranks)\n", argv[0], strcmp(argv[0], "eval") ? "" : " --fmnist");
        dist_finalize();
        return 2;
    }
    const int status = run(argc, argv);
    if (c->size > 1 && status != 0) {
        const double timeout = c->timeout_s;
        c->timeout_s = FAIL_AGREE_SECONDS;
        const dit_status agreed = dist_barrier(c);
        c->timeout_s = timeout;
        if (agreed != DIT_OK) {
            // the other ranks are still working (or waiting for this one): stop them all
            fflush(stdout);
            fflush(stderr);
            if (c->ops->abort) c->ops->abort(c, status);
        }
    }
    dist_finalize();
    return status;
}
