#!/usr/bin/env python3
"""Reference logits for `mlxn convert` of an HF model to MLX 4-bit.

    python3 scripts/gen_convert_ref.py

Takes the tiny Llama of tests/data/models/llama (bf16 safetensors, written
by gen_tiny_models.py), quantizes every linear and the embedding with MLX
itself (mx.quantize, 4 bits, groups of 32, scales/biases in the weights'
bf16), dequantizes with mx.dequantize (MLX's own arithmetic: bf16 results,
as MLX computes them), runs PyTorch float32 on those weights and writes
the logits of the usual prompt to tests/data/models/llama/ref_mlx_q4.bin
(ref.bin layout: int32 T, int32 V, int32 tokens[T], float32 logits[T][V]).
Needs mlx[cpu]==0.32.4, torch, transformers, safetensors, numpy.
"""
import os
import struct

import mlx.core as mx
import numpy as np
import torch
from transformers import AutoModelForCausalLM

DIR = "tests/data/models/llama"
PROMPT = [1, 17, 42, 99, 3, 250, 128, 7, 64, 200, 5, 31]


def mlx_roundtrip(w):
    a = mx.array(w.to(torch.float32).numpy()).astype(mx.bfloat16)
    wq, s, b = mx.quantize(a, group_size=32, bits=4)
    d = mx.dequantize(wq, s, b, group_size=32, bits=4)
    return torch.from_numpy(np.array(d.astype(mx.float32)))


def main():
    model = AutoModelForCausalLM.from_pretrained(DIR, torch_dtype=torch.float32)
    sd = model.state_dict()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_proj.weight") or name.endswith("embed_tokens.weight") or name == "lm_head.weight":
                p.copy_(mlx_roundtrip(sd[name]))
        logits = model(torch.tensor([PROMPT])).logits[0].numpy()
    with open(os.path.join(DIR, "ref_mlx_q4.bin"), "wb") as f:
        f.write(struct.pack("<ii", len(PROMPT), logits.shape[1]))
        f.write(np.asarray(PROMPT, dtype="<i4").tobytes())
        f.write(np.asarray(logits, dtype="<f4").tobytes())
    print("wrote", os.path.join(DIR, "ref_mlx_q4.bin"), logits.shape)


if __name__ == "__main__":
    main()
