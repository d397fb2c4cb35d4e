build-tmp/src/eval/inputs.o: src/eval/inputs.c src/base/error.h \
 include/dit.h src/base/fileio.h src/eval/inputs.h src/io/tensors.h \
 src/io/image.h src/io/zip.h
src/base/error.h:
include/dit.h:
src/base/fileio.h:
src/eval/inputs.h:
src/io/tensors.h:
src/io/image.h:
src/io/zip.h:
