build-tmp/src/models/classifier.o: src/models/classifier.c \
 src/base/error.h include/dit.h src/models/classifier.h src/io/tensors.h \
 src/ops/conv.h src/ops/ops.h
src/base/error.h:
include/dit.h:
src/models/classifier.h:
src/io/tensors.h:
src/ops/conv.h:
src/ops/ops.h:
