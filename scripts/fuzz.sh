#!/usr/bin/env bash
# Fuzz the file readers with libFuzzer (clang, -fsanitize=fuzzer,address,undefined).
#   scripts/fuzz.sh build          build build-fuzz/fuzz_{gguf,safetensors,json_config,tokenizer,model_config}
#   scripts/fuzz.sh run SECONDS    build, then fuzz each target for SECONDS
#                                  (default 60); fails on a crash, leak,
#                                  timeout or out-of-memory
#   scripts/fuzz.sh check          build, then run each target once over its
#                                  committed corpus (regressions, no fuzzing)
# Seeds and kept crashers live in fuzz/corpus/<target>/ (committed); new
# inputs found while fuzzing go to build-fuzz/corpus/<target>/ and crashers
# to build-fuzz/artifacts/<target>/ — copy a crasher into fuzz/corpus/ once
# it is fixed. CC (default clang) and FUZZ_FLAGS override the compiler and
# extra libFuzzer flags.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-clang}
OUT=build-fuzz
TARGETS=(fuzz_gguf fuzz_safetensors fuzz_json_config fuzz_tokenizer fuzz_model_config)
CFLAGS=(-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -Wall -Wextra -Wshadow -Wmissing-prototypes -Wdouble-promotion -Wno-unused-parameter
        -Iinclude -Isrc)
LIB_SRC=(src/core/alloc.c src/core/dtype.c src/core/status.c src/io/*.c src/model/tokenizer.c src/model/tok_json.c)
# the model-config target reaches the model layer, which links the rest
FULL_SRC=(src/core/*.c src/graph/*.c src/ops/*.c src/backend/cpu/*.c src/io/*.c src/model/*.c)

build() {
  mkdir -p "$OUT"
  for t in "${TARGETS[@]}"; do
    local src=("${LIB_SRC[@]}")
    [ "$t" = fuzz_model_config ] && src=("${FULL_SRC[@]}")
    "$CC" "${CFLAGS[@]}" -o "$OUT/$t" "fuzz/$t.c" "${src[@]}" -lcjson -lpcre2-8 -lpthread -lm
  done
  echo "built ${TARGETS[*]} in $OUT/"
}

run() {
  local secs=${1:-60} rc=0
  for t in "${TARGETS[@]}"; do
    mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
    local ml=65536
    [ "$t" = fuzz_model_config ] && ml=524288 # its GGUF seed is a whole tiny model
    echo "== $t for ${secs}s"
    if ! "$OUT/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=$ml \
         -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" ${FUZZ_FLAGS:-} \
         "$OUT/corpus/$t" "fuzz/corpus/$t" 2>"$OUT/$t.log"; then
      echo "$t: FAILED (see $OUT/$t.log and $OUT/artifacts/$t/)"; tail -n 40 "$OUT/$t.log"; rc=1
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$OUT/$t.log" | sed "s/^/$t /" || true
  done
  return $rc
}

check() {
  local rc=0
  for t in "${TARGETS[@]}"; do
    if ! "$OUT/$t" -runs=0 -artifact_prefix="$OUT/" "fuzz/corpus/$t" >"$OUT/$t.check.log" 2>&1; then
      echo "$t: corpus regression FAILED"; tail -n 40 "$OUT/$t.check.log"; rc=1
    else
      echo "$t: $(ls "fuzz/corpus/$t" | wc -l) corpus inputs ok"
    fi
  done
  return $rc
}

case "${1:-}" in
  build) build ;;
  run) build; run "${2:-60}" ;;
  check) build; check ;;
  *) echo "usage: $0 build | run [SECONDS] | check" >&2; exit 2 ;;
esac
