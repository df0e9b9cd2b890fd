#!/usr/bin/env bash
# nvcc as candle's build scripts call it, through ccache. `scripts/cuda-toolchain.sh` installs this
# beside nvcc (as `nvcc-cached`) and points NVCC at it.
#
# Why: candle-flash-attn compiles 53 kernel files (~75 min on 2 cores) and its build records them only
# after the last one finished, in the build's OUT_DIR, so an interrupted build, a `cargo clean` or a
# different build graph would start over. ccache keeps each object the moment nvcc finishes it, keyed
# by nvcc, its arguments and every included file: rerunning the same build resumes where it stopped
# (`ccache -s` shows the hits). Without ccache on PATH this is plain nvcc.
#
# ARMORM_FLASH_ATTN_STUB=1 makes flash-attn's kernel objects empty instead: for type-checking builds
# (cargo check/clippy) that never link, so CI checks the flash-attn code paths in seconds. The stub
# library stays in that profile's build directory: a later `cargo build` of the same profile would
# fail to link (undefined flash-attn symbols) until `cargo clean -p candle-flash-attn`.
set -euo pipefail
nvcc="$(dirname "$0")/nvcc"
# Build scripts run in their package's directory.
if [[ "${ARMORM_FLASH_ATTN_STUB:-0}" == 1 && "$PWD" == */candle-flash-attn-* ]]; then
  compile=0 out=""
  previous=""
  for arg in "$@"; do
    [[ "$arg" == -c ]] && compile=1
    [[ "$previous" == -o ]] && out="$arg"
    previous="$arg"
  done
  if [[ $compile == 1 && -n "$out" ]]; then exec cc -c -x c /dev/null -o "$out"; fi
fi
if command -v ccache >/dev/null; then exec ccache "$nvcc" "$@"; fi
exec "$nvcc" "$@"
