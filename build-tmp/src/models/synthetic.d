build-tmp/src/models/synthetic.o: src/models/synthetic.c src/base/error.h \
 include/dit.h src/models/dit_model.h src/ops/dispatch.h src/ops/bf16.h \
 src/models/synthetic.h
src/base/error.h:
include/dit.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
src/models/synthetic.h:
