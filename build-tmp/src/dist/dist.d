build-tmp/src/dist/dist.o: src/dist/dist.c src/dist/dist.h include/dit.h \
 src/base/error.h
src/dist/dist.h:
include/dit.h:
src/base/error.h:
