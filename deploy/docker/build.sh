#!/usr/bin/env bash
# The build steps of the Dockerfile, kept in one script so CI runs the very commands the image runs.
#
#   deploy/docker/build.sh OUT_DIR
#
# Environment:
#   CARGO_PROFILE      release (the image) or dev (CI: reuses the test build)     [release]
#   ARMORM_FEATURES    cargo features, e.g. "cuda"                                 []
#   ARMORM_SERVE_ONLY  1: a binary without `train` and `eval` (and without their dependencies:
#                      faer, parquet, plotters); serve, score and healthcheck only        []
#   ARMORM_CPU_TARGET  x86-64 level for portable CPU code; empty keeps rustc's default. Never "native":
#                      an image built that way dies with "Illegal instruction" on older hosts.   []
set -euo pipefail
out="${1:?usage: build.sh OUT_DIR}"
profile="${CARGO_PROFILE:-release}"
features="${ARMORM_FEATURES:-}"
cpu="${ARMORM_CPU_TARGET:-}"

if [[ "$cpu" == native ]]; then
  echo "ARMORM_CPU_TARGET=native makes images that crash on other CPUs; use x86-64-v3 or similar" >&2
  exit 1
fi
if [[ -n "$cpu" && "$(uname -m)" == x86_64 ]]; then
  export RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=$cpu"
fi

if [[ "$profile" == dev ]]; then
  # CI: the test build's own command, so the binary is the one it already built. Building the bin
  # alone unifies the dependencies' features differently and recompiled ~60 crates (~5 min).
  args=(build --locked --profile dev --workspace --all-targets)
else
  args=(build --locked --profile "$profile" -p armorm-cli --bin armorm)
fi
[[ "${ARMORM_SERVE_ONLY:-}" == 1 ]] && args+=(--no-default-features)
[[ -n "$features" ]] && args+=(--features "$features")
cargo "${args[@]}"

case "$profile" in dev) dir=debug ;; *) dir="$profile" ;; esac
mkdir -p "$out"
install -m 0755 "target/$dir/armorm" "$out/armorm"
# The demo checkpoint lets `docker compose up` and image smoke tests run with no download.
rm -rf "$out/demo-model" && cp -r tests/fixtures/models/tiny-f32 "$out/demo-model"
"$out/armorm" --version
