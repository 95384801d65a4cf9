#!/bin/bash
# gpu-ab.sh: the working tree against another commit's tree on the same GPU
# machine, alternating. Before the run, here: `bash scripts/gpu-ab.sh --prep
# COMMIT` unpacks COMMIT's sources into .cudawt/base (ignored; pass it to the
# device run as a carried path). On the GPU machine: builds both, then for
# each model in $MODELS (default the synthetic 8B 4-bit), $ROUNDS rounds
# (default 2) of the base, the tree and each environment variant in
# $VARIANTS ("A=1,B=2" = both) of the tree, pp512 then tg128. With $CB
# set (cuda_bench's arguments, e.g. "--int --decode"), first $ROUNDS rounds
# of cuda_bench's one-row table the same way (the lines of formats in
# $CBF, default all), then the models.
if [ "$1" = --prep ]; then
  rm -rf .cudawt/base && mkdir -p .cudawt/base &&
    git archive "$2" Makefile include src tests tools scripts bench | tar -x -C .cudawt/base && echo "base: $(git rev-parse --short "$2")"
  exit $?
fi
source scripts/gpu-env.sh
[ -d .cudawt/base/src ] || { echo "no .cudawt/base: run --prep here and carry .cudawt/base"; exit 1; }
make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
(cd .cudawt/base && make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/bb.log 2>&1) || { tail -30 /tmp/bb.log; exit 1; }
nvidia-smi --query-gpu=name --format=csv,noheader
# variant V (base, - = the tree, or the tree with "A=1,B=2" set) of binary
# B (a path in a build tree): sets bin and e (the environment)
pick() {
  bin=./$2 e=()
  [ "$1" = base ] && bin=./.cudawt/base/$2
  [ "$1" != base ] && [ "$1" != - ] && e=(${1//,/ })
}
if [ -n "${CB:-}" ]; then
  make "${MK[@]}" -j16 build-cuda/bench/cuda_bench >>/tmp/b.log 2>&1 &&
    (cd .cudawt/base && make "${MK[@]}" -j16 build-cuda/bench/cuda_bench >>/tmp/bb.log 2>&1) ||
    { tail -n 30 /tmp/b.log /tmp/bb.log; exit 1; }
  for r in $(seq ${ROUNDS:-2}); do
    for v in base - ${VARIANTS:-}; do
      pick "$v" build-cuda/bench/cuda_bench
      echo "== cuda_bench ${e[*]:-$v} (round $r)"
      env "${e[@]}" $bin $CB 2>&1 | grep -E "copy reference|^(${CBF:-[a-z]})" | grep -E "copy reference|[0-9]+x[0-9]+"
    done
  done
fi
for M in ${MODELS:-synthetic:llama3-8b:q4:g64}; do
  for r in $(seq ${ROUNDS:-2}); do
    for v in base - ${VARIANTS:-}; do
      pick "$v" build-cuda/mlxn
      echo "== $M ${e[*]:-$v}: $(env "${e[@]}" $bin bench -m $M --backend cuda -p 512 -n 128 -r 3 2>&1 |
        grep -E "^tg|launches" | tr -s ' ' | tr '\n' ' ')"
    done
  done
done
