build-tmp/src/base/error.o: src/base/error.c src/base/error.h \
 include/dit.h
src/base/error.h:
include/dit.h:
