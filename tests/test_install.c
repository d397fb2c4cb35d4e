// `make install PREFIX=...` into a scratch prefix: the command, libdit.so (versioned soname), libdit.a, the
// public headers and dit.pc; examples/embed.c built with `pkg-config --cflags --libs dit` against the
// installed library and run (sampling with progress, cancellation); `make uninstall` removes it all.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/image.h"
#include "test.h"

void test_install(void) {
    const char *make_args = getenv("DIT_MAKE_ARGS");   // set by `make check` (BUILD, OPT, SAN of this build)
    const char *san = getenv("DIT_SAN");
    if (!make_args) make_args = "BUILD=build";
    char prefix[1024], cmd[8192], *out = NULL;
    snprintf(prefix, sizeof prefix, "%s", scratch_path("prefix"));
    snprintf(cmd, sizeof cmd, "make -s --no-print-directory %s install PREFIX=%s", make_args, prefix);
    int rc = run_command(cmd, &out);
    if (!CHECK(rc == 0, "make install PREFIX=%s (exit %d)", prefix, rc)) {
        printf("%s\n", out ? out : "");
        free(out);
        return;
    }
    free(out);
    static const char *const files[] = {"bin/dit", "lib/libdit.so", "lib/libdit.so.0", "lib/libdit.so.0.1.0",
                                        "lib/libdit.a", "include/dit.h", "include/dit_vae.h", "lib/pkgconfig/dit.pc"};
    int all = 1;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s", prefix, files[i]);
        if (access(cmd, R_OK) != 0) {
            printf("missing %s\n", cmd);
            all = 0;
        }
    }
    CHECK(all, "installed: bin/dit, lib/libdit.so -> .so.0 -> .so.0.1.0, lib/libdit.a, include/dit.h, dit_vae.h, dit.pc");
    snprintf(cmd, sizeof cmd, "cat %s/lib/pkgconfig/dit.pc", prefix);
    rc = run_command(cmd, &out);
    char want_prefix[1100];
    snprintf(want_prefix, sizeof want_prefix, "prefix=%s\n", prefix);
    CHECK(rc == 0 && !strncmp(out, want_prefix, strlen(want_prefix)), "dit.pc names this install's prefix");
    free(out);
    snprintf(cmd, sizeof cmd, "readelf -d %s/lib/libdit.so.0.1.0", prefix);
    rc = run_command(cmd, &out);
    CHECK(rc == 0 && strstr(out, "Library soname: [libdit.so.0]"), "libdit.so.0.1.0 has the soname libdit.so.0");
    free(out);

    char exe[1100];
    snprintf(exe, sizeof exe, "%s/embed", prefix);
    snprintf(cmd, sizeof cmd, "PKG_CONFIG_PATH=%s/lib/pkgconfig; export PKG_CONFIG_PATH; "
             "${CC:-cc} -std=c11 -Wall -Wextra -Werror %s examples/embed.c $(pkg-config --cflags --libs dit) "
             "-Wl,-rpath,%s/lib -o %s", prefix, san ? san : "", prefix, exe);
    rc = run_command(cmd, &out);
    CHECK(rc == 0, "examples/embed.c builds with pkg-config --cflags --libs dit alone (exit %d) %s", rc, rc ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "ldd %s", exe);
    rc = run_command(cmd, &out);
    char want[1200];
    snprintf(want, sizeof want, "%s/lib/libdit.so.0", prefix);
    CHECK(rc == 0 && strstr(out, want), "the example runs on the installed %s", want);
    free(out);

    char png[1100];
    snprintf(png, sizeof png, "%s/sneaker.png", prefix);
    snprintf(cmd, sizeof cmd, "%s %s %s sneaker", exe, repo_path("models/dit-fmnist.safetensors"), png);
    rc = run_command(cmd, &out);
    image_u8 im = {0};
    CHECK(rc == 0 && strstr(out, "step 0/10") && strstr(out, "step 10/10") && strstr(out, "class 7 (Sneaker)") &&
              image_read_rgb(png, &im) == 0 && im.width == 32 && im.height == 32,
          "the example samples a Sneaker with progress 0..10/10 and writes a 32x32 PNG (exit %d)", rc);
    image_free(&im);
    free(out);
    snprintf(cmd, sizeof cmd, "%s %s %s sneaker --cancel-at 3", exe, repo_path("models/dit-fmnist.safetensors"), png);
    rc = run_command(cmd, &out);
    CHECK(rc == 3 && strstr(out, "step 3/10") && !strstr(out, "step 4/10") && strstr(out, "sampling cancelled"),
          "the example's progress callback cancels at step 3 (exit %d)", rc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s %s %s sneakr", exe, repo_path("models/dit-fmnist.safetensors"), png);
    rc = run_command(cmd, &out);
    CHECK(rc == 1 && strstr(out, "close matches: 7 Sneaker"), "an unknown class through the library: %s", out);
    free(out);

    snprintf(cmd, sizeof cmd, "make -s --no-print-directory %s uninstall PREFIX=%s", make_args, prefix);
    rc = run_command(cmd, NULL);
    int left = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s", prefix, files[i]);
        left += access(cmd, F_OK) == 0;
    }
    CHECK(rc == 0 && left == 0, "make uninstall removes every installed file (%d left)", left);
}
