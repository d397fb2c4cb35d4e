// Shared pieces of the `dit` command: flag parsing, thread setup, and loading inputs from .npy files.
#ifndef DIT_CLI_H
#define DIT_CLI_H

#include "dit.h"

int cmd_info(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_vae(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_cache_latents(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_eval_fmnist(int argc, char **argv);
int cmd_train_classifier(int argc, char **argv);
int cmd_bench(int argc, char **argv);
// `dit info --hw` (cli/hw.c).
int cli_print_hw(void);
int cmd_serve(int argc, char **argv);
int cmd_plot(int argc, char **argv);

// Print "dit: <message>" for the last library error (or the given text) and return 1.
int cli_fail(void);
// The command (never the library) may end on out of memory: cli_or_exit(p) is p, or when p is NULL prints the
// last error as cli_fail does and exits with status 2. dit_xmalloc and friends are the library's allocators
// (base/error.h) through it, DIT_OR_EXIT(call) the same for a call returning DIT_ERR.
void *cli_or_exit(void *p);
#define dit_xmalloc(n) cli_or_exit(dit_malloc(n))
#define dit_xcalloc(n, s) cli_or_exit(dit_calloc((n), (s)))
#define dit_xrealloc(p, n) cli_or_exit(dit_realloc((p), (n)))
#define dit_xstrdup(s) ((char *)cli_or_exit(dit_strdup(s)))
#define DIT_OR_EXIT(call)                          \
    do {                                           \
        if ((call) != DIT_OK) cli_or_exit(NULL);   \
    } while (0)
// Run a subcommand as this process's rank (src/cli/dist_cli.c): dist_init, run, and when the command fails on
// some ranks only, end the whole job (MPI_Abort) so no rank waits for it. Under N > 1 ranks, cli_fail prefixes
// "rank R: " and cli_usage_error prints on rank 0 only (every rank parses the same flags).
int cli_run_distributed(int (*run)(int, char **), int argc, char **argv);
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// A cursor over the arguments for a subcommand's flag loop:
//   for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
//       const char *arg = argv[a.i];
//       if (!strcmp(arg, "--mean")) use_mean = 1;
//       else if (cli_take(&a, "-m", "--model")) model_path = a.value;
//       else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
//       else if (a.failed) return 2;   // the usage error is printed
//       else return cli_usage_error("...: unknown option '%s'", arg);
//   }
typedef struct cli_args {
    int argc;
    char **argv;
    int i;               // the argument being looked at
    const char *value;   // the value of the flag cli_take matched last
    int failed;          // a flag came without its value or with a bad one (the usage error is printed)
} cli_args;
// 1 when argv[a->i] is `short_name` or `long_name` (either may be NULL) and a value follows: a->value is set and
// a->i moves onto it. A matching flag without its value prints the usage error, sets a->failed and returns 0;
// once failed, every call returns 0, so the chain of `else if`s falls through to the `a.failed` check.
int cli_take(cli_args *a, const char *short_name, const char *long_name);
// cli_take with an integer value in [min, max] / a finite number stored in *out: a bad value prints the usage
// error (naming long_name, else short_name), sets a->failed and returns 0.
int cli_take_int(cli_args *a, const char *short_name, const char *long_name, int min, int max, int *out);
int cli_take_float(cli_args *a, const char *short_name, const char *long_name, float *out);
// --precision auto|fp32|bf16 into *out (a bad value prints the usage error and sets a->failed).
int cli_take_precision(cli_args *a, dit_precision *out);
// Set the model's precision; on a CPU that cannot run it, print the error ("dit: ...") and return 0.
int cli_apply_precision(dit_model *m, dit_precision p);
#define CLI_PRECISION_HELP \
    "  --precision P          auto (default: bf16 products where the CPU has a bf16 matrix path, else fp32),\n" \
    "                         fp32 (the exact reference path) or bf16\n"
// Parse a --class value: ids or names, comma-separated ("3", "1,5,7", "golden retriever,360"), each resolved
// against the model (dit_model_find_class: an unknown or ambiguous name lists close matches), appended to
// *labels (realloc'd, *count entries). 0 after printing the error.
#define CLI_MAX_CLASS_LABELS 1000000
int cli_parse_classes(const dit_model *m, const char *text, int **labels, int *count);
// Threads for OpenMP and OpenBLAS; n <= 0 keeps the default (all cores or OMP_NUM_THREADS).
void cli_set_threads(int n);
int cli_threads(void);

// Read a .npy as float32 values (float32/float64/int arrays); *count = number of elements; shape copied out.
float *cli_read_npy_floats(const char *path, const char *what, int *ndim, int64_t shape[8], int64_t *count);
// Read a .npy of labels (integer arrays, or floats holding integers).
int *cli_read_npy_labels(const char *path, const char *what, int64_t *count);
// Write float32 values as .npy with the given shape.
dit_status cli_write_npy_floats(const char *path, const float *data, int ndim, const int64_t *shape);

// A short name for a config: "DiT-XL/2" when it is a named one, else "custom".
const char *cli_config_name(const dit_config *cfg);

#endif
