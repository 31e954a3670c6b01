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
    # The tests' way of running llama.cpp's converter (tests/python/gguf_converter.py).
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../tests/python"))
    import gguf_converter

    convert = gguf_converter.load(converter_dir)
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
        convert(folder, out_file, "q8_0")


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
