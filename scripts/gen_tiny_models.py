#!/usr/bin/env python3
"""gen_tiny_models.py — tiny random Llama-family models and their PyTorch
logits, the oracle for tests/test_model_llama.c.

Writes tests/data/models/<name>/ with config.json, model.safetensors and
ref.bin, for:
  llama       LlamaForCausalLM, bf16 weights, untied head, llama3 rope scaling
  qwen3       Qwen3ForCausalLM, f32 weights, tied head, q/k norm
  qwen2       Qwen2ForCausalLM, f16 weights, tied head, q/k/v bias
  llama_q4    the llama model with MLX affine 4-bit weights (group 32), one
              8-bit override and "lm_head": false
All: 2 layers, hidden 64, 4 heads, 2 KV heads, head_dim 16, vocab 256.

The reference runs in float32 on weights that went through the stored dtype
(or through quantize→dequantize), so the only differences left to the C
side are its own arithmetic.

ref.bin layout (little endian): int32 T, int32 V, int32 tokens[T],
float32 logits[T][V] (logits of every prompt position).

Run: python3 scripts/gen_tiny_models.py   (needs torch, transformers,
safetensors, numpy; CPU only; deterministic: seed 1234).
"""
import json
import os
import struct

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "models")
PROMPT = [1, 17, 42, 99, 3, 250, 128, 7, 64, 200, 5, 31]

COMMON = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, vocab_size=256, max_position_embeddings=256,
    rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.6 / p.shape[-1] ** 0.5 if p.dim() == 2 and "embed" not in name else 1.0))


def round_through(model, dtype):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


def logits_of(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().numpy()


def write_ref(d, tokens, logits):
    with open(os.path.join(d, "ref.bin"), "wb") as f:
        f.write(struct.pack("<ii", len(tokens), logits.shape[1]))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(np.asarray(logits, dtype="<f4").tobytes())


def state(model, dtype):
    sd = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    sd = {k: v for k, v in sd.items() if "rotary" not in k}
    return sd


def classic_rope(cfg, keep_new):
    """transformers 5 writes `rope_parameters`; published configs carry
    `rope_theta` + `rope_scaling`. Write the classic keys unless keep_new
    (qwen3 keeps the new form so both are tested)."""
    for k in ("id2label", "label2id"):
        cfg.pop(k, None)
    rp = cfg.get("rope_parameters")
    if keep_new or not isinstance(rp, dict):
        return cfg
    cfg.pop("rope_parameters")
    cfg["rope_theta"] = rp.get("rope_theta", 10000.0)
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
    return cfg


def save(name, model, dtype, cfg_extra=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    round_through(model, dtype)
    save_file(state(model, dtype), os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    cfg = classic_rope(model.config.to_dict(), name == "qwen3")
    cfg.update(cfg_extra or {})
    cfg.pop("torch_dtype", None)
    cfg.pop("dtype", None)
    cfg["torch_dtype"] = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    write_ref(d, PROMPT, logits_of(model, PROMPT))
    return d


def mlx_quantize(w, bits, group):
    """MLX affine quantization of w [N, K] (float32): per group of `group`
    inputs, scale = (max - min) / (2^bits - 1), bias = min, q = round((w -
    bias) / scale). Packs q as a little-endian bit stream into uint32 [N,
    K*bits/32], least significant bits first. Returns (wq, scales, biases,
    dequantized w)."""
    N, K = w.shape
    wg = w.reshape(N, K // group, group)
    lo, hi = wg.min(axis=2), wg.max(axis=2)
    levels = (1 << bits) - 1
    scale = np.where(hi > lo, (hi - lo) / levels, 1.0).astype(np.float32)
    # stored scales/biases are f32 here, so dequantization is exact in f32
    q = np.clip(np.rint((wg - lo[..., None]) / scale[..., None]), 0, levels).astype(np.uint64)
    deq = (scale[..., None] * q.astype(np.float32) + lo[..., None]).reshape(N, K).astype(np.float32)
    q = q.reshape(N, K)
    words = np.zeros((N, K * bits // 32), dtype=np.uint64)
    for i in range(K):
        bit = i * bits
        w_i, off = bit // 32, bit % 32
        words[:, w_i] |= (q[:, i] << np.uint64(off)) & np.uint64(0xFFFFFFFF)
        if off + bits > 32:
            words[:, w_i + 1] |= q[:, i] >> np.uint64(32 - off)
    return words.astype(np.uint32), scale, lo.astype(np.float32), deq


def save_quantized(name, model, bits, group, overrides):
    """overrides: module -> bits (int) or False (keep dense f32)."""
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    tensors = {}
    sd = model.state_dict()
    with torch.no_grad():
        for mod, m in model.named_modules():
            if not isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                continue
            ov = overrides.get(mod, bits)
            w = m.weight.detach().float().numpy()
            if ov is False:
                tensors[mod + ".weight"] = torch.from_numpy(w.copy())
                continue
            wq, sc, bi, deq = mlx_quantize(w, ov, group)
            tensors[mod + ".weight"] = torch.from_numpy(wq.view(np.int32)).view(torch.uint32) if hasattr(torch, "uint32") else torch.from_numpy(wq.view(np.int32))
            tensors[mod + ".scales"] = torch.from_numpy(sc)
            tensors[mod + ".biases"] = torch.from_numpy(bi)
            m.weight.copy_(torch.from_numpy(deq))
        for k, v in sd.items():
            if k not in tensors and "norm" in k:
                tensors[k] = v.detach().float().contiguous()
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "mlx"})
    cfg = classic_rope(model.config.to_dict(), False)
    q = {"group_size": group, "bits": bits}
    for mod, ov in overrides.items():
        q[mod] = False if ov is False else {"group_size": group, "bits": ov}
    cfg["quantization"] = q
    cfg["quantization_config"] = q
    cfg.pop("dtype", None)
    cfg["torch_dtype"] = "float32"
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    write_ref(d, PROMPT, logits_of(model, PROMPT))


def main():
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(1234)
    llama_cfg = LlamaConfig(**COMMON, tie_word_embeddings=False, rope_theta=10000.0,
                            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                            attention_bias=False, mlp_bias=False)
    m = LlamaForCausalLM(llama_cfg).float().eval()
    randomize(m, 1)
    save("llama", m, torch.bfloat16)

    q3 = Qwen3ForCausalLM(Qwen3Config(**COMMON, tie_word_embeddings=True, rope_theta=1000000.0)).float().eval()
    randomize(q3, 2)
    save("qwen3", q3, torch.float32)

    q2 = Qwen2ForCausalLM(Qwen2Config(**{k: v for k, v in COMMON.items() if k != "head_dim"},
                                      tie_word_embeddings=True, rope_theta=1000000.0)).float().eval()
    randomize(q2, 3)
    save("qwen2", q2, torch.float16)

    mq = LlamaForCausalLM(llama_cfg).float().eval()
    randomize(mq, 4)
    save_quantized("llama_q4", mq, 4, 32, {"model.layers.1.mlp.down_proj": 8, "lm_head": False})
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
