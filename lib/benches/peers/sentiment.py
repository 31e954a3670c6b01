"""Peer for benches/sentiment.rs: the same MiniLM sentiment fine-tuning with transformers' Trainer.

Usage: sentiment.py MODEL_DIR SPLIT_DIR SETTINGS_JSON THREADS
SPLIT_DIR holds train/validation/test.jsonl as tunebook wrote them (text, label, label_id).
Prints JSON: test accuracy, macro F1, training seconds and training examples/s.
"""
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
import transformers as tf
from datasets import load_dataset

model_dir, split_dir, settings, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
tf.logging.set_verbosity_error()

files = {name: os.path.join(split_dir, f"{name}.jsonl") for name in ["train", "validation", "test"]}
raw = load_dataset("json", data_files=files)
tokenizer = tf.AutoTokenizer.from_pretrained(model_dir)
# The shipped tokenizer.json pads every row to 128; padding is the collator's job here.
tokenizer.backend_tokenizer.no_padding()


def encode(batch):
    out = tokenizer(batch["text"], truncation=True, max_length=settings["max_len"])
    out["labels"] = batch["label_id"]
    return out


data = raw.map(encode, batched=True, remove_columns=raw["train"].column_names)
tf.set_seed(settings["seed"])
model = tf.AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)

# transformers 5 takes warmup as steps; tunebook rounds warmup_ratio × total steps up.
total_steps = math.ceil(len(data["train"]) / settings["batch_size"]) * settings["epochs"]
warmup_steps = math.ceil(settings["warmup_ratio"] * total_steps)

with tempfile.TemporaryDirectory() as out_dir:
    args = tf.TrainingArguments(
        output_dir=out_dir,
        learning_rate=settings["learning_rate"],
        num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["batch_size"],
        per_device_eval_batch_size=128,
        warmup_steps=warmup_steps,
        weight_decay=settings["weight_decay"],
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        seed=settings["seed"],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = tf.Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        data_collator=tf.DataCollatorWithPadding(tokenizer),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    logits = trainer.predict(data["test"]).predictions

predicted = np.argmax(logits, axis=-1)
labels = np.array(data["test"]["labels"])
f1 = []
for c in range(3):
    tp = np.sum((predicted == c) & (labels == c))
    precision = tp / max(np.sum(predicted == c), 1)
    recall = tp / max(np.sum(labels == c), 1)
    f1.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
examples = len(data["train"]) * settings["epochs"]
print(json.dumps({
    "accuracy": float(np.mean(predicted == labels)),
    "f1_macro": float(np.mean(f1)),
    "seconds": seconds,
    "examples_per_s": examples / seconds,
    "transformers": tf.__version__,
}))
