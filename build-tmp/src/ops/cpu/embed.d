build-tmp/src/ops/cpu/embed.o: src/ops/cpu/embed.c src/ops/ops.h
src/ops/ops.h:
