#!/usr/bin/env bash
# The main job behind `make run`. Until the model loader lands this is the
# graph demonstration: one Llama-shaped decode step in every graph mode.
set -euo pipefail
build=${1:-build}
exec "$build/mlxn" graph --layers 4
