build-tmp/src/ops/cpu/elementwise.o: src/ops/cpu/elementwise.c \
 src/ops/cpu/fast_exp.h src/ops/ops.h
src/ops/cpu/fast_exp.h:
src/ops/ops.h:
