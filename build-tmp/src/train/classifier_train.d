build-tmp/src/train/classifier_train.o: src/train/classifier_train.c \
 src/base/error.h include/dit.h src/train/classifier_train.h \
 src/models/classifier.h src/io/tensors.h src/train/train.h \
 include/dit_vae.h include/dit.h src/diffusion/diffusion.h \
 src/models/dit_model.h src/ops/dispatch.h src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/train/classifier_train.h:
src/models/classifier.h:
src/io/tensors.h:
src/train/train.h:
include/dit_vae.h:
include/dit.h:
src/diffusion/diffusion.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
