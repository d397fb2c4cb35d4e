// `dit train-classifier`: train the Fashion-MNIST classifier whose features and predictions `dit eval --fmnist`
// uses (src/models/classifier.h, src/train/classifier_train.h), and save it as safetensors (F16 by default).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "train/classifier_train.h"

int cmd_train_classifier(int argc, char **argv);

static void print_help(void) {
    printf("usage: dit train-classifier [--data fashion-mnist] [-o FILE] [options]\n"
           "\n"
           "Train the small CNN of `dit eval --fmnist` (conv 32, conv 64, 128 features, 10 classes) on 32x32\n"
           "canvases (28x28 images padded by 2 pixels of -1, as `dit train` sees them); the test accuracy is\n"
           "printed after every epoch and recorded in the file.\n"
           "\n"
           "  --data D          fashion-mnist (default) or a folder of {train,t10k}-*-ubyte[.gz] IDX files\n"
           "  -o, --output FILE default models/fmnist-classifier.safetensors\n"
           "  --epochs N (8)  --batch N (128)  --lr X (1e-3, cosine to 0)  --weight-decay X (1e-4)\n"
           "  --shift N (0)     random shifts up to N pixels;  --no-flip: no random horizontal flips\n"
           "  --seed S (0)  --f32 (store float32 instead of float16)  -t, --threads N\n");
}

static void print_epoch(void *ctx, const classifier_epoch_stats *st) {
    (void)ctx;
    printf("epoch %d/%d  train loss %.4f  train acc %.4f  test acc %.4f  (%.1f s)\n", st->epoch, st->epochs,
           st->train_loss, st->train_accuracy, st->test_accuracy, st->seconds);
    fflush(stdout);
}

int cmd_train_classifier(int argc, char **argv) {
    const char *data = "fashion-mnist", *output = "models/fmnist-classifier.safetensors";
    classifier_train_options o;
    classifier_train_options_default(&o);
    int threads = 0, f32 = 0, seed = 0;
    float f;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (cli_take(&a, NULL, "--data")) data = a.value;
        else if (cli_take(&a, "-o", "--output")) output = a.value;
        else if (cli_take_int(&a, NULL, "--epochs", 1, 1000, &o.epochs)) continue;
        else if (cli_take_int(&a, NULL, "--batch", 1, 65536, &o.batch)) continue;
        else if (cli_take_int(&a, NULL, "--shift", 0, 8, &o.shift)) continue;
        else if (cli_take_int(&a, NULL, "--seed", 0, 2147483647, &seed)) continue;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (cli_take_float(&a, NULL, "--lr", &f)) {
            if (!(f > 0)) return cli_usage_error("--lr: expected a positive number, got '%s'", a.value);
            o.lr = f;
        } else if (cli_take_float(&a, NULL, "--weight-decay", &f)) {
            if (f < 0) return cli_usage_error("--weight-decay: expected a number >= 0, got '%s'", a.value);
            o.weight_decay = f;
        } else if (!strcmp(arg, "--no-flip")) o.hflip = 0;
        else if (!strcmp(arg, "--f32")) f32 = 1;
        else if (a.failed) return 2;
        else return cli_usage_error("train-classifier: unknown argument '%s' (see dit train-classifier --help)", arg);
    }
    o.seed = (uint64_t)seed;
    cli_set_threads(threads);
    classifier_dataset train, test;
    if (classifier_dataset_load(&train, data, 0) != DIT_OK) return cli_fail();
    if (classifier_dataset_load(&test, data, 1) != DIT_OK) {
        classifier_dataset_free(&train);
        return cli_fail();
    }
    classifier_config cfg;
    classifier_config_default(&cfg);
    classifier *c = classifier_create(&cfg);
    if (!c) {
        classifier_dataset_free(&train);
        classifier_dataset_free(&test);
        return cli_fail();
    }
    classifier_train_init_weights(c, o.seed);
    printf("train-classifier: %d training and %d test images (%dx%d on a %dx%d canvas), %lld parameters, "
           "%d epochs of %d batches of %d, %d threads\n", train.count, test.count, train.rows, train.cols,
           cfg.image_size, cfg.image_size, (long long)c->total_floats, o.epochs, train.count / o.batch, o.batch,
           cli_threads());
    fflush(stdout);
    int rc = 0;
    if (classifier_train(c, &train, &test, &o, print_epoch, NULL) != DIT_OK) {
        rc = cli_fail();
        goto done;
    }
    double accuracy;
    if (classifier_accuracy(c, &test, 0, &accuracy) != DIT_OK) {
        rc = cli_fail();
        goto done;
    }
    char train_json[512];
    snprintf(train_json, sizeof train_json,
             "{\"data\": \"%s\", \"epochs\": %d, \"batch\": %d, \"lr\": %g, \"weight_decay\": %g, \"hflip\": %d, "
             "\"shift\": %d, \"seed\": %d, \"test_accuracy\": %.4f, \"test_count\": %d}",
             strchr(data, '"') || strchr(data, '\\') ? "?" : data, o.epochs, o.batch, o.lr, o.weight_decay, o.hflip,
             o.shift, seed, accuracy, test.count);
    const char *names = "[\"T-shirt/top\", \"Trouser\", \"Pullover\", \"Dress\", \"Coat\", \"Sandal\", \"Shirt\", "
                        "\"Sneaker\", \"Bag\", \"Ankle boot\"]";
    const int fashion = !strcmp(data, "fashion-mnist") || strcasestr(data, "fashion");
    if (classifier_save(c, output, f32 ? DT_F32 : DT_F16, fashion ? names : NULL, train_json) != DIT_OK) {
        rc = cli_fail();
        goto done;
    }
    // the stored weights (float16 rounding included) are what `dit eval --fmnist` will use
    classifier *saved = classifier_load(output);
    double stored_accuracy;
    if (!saved || classifier_accuracy(saved, &test, 0, &stored_accuracy) != DIT_OK) {
        classifier_free(saved);
        rc = cli_fail();
        goto done;
    }
    printf("wrote %s (%s, test accuracy %.4f as stored)\n", output, f32 ? "F32" : "F16", stored_accuracy);
    classifier_free(saved);
done:
    classifier_free(c);
    classifier_dataset_free(&train);
    classifier_dataset_free(&test);
    return rc;
}
