"""Reference outputs from Hugging Face transformers for tunebook's parity tests.

Usage: model_reference.py OUT_DIR

Writes one folder per tiny random model (config.json + model.safetensors, saved by
transformers itself) and a reference.safetensors holding the inputs and transformers'
outputs for them. The Rust tests load each folder with tunebook and compare.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
import transformers as tf

from gguf_converter import perturb_biases_and_norms

torch.manual_seed(0)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)

VOCAB = 97
PAD = 0
ids = torch.randint(1, VOCAB, (2, 9))
# Right padding on the second row: transformers and tunebook must agree on real tokens.
mask = torch.ones_like(ids)
mask[1, 6:] = 0
ids[1, 6:] = PAD

llama_base = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False)

cases = {
    "llama": (tf.LlamaConfig(**llama_base), tf.LlamaForCausalLM),
    "llama3_rope": (tf.LlamaConfig(**{**llama_base, "tie_word_embeddings": True, "rope_theta": 500000.0,
                    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
                    tf.LlamaForCausalLM),
    "mistral": (tf.MistralConfig(**llama_base), tf.MistralForCausalLM),
    "qwen2": (tf.Qwen2Config(**llama_base), tf.Qwen2ForCausalLM),
    "llama_classifier": (tf.LlamaConfig(**llama_base, num_labels=3, pad_token_id=PAD), tf.LlamaForSequenceClassification),
    "gpt2": (tf.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4), tf.GPT2LMHeadModel),
    "bert": (tf.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64), tf.BertModel),
    "bert_classifier": (tf.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=64, num_labels=3),
                        tf.BertForSequenceClassification),
}

for name, (config, cls) in cases.items():
    model = cls(config).eval()
    perturb_biases_and_norms(model)
    folder = os.path.join(out, name)
    model.save_pretrained(folder, safe_serialization=True)
    with torch.no_grad():
        result = model(input_ids=ids, attention_mask=mask)
    if name == "bert":
        hidden = result.last_hidden_state
        m = mask.unsqueeze(-1).float()
        output = (hidden * m).sum(1) / m.sum(1)
    else:
        output = result.logits
    save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(), "output": output.contiguous()},
              os.path.join(folder, "reference.safetensors"))

with open(os.path.join(out, "done.json"), "w") as f:
    json.dump(sorted(cases), f)
