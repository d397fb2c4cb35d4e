// `dit convert IN OUT.safetensors`: read any supported DiT file and write dit's own format (official keys,
// float32, config JSON in __metadata__), atomically.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dtype = "f32";
    int heads = 0, image_size = 0, skip_ema = 0;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            printf("usage: dit convert IN OUT.safetensors [--dtype f32|f16|bf16] [--no-ema] [--heads H] [--image-size N]\n"
                   "  IN: official .pt, train.py checkpoint or dit training checkpoint (EMA weights), official or\n"
                   "      diffusers safetensors\n"
                   "  --dtype: storage of the weights (default f32; computation is always float32)\n"
                   "  --no-ema: a checkpoint's trained weights instead of its EMA\n");
            return 0;
        }
        if (!strcmp(arg, "--no-ema")) skip_ema = 1;
        else if (cli_take(&a, NULL, "--dtype")) dtype = a.value;
        else if (cli_take_int(&a, NULL, "--heads", 1, 65536, &heads)) continue;
        else if (cli_take_int(&a, NULL, "--image-size", 8, 32768, &image_size)) continue;
        else if (a.failed) return 2;
        else if (arg[0] == '-' && arg[1]) return cli_usage_error("convert: unknown option '%s'", arg);
        else if (!in) in = arg;
        else if (!out) out = arg;
        else return cli_usage_error("convert: too many arguments ('%s')", arg);
    }
    if (!in || !out) return cli_usage_error("convert: usage: dit convert IN OUT.safetensors");
    dit_load_options opts = {.num_heads = heads, .input_size = image_size / 8, .skip_ema = skip_ema};
    dit_model *m = dit_model_load(in, &opts);
    if (!m) return cli_fail();
    dit_status st = dit_model_save_as(m, out, dtype);
    dit_model_free(m);
    if (st != DIT_OK) return cli_fail();
    printf("wrote %s\n", out);
    return 0;
}
