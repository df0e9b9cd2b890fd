#!/usr/bin/env bash
# The GPU check, unattended, in a few minutes: the fixtures' parity tests on CUDA (f32 within 1e-4,
# bf16 within the bf16 tolerance, batch invariance), then an 8B-shaped random model (hidden 4096,
# 32 layers, 32/8 heads, intermediate 14336) in bf16: tokens/s and MFU on 256-token, 1024-token,
# mixed 64..2048 and best-of-8 workloads (ARMORM_PEAK_TFLOPS, default 989 = H100/H200 dense bf16).
#
#   benches/gpu.sh              build here (scripts/cuda-toolchain.sh, no GPU needed) and run
#   benches/gpu.sh build DIR    only build, and put the two stripped binaries in DIR
#   benches/gpu.sh run DIR      run DIR's binaries (a GPU machine without Rust; needs the driver
#                               and CUDA 13 runtime libraries, e.g. a CUDA 13 PyTorch's wheels)
#
# CUDA_COMPUTE_CAP defaults to the GPU's (nvidia-smi) when there is one, else 90 (H100/H200). The
# first run writes the ~16 GB checkpoint under target/bench. FLASH_ATTN=1 builds `flash-attn` too
# (~75 min of nvcc on 2 cores; rerun the same command after an interruption: ccache keeps every finished
# kernel object, see scripts/nvcc-cached.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
mode="${1:-all}"
dir="${2:-target/gpu-check}"

build() {
  if [[ -z "${CUDA_COMPUTE_CAP:-}" ]] && command -v nvidia-smi >/dev/null; then
    CUDA_COMPUTE_CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d .)"
    export CUDA_COMPUTE_CAP
  fi
  local cutlass="" features=cuda
  if [[ "${FLASH_ATTN:-0}" == 1 ]]; then
    cutlass=--cutlass features=cuda,flash-attn
    # candle-flash-attn runs nvcc on half the cores unless told; up to 4 GB of memory per job.
    export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
  fi
  eval "$(scripts/cuda-toolchain.sh target/cuda-toolchain $cutlass)"
  # One cargo command, always the same: candle-kernels' nvcc output is cached per build graph.
  cargo test --release --no-run --features "$features" -p armorm-model -p armorm-server \
    --test parity --bench throughput --message-format=json-render-diagnostics |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("parity", "throughput"):
        print(m["target"]["name"], m["executable"])' > target/gpu-check-binaries
  mkdir -p "$dir"
  while read -r name exe; do objcopy --strip-debug "$exe" "$dir/$name"; done < target/gpu-check-binaries
  ls -la "$dir"
}

run() {
  nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv
  # CUDA 13 runtime libraries (cuBLAS, cuRAND, NVRTC, cudart) from Python wheels where no toolkit is
  # installed system-wide.
  for site in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    if [[ -d "$site/nvidia/cu13/lib" ]]; then export LD_LIBRARY_PATH="$site/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"; fi
  done
  # The binaries find the fixtures and target/ at the path they were built in.
  built="$(strings "$dir/parity" | grep -m1 -oE '/[^ ]*/crates/model' | sed 's|/crates/model$||' || true)"
  if [[ -n "$built" && "$built" != "$repo" && ! -e "$built" ]]; then mkdir -p "$(dirname "$built")"; ln -s "$repo" "$built"; fi
  echo "== parity on CUDA (tiny fixtures vs the PyTorch goldens)"
  "$dir/parity" --test-threads=1 gpu:: --nocapture
  echo "== 8B-shaped bf16 forward"
  "$dir/throughput" --gpu
}

case "$mode" in
  build) build ;;
  run) run ;;
  all) build && run ;;
  *) echo "usage: benches/gpu.sh [build DIR | run DIR]" >&2; exit 2 ;;
esac
