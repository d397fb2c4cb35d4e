// The test runner: runs every unit in the table below (or those whose name contains argv[1]) and ends
// with "N passed, N failed", counted per check. Add a unit by declaring it and adding a row.
#include <stdio.h>
#include <string.h>

#include "test.h"

void test_io(void);
void test_vae(void);
void test_train(void);
void test_ops(void);
void test_dit(void);
void test_torch_pt(void);
void test_backward(void);
void test_diffusion(void);
void test_sample_cli(void);
void test_eval(void);
void test_classifier(void);
void test_dist(void);

static const struct {
    const char *name;
    void (*run)(void);
} units[] = {
    {"io", test_io},
    {"ops", test_ops},
    {"dit", test_dit},
    {"torch_pt", test_torch_pt},
    {"backward", test_backward},
    {"diffusion", test_diffusion},
    {"sample_cli", test_sample_cli},
    {"vae", test_vae},
    {"train", test_train},
    {"eval", test_eval},
    {"classifier", test_classifier},
    {"dist", test_dist},
};

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int ran = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (filter && !strstr(units[i].name, filter)) continue;
        printf("== %s\n", units[i].name);
        fflush(stdout);
        units[i].run();
        ran++;
    }
    int passed, failed;
    test_counts(&passed, &failed);
    if (ran == 0) fprintf(stderr, "test: no unit matches '%s'\n", filter);
    if (test_skipped()) printf("%d passed, %d failed, %d skipped\n", passed, failed, test_skipped());
    else printf("%d passed, %d failed\n", passed, failed);
    return failed > 0 || ran == 0 ? 1 : 0;
}
