source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/tests/test_cuda_ops >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
./build-cuda/tests/test_cuda_ops 2>&1 | grep -E "FAIL|argmax|passed" | tail -5
M8=synthetic:llama3-8b:q4:g64
./build-cuda/mlxn bench -m $M8 --backend cuda -p 0 -n 128 -r 3 2>&1 | tail -3
which nsys ncu; ls /usr/local/cuda*/bin 2>/dev/null | grep -E "nsys|ncu"; ls /opt/nvidia 2>/dev/null
NSYS=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
  $NSYS profile --cuda-graph-trace=node -o /tmp/tr --force-overwrite true ./build-cuda/mlxn bench -m $M8 --backend cuda -p 0 -n 32 -r 1 >/tmp/nsys.log 2>&1; tail -3 /tmp/nsys.log
  $NSYS stats --report cuda_gpu_kern_sum --format csv -o /tmp/ks /tmp/tr.nsys-rep >/dev/null 2>&1
  ls /tmp/ks*; cut -c1-200 /tmp/ks*.csv | head -40
  
fi
if [ -n "$NSYS" ]; then
  $NSYS stats --report cuda_gpu_trace --format csv -o /tmp/gt /tmp/tr.nsys-rep >/dev/null 2>&1
  ls /tmp/gt*; f=$(ls /tmp/gt*.csv | head -1); tail -n 8000 "$f" | gzip > $OUT/gputrace.csv.gz; ls -la $OUT
fi
