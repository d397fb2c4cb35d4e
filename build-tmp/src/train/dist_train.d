build-tmp/src/train/dist_train.o: src/train/dist_train.c src/base/error.h \
 include/dit.h src/dist/dist.h src/models/dit_model.h src/ops/dispatch.h \
 src/ops/bf16.h src/train/train.h include/dit_vae.h include/dit.h \
 src/diffusion/diffusion.h
src/base/error.h:
include/dit.h:
src/dist/dist.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
src/train/train.h:
include/dit_vae.h:
include/dit.h:
src/diffusion/diffusion.h:
