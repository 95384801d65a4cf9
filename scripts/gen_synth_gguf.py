#!/usr/bin/env python3
"""gen_synth_gguf.py OUT.gguf [--shape llama3-8b|llama3-1b|tiny] [--type q4_0|q4_1|q8_0|q4_k]

Writes a Llama-shaped GGUF v3 file with random weights of one block type
(norms f32 1.0), for comparing decode / prefill speed against other tools
on the same file (llama.cpp's llama-bench reads it, as does `mlxn bench`).
Pure Python, no packages: the GPU machine has no package registry.

The weights are random bytes with every block's scale fields set to small
finite values (so every block decodes to finite numbers); a 4 MiB pattern
of blocks is repeated with a different start for each tensor. The
tokenizer is a SentencePiece-style ("llama") vocabulary of byte tokens and
dummy pieces sized to the shape's vocabulary: enough for tools that draw
random token ids, meaningless as text. Not a model: its outputs are noise.
"""
import os
import random
import struct
import sys

SHAPES = {
    # dim, layers, ffn, heads, kv heads, vocab, rope theta
    "llama3-8b": (4096, 32, 14336, 32, 8, 128256, 500000.0),
    "llama3-1b": (2048, 16, 8192, 32, 8, 128256, 500000.0),
    "tiny": (256, 2, 768, 4, 2, 512, 10000.0),
}
# ggml type id, elements a block, bytes a block, the f16 scale fields (byte
# offset, value), chosen so weights are centred on 0 with a spread of ~0.02-0.05:
# q4_1 d·q + m with q in 0..15; q4_k d·sc·q - dmin·mn with random 6-bit sc, mn
TYPES = {
    "q4_0": (2, 32, 18, [(0, 0.01)]),
    "q4_1": (3, 32, 20, [(0, 0.004), (2, -0.03)]),
    "q8_0": (8, 32, 34, [(0, 0.0005)]),
    "q4_k": (12, 256, 144, [(0, 0.0005), (2, 0.00375)]),
}
F32, STRING, ARRAY, U32, I32 = 6, 8, 9, 4, 5
ALIGN = 32


def f16(x):
    return struct.pack("<e", x)


def s_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = s_str(key) + struct.pack("<I", vtype)
    if vtype == STRING:
        return out + s_str(value)
    if vtype == U32:
        return out + struct.pack("<I", value)
    if vtype == F32:
        return out + struct.pack("<f", value)
    raise ValueError(vtype)


def kv_array(key, etype, items):
    out = [s_str(key), struct.pack("<IIQ", ARRAY, etype, len(items))]
    if etype == STRING:
        out += [s_str(s) for s in items]
    elif etype == F32:
        out.append(struct.pack("<%df" % len(items), *items))
    elif etype == I32:
        out.append(struct.pack("<%di" % len(items), *items))
    return b"".join(out)


def pattern(tname, nbytes):
    """nbytes of valid blocks of type tname (nbytes a multiple of the block)."""
    _, _, bb, fields = TYPES[tname]
    rnd = random.Random(1234)
    raw = bytearray(rnd.randbytes(nbytes))
    for off, val in fields:
        h = f16(val)
        for b in range(0, nbytes, bb):
            raw[b + off:b + off + 2] = h
    return bytes(raw)


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        print(__doc__)
        return 2
    out, shape, tname = args[0], "llama3-8b", "q4_0"
    i = 1
    while i < len(args):
        if args[i] == "--shape":
            shape = args[i + 1]
        elif args[i] == "--type":
            tname = args[i + 1]
        else:
            print("unknown argument %s" % args[i], file=sys.stderr)
            return 2
        i += 2
    if shape not in SHAPES or tname not in TYPES:
        print("shape one of %s, type one of %s" % (list(SHAPES), list(TYPES)), file=sys.stderr)
        return 2
    dim, layers, ffn, heads, kvh, vocab, theta = SHAPES[shape]
    gtype, be, bb, _ = TYPES[tname]
    hd = dim // heads
    tensors = []  # name, dims (ne0 first), ggml type, bytes

    def mat(name, k, n):
        tensors.append((name, (k, n), gtype, n * (k // be) * bb))

    def vec(name, n):
        tensors.append((name, (n,), 0, 4 * n))

    mat("token_embd.weight", dim, vocab)
    for l in range(layers):
        p = "blk.%d." % l
        vec(p + "attn_norm.weight", dim)
        mat(p + "attn_q.weight", dim, dim)
        mat(p + "attn_k.weight", dim, kvh * hd)
        mat(p + "attn_v.weight", dim, kvh * hd)
        mat(p + "attn_output.weight", dim, dim)
        vec(p + "ffn_norm.weight", dim)
        mat(p + "ffn_gate.weight", dim, ffn)
        mat(p + "ffn_up.weight", dim, ffn)
        mat(p + "ffn_down.weight", ffn, dim)
    vec("output_norm.weight", dim)
    mat("output.weight", dim, vocab)

    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    toks += ["\u2581t%d" % i for i in range(vocab - len(toks))]
    types = [2, 3, 3] + [6] * 256 + [1] * (vocab - 259)
    kvs = [
        kv("general.architecture", STRING, "llama"),
        kv("general.name", STRING, "synthetic-%s-%s" % (shape, tname)),
        kv("llama.context_length", U32, 8192),
        kv("llama.embedding_length", U32, dim),
        kv("llama.block_count", U32, layers),
        kv("llama.feed_forward_length", U32, ffn),
        kv("llama.attention.head_count", U32, heads),
        kv("llama.attention.head_count_kv", U32, kvh),
        kv("llama.rope.dimension_count", U32, hd),
        kv("llama.rope.freq_base", F32, theta),
        kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        kv("llama.vocab_size", U32, vocab),
        kv("tokenizer.ggml.model", STRING, "llama"),
        kv_array("tokenizer.ggml.tokens", STRING, toks),
        kv_array("tokenizer.ggml.scores", F32, [0.0] * vocab),
        kv_array("tokenizer.ggml.token_type", I32, types),
        kv("tokenizer.ggml.bos_token_id", U32, 1),
        kv("tokenizer.ggml.eos_token_id", U32, 2),
        kv("tokenizer.ggml.unknown_token_id", U32, 0),
    ]
    info, off = [], 0
    for name, dims, t, nbytes in tensors:
        info.append(s_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) +
                    struct.pack("<IQ", t, off))
        off += (nbytes + ALIGN - 1) // ALIGN * ALIGN
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(info)
    pat = pattern(tname, (4 << 20) // bb * bb)
    ones = struct.pack("<f", 1.0)
    with open(out, "wb") as f:
        f.write(head + b"\0" * ((-len(head)) % ALIGN))
        for k, (name, dims, t, nbytes) in enumerate(tensors):
            if t == 0:
                f.write(ones * dims[0])
            else:
                start = (k * 7919 * bb) % len(pat)  # a different start for each tensor
                left = nbytes
                while left:
                    piece = pat[start:start + left]
                    f.write(piece)
                    left -= len(piece)
                    start = 0
            f.write(b"\0" * ((-nbytes) % ALIGN))
    print("%s: %s %s, %.1f MB" % (out, shape, tname, os.path.getsize(out) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
