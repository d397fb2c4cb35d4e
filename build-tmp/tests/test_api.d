build-tmp/tests/test_api.o: tests/test_api.c include/dit.h src/io/image.h \
 tests/test.h
include/dit.h:
src/io/image.h:
tests/test.h:
