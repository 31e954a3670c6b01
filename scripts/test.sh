#!/usr/bin/env bash
# Sets everything up and runs every test: unit tests, doctests, parity and interop tests
# against Python transformers/peft, kernel protocol tests. CI runs exactly this (.ci/run).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
echo "[test] cargo test --workspace (first build compiles libtorch bindings, polars, evcxr: ~15-25 min on 2 cores)"
cargo test --workspace --no-fail-fast "$@"

# The tutorial notebooks through nbclient and JupyterLab in headless Chromium. Their cells
# link a second, evcxr-flavoured build of the library (~30 min cold), too much for a fresh
# CI machine's 90 minutes on top of the above; everywhere else they run here.
if [ -n "${CI:-}" ] && [ -z "${TUNEBOOK_NOTEBOOKS:-}" ]; then
  echo "[test] CI: notebook suite skipped (set TUNEBOOK_NOTEBOOKS=1 to run it)"
  exit 0
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "[test] installing chromium (Debian package) for the JupyterLab test"
  sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "[test] notebooks: nbclient and JupyterLab against the installed kernel (first time: ~30 min to prebuild)"
cargo test --workspace --test notebooks -- --ignored
