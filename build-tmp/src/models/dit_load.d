build-tmp/src/models/dit_load.o: src/models/dit_load.c src/base/error.h \
 include/dit.h src/io/tensors.h src/io/zip.h src/models/dit_model.h \
 src/ops/dispatch.h src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/io/tensors.h:
src/io/zip.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
