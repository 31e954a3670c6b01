#!/usr/bin/env bash
# Runs the benchmarks (each measures tunebook and its Python peer side by side in one run)
# and writes their sections of BENCHMARKS.md from their output. Usage:
#   scripts/bench.sh            all of lib/benches and kernel/benches, BENCHMARKS.md written anew
#   scripts/bench.sh BENCH ...  only these; the other sections of BENCHMARKS.md stay
# Nothing in BENCHMARKS.md is typed in by hand.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh >/dev/null
# `--workspace` and the dev profile reuse the test build: the same feature set and flags
# (dependencies at opt-level 2, tunebook at 1; the hot loops run inside libtorch either
# way). BENCH_PROFILE=release for a release build. Uses the CI build cache when present.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tunebook/target}
profile=${BENCH_PROFILE:-dev}
all=($(ls lib/benches/*.rs kernel/benches/*.rs | xargs -n1 basename | sed 's/\.rs$//'))
benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
  benches=("${all[@]}")
  rm -f BENCHMARKS.md
fi
if [[ " ${benches[*]} " == *" kernel_latency "* ]] && [ -z "${EVCXR_JUPYTER:-}" ] \
  && [ ! -x "$HOME/.cache/tunebook/evcxr_jupyter/bin/evcxr_jupyter" ]; then
  echo "[bench] building the stock kernel to compare with: evcxr_jupyter 0.22.0 (release, ~30 min on 2 cores)"
  cargo install evcxr_jupyter@0.22.0 --locked --root "$HOME/.cache/tunebook/evcxr_jupyter" \
    --target-dir "$HOME/.cache/tunebook/evcxr-target" 2>&1 | tail -1
fi
cargo bench --workspace --profile "$profile" --no-run ${benches[@]/#/--bench } 2>&1 | tail -1
sections=$(mktemp -d)
trap 'rm -rf "$sections"' EXIT
for bench in "${benches[@]}"; do
  {
    echo "## $bench"
    echo
    echo "\`scripts/bench.sh $bench\` on $(date -u +%Y-%m-%d) — $(sed -n 1p {lib,kernel}/benches/$bench.rs 2>/dev/null | sed 's#^//! ##')"
    echo
    echo '```text'
    cargo bench -q --workspace --profile "$profile" --bench "$bench" 2>/dev/null
    echo '```'
  } > "$sections/$bench.md"
done
machine="Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs),
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; torch $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))'),
transformers $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("transformers"))'); cargo profile \`$profile\`."
# Keep the sections not run this time, in lib/benches order.
.venv/bin/python - "$sections" "$machine" "${all[@]}" <<'PY'
import pathlib, re, sys
sections_dir, machine, order = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
out = pathlib.Path("BENCHMARKS.md")
kept = {}
if out.exists():
    for block in re.split(r"\n(?=## )", out.read_text()):
        if block.startswith("## "):
            kept[block.split("\n", 1)[0][3:].strip()] = block.rstrip("\n") + "\n"
for path in sections_dir.glob("*.md"):
    kept[path.stem] = path.read_text()
header = f"""# Benchmarks

Written by `scripts/bench.sh`; each figure comes from one run that measures tunebook and its
peer (Python transformers / peft / datasets from .venv) on the same machine, same model, same
data, same threads. Each section names the command and the day it ran.

{machine}
"""
body = "\n".join(kept[name] for name in order if name in kept)
out.write_text(header + "\n" + body)
PY
echo "wrote BENCHMARKS.md (${benches[*]})"
