build-tmp/tests/test_diffusion.o: tests/test_diffusion.c src/base/rng.h \
 src/diffusion/diffusion.h include/dit.h src/io/tensors.h tests/test.h
src/base/rng.h:
src/diffusion/diffusion.h:
include/dit.h:
src/io/tensors.h:
tests/test.h:
