build-tmp/src/io/torch_pt.o: src/io/torch_pt.c src/io/torch_pt.h \
 src/io/tensors.h include/dit.h src/base/error.h src/base/fileio.h \
 src/io/pickle.h src/io/zip.h
src/io/torch_pt.h:
src/io/tensors.h:
include/dit.h:
src/base/error.h:
src/base/fileio.h:
src/io/pickle.h:
src/io/zip.h:
