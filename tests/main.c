// The test runner: runs every unit in the table below (or those whose name contains argv[1]) and ends
// with "N passed, N failed, N skipped", counted per check (a skip is reported, never counted as a pass).
// Add a unit by declaring it and adding a row.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "ops/cpu/blas_core.h"

void test_io(void);
void test_vae(void);
void test_train(void);
void test_ops(void);
void test_dit(void);
void test_torch_pt(void);
void test_backward(void);
void test_blocks(void);
void test_diffusion(void);
void test_sample_cli(void);
void test_eval(void);
void test_classifier(void);
void test_bf16(void);
void test_fuzz(void);
void test_api(void);
void test_serve(void);
void test_install(void);
void test_dist(void);
void test_oom(void);
void test_flow(void);

static const struct {
    const char *name;
    void (*run)(void);
} units[] = {
    {"io", test_io},
    {"ops", test_ops},
    {"bf16", test_bf16},
    {"dit", test_dit},
    {"torch_pt", test_torch_pt},
    {"backward", test_backward},
    {"blocks", test_blocks},
    {"diffusion", test_diffusion},
    {"sample_cli", test_sample_cli},
    {"vae", test_vae},
    {"train", test_train},
    {"eval", test_eval},
    {"classifier", test_classifier},
    {"fuzz", test_fuzz},
    {"api", test_api},
    {"serve", test_serve},
    {"install", test_install},
    {"dist", test_dist},
    {"oom", test_oom},
    {"flow", test_flow},
};

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    // The parity tests check the float32 path against the reference; AUTO would pick bf16 on CPUs that have
    // it. bf16 tests ask for bf16 explicitly. Children (CLI tests) inherit this.
    setenv("DIT_PRECISION", "fp32", 0);
    const char *filter = argc > 1 ? argv[1] : NULL;
    int ran = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (filter && !strstr(units[i].name, filter)) continue;
        printf("== %s\n", units[i].name);
        fflush(stdout);
        units[i].run();
        ran++;
    }
    int passed, failed, skipped;
    test_counts(&passed, &failed, &skipped);
    if (ran == 0) fprintf(stderr, "test: no unit matches '%s'\n", filter);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed > 0 || ran == 0 ? 1 : 0;
}
