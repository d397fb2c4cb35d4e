build-tmp/src/models/vae.o: src/models/vae.c src/base/error.h \
 include/dit.h src/models/vae.h include/dit_vae.h include/dit.h \
 src/ops/bf16.h src/ops/conv.h src/ops/dispatch.h src/models/synthetic.h
src/base/error.h:
include/dit.h:
src/models/vae.h:
include/dit_vae.h:
include/dit.h:
src/ops/bf16.h:
src/ops/conv.h:
src/ops/dispatch.h:
src/models/synthetic.h:
