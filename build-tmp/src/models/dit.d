build-tmp/src/models/dit.o: src/models/dit.c src/base/error.h \
 include/dit.h src/ops/cpu/cpu_features.h src/models/dit_model.h \
 src/ops/dispatch.h src/ops/bf16.h src/ops/ops.h
src/base/error.h:
include/dit.h:
src/ops/cpu/cpu_features.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
src/ops/ops.h:
