build-tmp/src/ops/precision.o: src/ops/precision.c src/base/error.h \
 include/dit.h src/ops/cpu/cpu_features.h src/ops/dispatch.h \
 src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/ops/cpu/cpu_features.h:
src/ops/dispatch.h:
src/ops/bf16.h:
