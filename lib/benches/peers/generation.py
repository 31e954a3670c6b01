"""Peer for benches/generation.rs: transformers greedy generation on the same GGUF.

Usage: generation.py GGUF_FILE PROMPT NEW_TOKENS THREADS
Prints JSON: tokens generated and tokens/s (best of 3 runs, after a warm-up).
"""
import json
import os
import sys
import time

import torch
import transformers as tf

path, prompt, new_tokens, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.set_grad_enabled(False)
folder, name = os.path.split(path)
tok = tf.AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = tf.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).eval()
ids = tok(prompt, return_tensors="pt").input_ids
kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True)
model.generate(ids, max_new_tokens=4, do_sample=False)
best = 0.0
for _ in range(3):
    start = time.perf_counter()
    out = model.generate(ids, **kwargs)
    elapsed = time.perf_counter() - start
    best = max(best, (out.shape[1] - ids.shape[1]) / elapsed)
print(json.dumps({"tokens": int(out.shape[1] - ids.shape[1]), "tokens_per_s": best}))
