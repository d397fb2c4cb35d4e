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

// Print "dit: <message>" for the last library error (or the given text) and return 1.
int cli_fail(void);
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Flag matching: if argv[*i] is `short_name` or `long_name`, store the next argument in *value, advance *i
// and return 1; a missing value is a usage error (returns -1).
int cli_flag_value(int argc, char **argv, int *i, const char *short_name, const char *long_name, const char **value);
int cli_parse_int(const char *flag, const char *text, int min, int max, int *out);
int cli_parse_float(const char *flag, const char *text, float *out);
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
