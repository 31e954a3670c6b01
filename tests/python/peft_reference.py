"""Hugging Face PEFT side of tunebook's adapter interop tests.

Usage:
  peft_reference.py make OUT_DIR
      Saves a tiny random Llama (transformers) to OUT_DIR/base, a LoRA adapter made by
      PEFT with non-zero B to OUT_DIR/peft_lora, and OUT_DIR/reference.safetensors with
      input_ids and the logits of base+adapter computed by PEFT.
  peft_reference.py logits BASE_DIR ADAPTER_DIR IDS_FILE OUT_FILE
      Loads ADAPTER_DIR (saved by tunebook) with PeftModel.from_pretrained on BASE_DIR (any
      family transformers' Auto classes know) and
      writes its logits for IDS_FILE's input_ids to OUT_FILE.
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file
import transformers as tf
from peft import LoraConfig, PeftModel, get_peft_model

VOCAB = 97


def make(out):
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                            rms_norm_eps=1e-6, tie_word_embeddings=False, pad_token_id=0)
    base = tf.LlamaForCausalLM(config).eval()
    base.save_pretrained(os.path.join(out, "base"), safe_serialization=True)
    classifier = tf.LlamaForSequenceClassification(tf.LlamaConfig(**{**config.to_dict(), "num_labels": 3})).eval()
    classifier.save_pretrained(os.path.join(out, "base_classifier"), safe_serialization=True)
    lora = LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                      lora_dropout=0.0, init_lora_weights=False, use_rslora=True, task_type="CAUSAL_LM")
    model = get_peft_model(base, lora).eval()
    # PEFT's init_lora_weights=False draws B small; scale it so the adapter clearly changes logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.5)
    model.save_pretrained(os.path.join(out, "peft_lora"))
    ids = torch.randint(1, VOCAB, (2, 9))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    save_file({"input_ids": ids, "logits": logits.contiguous()}, os.path.join(out, "reference.safetensors"))


def logits(base_dir, adapter_dir, ids_file, out_file):
    ids = load_file(ids_file)["input_ids"]
    config = tf.AutoConfig.from_pretrained(base_dir)
    classifier = config.architectures[0].endswith("SequenceClassification")
    cls = tf.AutoModelForSequenceClassification if classifier else tf.AutoModelForCausalLM
    base = cls.from_pretrained(base_dir, dtype=torch.float32).eval()
    # "-": the base folder alone (e.g. a merged model tunebook exported).
    model = base if adapter_dir == "-" else PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        out = model(input_ids=ids).logits
    save_file({"logits": out.contiguous()}, out_file)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "logits":
        logits(*sys.argv[2:6])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
