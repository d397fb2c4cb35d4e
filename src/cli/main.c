// The `dit` command: one subcommand per file in src/cli/.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "dist/dist.h"
#include "ops/cpu/blas_core.h"

static void usage(FILE *out) {
    fprintf(out,
            "dit: Scalable Diffusion Models with Transformers, in C\n"
            "\n"
            "usage: dit <command> [options]\n"
            "\n"
            "commands:\n"
            "  info      configuration, parameter count and Gflops of a model file or a named config\n"
            "  forward   one network evaluation on .npy inputs (optionally with classifier-free guidance)\n"
            "  convert   rewrite any supported model file in dit's own safetensors format\n"
            "  sample    class-conditional samples (DDPM, DDIM, DPM-Solver++; Euler, Heun, Euler-Maruyama for flow models),\n"
            "            classifier-free guidance\n"
            "  vae       encode images to DiT latents, decode latents to images (SD KL-f8 autoencoder)\n"
            "  train     train a DiT (IDDPM eps loss or flow matching, AdamW, EMA), resumable checkpoints\n"
            "  cache-latents  encode an image folder (and its mirror images) to a latent cache with the VAE\n"
            "  eval      FID, sFID, Inception Score, precision and recall of samples (ADM's evaluator);\n"
            "            with --fmnist: classifier agreement and feature Frechet distance of Fashion-MNIST samples\n"
            "  train-classifier  train the Fashion-MNIST classifier used by dit eval --fmnist\n"
            "  bench     seconds per forward (or training step) and GFLOP/s of a DiT on this machine\n"
            "  serve     HTTP server and web page for one model (image generation API, progress events)\n"
            "  plot      an SVG figure (dit's own plotter) from a table: one line per series, one panel per column\n"
            "\n"
            "run `dit <command> --help` for its options.\n");
}

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static const struct { const char *name; int (*run)(int, char **); } commands[] = {
        {"info", cmd_info}, {"forward", cmd_forward}, {"convert", cmd_convert}, {"sample", cmd_sample}, {"vae", cmd_vae}, {"train", cmd_train},
        {"cache-latents", cmd_cache_latents}, {"eval", cmd_eval},
        {"train-classifier", cmd_train_classifier}, {"bench", cmd_bench}, {"serve", cmd_serve}, {"plot", cmd_plot},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return cli_run_distributed(commands[i].run, argc - 1, argv + 1);
    fprintf(stderr, "dit: unknown command '%s' (commands: info, forward, convert, sample, vae, train, cache-latents, eval, train-classifier, bench, serve, plot; see dit --help)\n", argv[1]);
    return 2;
}
