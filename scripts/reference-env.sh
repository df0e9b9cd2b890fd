#!/usr/bin/env bash
# The independent reference: a Python venv with PyTorch (run on the CPU), transformers, safetensors
# and tokenizers, from PyPI alone. The fixture generators (tests/fixtures/**/generate.py) and the
# benches' reference runs (ARMORM_REFERENCE_PYTHON) use it; `cargo test` never does.
#
#   scripts/reference-env.sh                 # creates $REFENV (default: target/refenv), prints its python
#   REFENV=/opt/refenv scripts/reference-env.sh
#
# It also fetches the real Llama-3 tokenizer.json (scripts/fetch-llama3-tokenizer.sh; never commit it).
#
# PyPI's Linux torch wheel is the CUDA build, and its libraries link against CUDA runtime libraries
# even when it runs on the CPU. Installing it without its dependency list, plus the runtime wheels it
# links and its pure-Python dependencies, is the smallest install that imports and computes on a
# CPU (~2 GB download). `pip check` then lists the GPU-only packages left out (triton, cusolver,
# ...): expected.
set -euo pipefail
cd "$(dirname "$0")/.."
REFENV="${REFENV:-$PWD/target/refenv}"

TORCH=torch==2.15.0
CUDA_RUNTIME_WHEELS=(
  nvidia-cuda-runtime==13.2.86 nvidia-cuda-cupti==13.2.86 nvidia-cuda-nvrtc==13.2.86
  nvidia-cublas==13.4.1.3 nvidia-cudnn-cu13==9.26.0.51 nvidia-cufft==12.2.0.57
  nvidia-cufile==1.17.1.22 nvidia-cusparse==12.7.10.12 nvidia-nvjitlink==13.5.37
  nvidia-cusparselt-cu13==0.8.1 nvidia-nccl-cu13==2.30.7 nvidia-nvshmem-cu13==3.7.2
)
TORCH_PYTHON_DEPS=(filelock==4.3.1 typing-extensions==4.16.0 sympy==1.14.0 mpmath==1.3.0 networkx==3.6.1
                   jinja2==3.1.6 MarkupSafe==3.0.4 fsspec==2026.9.0)
REFERENCE=(transformers==5.24.0 tokenizers==0.23.3 safetensors==0.8.0 numpy==2.4.6)

check() {
  "$REFENV/bin/python" - <<'PY'
import torch, transformers
x = torch.randn(32, 32)
assert torch.allclose(x @ x.T, (x @ x.T).T, atol=1e-4) and not torch.cuda.is_available()
print(f"reference ok: torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
PY
}

if ! { [[ -x "$REFENV/bin/python" ]] && check >&2; }; then
  # torch 2.15 has wheels for CPython 3.10 to 3.13.
  python=""
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3.10 python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))'; then
      python="$candidate"; break
    fi
  done
  [[ -n "$python" ]] || { echo "reference-env: needs Python 3.10-3.13" >&2; exit 1; }
  rm -rf "$REFENV"
  "$python" -m venv "$REFENV"
  pip=("$REFENV/bin/python" -m pip --disable-pip-version-check -q)
  "${pip[@]}" install --no-deps "$TORCH" "${CUDA_RUNTIME_WHEELS[@]}" >&2
  "${pip[@]}" install "${TORCH_PYTHON_DEPS[@]}" "${REFERENCE[@]}" >&2
  check >&2
fi
echo "Llama-3 tokenizer: $(scripts/fetch-llama3-tokenizer.sh)" >&2
echo "$REFENV/bin/python"
