build-tmp/tests/test_serve.o: tests/test_serve.c tests/cdp.h \
 tests/http_client.h tests/test.h
tests/cdp.h:
tests/http_client.h:
tests/test.h:
