// `dit convert IN OUT.safetensors`: read any supported DiT file and write dit's own format (official keys,
// float32, config JSON in __metadata__), atomically.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dtype = "f32", *value;
    int heads = 0, image_size = 0, skip_ema = 0;
    for (int i = 1; i < argc; i++) {
        int r = 0;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: dit convert IN OUT.safetensors [--dtype f32|f16|bf16] [--no-ema] [--heads H] [--image-size N]\n"
                   "  IN: official .pt, train.py checkpoint or dit training checkpoint (EMA weights), official or\n"
                   "      diffusers safetensors\n"
                   "  --dtype: storage of the weights (default f32; computation is always float32)\n"
                   "  --no-ema: a checkpoint's trained weights instead of its EMA\n");
            return 0;
        } else if (!strcmp(argv[i], "--no-ema")) {
            skip_ema = 1;
        } else if ((r = cli_flag_value(argc, argv, &i, NULL, "--dtype", &value)) > 0) {
            dtype = value;
        } else if (!r && (r = cli_flag_value(argc, argv, &i, NULL, "--heads", &value)) > 0) {
            if (!cli_parse_int("--heads", value, 1, 65536, &heads)) return 2;
        } else if (!r && (r = cli_flag_value(argc, argv, &i, NULL, "--image-size", &value)) > 0) {
            if (!cli_parse_int("--image-size", value, 8, 32768, &image_size)) return 2;
        } else if (r < 0) {
            return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error("convert: unknown option '%s'", argv[i]);
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            return cli_usage_error("convert: too many arguments ('%s')", argv[i]);
        }
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
