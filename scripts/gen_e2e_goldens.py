#!/usr/bin/env python3
"""Greedy tokens of mlx-lm on the default model, converted by `mlxn convert`.

    python3 scripts/gen_e2e_goldens.py [MLX_DIR]   (default models/smollm2-135m-mlx)

Needs: pip install "mlx[cpu]==0.32.4" mlx-lm==0.32.2. For three chat prompts,
the chat-formatted prompt ids and 64 greedy tokens (EOS does not stop it) are
written to tests/data/e2e/smollm2_mlxlm_greedy.json, twice: with mlx-lm as it
loads the directory (float16 activations, like the model's scales) and with
every float parameter cast to float32 (the same quantized weights, f32
arithmetic, as mlxn computes). Each step also records the margin between the
best and second-best logit, to tell near-ties from real divergences.
"""
import json
import sys

import mlx.core as mx
from mlx.utils import tree_map
from mlx_lm import load

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences why the sky is blue.",
]
N = 64


def greedy(model, ids):
    cache = None
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    x = mx.array([ids])
    out, margins = [], []
    for _ in range(N):
        logits = model(x, cache=cache)[0, -1].astype(mx.float32)
        top = mx.topk(logits, 2)
        best = int(mx.argmax(logits).item())
        vals = sorted(top.tolist(), reverse=True)
        out.append(best)
        margins.append(round(vals[0] - vals[1], 5))
        x = mx.array([[best]])
    return out, margins


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "models/smollm2-135m-mlx"
    model, tok = load(path)
    cases = []
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)
        cases.append({"prompt": p, "ids": list(ids)})
    for c in cases:
        c["f16"], c["f16_margin"] = greedy(model, c["ids"])
    model.update(tree_map(lambda a: a.astype(mx.float32) if a.dtype == mx.float16 else a, model.parameters()))
    for c in cases:
        c["f32"], c["f32_margin"] = greedy(model, c["ids"])
        c["f32_text"] = tok.decode(c["f32"])
    doc = {"model": "SmolLM2-135M-Instruct Q4_1 GGUF -> mlxn convert", "mlx": mx.__version__, "n": N, "cases": cases}
    with open("tests/data/e2e/smollm2_mlxlm_greedy.json", "w") as f:
        json.dump(doc, f, indent=1)
    for c in cases:
        same = sum(1 for a, b in zip(c["f16"], c["f32"]) if a == b)
        print(f"{c['prompt']!r}: f16 and f32 agree on {same}/{N}; {c['f32_text'][:60]!r}")


if __name__ == "__main__":
    main()
