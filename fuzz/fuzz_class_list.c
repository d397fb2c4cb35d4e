// Fuzz target: the CLI's --class list ("3", "1,5,7", "golden retriever,360"; cli_parse_classes in
// src/cli/common.c, resolving ids and names with dit_model_find_class) against a tiny 1000-class model, so
// the built-in ImageNet names and their close-match search are exercised.
#include <string.h>

#include "cli/cli.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    int *labels = NULL, count = 0;
    static dit_model *model;
    if (!model) {
        const dit_config cfg = {.input_size = 2, .patch_size = 1, .in_channels = 1, .hidden_size = 4, .depth = 0,
                                .num_heads = 1, .mlp_ratio = 1.0f, .num_classes = 1000, .class_dropout_prob = 0.1f};
        model = dit_model_synthetic(&cfg, 0);
        if (!model) abort();
    }
    static FILE *null_stream;
    if (!null_stream) null_stream = fopen("/dev/null", "w");
    FILE *saved = stderr;
    if (null_stream) stderr = null_stream;   // usage errors are expected; keep the fuzzer's output readable
    int ok = cli_parse_classes(model, text, &labels, &count);
    stderr = saved;
    if (ok) {
        if (count < 1) abort();
        for (int i = 0; i < count; i++)
            if (labels[i] < 0 || labels[i] >= 1000) abort();
    }
    free(labels);
    free(text);
    return 0;
}
