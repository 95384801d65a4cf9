#!/usr/bin/env python3
"""Write the small reader test files in tests/data/io/ (committed) and the
fuzz seed corpora in fuzz/corpus/. Uses the reference tools: `safetensors`
(+numpy) for safetensors, `gguf` (gguf-py) for GGUF. Values are simple
formulas the C tests recompute. The safetensors library writes
__metadata__ in hash order, so small.safetensors may differ byte-wise from
run to run (the content is the same; commit only when it matters). Run from
the repository root:
    pip install numpy safetensors gguf && python3 scripts/gen_io_testdata.py
"""
import json
import os
import shutil
import struct

import numpy as np
from safetensors.numpy import save_file
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as QT

OUT = "tests/data/io"
os.makedirs(OUT, exist_ok=True)


def seq(n, scale=1.0, off=0.0):
    return (np.arange(n, dtype=np.float64) * scale + off)


# ---------------------------------------------------------------- safetensors
# small.safetensors: one tensor of every dtype numpy can write, a scalar, a
# zero-size tensor and metadata.
tensors = {
    "a.f32": seq(6, 0.5, -1.0).astype(np.float32).reshape(2, 3),
    "b.f16": seq(4, 0.25, 1.0).astype(np.float16),
    "c.i32": (np.arange(12, dtype=np.int32) * -7).reshape(2, 2, 3),
    "d.u8": np.arange(5, dtype=np.uint8) * 3,
    "e.i8": (np.arange(4, dtype=np.int8) - 2),
    "f.u16": np.arange(3, dtype=np.uint16) * 1000,
    "g.u32": np.arange(2, dtype=np.uint32) * 100000,
    "h.i64": np.arange(3, dtype=np.int64) - 1,
    "i.f64": seq(2, 0.125),
    "j.bool": np.array([True, False, True]),
    "k.i16": np.arange(2, dtype=np.int16) - 300,
    "l.scalar": np.array(3.5, dtype=np.float32),
    "m.empty": np.zeros((0, 3), dtype=np.float32),
    "n.4d": seq(24, 1.0).astype(np.float32).reshape(1, 2, 3, 4),
}
save_file(tensors, f"{OUT}/small.safetensors", metadata={"format": "mlx", "note": "test"})

# bf16.safetensors, written by hand (numpy has no bfloat16): header padded
# with spaces like the library does.
def write_st_raw(path, entries, meta=None):
    hdr = {}
    if meta is not None:
        hdr["__metadata__"] = meta
    data = b""
    for name, dt, shape, raw in entries:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)

bf = (seq(6, 0.5, -1.0).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
write_st_raw(f"{OUT}/bf16.safetensors", [("w", "BF16", [3, 2], bf.tobytes())])
# 5 dims: a valid file mlxn rejects with MLXN_ERR_UNSUPPORTED.
write_st_raw(f"{OUT}/dims5.safetensors", [("x", "F32", [1, 1, 1, 1, 2], b"\0" * 8)])

# sharded/: two shards and an index.
sd = f"{OUT}/sharded"
os.makedirs(sd, exist_ok=True)
s1 = {"model.embed.weight": seq(8, 1.0).astype(np.float32).reshape(4, 2),
      "model.layers.0.w": seq(4, -1.0).astype(np.float32)}
s2 = {"lm_head.weight": seq(6, 2.0).astype(np.float16).reshape(3, 2)}
save_file(s1, f"{sd}/model-00001-of-00002.safetensors", metadata={"format": "pt"})
save_file(s2, f"{sd}/model-00002-of-00002.safetensors", metadata={"format": "pt"})
wm = {k: "model-00001-of-00002.safetensors" for k in s1}
wm.update({k: "model-00002-of-00002.safetensors" for k in s2})
with open(f"{sd}/model.safetensors.index.json", "w") as f:
    json.dump({"metadata": {"total_size": 48}, "weight_map": wm}, f, indent=2)

# ---------------------------------------------------------------- GGUF
def qbytes(qt, n_elems):
    blck, size = GGML_QUANT_SIZES[qt]
    nb = n_elems // blck * size
    return (np.arange(nb, dtype=np.uint32) * 37 % 251).astype(np.uint8)


def write_gguf(path, alignment=None, with_q2k=True):
    w = gguf.GGUFWriter(path, "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    V = gguf.GGUFValueType
    w.add_key_value("t.u8", 200, V.UINT8)
    w.add_key_value("t.i8", -100, V.INT8)
    w.add_key_value("t.u16", 60000, V.UINT16)
    w.add_key_value("t.i16", -30000, V.INT16)
    w.add_key_value("t.u32", 4000000000, V.UINT32)
    w.add_key_value("t.i32", -2000000000, V.INT32)
    w.add_key_value("t.f32", 0.15625, V.FLOAT32)
    w.add_key_value("t.bool", True, V.BOOL)
    w.add_key_value("t.string", "héllo gguf", V.STRING)
    w.add_key_value("t.u64", 1 << 40, V.UINT64)
    w.add_key_value("t.i64", -(1 << 40), V.INT64)
    w.add_key_value("t.f64", 1.0 / 3.0, V.FLOAT64)
    w.add_key_value("t.small_i64", 4096, V.INT64)
    w.add_context_length(2048)
    w.add_block_count(1)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "", "héllo"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.5, 2.25, 3.0, -4.0])
    w.add_key_value("tokenizer.ggml.token_type", [1, 3, 1, 1, 6], V.ARRAY, V.INT32)
    w.add_key_value("tokenizer.ggml.merges", ["a b", "ab c"], V.ARRAY, V.STRING)
    w.add_key_value("t.nested", [["x", "yz"], ["p", "q", "r"]], V.ARRAY)
    w.add_key_value("t.u8arr", [1, 2, 255], V.ARRAY, V.UINT8)
    w.add_key_value("t.f64arr", [0.5, -2.0], V.ARRAY, V.FLOAT64)
    w.add_tensor("tok_embd.weight", seq(6, 0.5, -1.0).astype(np.float32).reshape(2, 3))
    w.add_tensor("blk.0.attn_norm.weight", seq(4, 0.25, 1.0).astype(np.float16))
    w.add_tensor("blk.0.attn_q.weight", qbytes(QT.Q8_0, 2 * 64).reshape(2, -1), raw_dtype=QT.Q8_0)
    w.add_tensor("blk.0.ffn_down.weight", qbytes(QT.Q4_K, 256 * 2).reshape(2, -1), raw_dtype=QT.Q4_K)
    w.add_tensor("blk.0.bf16", (bf.reshape(3, 2)), raw_dtype=QT.BF16)
    w.add_tensor("t.i32", np.arange(3, dtype=np.int32) - 1)
    w.add_tensor("t.3d", seq(24, 1.0).astype(np.float32).reshape(2, 3, 4))
    if with_q2k:
        w.add_tensor("t.q2k", qbytes(QT.Q2_K, 256).reshape(1, -1), raw_dtype=QT.Q2_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


write_gguf(f"{OUT}/small.gguf")
write_gguf(f"{OUT}/align64.gguf", alignment=64, with_q2k=False)

# ---------------------------------------------------------------- JSON
config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "vocab_size": 256, "max_position_embeddings": 2048, "rope_scaling": None,
    "torch_dtype": "bfloat16",
    "quantization": {"group_size": 64, "bits": 4, "model.embed_tokens": False},
}
with open(f"{OUT}/config.json", "w") as f:
    json.dump(config, f, indent=2)

# ---------------------------------------------------------------- fuzz seeds
def seed(target, src, name=None):
    d = f"fuzz/corpus/{target}"
    os.makedirs(d, exist_ok=True)
    shutil.copy(src, f"{d}/{name or os.path.basename(src)}")


for p in ["small.gguf", "align64.gguf"]:
    seed("fuzz_gguf", f"{OUT}/{p}")
for p in ["small.safetensors", "bf16.safetensors", "dims5.safetensors"]:
    seed("fuzz_safetensors", f"{OUT}/{p}")
seed("fuzz_safetensors", f"{sd}/model-00002-of-00002.safetensors", "shard2.safetensors")
seed("fuzz_json_config", f"{OUT}/config.json")
seed("fuzz_json_config", f"{sd}/model.safetensors.index.json", "index.json")
print("wrote", OUT, "and fuzz/corpus/")
