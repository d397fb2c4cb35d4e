build-tmp/src/ops/cpu/attention.o: src/ops/cpu/attention.c \
 src/ops/cpu/fast_exp.h src/ops/ops.h
src/ops/cpu/fast_exp.h:
src/ops/ops.h:
