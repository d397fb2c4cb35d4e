build-tmp/src/train/checkpoint.o: src/train/checkpoint.c src/base/error.h \
 include/dit.h src/base/fileio.h src/io/tensors.h src/train/train.h \
 include/dit_vae.h include/dit.h src/diffusion/diffusion.h \
 src/models/dit_model.h src/ops/dispatch.h src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/base/fileio.h:
src/io/tensors.h:
src/train/train.h:
include/dit_vae.h:
include/dit.h:
src/diffusion/diffusion.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
