build-tmp/src/image/grid.o: src/image/grid.c src/image/grid.h \
 include/dit.h src/base/error.h
src/image/grid.h:
include/dit.h:
src/base/error.h:
