// Fuzz target: the diffusers config.json read beside diffusers-layout weights (dit_model_load on a folder
// holding the micro test model and the fuzzed config.json). Run from the repository root (make fuzz does).
#include <stdio.h>
#include <string.h>

#include "dit.h"
#include "fuzz.h"

static char dir[] = "/tmp/dit-fuzz-diffusers-XXXXXX", weights[4096], config[4096];

static void remove_folder(void) {
    remove(config);
    remove(weights);
    remove(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (!mkdtemp(dir)) abort();
    atexit(remove_folder);
    snprintf(weights, sizeof weights, "%s/diffusion_pytorch_model.safetensors", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    FILE *in = fopen("tests/golden/layouts/micro_diffusers.safetensors", "rb"), *out = fopen(weights, "wb");
    if (!in || !out) {
        fprintf(stderr, "fuzz_diffusers_config: run from the repository root (needs tests/golden/layouts/)\n");
        abort();
    }
    char buf[65536];
    for (size_t n; (n = fread(buf, 1, sizeof buf, in)) > 0;) fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(config, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
    dit_model *m = dit_model_load(weights, NULL);
    if (m) {
        const dit_config *c = dit_model_config(m);
        if (c->input_size < 1 || c->num_heads < 1 || c->hidden_size % c->num_heads) abort();
        dit_model_free(m);
    }
    return 0;
}
