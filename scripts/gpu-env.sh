# gpu-env.sh — sourced by gpu-check.sh and gpu-prof.sh: the make arguments
# (array MK) for a CUDA build on a GPU machine. The CUDA runtime may sit
# outside the loader's path there (rpath), and the machine has no package
# registry: when cJSON / PCRE2 headers are missing, Debian's .debs carried in
# .gpudeps/ (scripts/gpu-deps.sh fetches them) are unpacked beside the tree,
# never into /.
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
MK=(CUDA=1 CUDA_ARCHS=90 "EXTRA_LDFLAGS=-Wl,-rpath,$CUDA_HOME/lib64 -Wl,-rpath,/usr/local/lib")
libs="-lcjson -lpcre2-8 -lpthread -lm -ldl -L$CUDA_HOME/lib64 -L$CUDA_HOME/lib64/stubs -lcublas -lcudart -lstdc++"
if ! echo '#include <cjson/cJSON.h>' | cc -E -x c - >/dev/null 2>&1 && ls .gpudeps/*.deb >/dev/null 2>&1; then
  root=$PWD/.gpudeps/root
  mkdir -p "$root"
  for f in .gpudeps/*.deb; do
    if command -v dpkg >/dev/null 2>&1; then dpkg -x "$f" "$root"
    else (d=$(mktemp -d) && cd "$d" && ar x "$OLDPWD/$f" && tar -xf data.tar.* -C "$root"); fi
  done
  lib=$root/usr/lib/x86_64-linux-gnu
  MK=(CUDA=1 CUDA_ARCHS=90 "EXTRA_CFLAGS=-I$root/usr/include"
      "EXTRA_LDFLAGS=-Wl,-rpath,$CUDA_HOME/lib64 -Wl,-rpath,/usr/local/lib -L$lib -Wl,-rpath,$lib")
fi
MK+=("LIBS=$libs")
