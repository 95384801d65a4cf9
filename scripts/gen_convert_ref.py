#!/usr/bin/env python3
"""Reference logits for `mlxn convert` of an HF model to MLX 4-bit.

    python3 scripts/gen_convert_ref.py [MODEL_DIR ...]

MODEL_DIR defaults to both tiny models written by gen_tiny_models.py:
  tests/data/models/llama   bf16 safetensors, untied head
  tests/data/models/qwen3   f32 safetensors, tied head, q/k norm, head_dim 32

For each, every tensor `mlxn convert` quantizes (convert.c `quantizable`:
2-D float `*.weight` whose name contains `_proj.weight`, `embed_tokens.weight`
or `lm_head.weight`, and whose K splits into groups of 32) is quantized with
MLX itself: mx.quantize(a, group_size=32, bits=4) with `a` in the tensor's
stored dtype, so scales/biases are in that dtype exactly as mlxn writes them
(llama: bf16; qwen3: f32), then dequantized with mx.dequantize (MLX's own
arithmetic, results in that same dtype). Everything else (the norms,
qwen3's q_norm/k_norm) stays as stored. A tied head is no tensor of its
own: it is the embedding, so it gets the quantized embedding here as it
does in mlxn (and mlx-lm: QuantizedEmbedding.as_linear). PyTorch float32
then runs on those weights and the logits of the usual 12-token prompt go
to MODEL_DIR/ref_mlx_q4.bin (ref.bin layout, little endian: int32 T,
int32 V, int32 tokens[T], float32 logits[T][V]).

Deterministic: no randomness, only the committed weights; the quantized
weights are MLX's exactly. The logits' last f32 bits depend on the PyTorch
build and CPU kernels (torch 2.15.0 on an AVX2 host reproduces the
committed llama file only to within 6e-7, as it does the ref.bin files of
gen_tiny_models.py; the thread count makes no difference), far inside the
test's 1e-4 tolerance. qwen3/ref_mlx_q4.bin was written with torch 2.15.0,
transformers 5.24.0, mlx 0.32.4 (AVX2). Needs mlx[cpu]==0.32.4, torch,
transformers, safetensors, numpy (CPU only).
"""
import os
import struct
import sys

import mlx.core as mx
import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DIRS = ["tests/data/models/llama", "tests/data/models/qwen3"]
PROMPT = [1, 17, 42, 99, 3, 250, 128, 7, 64, 200, 5, 31]
BITS, GROUP = 4, 32
MX_DTYPE = {torch.bfloat16: mx.bfloat16, torch.float16: mx.float16, torch.float32: mx.float32}


def quantizable(name, t):
    """convert.c quantizable() plus its K % group / K * bits % 32 test."""
    if t.dim() != 2 or not t.is_floating_point() or not name.endswith(".weight"):
        return False
    if not ("_proj.weight" in name or "embed_tokens.weight" in name or "lm_head.weight" in name):
        return False
    K = t.shape[1]
    return K % GROUP == 0 and (K * BITS) % 32 == 0


def mlx_roundtrip(w):
    """w: the tensor as stored (its own dtype). MLX quantize -> dequantize
    with scales/biases in that dtype; returned as float32 (exact)."""
    a = mx.array(w.to(torch.float32).numpy()).astype(MX_DTYPE[w.dtype])
    wq, s, b = mx.quantize(a, group_size=GROUP, bits=BITS)
    assert s.dtype == a.dtype and b.dtype == a.dtype
    d = mx.dequantize(wq, s, b, group_size=GROUP, bits=BITS)
    return torch.from_numpy(np.array(d.astype(mx.float32)))


def reference(d):
    with safe_open(os.path.join(d, "model.safetensors"), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
    params = dict(model.named_parameters(remove_duplicate=False))
    done = []
    with torch.no_grad():
        for name in sorted(stored):
            if quantizable(name, stored[name]):
                params[name].copy_(mlx_roundtrip(stored[name]))
                done.append(name)
        if model.config.tie_word_embeddings:
            assert "lm_head.weight" not in stored
            head, emb = model.get_output_embeddings().weight, model.get_input_embeddings().weight
            assert head.data_ptr() == emb.data_ptr(), "tied head is not the embedding"
        logits = model(torch.tensor([PROMPT])).logits[0].float().numpy()
    dtypes = sorted({str(stored[n].dtype).replace("torch.", "") for n in done})
    print("%s: %d tensors quantized (scales %s), %d kept" % (d, len(done), "/".join(dtypes),
                                                            len(stored) - len(done)))
    return logits


def main():
    dirs = sys.argv[1:] or [os.path.join(ROOT, x) for x in DIRS]
    for d in dirs:
        logits = reference(d)
        out = os.path.join(d, "ref_mlx_q4.bin")
        with open(out, "wb") as f:
            f.write(struct.pack("<ii", len(PROMPT), logits.shape[1]))
            f.write(np.asarray(PROMPT, dtype="<i4").tobytes())
            f.write(np.asarray(logits, dtype="<f4").tobytes())
        print("wrote", os.path.normpath(out), logits.shape)


if __name__ == "__main__":
    main()
