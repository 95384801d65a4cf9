#!/usr/bin/env bash
# Fetch (here, where Debian's registry is reachable) the .debs of the
# libraries the build needs, into .gpudeps/, for a GPU machine that has no
# registry: pass `carry: [".gpudeps"]` to the device run; gpu-check.sh
# unpacks them there when the headers are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpudeps
cd .gpudeps
apt-get download libcjson-dev libcjson1 libpcre2-dev libpcre2-8-0 2>/dev/null
ls -la
