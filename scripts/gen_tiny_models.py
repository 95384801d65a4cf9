#!/usr/bin/env python3
"""gen_tiny_models.py — tiny random Llama-family models and their PyTorch
logits, the oracle for tests/test_model_llama.c.

Writes tests/data/models/<name>/ with config.json, model.safetensors and
ref.bin, for:
  llama       LlamaForCausalLM, bf16 weights, untied head, llama3 rope scaling,
              and a byte-level tokenizer.json (256 byte tokens, id = byte)
  qwen3       Qwen3ForCausalLM, f32 weights, tied head, q/k norm
  qwen2       Qwen2ForCausalLM, f16 weights, tied head, q/k/v bias
  llama_q4    the llama model with MLX affine 4-bit weights (group 32), one
              8-bit override and "lm_head": false
  llama_gguf  the llama model as GGUF (f32), Q/K rows permuted for the
              interleaved rope as convert_hf_to_gguf.py does, llama3 scaling
              as a rope_freqs tensor, the byte tokenizer as tokenizer.ggml.*;
              same logits as llama
  qwen3_gguf  the qwen3 model as GGUF (f16 norms-as-f32 like llama.cpp,
              no permutation: NEOX rope); same logits as qwen3
  mistral     MistralForCausalLM, f32, sliding window 5 (< the 12-token prompt)
  llama_q8_gguf  llama with Q8_0 linear/embedding weights (gguf.quants);
              the reference runs on the dequantized weights
All: 2 layers, hidden 64, 4 heads, 2 KV heads, head_dim 16 (qwen3: 32),
vocab 256.

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


def byte_vocab():
    """GPT-2 bytes_to_unicode: token id b is the character standing for byte b."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, map(chr, cs)))
    return [m[b] for b in range(256)]


def write_tokenizer(d):
    """A byte-level BPE without merges over the 256 byte tokens (vocab 256,
    id = byte): enough to run text through the tokenizer glue."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    t = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(byte_vocab())}, merges=[]))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.save(os.path.join(d, "tokenizer.json"))


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


def permute_qk(w, n_head, n_head_kv=None):
    """convert_hf_to_gguf.py LlamaModel.permute: HF half-split rows ->
    interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(cfg):
    """convert_hf_to_gguf.py: llama3 scaling written as rope_freqs."""
    import math
    rs, dim, base = cfg.rope_parameters, cfg.head_dim, cfg.rope_parameters["rope_theta"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    lw, hw = old / lo, old / hi
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < hw:
            out.append(1.0)
        elif wl > lw:
            out.append(factor)
        else:
            sm = (old / wl - lo) / (hi - lo)
            out.append(1 / ((1 - sm) / factor + sm))
    return np.array(out, dtype=np.float32)


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight", "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight", "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    parts = hf.split(".")  # model.layers.N.rest
    return "blk.%s.%s" % (parts[2], GGUF_NAMES[".".join(parts[3:])])


def save_gguf(name, model, arch, float_type, qtype=None):
    """float_type: np.float32 / np.float16 for 2-D weights (norms stay f32,
    as llama.cpp writes them); qtype: a GGMLQuantizationType for 2-D weights
    (the model's weights are replaced by their dequantized values first, so
    the reference sees what the file holds)."""
    import gguf
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items() if "rotary" not in k}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    if qtype is not None:
        with torch.no_grad():
            for k, v in sd.items():
                if v.ndim == 2:
                    deq = gguf.quants.dequantize(gguf.quants.quantize(v, qtype), qtype).reshape(v.shape)
                    dict(model.named_parameters())[k].copy_(torch.from_numpy(deq.astype(np.float32)))
        sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items() if "rotary" not in k}
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
    w = gguf.GGUFWriter(os.path.join(d, "model.gguf"), arch)
    w.add_name(name)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    if arch == "llama" and qtype is None:  # the byte tokenizer, as tokenizer.ggml.* arrays
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt2")
        w.add_token_list(byte_vocab())
        w.add_token_types([1] * 256)
    if cfg.rope_parameters.get("rope_type", "default") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(cfg))
    for k in sorted(sd):
        v = sd[k]
        if arch == "llama" and k.endswith("q_proj.weight"):
            v = permute_qk(v, cfg.num_attention_heads)
        elif arch == "llama" and k.endswith("k_proj.weight"):
            v = permute_qk(v, cfg.num_attention_heads, cfg.num_key_value_heads)
        if v.ndim == 2 and qtype is not None:
            w.add_tensor(gguf_name(k), gguf.quants.quantize(np.ascontiguousarray(v), qtype), raw_dtype=qtype)
        elif v.ndim == 2:
            w.add_tensor(gguf_name(k), np.ascontiguousarray(v.astype(float_type)))
        else:
            w.add_tensor(gguf_name(k), np.ascontiguousarray(v.astype(np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
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
    write_tokenizer(os.path.join(OUT, "llama"))
    save_gguf("llama_gguf", m, "llama", np.float32)

    # head_dim 32: heads * head_dim = 128 != hidden 64, as in real Qwen3
    q3 = Qwen3ForCausalLM(Qwen3Config(**{**COMMON, "head_dim": 32}, tie_word_embeddings=True,
                                      rope_theta=1000000.0)).float().eval()
    randomize(q3, 2)
    save("qwen3", q3, torch.float32)
    round_through(q3, torch.float16)  # 2-D weights go to the file as f16
    save_gguf("qwen3_gguf", q3, "qwen3", np.float16)

    q2 = Qwen2ForCausalLM(Qwen2Config(**{k: v for k, v in COMMON.items() if k != "head_dim"},
                                      tie_word_embeddings=True, rope_theta=1000000.0)).float().eval()
    randomize(q2, 3)
    save("qwen2", q2, torch.float16)

    mq = LlamaForCausalLM(llama_cfg).float().eval()
    randomize(mq, 4)
    save_quantized("llama_q4", mq, 4, 32, {"model.layers.1.mlp.down_proj": 8, "lm_head": False})
    from transformers import MistralConfig, MistralForCausalLM
    mi = MistralForCausalLM(MistralConfig(**COMMON, sliding_window=5, tie_word_embeddings=False,
                                          rope_theta=10000.0)).float().eval()
    randomize(mi, 6)
    save("mistral", mi, torch.float32)

    import gguf
    m8 = LlamaForCausalLM(llama_cfg).float().eval()
    randomize(m8, 5)
    save_gguf("llama_q8_gguf", m8, "llama", np.float32, gguf.GGMLQuantizationType.Q8_0)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
