# dit: build the library, the `dit` command and the tests. `make` probes for OpenMP, OpenBLAS and CUDA
# and says what it found. Targets: all (default), test, asan (tests under ASan+UBSan), bench, run, clean.
CC      ?= cc
OPT     ?= -O3 -march=native
SAN     ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter $(OPT) $(SAN) -g -Iinclude -Isrc
LDFLAGS += $(SAN)
LDLIBS  += -lm
BUILD   ?= build

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
LIB_SRC  := $(sort $(wildcard src/base/*.c src/io/*.c src/image/*.c src/ops/cpu/*.c src/models/*.c src/diffusion/*.c src/train/*.c src/eval/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
DEPS     := $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)

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
DIST_SRC := $(sort $(wildcard src/dist/*.c))
LIB_SRC  += $(DIST_SRC)
LIB_OBJ  += $(DIST_SRC:%.c=$(BUILD)/%.o)
DEPS     += $(DIST_SRC:%.c=$(BUILD)/%.d)

.PHONY: all setup test check asan bench run demo clean
all: $(BUILD)/dit $(BUILD)/test_dit

# Installs missing Debian packages (build tools, OpenBLAS, cJSON, libpng, zlib); a no-op when all are there.
setup:
	@bash scripts/setup.sh

$(BUILD)/libdit.a: $(LIB_OBJ)
	@test -n "$(OPENBLAS_DIR)" || { echo "dit build: OpenBLAS not found: run scripts/setup.sh" >&2; exit 1; }
	ar rcs $@ $^

$(BUILD)/dit: $(CLI_OBJ) $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_dit: $(TEST_OBJ) $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(DEPS)

# The README's test command: install what is missing, build, run the suite (the sub-make probes again
# after the install). DIT_BIN lets the CLI tests find the binary of this build.
test: setup
	@$(MAKE) --no-print-directory check
check: $(BUILD)/dit $(BUILD)/test_dit
	DIT_BIN=$(BUILD)/dit ./$(BUILD)/test_dit

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build folder.
asan: setup
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" check

# The README's main command (until the shipped Fashion-MNIST model lands): the configurations of the
# paper, then one real forward pass of a reference-checked model file.
run: setup
	@$(MAKE) --no-print-directory demo
demo: $(BUILD)/dit
	bash scripts/demo.sh $(BUILD)/dit

# dit vs our PyTorch reference on the same work (needs Debian's python3-torch: scripts/setup.sh --bench):
# the DiT forward, the SD VAE decode/encode, one training step.
bench: $(BUILD)/dit $(BUILD)/bench_forward $(BUILD)/vae_bench $(BUILD)/bench_train
	bash bench/run.sh $(BUILD)
	bash bench/run_vae.sh 3
	bash bench/run_train.sh $(BUILD)

$(BUILD)/bench_forward: $(BUILD)/bench/bench_forward.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The autoencoder benchmark (bench/vae_bench.c vs bench/ref_vae.py); built on demand, not run by `make bench`.
$(BUILD)/vae_bench: $(BUILD)/bench/vae_bench.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The training-step benchmark (bench/bench_train.c vs bench/ref_train.py); built on demand, not run by `make bench`.
$(BUILD)/bench_train: $(BUILD)/bench/bench_train.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

clean:
	rm -rf build build-asan

# ---- multi-process benchmarks (issue 12; docs/distributed.md) -----------------------------------------
# bench/dist_scaling.sh: 2 ranks x 1 thread vs 1 x 1 on training; build/bench_backward: the backward time that
# the all-reduce could hide behind. Built and run on demand, not by `make bench`.
.PHONY: bench-dist
bench-dist: $(BUILD)/dit $(BUILD)/bench_backward
	bash bench/dist_scaling.sh $(BUILD)

$(BUILD)/bench_backward: $(BUILD)/bench/bench_backward.o $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
