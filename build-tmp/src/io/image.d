build-tmp/src/io/image.o: src/io/image.c src/base/error.h include/dit.h \
 src/io/image.h
src/base/error.h:
include/dit.h:
src/io/image.h:
