build-tmp/tests/test_fuzz.o: tests/test_fuzz.c src/base/error.h \
 include/dit.h src/io/image.h src/io/pickle.h src/io/tensors.h \
 src/io/zip.h src/models/classifier.h tests/test.h src/train/train.h \
 include/dit_vae.h include/dit.h src/diffusion/diffusion.h \
 src/models/dit_model.h src/ops/dispatch.h src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/io/image.h:
src/io/pickle.h:
src/io/tensors.h:
src/io/zip.h:
src/models/classifier.h:
tests/test.h:
src/train/train.h:
include/dit_vae.h:
include/dit.h:
src/diffusion/diffusion.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
