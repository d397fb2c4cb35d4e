build-tmp/bench/bench_train.o: bench/bench_train.c bench/bench_util.h \
 src/base/threads.h include/dit.h src/train/train.h include/dit_vae.h \
 include/dit.h src/diffusion/diffusion.h src/models/dit_model.h \
 src/ops/dispatch.h src/ops/bf16.h
bench/bench_util.h:
src/base/threads.h:
include/dit.h:
src/train/train.h:
include/dit_vae.h:
include/dit.h:
src/diffusion/diffusion.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
