build-tmp/src/io/npy.o: src/io/npy.c src/base/error.h include/dit.h \
 src/base/fileio.h src/io/tensors.h src/io/zip.h
src/base/error.h:
include/dit.h:
src/base/fileio.h:
src/io/tensors.h:
src/io/zip.h:
