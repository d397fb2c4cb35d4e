build-tmp/src/io/pickle.o: src/io/pickle.c src/io/pickle.h include/dit.h \
 src/io/tensors.h src/base/error.h
src/io/pickle.h:
include/dit.h:
src/io/tensors.h:
src/base/error.h:
