build-tmp/src/models/dit_backward.o: src/models/dit_backward.c \
 src/base/error.h include/dit.h src/base/threads.h src/models/dit_model.h \
 src/ops/dispatch.h src/ops/bf16.h src/ops/ops.h
src/base/error.h:
include/dit.h:
src/base/threads.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
src/ops/ops.h:
