#!/usr/bin/env bash
# Fuzzes a running armorm with schemathesis against openapi.yaml, every check enabled; exits
# non-zero on any failure. Usage: scripts/schemathesis.sh [BINARY] (default target/debug/armorm).
#
# Two runs. Examples and fuzzing, positive and negative: tests/schemathesis/hooks.py rewrites
# the parts of generated bodies that JSON Schema cannot constrain (a conversation ends in the
# assistant's turn, chat text has turn markers, token ids hold the gating pattern, weights name
# the model's objectives), so the spec's valid requests are the ones the server must accept.
# Then the coverage phase, negative cases only: its positive cases are built without hooks, so
# they would test the rules the spec states in prose, not its schemas. One worker: building cases
# on two threads intermittently crashed the tool itself (CPython 3.11's parser, "AST constructor
# recursion depth mismatch", on /compare; a KeyError in hypothesis's lambda-description cache,
# "FlakyFailure", on /classify), which failed CI runs without any finding against the server.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-target/debug/armorm}"
venv="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"
if [[ ! -x "$venv/bin/st" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check schemathesis==4.32.5
fi
port="${SCHEMATHESIS_PORT:-18732}"
"$binary" serve --model tests/fixtures/models/tiny-f32 --port "$port" --no-warmup --max-batch-tokens 4096 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
url="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  "$binary" healthcheck --addr "127.0.0.1:$port" 2>/dev/null && break
  sleep 0.2
done
export ARMORM_URL="$url" PYTHONPATH="$PWD" SCHEMATHESIS_HOOKS=tests.schemathesis.hooks
common=(openapi.yaml --url "$url" --checks all --workers 1 --seed 7 --no-color)
"$venv/bin/st" run "${common[@]}" --phases examples,fuzzing --max-examples 100
"$venv/bin/st" run "${common[@]}" --phases coverage --mode negative
