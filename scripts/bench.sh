#!/usr/bin/env bash
# Runs every benchmark (each measures tunebook and its Python peer side by side in one run)
# and writes BENCHMARKS.md from their output. Usage: scripts/bench.sh [BENCH ...]
# (default: all of lib/benches). Nothing in BENCHMARKS.md is typed in by hand.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh >/dev/null
# `--workspace` and the dev profile reuse the test build: the same feature set and flags
# (dependencies at opt-level 2, tunebook at 1; the hot loops run inside libtorch either
# way). BENCH_PROFILE=release for a release build. Uses the CI build cache when present.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tunebook/target}
profile=${BENCH_PROFILE:-dev}
benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
  benches=($(ls lib/benches/*.rs | xargs -n1 basename | sed 's/\.rs$//'))
fi
cargo bench --workspace --profile "$profile" --no-run ${benches[@]/#/--bench } 2>&1 | tail -1
out=BENCHMARKS.md
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d); each figure comes from one run that"
  echo "measures tunebook and its peer (Python transformers / peft / datasets from .venv) on the same"
  echo "machine, same model, same data, same threads."
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs),"
  echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; torch $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))'),"
  echo "transformers $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("transformers"))'); cargo profile \`$profile\`."
  for bench in "${benches[@]}"; do
    echo
    echo "## $bench"
    echo
    echo "\`scripts/bench.sh $bench\` — $(sed -n 1p lib/benches/$bench.rs | sed 's#^//! ##')"
    echo
    echo '```text'
    cargo bench -q --workspace --profile "$profile" --bench "$bench" 2>/dev/null
    echo '```'
  done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
