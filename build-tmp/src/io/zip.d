build-tmp/src/io/zip.o: src/io/zip.c src/io/zip.h include/dit.h \
 src/base/error.h
src/io/zip.h:
include/dit.h:
src/base/error.h:
