build-tmp/tests/test_dist.o: tests/test_dist.c src/dist/dist.h \
 include/dit.h include/dit_vae.h include/dit.h src/io/tensors.h \
 src/models/inception.h include/dit_eval.h tests/test.h
src/dist/dist.h:
include/dit.h:
include/dit_vae.h:
include/dit.h:
src/io/tensors.h:
src/models/inception.h:
include/dit_eval.h:
tests/test.h:
