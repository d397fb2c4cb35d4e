// Fuzz target: the model config JSON of dit's own files (__metadata__["dit.config"], dit_config_from_json),
// then what the loader computes from an accepted config before it allocates anything.
#include <string.h>

#include "dit.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size + 1);
    memcpy(json, data, size);
    json[size] = '\0';
    dit_config cfg;
    if (dit_config_from_json(&cfg, json, "fuzz.json") == DIT_OK) {
        char back[1024];
        if (dit_config_to_json(&cfg, back, sizeof back) != DIT_OK) abort();
        if (dit_config_param_count(&cfg) <= 0 || dit_config_tokens(&cfg) <= 0) abort();
        (void)dit_config_gmacs(&cfg);
    }
    free(json);
    return 0;
}
