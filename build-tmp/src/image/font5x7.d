build-tmp/src/image/font5x7.o: src/image/font5x7.c src/image/grid.h \
 include/dit.h
src/image/grid.h:
include/dit.h:
