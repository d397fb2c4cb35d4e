build-tmp/src/ops/cpu/attention_bf16.o: src/ops/cpu/attention_bf16.c \
 src/base/error.h include/dit.h src/ops/bf16.h src/ops/cpu/fast_exp.h \
 src/ops/dispatch.h
src/base/error.h:
include/dit.h:
src/ops/bf16.h:
src/ops/cpu/fast_exp.h:
src/ops/dispatch.h:
