build-tmp/tests/test_bf16.o: tests/test_bf16.c include/dit.h \
 include/dit_vae.h include/dit.h src/base/threads.h src/base/error.h \
 src/models/dit_model.h src/ops/dispatch.h src/ops/bf16.h \
 src/ops/cpu/cpu_features.h src/ops/ops.h tests/test.h
include/dit.h:
include/dit_vae.h:
include/dit.h:
src/base/threads.h:
src/base/error.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
src/ops/cpu/cpu_features.h:
src/ops/ops.h:
tests/test.h:
