build-tmp/src/ops/cpu/pool.o: src/ops/cpu/pool.c src/ops/conv.h
src/ops/conv.h:
