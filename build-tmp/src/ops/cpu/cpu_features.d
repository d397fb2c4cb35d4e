build-tmp/src/ops/cpu/cpu_features.o: src/ops/cpu/cpu_features.c \
 src/ops/cpu/cpu_features.h
src/ops/cpu/cpu_features.h:
