build-tmp/src/ops/dispatch.o: src/ops/dispatch.c src/ops/dispatch.h \
 include/dit.h src/ops/bf16.h src/base/error.h src/ops/cpu/cpu_features.h \
 src/ops/ops.h
src/ops/dispatch.h:
include/dit.h:
src/ops/bf16.h:
src/base/error.h:
src/ops/cpu/cpu_features.h:
src/ops/ops.h:
