build-tmp/src/eval/metrics.o: src/eval/metrics.c src/base/error.h \
 include/dit.h src/eval/metrics.h include/dit_eval.h include/dit.h \
 src/base/threads.h
src/base/error.h:
include/dit.h:
src/eval/metrics.h:
include/dit_eval.h:
include/dit.h:
src/base/threads.h:
