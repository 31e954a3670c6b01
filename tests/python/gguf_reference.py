"""Reference values for tests/gguf.rs, computed with the Python stack users compare against.

Usage: python gguf_reference.py REQUEST_JSON OUT_DIR

REQUEST_JSON holds
    {"tokenizers": [{"gguf": path, "texts": [str, ...]}, ...],
     "tensors": [{"gguf": path, "name": str}, ...]}
Writes OUT_DIR/reference.json:
    {"ids": [[[int, ...] per text] per tokenizer], "shapes": [[int, ...] per tensor]}
with the ids transformers' GGUF tokenizer gives each text (no special tokens added), and each
tensor's shape outermost first. The values gguf-py dequantises go to OUT_DIR/tensor<i>.f32 as raw
little-endian float32.
"""
import json
import os
import sys

from gguf import GGUFReader
from gguf.quants import dequantize
from transformers import AutoTokenizer


def main() -> None:
    request_path, out_dir = sys.argv[1], sys.argv[2]
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)

    ids = []
    for entry in request["tokenizers"]:
        path = entry["gguf"]
        tokenizer = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
        ids.append([tokenizer.encode(text, add_special_tokens=False) for text in entry["texts"]])

    readers = {}
    shapes = []
    for index, entry in enumerate(request["tensors"]):
        path = entry["gguf"]
        if path not in readers:
            readers[path] = {t.name: t for t in GGUFReader(path).tensors}
        tensor = readers[path][entry["name"]]
        values = dequantize(tensor.data, tensor.tensor_type)
        # gguf-py lists dimensions innermost first.
        shapes.append([int(d) for d in reversed(tensor.shape)])
        values.astype("<f4").tofile(os.path.join(out_dir, f"tensor{index}.f32"))

    with open(os.path.join(out_dir, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"ids": ids, "shapes": shapes}, f)


if __name__ == "__main__":
    main()
