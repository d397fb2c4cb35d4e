build-tmp/src/api/sample.o: src/api/sample.c src/base/error.h \
 include/dit.h src/base/rng.h src/base/threads.h \
 src/diffusion/diffusion.h include/dit_vae.h include/dit.h \
 src/image/grid.h src/io/tensors.h
src/base/error.h:
include/dit.h:
src/base/rng.h:
src/base/threads.h:
src/diffusion/diffusion.h:
include/dit_vae.h:
include/dit.h:
src/image/grid.h:
src/io/tensors.h:
