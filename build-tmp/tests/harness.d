build-tmp/tests/harness.o: tests/harness.c src/io/tensors.h include/dit.h \
 tests/test.h
src/io/tensors.h:
include/dit.h:
tests/test.h:
