build-tmp/tests/test_install.o: tests/test_install.c src/io/image.h \
 include/dit.h tests/test.h
src/io/image.h:
include/dit.h:
tests/test.h:
