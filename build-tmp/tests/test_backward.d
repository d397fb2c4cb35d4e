build-tmp/tests/test_backward.o: tests/test_backward.c include/dit.h \
 src/base/error.h src/io/tensors.h src/models/dit_model.h \
 src/ops/dispatch.h src/ops/bf16.h src/ops/ops.h tests/test.h
include/dit.h:
src/base/error.h:
src/io/tensors.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
src/ops/ops.h:
tests/test.h:
