#!/usr/bin/env bash
# Builds a CUDA toolchain from PyPI's wheels (no NVIDIA installer, no GPU, no driver needed) in DIR and
# prints the environment to source:
#
#     eval "$(scripts/cuda-toolchain.sh target/cuda-toolchain)"
#     cargo build --release -p armorm-cli --features cuda     # CUDA_COMPUTE_CAP=90 for H100/H200
#
# Idempotent: a second run with the same versions only prints the environment. What it makes:
# - a venv holding nvcc, the CUDA headers and libraries (one toolkit-shaped tree, nvidia/cu13);
# - unversioned symlinks (libcudart.so, libcublas.so, ...) for the linker;
# - a stub libcuda.so (SONAME libcuda.so.1) exporting the driver symbols cudarc calls: no wheel ships
#   the driver; the real one replaces the stub at run time, so the binary needs an NVIDIA driver to
#   start at all (candle links the driver dynamically);
# - NVCC pointing at scripts/nvcc-cached.sh: nvcc through ccache, so every compiled kernel object is
#   kept as soon as it is finished and an interrupted build resumes (flash-attn's: ~75 min, 2 cores);
# - with --cutlass, CUTLASS 3.5.0's headers where candle-flash-attn's build looks for its git
#   checkout (CUDAFORGE_HOME), so building the flash-attn feature needs no network beyond PyPI.
#
# CUDA_WHEELS picks the release (default 13.0: PTX from a newer nvcc does not load on a driver that
# only knows CUDA 13.0, such as 580.x; use the newest your drivers support, up to 13.4, the newest
# the locked cudarc accepts).
set -euo pipefail
dir="${1:?usage: scripts/cuda-toolchain.sh DIR [--cutlass]}"
cutlass="${2:-}"
release="${CUDA_WHEELS:-13.0}"
case "$release" in
  13.0) pins="nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96
              nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14" ;;
  13.4) pins="nvidia-cuda-nvcc==13.4.92 nvidia-cuda-crt==13.4.92 nvidia-nvvm==13.4.92 nvidia-cuda-runtime==13.4.92
              nvidia-cuda-cccl==13.3.5.0.6 nvidia-cuda-nvrtc==13.4.92 nvidia-curand==10.4.5.25 nvidia-cublas==13.10.0.20" ;;
  *) echo "CUDA_WHEELS must be 13.0 or 13.4, not $release" >&2; exit 2 ;;
esac
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
stamp="$dir/.done-$release"
if [[ ! -f "$stamp" ]]; then
  python3 -m venv "$dir/venv"
  # shellcheck disable=SC2086
  "$dir/venv/bin/pip" install -q --disable-pip-version-check $pins >&2
fi
cuda="$(echo "$dir"/venv/lib/python3*/site-packages/nvidia/cu13)"
[[ -x "$cuda/bin/nvcc" ]] || { echo "no nvcc under $cuda" >&2; exit 1; }
if [[ ! -f "$stamp" ]]; then
  # nvcc looks for lib64 beside include; cudarc's build script for the toolkit's version.
  ln -sfn lib "$cuda/lib64"
  for lib in cudart cublas cublasLt curand nvrtc; do
    versioned="$(ls "$cuda"/lib/lib$lib.so.* | head -n1)"
    ln -sf "$(basename "$versioned")" "$cuda/lib/lib$lib.so"
  done
  # The driver symbols the locked cudarc declares (its bindings' extern blocks).
  cudarc="$(cargo metadata --manifest-path "$repo/Cargo.toml" --format-version 1 --locked --all-features 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')"
  grep -rhoE '^\s+fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys" | sed -E 's/^\s+fn //; s/\($//' | sort -u |
    sed 's/.*/void &(void) {}/' > "$dir/libcuda-stub.c"
  mkdir -p "$dir/stubs"
  cc -shared -fPIC -o "$dir/stubs/libcuda.so" -Wl,-soname,libcuda.so.1 "$dir/libcuda-stub.c"
  touch "$stamp"
fi
checkouts="$dir/cudaforge/git/checkouts"
if [[ "$cutlass" == --cutlass ]]; then
  # candle-flash-attn pins this commit (CUTLASS 3.5.0) and would git-clone it; cudaforge takes a
  # checkout whose `git rev-parse HEAD` is the commit, so a fresh repository with that detached HEAD
  # and the wheel's headers serve. (A bare .git/HEAD is no repository: git would walk up to the
  # repository around DIR and cudaforge would run its sparse checkout there, emptying that work tree.)
  commit=7d49e6c7e2f8896c47f586706e67e1fb215529dc
  checkout="$checkouts/cutlass-${commit:0:16}"
  if [[ "$(GIT_CEILING_DIRECTORIES="$checkouts" git -C "$checkout" rev-parse HEAD 2>/dev/null)" != "$commit" ]]; then
    rm -rf "$checkout" "$dir/cutlass-wheel"
    "$dir/venv/bin/pip" install -q --disable-pip-version-check --no-deps --target "$dir/cutlass-wheel" nvidia-cutlass==3.5.0.0 >&2
    mkdir -p "$checkout/tools/util"
    src="$dir/cutlass-wheel/cutlass_library/source"
    cp -r "$src/include" "$checkout/"
    cp -r "$src/tools/util/include" "$checkout/tools/util/"
    git init -q "$checkout"
    echo "$commit" >"$checkout/.git/HEAD"
  fi
fi
# Beside nvcc because cudaforge takes the toolkit's root from NVCC's path; copied on every run so
# that it follows the repository's version.
install -m 755 "$repo/scripts/nvcc-cached.sh" "$cuda/bin/nvcc-cached"
command -v ccache >/dev/null ||
  echo "cuda-toolchain: no ccache on PATH, so kernel objects are not kept between builds (apt-get install ccache)" >&2
cat <<ENV
export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda"
export PATH="$cuda/bin:\$PATH"
export NVCC="$cuda/bin/nvcc-cached"
export LIBRARY_PATH="$cuda/lib:$dir/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
if [[ "$cutlass" == --cutlass ]]; then
  # No git command cudaforge runs in its checkouts may reach a repository around them.
  echo "export CUDAFORGE_HOME=\"$dir/cudaforge\" GIT_CEILING_DIRECTORIES=\"$checkouts\${GIT_CEILING_DIRECTORIES:+:\$GIT_CEILING_DIRECTORIES}\""
fi
