# mlxn build. `make` builds build/libmlxn.a, build/libmlxn.so and build/mlxn;
# `make test` builds and runs every test; `make run` runs the main job.
# Sources are picked up by wildcard: a new file in a layer folder or a new
# tests/test_*.c needs no Makefile edit.
CC      ?= cc
NVCC    ?= nvcc
CUDA    ?= 0
CUDA_ARCHS ?= 80;86;89;90
ifeq ($(CUDA),1)
BUILD   ?= build-cuda
else
BUILD   ?= build
endif
OPT     ?= -O2
WARN    = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wdouble-promotion -Wno-unused-parameter
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) -g -fPIC -pthread $(WARN) -Iinclude -Isrc $(EXTRA_CFLAGS) $(CFLAGS)
LIBS    = -lcjson -lpcre2-8 -lpthread -lm -ldl
LDFLAGS_ALL = -pthread $(EXTRA_LDFLAGS) $(LDFLAGS)

LIB_SRC = $(sort $(wildcard src/core/*.c src/graph/*.c src/ops/*.c src/backend/cpu/*.c src/io/*.c src/model/*.c))
CLI_SRC = $(sort $(wildcard src/cli/*.c))
TEST_SRC = $(sort $(wildcard tests/test_*.c))
BENCH_SRC = $(sort $(wildcard bench/*.c))

ifeq ($(CUDA),1)
CU_SRC  = $(sort $(wildcard src/backend/cuda/*.cu))
CU_C_SRC = $(sort $(wildcard src/backend/cuda/*.c))
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell which $(NVCC)))
CFLAGS_ALL += -DMLXN_CUDA=1 -I$(CUDA_HOME)/include
NVCC_GENCODE = $(foreach a,$(subst ;, ,$(CUDA_ARCHS)),-gencode arch=compute_$(a),code=sm_$(a))
NVCCFLAGS = -O3 -std=c++17 -Xcompiler -fPIC -Iinclude -Isrc $(NVCC_GENCODE) --expt-relaxed-constexpr -lineinfo $(EXTRA_NVCCFLAGS)
LIBS    += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib64/stubs -lcublas -lcudart -lcuda -lstdc++
else
CU_SRC  =
CU_C_SRC =
endif

LIB_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC) $(CU_C_SRC)) $(patsubst %.cu,$(BUILD)/obj/%.cu.o,$(CU_SRC))
CLI_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRC))
TEST_BIN = $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_BIN = $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
HDRS = $(wildcard include/*.h src/*/*.h src/*/*/*.h tests/*.h)
CUHDRS = $(wildcard src/*/*/*.cuh)

.PHONY: all lib test run clean deps fuzz fuzz-run check-asan check-tsan models goldens-check
all: lib $(BUILD)/mlxn

lib: $(BUILD)/libmlxn.a $(BUILD)/libmlxn.so

$(BUILD)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu $(HDRS) $(CUHDRS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/libmlxn.a: $(LIB_OBJ)
	@mkdir -p $(BUILD)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libmlxn.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS_ALL) $(LIBS)

$(BUILD)/mlxn: $(CLI_OBJ) $(BUILD)/libmlxn.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libmlxn.a $(LDFLAGS_ALL) $(LIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmlxn.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests -o $@ $< $(BUILD)/libmlxn.a $(LDFLAGS_ALL) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libmlxn.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libmlxn.a $(LDFLAGS_ALL) $(LIBS)

test: all $(TEST_BIN)
	@bash scripts/check-lib.sh $(BUILD)
	@bash tests/run.sh $(BUILD)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (+ leaks).
ASAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
check-asan:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	$(MAKE) BUILD=build-asan OPT=-O1 EXTRA_CFLAGS='$(ASAN_FLAGS)' EXTRA_LDFLAGS='$(ASAN_FLAGS)' test

# The suites that run graphs on the CPU thread pool, under ThreadSanitizer
# with two workers (any race reported fails the run). One copy of the
# target_clones kernels: TSan crashes in their resolver.
TSAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer
TSAN_TESTS = test_graph test_ops test_model_llama test_long_run
check-tsan:
	$(MAKE) BUILD=build-tsan OPT=-O1 EXTRA_CFLAGS='$(TSAN_FLAGS) -DMLXN_CLONES=' EXTRA_LDFLAGS='$(TSAN_FLAGS)' \
	  $(patsubst %,build-tsan/tests/%,$(TSAN_TESTS))
	@for t in $(TSAN_TESTS); do \
	  TSAN_OPTIONS=halt_on_error=1 MLXN_THREADS=2 build-tsan/tests/$$t >build-tsan/$$t.log 2>&1 || \
	    { tail -60 build-tsan/$$t.log; echo "check-tsan: $$t failed"; exit 1; }; \
	  echo "check-tsan: $$(tail -1 build-tsan/$$t.log)"; done

run: all
	bash scripts/run-default.sh $(BUILD)

# Regenerate the quantization goldens with the real tools (MLX, gguf-py;
# pinned, from PyPI) into a scratch folder and compare them with the
# committed ones byte for byte (`python3 scripts/gen_quant_goldens.py`
# rewrites them in place).
goldens-check:
	pip install -q "mlx[cpu]==0.32.4" "gguf==0.19.0" numpy
	rm -rf $(BUILD)/golden-quant && mkdir -p $(BUILD)/golden-quant
	GOLDEN_OUT=$(BUILD)/golden-quant python3 scripts/gen_quant_goldens.py
	diff -r $(BUILD)/golden-quant tests/golden/quant && echo "goldens-check: every quantization golden regenerated identically"

deps:
	bash scripts/deps.sh

# libFuzzer targets (clang): build them; run each for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh build
fuzz-run:
	bash scripts/fuzz.sh run $(FUZZ_SECONDS)

clean:
	rm -rf build build-*
