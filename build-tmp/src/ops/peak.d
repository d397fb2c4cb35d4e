build-tmp/src/ops/peak.o: src/ops/peak.c src/base/error.h include/dit.h \
 src/ops/bf16.h src/ops/dispatch.h src/ops/ops.h
src/base/error.h:
include/dit.h:
src/ops/bf16.h:
src/ops/dispatch.h:
src/ops/ops.h:
