# dit: build the library, the `dit` command and the tests. `make` probes for OpenMP, OpenBLAS and CUDA
# and says what it found. Targets: all (default), test, asan (tests under ASan+UBSan), bench, run, clean;
# fuzz (libFuzzer, the block at the end).
CC      ?= cc
# x86-64-v3 (AVX2 + FMA) is the floor; AVX-512, AVX512-BF16 and AMX kernels are compiled for their
# instruction sets file by file and chosen by CPUID at run time (src/ops/cpu/cpu_features.c).
OPT     ?= -O3 -march=x86-64-v3
SAN     ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter $(OPT) $(SAN) -g -Iinclude -Isrc
LDFLAGS += $(SAN)
LDLIBS  += -lm
BUILD   ?= build
.DEFAULT_GOAL := all

# ---- dependency probes -------------------------------------------------------------------------
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
HAVE_OPENMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1)
ifeq ($(HAVE_OPENMP),1)
  CFLAGS += -fopenmp
  LDFLAGS += -fopenmp
endif
# Prefer Debian's OpenMP build of OpenBLAS: its threads cooperate with ours instead of oversubscribing.
OPENBLAS_DIR := $(firstword $(wildcard /usr/lib/$(MULTIARCH)/openblas-openmp /usr/lib/$(MULTIARCH)/openblas-pthread))
ifneq ($(OPENBLAS_DIR),)
  HAVE_OPENBLAS := 1
  CFLAGS += -DDIT_HAVE_OPENBLAS
  LDLIBS += -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas
  # LAPACK's dsyevd (FID): Debian's OpenBLAS exports it; a build without it links the reference liblapack.
  HAVE_OPENBLAS_LAPACK := $(shell echo 'void dsyevd_(void); int main(void){dsyevd_(); return 0;}' | $(CC) -x c - -o /dev/null -L$(OPENBLAS_DIR) -lopenblas 2>/dev/null && echo 1)
  ifneq ($(HAVE_OPENBLAS_LAPACK),1)
    LDLIBS += -llapack
  endif
endif
HAVE_NVCC := $(shell command -v nvcc >/dev/null 2>&1 && echo 1)
LDLIBS += -lcjson -lpng -ljpeg -lz

ifneq ($(filter-out setup test run asan clean,$(or $(MAKECMDGOALS),all)),)
$(info dit build: OpenMP=$(if $(HAVE_OPENMP),yes,no) OpenBLAS=$(OPENBLAS_DIR) CUDA(nvcc)=$(if $(HAVE_NVCC),found (no CUDA kernels built yet),no))
endif

# ---- sources -----------------------------------------------------------------------------------
LIB_SRC  := $(sort $(wildcard src/base/*.c src/io/*.c src/image/*.c src/ops/*.c src/ops/cpu/*.c src/models/*.c src/diffusion/*.c src/train/*.c src/eval/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
DEPS     := $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
# the communication layer (src/dist/; MPI or single process, the block "multi-process runs" below)
DIST_SRC := $(sort $(wildcard src/dist/*.c))
LIB_SRC  += $(DIST_SRC)
LIB_OBJ  += $(DIST_SRC:%.c=$(BUILD)/%.o)
DEPS     += $(DIST_SRC:%.c=$(BUILD)/%.d)

# ---- serving and embedding (issue 14): public API objects, shared library, `dit serve`, install -----------
# Objects are position-independent so one set builds libdit.a and libdit.so. Data files are built in
# (scripts/embed.sh): the ImageNet-1k class names into the library, the web page into the command.
CFLAGS   += -fPIC -pthread
LDFLAGS  += -pthread
VERSION  := 0.1.0
SOVERSION := 0
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
API_SRC  := $(sort $(wildcard src/api/*.c))
LIB_OBJ  += $(API_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/imagenet_classes.o
CLI_OBJ  += $(BUILD)/gen/serve_page.o
DEPS     += $(API_SRC:%.c=$(BUILD)/%.d)
SERVE_LIBS := -lmicrohttpd
PUBLIC_HEADERS := include/dit.h include/dit_vae.h include/dit_eval.h

$(BUILD)/gen/imagenet_classes.c: data/imagenet1k-classes.txt scripts/embed.sh
	@mkdir -p $(dir $@)
	bash scripts/embed.sh lines dit_imagenet_classes $< > $@
$(BUILD)/gen/serve_page.c: src/cli/serve_page.html scripts/embed.sh
	@mkdir -p $(dir $@)
	bash scripts/embed.sh bytes dit_serve_page $< > $@
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libdit.so.$(VERSION): $(LIB_OBJ)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libdit.so.$(SOVERSION) -o $@ $^ $(LDLIBS)
# dit.pc is written by install itself, for the PREFIX of that install (a file kept in $(BUILD) would go stale).
DIT_PC = 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: dit\nDescription: Scalable Diffusion Models with Transformers (DiT) in C\nVersion: %s\nLibs: -L$${libdir} -ldit\nLibs.private: %s\nCflags: -I$${includedir}\n'
lib: $(BUILD)/libdit.a $(BUILD)/libdit.so.$(VERSION)

# make install PREFIX=DIR [DESTDIR=...]: dit, libdit.so (soname libdit.so.$(SOVERSION)), libdit.a, headers, dit.pc.
install: $(BUILD)/dit $(BUILD)/libdit.a $(BUILD)/libdit.so.$(VERSION)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/dit $(DESTDIR)$(PREFIX)/bin/dit
	install -m 644 $(BUILD)/libdit.a $(DESTDIR)$(LIBDIR)/libdit.a
	install -m 755 $(BUILD)/libdit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libdit.so.$(VERSION)
	ln -sf libdit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libdit.so.$(SOVERSION)
	ln -sf libdit.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libdit.so
	install -m 644 $(PUBLIC_HEADERS) $(DESTDIR)$(PREFIX)/include/
	printf $(DIT_PC) '$(PREFIX)' '$(LIBDIR)' '$(PREFIX)/include' '$(VERSION)' '$(LDLIBS)' > $(DESTDIR)$(LIBDIR)/pkgconfig/dit.pc
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/dit $(DESTDIR)$(LIBDIR)/libdit.a $(DESTDIR)$(LIBDIR)/libdit.so \
	    $(DESTDIR)$(LIBDIR)/libdit.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libdit.so.$(VERSION) \
	    $(DESTDIR)$(LIBDIR)/pkgconfig/dit.pc $(addprefix $(DESTDIR)$(PREFIX)/include/,$(notdir $(PUBLIC_HEADERS)))

# The install test (tests/test_install.c) reruns make with this build's settings.
check: export DIT_MAKE_ARGS = BUILD=$(BUILD) OPT="$(OPT)" SAN="$(SAN)"
check: export DIT_SAN = $(SAN)

# The serving load test (bench/serve_load.c): 8 clients x 10 requests against a running `dit serve`.
$(BUILD)/serve_load: $(BUILD)/bench/serve_load.o $(BUILD)/tests/http_client.o
	$(CC) $(LDFLAGS) -o $@ $^
serve-load: $(BUILD)/dit $(BUILD)/serve_load
	bash bench/serve_load.sh $(BUILD)
.PHONY: lib install uninstall serve-load
# ---- end of the serving block ------------------------------------------------------------------------
# ---- multi-process runs (issue 12; src/dist/) ---------------------------------------------------------
# MPI when mpicc is found (Debian: openmpi-bin + libopenmpi-dev, installed by scripts/setup.sh): its include and
# link flags are added and src/dist/dist_mpi.c is compiled in; without it `mpirun -np N dit ...` is refused and
# everything runs single-process. MPI=0 builds without it even when found.
MPI ?= 1
HAVE_MPI := $(if $(filter 1,$(MPI)),$(shell command -v mpicc >/dev/null 2>&1 && mpicc --showme:compile >/dev/null 2>&1 && echo 1))
ifeq ($(HAVE_MPI),1)
  CFLAGS += -DDIT_HAVE_MPI $(shell mpicc --showme:compile)
  LDLIBS += $(shell mpicc --showme:link)
endif
ifneq ($(filter-out setup test run asan clean,$(or $(MAKECMDGOALS),all)),)
$(info dit build: MPI=$(if $(HAVE_MPI),yes ($(shell mpirun --version 2>/dev/null | head -1)),no (mpirun -np N dit ... refused; scripts/setup.sh installs Open MPI)))
endif
# (src/dist/ sources are listed with the others at the top: rule prerequisites are expanded where they stand)

.PHONY: all setup test check asan floor bench run demo clean
all: $(BUILD)/dit $(BUILD)/test_dit

# Installs missing Debian packages (build tools, OpenBLAS, cJSON, libpng, zlib); a no-op when all are there.
setup:
	@bash scripts/setup.sh

$(BUILD)/libdit.a: $(LIB_OBJ)
	@test -n "$(OPENBLAS_DIR)" || { echo "dit build: OpenBLAS not found: run scripts/setup.sh" >&2; exit 1; }
	ar rcs $@ $^

$(BUILD)/dit: $(CLI_OBJ) $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SERVE_LIBS)

$(BUILD)/test_dit: $(TEST_OBJ) $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(DEPS)

# Kernels for instruction sets above the floor; only entered after cpu_path_active() says the CPU has them.
BF16_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma
$(BUILD)/src/ops/cpu/gemm_bf16.o $(BUILD)/src/ops/cpu/attention_bf16.o $(BUILD)/src/ops/cpu/conv_bf16.o $(BUILD)/src/ops/cpu/conv_winograd.o $(BUILD)/src/ops/cpu/norm_avx512.o $(BUILD)/src/ops/cpu/channels_last.o: CFLAGS += $(BF16_FLAGS)
$(BUILD)/src/ops/cpu/gemm_amx.o: CFLAGS += $(BF16_FLAGS) -mamx-tile -mamx-bf16
# AdamW's loop calls sqrtf: without errno to set it vectorises (same results: sqrt is exact, and -std=c11 does
# not contract into FMA).
$(BUILD)/src/train/optim.o: CFLAGS += -fno-math-errno

# The README's test command: install what is missing, build, run the suite (the sub-make probes again
# after the install). DIT_BIN lets the CLI tests find the binary of this build.
test: setup
	@$(MAKE) --no-print-directory check
# OMP_WAIT_POLICY=PASSIVE: the CLI tests run several OpenMP processes at once, whose spinning waits starve
# each other on a small machine (a sampling test ran 7x slower).
check: $(BUILD)/dit $(BUILD)/test_dit
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} DIT_BIN=$(BUILD)/dit ./$(BUILD)/test_dit

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build folder.
asan: setup
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" check

# The x86-64-v3 floor: on a CPU with AVX-512, part of the suite and a few commands under QEMU's emulated CPU
# without AVX-512 (scripts/floor_check.sh), so that no AVX-512 instruction leaks onto the fp32 path.
floor: $(BUILD)/dit $(BUILD)/test_dit
	bash scripts/floor_check.sh $(BUILD)

# The README's main command: sample the shipped Fashion-MNIST model into out/fmnist-samples.png
# (scripts/demo.sh; without the model file it shows the paper's configurations and one forward pass).
run: setup
	@$(MAKE) --no-print-directory demo
demo: $(BUILD)/dit
	bash scripts/demo.sh $(BUILD)/dit

# dit vs PyTorch 2.x on the same work (scripts/setup.sh --bench makes bench/.venv): GEMM kernels, the DiT
# forward, the SD VAE decode/encode, one training step; fp32 and bf16 on both sides.
bench: $(BUILD)/dit $(BUILD)/bench_forward $(BUILD)/vae_bench $(BUILD)/bench_train $(BUILD)/bench_gemm $(BUILD)/bench_fusion $(BUILD)/isa_rate $(BUILD)/amx_rate
	$(BUILD)/isa_rate
	$(BUILD)/amx_rate
	bash bench/run_gemm.sh $(BUILD)
	bash bench/run.sh $(BUILD)
	bash bench/run_vae.sh 3
	bash bench/run_train.sh $(BUILD)

$(BUILD)/bench_forward: $(BUILD)/bench/bench_forward.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The autoencoder benchmark (bench/vae_bench.c vs bench/ref_vae.py, run by `make bench` through bench/run_vae.sh).
$(BUILD)/vae_bench: $(BUILD)/bench/vae_bench.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The training-step benchmark (bench/bench_train.c vs bench/ref_train.py, run by `make bench` through bench/run_train.sh).
$(BUILD)/bench_train: $(BUILD)/bench/bench_train.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

clean:
	rm -rf build build-asan

# The GEMM kernels alone (sgemm vs bf16 on every path): build/bench_gemm M N K [repeats].
$(BUILD)/bench_gemm: $(BUILD)/bench/bench_gemm.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# One core's FMA and bf16 dot-product issue rates (what the float32 and AVX512-BF16 kernels can reach).
$(BUILD)/isa_rate: $(BUILD)/bench/isa_rate.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# One core's AMX tile-multiply rate, and dit's AMX micro-kernel by where its operands lie.
$(BUILD)/amx_rate: $(BUILD)/bench/amx_rate.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# One DiT block's bf16 products fed by float32 activations vs by bf16 operands: build/bench_fusion.
$(BUILD)/bench_fusion: $(BUILD)/bench/bench_fusion.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# ---- fuzzing (clang's libFuzzer; scripts/setup.sh --fuzz installs clang) ---------------------------------
# `make fuzz FUZZ_SECONDS=N` builds every fuzz/fuzz_<target>.c against a libdit built by clang with
# AddressSanitizer + UndefinedBehaviorSanitizer + coverage, in build-fuzz/, and runs each target for N seconds
# (fuzz/run.sh; seeds in fuzz/corpus/<target>/, findings in build-fuzz/crashes/). `make fuzz-build` only builds.
FUZZ_SECONDS ?= 30
FUZZ_BUILD   ?= build-fuzz
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
.PHONY: fuzz fuzz-build fuzz-binaries clean-fuzz
fuzz: fuzz-build
	bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)
fuzz-build:
	@bash scripts/setup.sh --fuzz
	@$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD) OPT="-O1 -fno-omit-frame-pointer -Wno-unknown-pragmas -Wno-pass-failed" \
	    SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" fuzz-binaries
fuzz-binaries: $(FUZZ_TARGETS:%=$(BUILD)/fuzz_%)
$(BUILD)/fuzz_%: $(BUILD)/fuzz/fuzz_%.o $(BUILD)/src/cli/common.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)
clean-fuzz:
	rm -rf $(FUZZ_BUILD)

# bf16 vs fp32 on a whole named DiT (the quality bar for random weights): build/precision_check --model DiT-XL/2.
$(BUILD)/precision_check: $(BUILD)/bench/precision_check.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# bf16 vs fp32 on the SD autoencoder, direct and Winograd convs: build/vae_precision --latent 16 --draws 4.
$(BUILD)/vae_precision: $(BUILD)/bench/vae_precision.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- multi-process benchmarks (issue 12; docs/distributed.md) -----------------------------------------
# bench/dist_scaling.sh: 2 ranks x 1 thread vs 1 x 1 on training; build/bench_backward: the backward time that
# the all-reduce could hide behind. Built and run on demand, not by `make bench`.
.PHONY: bench-dist
bench-dist: $(BUILD)/dit $(BUILD)/bench_backward
	bash bench/dist_scaling.sh $(BUILD)

$(BUILD)/bench_backward: $(BUILD)/bench/bench_backward.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
