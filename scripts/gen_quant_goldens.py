#!/usr/bin/env python3
"""gen_quant_goldens.py — write the quantization goldens in tests/golden/quant/.

Oracles: mlx (mx.quantize / mx.dequantize, CPU) for MLX affine and gguf-py
(gguf.quants.quantize / dequantize) for GGML blocks. Inputs come from a
seeded numpy generator, so re-running writes identical files.

Needs: pip install "mlx[cpu]==0.32.4" "gguf==0.19.0" "numpy" (numpy 2.x).

Files (raw little-endian arrays concatenated, no header; the C tests know the
shapes from the names):
  mlx_b{bits}_g{group}_{dt}.bin   N=4, K=256:
      w f32[N*K] (values of the dt tensor, widened), wq u32[N*K*bits/32],
      scales dt[N*K/group], biases dt[N*K/group], dequantized f32[N*K]
  ggml_deq_{type}.bin             n elements (2048):
      blocks (random bytes, finite scales) then gguf dequantized f32[n]
  ggml_q_{type}.bin               n elements (2048): input f32[n], quantized bytes
  mlx_qmm_b{bits}_g{group}_{dt}[_m40].bin  M=3 (or 40), N=8, K=256: x f32[M*K], wq, scales, biases,
      y = mx.quantized_matmul(x, wq, scales, biases, transpose=True) f32[M*N]
"""
import os
import sys

import numpy as np
import mlx.core as mx
import gguf
from gguf import quants

OUT = os.environ.get("GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                                   "golden", "quant")
N, K = 4, 256
NG = 2048
MXDT = {"f32": mx.float32, "f16": mx.float16, "bf16": mx.bfloat16}
QT = gguf.GGMLQuantizationType


def mlx_input(rng):
    w = rng.standard_normal((N, K)).astype(np.float32)
    w[1] *= 100.0                      # large magnitudes
    w[2, 0:32] = 0.0                   # an all-zero group (q0 == 0 path, scale = -eps)
    w[2, 32:64] = 0.37                 # a constant group
    w[2, 64:128] = rng.uniform(0.5, 1.5, 64)    # all positive
    w[2, 128:256] = -rng.uniform(0.5, 1.5, 128)  # all negative
    w[3] *= 1e-3                       # small magnitudes
    w[3, 0:8] = [0.5, -0.5, 0.25, -0.25, 1.5, -1.5, 0.125, 0.0]
    return w


def write(name, *arrays):
    with open(os.path.join(OUT, name), "wb") as f:
        for a in arrays:
            f.write(np.ascontiguousarray(a).tobytes())


def raw16(a):
    """mx array (f16/bf16/f32) -> numpy raw bytes holder of the same bits."""
    if a.dtype == mx.float32:
        return np.array(a)
    if a.dtype == mx.float16:
        return np.array(a).view(np.uint16)
    return np.array(a.view(mx.uint16))


def gen_mlx(rng):
    for dt in ["f32", "f16", "bf16"]:
        for bits in [2, 3, 4, 5, 6, 8]:
            for g in [32, 64, 128]:
                w = mx.array(mlx_input(rng)).astype(MXDT[dt])
                wq, s, b = mx.quantize(w, group_size=g, bits=bits)
                d = mx.dequantize(wq, s, b, group_size=g, bits=bits).astype(mx.float32)
                write(f"mlx_b{bits}_g{g}_{dt}.bin", np.array(w.astype(mx.float32)),
                      np.array(wq).astype("<u4"), raw16(s), raw16(b), np.array(d))


# offsets of the f16 scale fields in each block type
SCALE_FIELDS = {"q4_0": [0], "q4_1": [0, 2], "q8_0": [0], "q4_k": [0, 2], "q5_k": [0, 2],
                "q6_k": [208]}
TYPES = {"f32": QT.F32, "f16": QT.F16, "bf16": QT.BF16, "q4_0": QT.Q4_0, "q4_1": QT.Q4_1,
         "q8_0": QT.Q8_0, "q4_k": QT.Q4_K, "q5_k": QT.Q5_K, "q6_k": QT.Q6_K}


def gen_ggml_deq(rng):
    for name, qt in TYPES.items():
        be, bb = gguf.GGML_QUANT_SIZES[qt]
        nb = NG // be
        if name == "f32":
            raw = rng.standard_normal(NG).astype(np.float32).view(np.uint8)
        elif name in ("f16", "bf16"):
            bitsv = rng.integers(0, 65536, NG, dtype=np.uint32).astype(np.uint16)
            expmask = 0x7C00 if name == "f16" else 0x7F80
            bitsv[(bitsv & expmask) == expmask] &= 0xBFFF  # no inf/nan
            raw = bitsv.view(np.uint8)
        else:
            raw = rng.integers(0, 256, (nb, bb), dtype=np.uint32).astype(np.uint8)
            for off in SCALE_FIELDS[name]:
                sc = (rng.standard_normal(nb) * 0.02).astype(np.float16)
                raw[:, off:off + 2] = sc.view(np.uint8).reshape(nb, 2)
            raw = raw.reshape(-1)
        deq = quants.dequantize(raw, qt).astype(np.float32).reshape(-1)
        assert deq.size == NG
        write(f"ggml_deq_{name}.bin", raw, deq)


def gen_ggml_q(rng):
    for name in ["f16", "bf16", "q4_0", "q4_1", "q8_0"]:
        x = rng.standard_normal(NG).astype(np.float32)
        x[0:32] = 0.0
        x[32:64] = -0.75
        x[64:96] *= 1e-4
        x[96:128] = np.linspace(-1, 1, 32, dtype=np.float32)
        q = quants.quantize(x.reshape(-1, 256), TYPES[name])
        write(f"ggml_q_{name}.bin", x, np.asarray(q).view(np.uint8).reshape(-1))


def gen_mlx_qmm(rng):
    for bits, g, dt in [(4, 64, "bf16"), (8, 32, "f32"), (4, 128, "f16"), (3, 64, "bf16")]:
        w = mx.array(rng.standard_normal((8, 256)).astype(np.float32)).astype(MXDT[dt])
        wq, s, b = mx.quantize(w, group_size=g, bits=bits)
        x = mx.array(rng.standard_normal((3, 256)).astype(np.float32))
        y = mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=g, bits=bits)
        write(f"mlx_qmm_b{bits}_g{g}_{dt}.bin", np.array(x), np.array(wq).astype("<u4"),
              raw16(s), raw16(b), np.array(y.astype(mx.float32)))
    # added 2026-11-28, after the cases above so their bytes stay as they
    # were: the other widths at M = 3 (decode), and M = 40 (prefill: the
    # packed-panel GEMM) for every width, in the file name as _m40
    for bits, g, dt, m in [(2, 32, "f16", 3), (5, 128, "bf16", 3), (6, 32, "f32", 3), (6, 64, "f16", 3),
                           (2, 128, "bf16", 40), (3, 32, "f16", 40), (4, 64, "bf16", 40), (5, 64, "f32", 40),
                           (6, 128, "bf16", 40), (8, 64, "f16", 40)]:
        w = mx.array(rng.standard_normal((8, 256)).astype(np.float32)).astype(MXDT[dt])
        wq, s, b = mx.quantize(w, group_size=g, bits=bits)
        x = mx.array(rng.standard_normal((m, 256)).astype(np.float32))
        y = mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=g, bits=bits)
        write(f"mlx_qmm_b{bits}_g{g}_{dt}" + (f"_m{m}" if m != 3 else "") + ".bin", np.array(x),
              np.array(wq).astype("<u4"), raw16(s), raw16(b), np.array(y.astype(mx.float32)))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261126)
    gen_mlx(rng)
    gen_ggml_deq(rng)
    gen_ggml_q(rng)
    gen_mlx_qmm(rng)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, mlx {mx.__version__}, "
          f"gguf {getattr(gguf, '__version__', '?')}, numpy {np.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
