build-tmp/tests/test_eval.o: tests/test_eval.c src/base/error.h \
 include/dit.h include/dit_eval.h include/dit.h src/eval/inputs.h \
 src/io/tensors.h src/eval/metrics.h src/models/inception.h tests/test.h \
 src/models/synthetic.h
src/base/error.h:
include/dit.h:
include/dit_eval.h:
include/dit.h:
src/eval/inputs.h:
src/io/tensors.h:
src/eval/metrics.h:
src/models/inception.h:
tests/test.h:
src/models/synthetic.h:
