build-tmp/src/models/inception.o: src/models/inception.c src/base/error.h \
 include/dit.h src/io/tensors.h src/models/inception.h include/dit_eval.h \
 include/dit.h src/ops/conv.h src/models/synthetic.h
src/base/error.h:
include/dit.h:
src/io/tensors.h:
src/models/inception.h:
include/dit_eval.h:
include/dit.h:
src/ops/conv.h:
src/models/synthetic.h:
