build-tmp/src/train/loss.o: src/train/loss.c src/base/rng.h \
 src/train/train.h include/dit.h include/dit_vae.h include/dit.h \
 src/diffusion/diffusion.h src/models/dit_model.h src/ops/dispatch.h \
 src/ops/bf16.h
src/base/rng.h:
src/train/train.h:
include/dit.h:
include/dit_vae.h:
include/dit.h:
src/diffusion/diffusion.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
