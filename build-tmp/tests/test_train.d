build-tmp/tests/test_train.o: tests/test_train.c include/dit.h \
 src/base/error.h src/io/tensors.h src/models/dit_model.h \
 src/ops/dispatch.h src/ops/bf16.h tests/test.h src/train/train.h \
 include/dit_vae.h include/dit.h src/diffusion/diffusion.h
include/dit.h:
src/base/error.h:
src/io/tensors.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
tests/test.h:
src/train/train.h:
include/dit_vae.h:
include/dit.h:
src/diffusion/diffusion.h:
