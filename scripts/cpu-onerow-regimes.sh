#!/bin/bash
# cpu-onerow-regimes.sh [RUNS]: issue #3's one-row table on the dev VM, whose
# read bandwidth flips between a slow (~30-50 GB/s) and a fast (~60-80 GB/s)
# regime. Runs `bench ops --rows 1 --bw-each --json` RUNS times (default 6)
# on the 4- and 8-bit formats, 2 threads, then prints each cell's %read per
# regime, sorted: cases the regime moved under (bandwidth_moved) are left
# out, the rest are fast when both readings are >= 60 GB/s, slow when both are
# < 55 GB/s. Output JSON lines are kept in $OUT (default /tmp/onerow-regimes).
set -e
B=${B:-./build/mlxn}
RUNS=${1:-6}
OUT=${OUT:-/tmp/onerow-regimes}
FORMATS=${FORMATS:-mlx-q4-g64,mlx-q8-g64,q4_0,q4_1,q8_0,q4_k}
mkdir -p "$OUT"
for r in $(seq "$RUNS"); do
  flock /tmp/mlxn-bench.lock "$B" bench ops --rows 1 --bw-each --json --threads 2 --formats "$FORMATS" \
    > "$OUT/run$r.json"
  echo "run $r of $RUNS done" >&2
done
python3 - "$OUT" "$RUNS" <<'PY'
import json, sys, collections
out, runs = sys.argv[1], int(sys.argv[2])
cells = collections.defaultdict(lambda: ([], []))
moved = total = 0
for r in range(1, runs + 1):
    with open(f"{out}/run{r}.json") as f:
        d = json.load(f)
    for c in d["results"]:
        if c.get("op") != "matmul":
            continue
        total += 1
        if c.get("bandwidth_moved"):
            moved += 1
            continue
        lo, hi = sorted((c["read_gbps_before"], c["read_gbps_after"]))
        pct = round(100 * c["gbps"] / c["read_gbps"])
        key = (c["format"], f'{c["n"]}x{c["k"]}')
        if lo >= 60: cells[key][0].append(pct)
        elif hi < 55: cells[key][1].append(pct)
shapes = ["4096x4096", "4096x14336", "14336x4096", "32000x4096"]
fmts = list(dict.fromkeys(k[0] for k in cells))
print(f"{total} cases, {moved} left out as moved; cell: fast (>= 60 GB/s) ; slow (< 55 GB/s), %read sorted")
print("| format | " + " | ".join(shapes) + " |")
print("|---" * (len(shapes) + 1) + "|")
for f in fmts:
    row = []
    for s in shapes:
        fa, sl = cells.get((f, s), ([], []))
        row.append(("/".join(map(str, sorted(fa))) or "-") + " ; " + ("/".join(map(str, sorted(sl))) or "-"))
    print(f"| {f} | " + " | ".join(row) + " |")
PY
