build-tmp/tests/test_io.o: tests/test_io.c src/base/error.h include/dit.h \
 src/base/fileio.h src/io/tensors.h src/io/zip.h tests/test.h
src/base/error.h:
include/dit.h:
src/base/fileio.h:
src/io/tensors.h:
src/io/zip.h:
tests/test.h:
