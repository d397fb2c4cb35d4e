build-tmp/tests/http_client.o: tests/http_client.c tests/http_client.h
tests/http_client.h:
