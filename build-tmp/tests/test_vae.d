build-tmp/tests/test_vae.o: tests/test_vae.c include/dit_vae.h \
 include/dit.h src/io/image.h include/dit.h src/io/tensors.h \
 src/models/vae.h src/ops/bf16.h src/ops/conv.h tests/test.h
include/dit_vae.h:
include/dit.h:
src/io/image.h:
include/dit.h:
src/io/tensors.h:
src/models/vae.h:
src/ops/bf16.h:
src/ops/conv.h:
tests/test.h:
