build-tmp/src/train/cache.o: src/train/cache.c src/base/error.h \
 include/dit.h src/base/rng.h src/io/tensors.h src/train/train.h \
 include/dit_vae.h include/dit.h src/diffusion/diffusion.h \
 src/models/dit_model.h src/ops/dispatch.h src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/base/rng.h:
src/io/tensors.h:
src/train/train.h:
include/dit_vae.h:
include/dit.h:
src/diffusion/diffusion.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
