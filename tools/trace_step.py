#!/usr/bin/env python3
"""trace_step.py TRACE — where a replayed decode step's time goes, from the
kernel records of tools/cupti_trace.c. A forward pass starts at each
embedding kernel (get_rows); the decode steps are the passes with the most
common kernel count. In each step the kernels are ordered by end time, and
each is charged what it adds to the step's end (its end minus the end
before it): on a dependent chain that is its cost on the critical path,
whatever ran early before its wait. Prints per kernel (name, grid, block)
the calls a step and the median microseconds added per call and per step."""
import collections, statistics, sys

def short(m):
    if not m.startswith("_Z"):
        return m.split("(")[0]
    i, n = 2, ""
    while i < len(m) and m[i].isdigit():
        n += m[i]; i += 1
    base = m[i:i + int(n)] if n else m
    rest = m[i + int(n):] if n else ""
    if rest.startswith("I"):  # template arguments: keep the integer ones
        args, j = [], 1
        while j < len(rest) and rest[j] == "L":
            k = rest.index("E", j)
            args.append(rest[j + 1:k].lstrip("i").lstrip("b"))
            j = k + 1
        if args:
            base += "<" + ",".join(args) + ">"
    return base

recs = []
for line in open(sys.argv[1]):
    p = line.split(None, 5)
    if len(p) < 6:
        continue
    recs.append((int(p[0]), int(p[1]), int(p[2]), int(p[3]), short(p[5].strip())))
recs.sort()
starts = [i for i, r in enumerate(recs) if "get_rows" in r[4]]
steps = [recs[a:b] for a, b in zip(starts, starts[1:] + [len(recs)])]
if not steps:
    sys.exit("no forward passes found")
cnt = collections.Counter(len(s) for s in steps).most_common(1)[0][0]
dec = [s for s in steps if len(s) == cnt][2:]  # skip the first replays
print(f"{len(steps)} passes, {len(dec)} decode steps used ({cnt} kernels each)")
wall = [(max(r[1] for r in s) - min(r[0] for r in s)) / 1e3 for s in dec]
print(f"step wall (first start to last end): median {statistics.median(wall):.1f} us")
gaps = [(s[i + 1][0] - s[i][0]) / 1e3 for s in dec for i in range(len(s) - 1)]
per = collections.defaultdict(list)
dur = collections.defaultdict(list)
for s in dec:
    e = sorted(s, key=lambda r: r[1])
    prev = e[0][0]
    acc = collections.defaultdict(float)
    calls = collections.Counter()
    for r in e:
        k = (r[4], r[2], r[3])
        acc[k] += max(0, r[1] - prev) / 1e3
        calls[k] += 1
        dur[k].append((r[1] - r[0]) / 1e3)
        prev = max(prev, r[1])
    for k in acc:
        per[k].append((acc[k], calls[k]))
rows = []
for k, v in per.items():
    tot = statistics.median(a for a, _ in v)
    c = v[0][1]
    rows.append((tot, k, c, statistics.median(dur[k])))
rows.sort(reverse=True)
print(f"{'kernel':44s} {'grid':>6s} {'thr':>5s} {'calls':>5s} {'us/step':>8s} {'us/call':>8s} {'dur/call':>8s}")
for tot, k, c, d in rows:
    print(f"{k[0][:44]:44s} {k[1]:6d} {k[2]:5d} {c:5d} {tot:8.1f} {tot / c:8.2f} {d:8.2f}")
print(f"sum {sum(r[0] for r in rows):.1f} us/step")
