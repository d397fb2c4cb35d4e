build-tmp/src/models/vae_load.o: src/models/vae_load.c src/base/error.h \
 include/dit.h src/io/tensors.h src/io/zip.h src/models/vae.h \
 include/dit_vae.h include/dit.h src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/io/tensors.h:
src/io/zip.h:
src/models/vae.h:
include/dit_vae.h:
include/dit.h:
src/ops/bf16.h:
