#!/usr/bin/env bash
# Sets everything up and runs every test: unit tests, doctests, parity and interop tests
# against Python transformers/peft, kernel protocol tests. CI runs exactly this (.ci/run).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
# The JupyterLab test drives headless Chromium (Debian package `chromium`).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "[test] installing chromium for the JupyterLab test"
  sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "[test] cargo test --workspace (first build compiles libtorch bindings, polars, evcxr: ~15-25 min on 2 cores)"
cargo test --workspace --no-fail-fast "$@"
