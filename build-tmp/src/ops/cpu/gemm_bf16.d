build-tmp/src/ops/cpu/gemm_bf16.o: src/ops/cpu/gemm_bf16.c \
 src/base/error.h include/dit.h src/ops/bf16.h src/ops/cpu/cpu_features.h \
 src/ops/cpu/fast_exp.h
src/base/error.h:
include/dit.h:
src/ops/bf16.h:
src/ops/cpu/cpu_features.h:
src/ops/cpu/fast_exp.h:
