build-tmp/src/ops/cpu/conv_bf16.o: src/ops/cpu/conv_bf16.c \
 src/base/error.h include/dit.h src/ops/bf16.h
src/base/error.h:
include/dit.h:
src/ops/bf16.h:
