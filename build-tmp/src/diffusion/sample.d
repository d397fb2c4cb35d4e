build-tmp/src/diffusion/sample.o: src/diffusion/sample.c src/base/error.h \
 include/dit.h src/base/rng.h src/diffusion/diffusion.h
src/base/error.h:
include/dit.h:
src/base/rng.h:
src/diffusion/diffusion.h:
