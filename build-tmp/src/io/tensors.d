build-tmp/src/io/tensors.o: src/io/tensors.c src/io/tensors.h \
 include/dit.h src/base/error.h
src/io/tensors.h:
include/dit.h:
src/base/error.h:
