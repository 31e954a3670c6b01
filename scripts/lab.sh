#!/usr/bin/env bash
# Sets everything up and opens JupyterLab on the quickstart notebook with the tunebook
# kernel: Python venv + model + data (setup.sh), the kernel and CLI builds, the kernelspec
# inside .venv, and the kernel's prebuilt library template (first time: ~20 min on 2 cores,
# afterwards seconds). Extra arguments go to `jupyter lab` (e.g. --no-browser --port 8889).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
say() { printf '\033[1m[lab]\033[0m %s\n' "$*"; }

say "building the tunebook kernel and CLI"
cargo build -p tunebook-kernel -p tunebook --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | "$root/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

export VIRTUAL_ENV="$root/.venv" PATH="$root/.venv/bin:$PATH"
# install also prebuilds the library that notebook cells link (only what changed since last time).
say "installing the kernel and prebuilding the library for notebook cells"
"$target_dir/debug/tunebook-kernel" install --sys-prefix

say "opening JupyterLab on notebooks/01-quickstart.ipynb"
cd "$root/notebooks"
exec jupyter lab 01-quickstart.ipynb "$@"
