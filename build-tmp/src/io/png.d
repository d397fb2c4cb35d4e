build-tmp/src/io/png.o: src/io/png.c src/base/error.h include/dit.h \
 src/base/fileio.h src/io/tensors.h
src/base/error.h:
include/dit.h:
src/base/fileio.h:
src/io/tensors.h:
