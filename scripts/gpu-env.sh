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

# variant_builds TARGET...: the tree built once more for each variant of
# $VARIANT ("name:-DMACRO=V ...", ';' between) in build-name, those flags
# added to nvcc's (EXTRA_NVCCFLAGS), TARGET... named inside the build
# folder, every build in parallel (and with any build the caller left
# running); build-name is appended to BINS. Fails, after the log's tail,
# when a build in BINS lacks the first TARGET.
variant_builds() {
  local var vn b vars
  IFS=';' read -r -a vars <<<"${VARIANT:-}"
  for var in "${vars[@]}"; do
    [ -n "$var" ] || continue
    vn=${var%%:*}
    make "${MK[@]}" BUILD=build-$vn "EXTRA_NVCCFLAGS=${var#*:}" -j16 "${@/#/build-$vn/}" >/tmp/b-build-$vn.log 2>&1 &
    BINS+=(build-$vn)
  done
  wait
  for b in "${BINS[@]}"; do
    [ -x "$b/$1" ] || { echo "$b did not build"; tail -30 /tmp/b-$b.log 2>/dev/null; return 1; }
  done
}
