build-tmp/src/ops/cpu/matmul.o: src/ops/cpu/matmul.c src/ops/ops.h
src/ops/ops.h:
