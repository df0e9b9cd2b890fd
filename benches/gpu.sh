#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and the CUDA toolkit: builds armorm with the `cuda` feature and runs
# the forward bench on an 8B-shaped random model (hidden 4096, 32 layers, 32/8 heads, intermediate
# 14336) in bf16, printing tokens/s and MFU against the device's peak (ARMORM_PEAK_TFLOPS, default
# 989 = H100/H200 dense bf16). The first run writes the ~16 GB checkpoint under target/bench.
# FLASH_ATTN=1 adds the `flash-attn` feature (flash-attn v2's varlen kernel; its nvcc build alone
# takes several minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${CUDA_COMPUTE_CAP:-}" ]]; then
  CUDA_COMPUTE_CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d .)"
  export CUDA_COMPUTE_CAP
fi
nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv
features=cuda
if [[ "${FLASH_ATTN:-0}" == 1 ]]; then features=cuda,flash-attn; fi
cargo bench -p armorm-server --features "$features" --bench throughput -- --gpu
