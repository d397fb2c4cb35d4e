// Fuzz target: the CLI's --class list ("3" or "1,5,7"; cli_parse_classes in src/cli/common.c).
#include <string.h>

#include "cli/cli.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    int *labels = NULL, count = 0;
    static FILE *null_stream;
    if (!null_stream) null_stream = fopen("/dev/null", "w");
    FILE *saved = stderr;
    if (null_stream) stderr = null_stream;   // usage errors are expected; keep the fuzzer's output readable
    int ok = cli_parse_classes(text, &labels, &count);
    stderr = saved;
    if (ok) {
        if (count < 1) abort();
        for (int i = 0; i < count; i++)
            if (labels[i] < 0 || labels[i] > CLI_MAX_CLASS) abort();
    }
    free(labels);
    free(text);
    return 0;
}
