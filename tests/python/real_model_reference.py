"""transformers' view of the shipped real models, for tunebook's parity tests.

Usage: real_model_reference.py smollm2 GGUF_FILE TEXT
       real_model_reference.py minilm MODEL_DIR SENTENCE [SENTENCE ...]

Prints one JSON object: token ids and the mean NLL (SmolLM2, loaded from the same GGUF
and dequantized by transformers/gguf-py), or mean-pooled embeddings (MiniLM).
"""
import json
import os
import sys

import torch
import transformers as tf

kind, path = sys.argv[1], sys.argv[2]
torch.set_grad_enabled(False)

if kind == "smollm2":
    text = sys.argv[3]
    folder, name = os.path.split(path)
    tok = tf.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = tf.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).eval()
    ids = tok(text, return_tensors="pt").input_ids
    loss = model(input_ids=ids, labels=ids).loss.item()
    print(json.dumps({"ids": ids[0].tolist(), "mean_nll": loss}))
elif kind == "minilm":
    sentences = sys.argv[3:]
    tok = tf.AutoTokenizer.from_pretrained(path)
    model = tf.AutoModel.from_pretrained(path).eval()
    batch = tok(sentences, padding=True, truncation=True, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    emb = (hidden * m).sum(1) / m.sum(1)
    print(json.dumps({"ids": batch["input_ids"].tolist(), "embeddings": emb.tolist()}))
else:
    sys.exit(f"unknown kind {kind}")
