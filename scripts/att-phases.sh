#!/bin/bash
# att-phases.sh (measuring): the decode attention kernel's phases, a block
# at a time, from a build with -DATT_TIMING (globaltimer stamps; block 0
# of a launch prints its own line for launch 300 of the kernel). Runs the
# attention line of `bench ops` (position 4095) and the 8B decode from an
# empty cache and after 4000 tokens; prints, per run, each phase's mean /
# max over the blocks (ns) and how the blocks sat on the SMs. The vector
# form (attn_chunk_v) also splits `chunk` as thread 0 sees it: c_in (to its
# loop), c_loop (its warp's positions), c_half (the half-warps merged and
# the warp's share stored), c_sync1 (waiting for the block's other warps),
# c_w0 (warp 0's weights), c_out (the block's share into block 0). The
# stamps order no memory operations, so arithmetic may cross them.
# EXTRA: more nvcc defines for the build (e.g. "-DATTV_FEXP=0"), B its build
# folder (default build-tm); BUILD_ONLY=1: build, measure nothing.
source scripts/gpu-env.sh
B=${B:-build-tm}
make "${MK[@]}" BUILD=$B "EXTRA_NVCCFLAGS=-DATT_TIMING ${EXTRA:-}" -j16 $B/mlxn >/tmp/b-$B.log 2>&1 || { tail -30 /tmp/b-$B.log; exit 1; }
[ -n "${BUILD_ONLY:-}" ] && exit 0
nvidia-smi --query-gpu=name --format=csv,noheader
M8=${M8:-synthetic:llama3-8b:q4:g64}
summ() {
  grep "^ATT blk" | awk '{ for (i = 2; i < NF; i += 2) v[$i] = $(i + 1);
      n++; sm[v["sm"]]++; s0 = v["start"]; if (n == 1 || s0 < smin) smin = s0; if (s0 > smax) smax = s0;
      split("pre wait cw chunk csync merge hi-lo c_in c_loop c_half c_sync1 c_w0 c_out", ks, " ");
      for (k in ks) { x = v[ks[k]]; sum[ks[k]] += x; if (x > mx[ks[k]]) mx[ks[k]] = x } }
    END { if (!n) { print "  no lines"; exit }
      printf "  %d blocks on %d SMs (most on one: ", n, length(sm); m = 0; for (s in sm) if (sm[s] > m) m = sm[s]; printf "%d); start spread %d ns\n", m, smax - smin;
      split("pre wait cw chunk csync merge hi-lo c_in c_loop c_half c_sync1 c_w0 c_out", ks, " ");
      for (k = 1; k <= 13; k++) if (k <= 7 || sum[ks[k]] > 0) printf "  %-6s mean %8.0f max %8d\n", ks[k], sum[ks[k]] / n, mx[ks[k]] }'
}
for v in ${FORMS:--}; do
  [ "$v" = - ] && e=() || e=("$v")
  echo "== [$v] bench ops attention (position 4095)"
  env "${e[@]}" ./$B/mlxn bench ops --backend cuda --rows 1 --formats q4_0 --shape 4096x4096 2>&1 | tee /tmp/o1.log | summ
  grep "^attention" /tmp/o1.log | head -2
  echo "== [$v] 8B decode, empty cache (launch 300: step ~9)"
  env "${e[@]}" ./$B/mlxn bench -m $M8 --backend cuda -p 0 -n 16 -r 1 2>&1 | summ
  echo "== [$v] 8B decode after 4000 tokens"
  env "${e[@]}" ./$B/mlxn bench -m $M8 --backend cuda -p 0 -n 16 -r 1 -d 4000 2>&1 | summ
done
