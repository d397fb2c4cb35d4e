build-tmp/tests/cdp.o: tests/cdp.c tests/cdp.h tests/http_client.h
tests/cdp.h:
tests/http_client.h:
