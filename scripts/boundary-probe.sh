#!/usr/bin/env bash
# boundary-probe.sh — on an sm_90 GPU machine: builds and runs
# bench/probe/boundary.cu (measuring, not part of the library): what a kernel
# boundary costs in a chain of weight-streaming kernels shaped like a decode
# layer's matmuls, against grid barriers inside one persistent kernel. Prints
# the probe's table (see the file's head for the forms).
set -u
cd "$(dirname "$0")/.."
B=${B:-/tmp/mlxn-probe}
mkdir -p "$B"
nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 ${PROBE_FLAGS:-} -o "$B/boundary" bench/probe/boundary.cu >"$B/build.log" 2>&1 ||
  { tail -20 "$B/build.log"; echo "boundary-probe: build failed"; exit 1; }
timeout ${PROBE_TIMEOUT:-120} "$B/boundary"
