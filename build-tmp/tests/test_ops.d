build-tmp/tests/test_ops.o: tests/test_ops.c src/ops/cpu/fast_exp.h \
 src/ops/ops.h tests/test.h
src/ops/cpu/fast_exp.h:
src/ops/ops.h:
tests/test.h:
