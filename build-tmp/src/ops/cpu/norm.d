build-tmp/src/ops/cpu/norm.o: src/ops/cpu/norm.c src/ops/ops.h
src/ops/ops.h:
