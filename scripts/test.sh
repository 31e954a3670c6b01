#!/usr/bin/env bash
# Sets everything up and runs every test: unit tests, doctests, parity and interop tests
# against Python transformers/peft, kernel protocol tests. CI runs exactly this (.ci/run).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
echo "[test] cargo test --workspace (first build compiles libtorch bindings, polars, evcxr: ~15-25 min on 2 cores)"
cargo test --workspace --no-fail-fast "$@"
