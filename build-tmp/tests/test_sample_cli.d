build-tmp/tests/test_sample_cli.o: tests/test_sample_cli.c include/dit.h \
 include/dit_vae.h include/dit.h src/io/tensors.h tests/test.h
include/dit.h:
include/dit_vae.h:
include/dit.h:
src/io/tensors.h:
tests/test.h:
