build-tmp/tests/test_torch_pt.o: tests/test_torch_pt.c src/base/error.h \
 include/dit.h src/base/fileio.h src/io/pickle.h src/io/tensors.h \
 src/io/torch_pt.h src/io/zip.h tests/test.h
src/base/error.h:
include/dit.h:
src/base/fileio.h:
src/io/pickle.h:
src/io/tensors.h:
src/io/torch_pt.h:
src/io/zip.h:
tests/test.h:
