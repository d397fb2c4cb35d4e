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
endif
HAVE_NVCC := $(shell command -v nvcc >/dev/null 2>&1 && echo 1)
LDLIBS += -lcjson -lpng -lz

ifndef HAVE_OPENBLAS
  $(error OpenBLAS not found: install libopenblas-openmp-dev (or run ./scripts/setup.sh))
endif

$(info dit build: OpenMP=$(if $(HAVE_OPENMP),yes,no) OpenBLAS=$(OPENBLAS_DIR) CUDA(nvcc)=$(if $(HAVE_NVCC),found (no CUDA kernels built yet),no))

# ---- sources -----------------------------------------------------------------------------------
LIB_SRC  := $(sort $(wildcard src/base/*.c src/io/*.c src/ops/cpu/*.c src/models/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
DEPS     := $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)

.PHONY: all test asan bench run clean
all: $(BUILD)/dit $(BUILD)/test_dit

$(BUILD)/libdit.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/dit: $(CLI_OBJ) $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_dit: $(TEST_OBJ) $(BUILD)/libdit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(DEPS)

# The test suite; DIT_BIN lets the CLI tests find the binary of this build.
test: $(BUILD)/dit $(BUILD)/test_dit
	DIT_BIN=$(BUILD)/dit ./$(BUILD)/test_dit

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build folder.
asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

bench: $(BUILD)/dit
	bash bench/run.sh

clean:
	rm -rf build build-asan
