#!/usr/bin/env bash
# Install what building and testing mlxn needs on a fresh Debian 12 machine:
# a C compiler, make, cJSON (config and tokenizer JSON), PCRE2 (Unicode
# pre-tokenizer regexes), clang + its sanitizer/fuzzer runtime (fuzz targets).
# Skips packages already present; needs root (or sudo) only when installing.
set -euo pipefail
pkgs="build-essential libcjson-dev libpcre2-dev clang libclang-rt-14-dev python3-pip"
need=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq $need
fi
