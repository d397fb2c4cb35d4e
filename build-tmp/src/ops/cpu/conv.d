build-tmp/src/ops/cpu/conv.o: src/ops/cpu/conv.c src/base/error.h \
 include/dit.h src/ops/conv.h src/ops/cpu/cpu_features.h \
 src/ops/cpu/fast_exp.h
src/base/error.h:
include/dit.h:
src/ops/conv.h:
src/ops/cpu/cpu_features.h:
src/ops/cpu/fast_exp.h:
