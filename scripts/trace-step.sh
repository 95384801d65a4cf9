#!/bin/bash
# trace-step.sh: kernel-level timeline of replayed decode steps on the GPU
# machine (CUPTI activity records; tools/cupti_trace.c, tools/trace_step.py).
# M8 picks the model; extra arguments go to `mlxn bench`; environment
# variants in $VARIANTS ("-" = none) each get a table.
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/b.log 2>&1 || { tail -20 /tmp/b.log; exit 1; }
gcc -shared -fPIC -O2 -I$CUDA_HOME/include tools/cupti_trace.c -L$CUDA_HOME/lib64 -L$CUDA_HOME/extras/CUPTI/lib64 \
    -lcupti -Wl,-rpath,$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/extras/CUPTI/lib64 -o /tmp/libcupti_trace.so ||
    { echo "cupti_trace did not build"; exit 1; }
M8=${M8:-synthetic:llama3-8b:q4:g64}
nvidia-smi --query-gpu=name --format=csv,noheader
for v in ${VARIANTS:--}; do
  if [ "$v" = - ]; then e=(); else e=("$v"); fi
  echo "== ${v}"
  env "${e[@]}" ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 64 -r 1 "$@" 2>&1 | grep -E "^tg"
  env "${e[@]}" CUDA_INJECTION64_PATH=/tmp/libcupti_trace.so MLXN_TRACE_OUT=/tmp/trace.txt \
    ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 64 -r 1 "$@" 2>&1 | grep -E "^tg"
  python3 tools/trace_step.py /tmp/trace.txt
  [ -n "$OUT" ] && cp /tmp/trace.txt "$OUT/trace-$(echo "$v" | tr -c 'a-zA-Z0-9=_\n' _).txt"
done
