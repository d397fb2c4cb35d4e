build-tmp/src/io/safetensors.o: src/io/safetensors.c src/base/error.h \
 include/dit.h src/base/fileio.h src/io/tensors.h
src/base/error.h:
include/dit.h:
src/base/fileio.h:
src/io/tensors.h:
