build-tmp/tests/test_dit.o: tests/test_dit.c include/dit.h \
 src/io/tensors.h src/models/dit_model.h src/ops/dispatch.h \
 src/ops/bf16.h tests/test.h
include/dit.h:
src/io/tensors.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
tests/test.h:
