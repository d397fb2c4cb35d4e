build-tmp/src/dist/dist_single.o: src/dist/dist_single.c src/dist/dist.h \
 include/dit.h
src/dist/dist.h:
include/dit.h:
