#!/usr/bin/env bash
# The GPU check, built ahead on any Linux machine and run unattended on a bare GPU host.
#
#   benches/gpu.sh bundle [DIR]   build the check into DIR (default target/gpu-bundle; no GPU needed):
#                                 one compressed binary, armorm-gpu-check.xz, and manifest.json
#                                 (commit, features, compute capability, CUDA release, sizes); fails
#                                 past 48 MiB
#   benches/gpu.sh run [DIR]      on the GPU host, in the repository root (the fixtures and
#                                 benches/reference.py are read from it): finds the CUDA 13 libraries
#                                 of the python that holds PyTorch, then runs parity, batch
#                                 invariance and the 8B-shaped bench against transformers, within
#                                 ARMORM_GPU_CHECK_SECONDS (default 480); results also as JSON in $OUT
#
# The host needs an NVIDIA driver for CUDA 13.0 or newer (580+) and a python with torch (CUDA 13)
# and transformers 5 (ARMORM_REFERENCE_PYTHON, else python3); no Rust, no network, ~20 GB of disk
# for the 8B-shaped checkpoint. CUDA_COMPUTE_CAP (default 90: H100/H200) picks the kernels' target;
# the PTX comes from the CUDA 13.0 nvcc (scripts/cuda-toolchain.sh) so that a 13.0 driver loads it.
# FLASH_ATTN=1 adds the flash-attn kernels (~75 min of nvcc on 2 cores; rerun after an
# interruption: ccache keeps every finished kernel object, see scripts/nvcc-cached.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
dir="${2:-target/gpu-bundle}"
limit_mib=48

bundle() {
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
  local cutlass="" features=cuda
  if [[ "${FLASH_ATTN:-0}" == 1 ]]; then
    cutlass=--cutlass features=cuda,flash-attn
    # candle-flash-attn runs nvcc on half the cores unless told; up to 4 GB of memory per job.
    export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
  fi
  eval "$(scripts/cuda-toolchain.sh target/cuda-toolchain $cutlass)"
  local commit
  commit="$(git rev-parse HEAD)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"
  ARMORM_COMMIT="$commit" cargo build --release --locked -p armorm-gpu-check --features "$features"
  mkdir -p "$dir"
  rm -f "$dir/armorm-gpu-check" "$dir/armorm-gpu-check.xz"
  objcopy --strip-all target/release/armorm-gpu-check "$dir/armorm-gpu-check"
  local raw packed
  raw="$(stat -c %s "$dir/armorm-gpu-check")"
  xz -9e -T0 "$dir/armorm-gpu-check"
  packed="$(stat -c %s "$dir/armorm-gpu-check.xz")"
  cat > "$dir/manifest.json" <<JSON
{
  "commit": "$commit",
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "features": "$features",
  "compute_cap": "$CUDA_COMPUTE_CAP",
  "cuda_wheels": "${CUDA_WHEELS:-13.0}",
  "rustc": "$(rustc --version)",
  "binary_bytes": $raw,
  "compressed_bytes": $packed
}
JSON
  cat "$dir/manifest.json"
  local total
  total="$(du -sb "$dir" | cut -f1)"
  if (( total > limit_mib * 1024 * 1024 )); then
    echo "the bundle is $((total / 1024 / 1024)) MiB, over its ${limit_mib} MiB" >&2
    exit 1
  fi
  echo "bundle: $dir, $((total / 1024)) KiB"
}

run() {
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "no CUDA device was found (nvidia-smi lists no GPU): the GPU check needs an NVIDIA GPU and driver" >&2
    exit 1
  fi
  [[ -f "$dir/armorm-gpu-check.xz" ]] || { echo "no bundle in $dir: run benches/gpu.sh bundle $dir first" >&2; exit 1; }
  cat "$dir/manifest.json"
  nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv
  local python="${ARMORM_REFERENCE_PYTHON:-python3}"
  # The CUDA 13 runtime libraries (cuBLAS, cuRAND, NVRTC, cudart) from the python's wheels, where
  # no toolkit is installed system-wide.
  for site in $("$python" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    if [[ -d "$site/nvidia/cu13/lib" ]]; then export LD_LIBRARY_PATH="$site/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"; fi
  done
  local bin
  bin="$(mktemp -d)/armorm-gpu-check"
  if command -v xz >/dev/null; then
    xz -dc "$dir/armorm-gpu-check.xz" > "$bin"
  else # a host without xz-utils: the python's lzma module reads the same format
    "$python" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
      "$dir/armorm-gpu-check.xz" > "$bin"
  fi
  chmod +x "$bin"
  ARMORM_REFERENCE_PYTHON="$python" timeout --signal=INT --kill-after=20 "${ARMORM_GPU_CHECK_SECONDS:-480}" \
    "$bin" all --fixtures tests/fixtures --work "${ARMORM_GPU_CHECK_WORK:-target/gpu-check-work}"
}

case "$mode" in
  bundle) bundle ;;
  run) run ;;
  *) echo "usage: benches/gpu.sh bundle [DIR] | run [DIR]" >&2; exit 2 ;;
esac
