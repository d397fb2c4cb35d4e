build-tmp/src/api/classes.o: src/api/classes.c src/base/error.h \
 include/dit.h src/models/dit_model.h src/ops/dispatch.h src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/models/dit_model.h:
src/ops/dispatch.h:
src/ops/bf16.h:
