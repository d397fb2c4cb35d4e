build-tmp/src/ops/cpu/gemm_amx.o: src/ops/cpu/gemm_amx.c src/ops/bf16.h
src/ops/bf16.h:
