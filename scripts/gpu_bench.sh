#!/usr/bin/env bash
# The GPU half of the training benchmark: tunebook next to transformers + peft in bf16 on a
# machine with a CUDA GPU and its own torch 2.11 (the lent `device` machine: it has no
# registry access and carries at most 64 MiB, so the binary is built here and the weights
# are made there). Two steps:
#   scripts/gpu_bench.sh prepare   here: builds benches/training.rs with --features
#                                  tunebook/cuda, strips it, and puts it in .device/ (git-
#                                  ignored) with the peer script, SmolLM2-135M's config and
#                                  tokenizer, and bitsandbytes for the peer (~18 MB in all)
#   scripts/gpu_bench.sh run       there, in the repository root, with .device carried:
#                                  random weights for SmolLM2-135M's architecture from that
#                                  machine's transformers, the binary on that machine's
#                                  libtorch, the table into $OUT/gpu-training.md
# `run` without a GPU is a dry run on the CPU in fp32 (everything but CUDA is exercised).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
carried=.device
case "${1:-}" in
prepare)
  scripts/setup.sh >/dev/null
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tunebook/target}
  grep -qx "/$carried/" .git/info/exclude 2>/dev/null || echo "/$carried/" >>.git/info/exclude
  rm -rf "$carried" && mkdir -p "$carried/peers" "$carried/smollm2"
  # The config and tokenizer come from the CPU build (the CUDA one needs libraries only
  # the GPU machine has).
  cargo bench -q -p tunebook --bench training -- --export-config "$root/$carried/smollm2"
  binary=$(cargo bench -p tunebook --bench training --features cuda --no-run --message-format=json \
    | .venv/bin/python -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and "training" in m["executable"]][-1])')
  strip -o "$carried/training" "$binary"
  cp lib/benches/peers/training.py "$carried/peers/"
  # The peer's QLoRA needs bitsandbytes, which that machine lacks: its Python files and the
  # CUDA 13.0 (and CPU) kernels of the version installed here, ~5 MB of its 125.
  bnb=$(.venv/bin/python -c 'import bitsandbytes, os; print(os.path.dirname(bitsandbytes.__file__))')
  mkdir -p "$carried/site"
  cp -r "$bnb" "$carried/site/"
  find "$carried/site/bitsandbytes" \( -name '__pycache__' -o -name '*.so' ! -name libbitsandbytes_cpu.so ! -name libbitsandbytes_cuda130.so \) -prune -exec rm -rf {} +
  du -sh "$carried"
  echo "now, on the GPU machine (device tool): run command 'bash scripts/gpu_bench.sh run' with carry ['$carried']"
  ;;
run)
  out=${OUT:-$carried/out}
  mkdir -p "$out"
  python=${TUNEBOOK_BENCH_PYTHON:-python3}
  [ -x "$carried/training" ] || { echo "no $carried/training: run 'scripts/gpu_bench.sh prepare' first, then carry $carried" >&2; exit 1; }
  model=/tmp/tunebook-smollm2-random
  "$python" - "$carried/smollm2" "$model" <<'PY'
import shutil, sys, pathlib
import torch, transformers as tf
source, target = map(pathlib.Path, sys.argv[1:])
torch.manual_seed(0)
config = tf.AutoConfig.from_pretrained(source)
model = tf.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32)
model.save_pretrained(target)
for f in source.iterdir():
    if f.name != "config.json":
        shutil.copy(f, target / f.name)
print(f"random-weight {config.model_type} with {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters in {target}")
PY
  torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
  TUNEBOOK_BENCH_PEERS="$carried/peers" TUNEBOOK_BENCH_PYTHON="$python" PYTHONPATH="$root/$carried/site${PYTHONPATH:+:$PYTHONPATH}" \
    "$carried/training" --bench --gpu "$model" 2>&1 | tee "$out/gpu-training.md"
  ;;
*)
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
