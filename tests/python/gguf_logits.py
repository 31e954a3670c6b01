"""transformers' logits for a GGUF file, as users load one.

Usage: gguf_logits.py GGUF_FILE IDS_FILE OUT_FILE

Loads GGUF_FILE with `AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)` (fp32) and
writes its logits for IDS_FILE's `input_ids` to OUT_FILE (safetensors, key `logits`).
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file
import transformers as tf

gguf_file, ids_file, out_file = sys.argv[1:4]
ids = load_file(ids_file)["input_ids"]
# An absolute path: transformers looks for a bare file name in the working directory first.
gguf_file = os.path.abspath(gguf_file)
model = tf.AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf_file), gguf_file=gguf_file, dtype=torch.float32).eval()
with torch.no_grad():
    logits = model(input_ids=ids).logits
save_file({"logits": logits.float().contiguous()}, out_file)
