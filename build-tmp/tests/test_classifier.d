build-tmp/tests/test_classifier.o: tests/test_classifier.c \
 include/dit_eval.h include/dit.h src/io/tensors.h include/dit.h \
 src/models/classifier.h src/ops/conv.h tests/test.h \
 src/train/classifier_train.h
include/dit_eval.h:
include/dit.h:
src/io/tensors.h:
include/dit.h:
src/models/classifier.h:
src/ops/conv.h:
tests/test.h:
src/train/classifier_train.h:
