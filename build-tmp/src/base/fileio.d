build-tmp/src/base/fileio.o: src/base/fileio.c src/base/fileio.h \
 include/dit.h src/base/error.h
src/base/fileio.h:
include/dit.h:
src/base/error.h:
