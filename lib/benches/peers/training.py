"""Peer for benches/training.rs: training steps of SmolLM2-135M with transformers + peft
(+ bitsandbytes for QLoRA) on the same weights, batch, sequence length and threads.

Usage: training.py MODEL_DIR METHOD BATCH SEQ STEPS THREADS CHECKPOINTING
METHOD: full | lora | lora-masked | qlora (r=8 on q_proj, v_proj; QLoRA: NF4, double
quantization; lora-masked: labels -100 on the first half of each row, like prompts);
CHECKPOINTING: 1 for gradient checkpointing (model.gradient_checkpointing_enable()).
Prints JSON: training tokens/s over the timed steps and the peak resident memory (VmHWM)
during the steps, reset after loading as the tunebook side does.
TUNEBOOK_BENCH_DEVICE=cuda trains in bf16 on the first GPU instead (benches/training.rs --gpu).
"""
import os
import ctypes
import json
import sys
import time

import torch
import transformers as tf

folder, method = sys.argv[1], sys.argv[2]
batch, seq, steps, threads, checkpointing = map(int, sys.argv[3:8])
torch.set_num_threads(threads)
tf.logging.set_verbosity_error()
device = os.environ.get("TUNEBOOK_BENCH_DEVICE", "cpu")
dtype = torch.bfloat16 if device == "cuda" else torch.float32


def load():
    # The weights tunebook dequantized from the shipped GGUF and exported (save_pretrained),
    # so both sides train the very same fp32 model; bitsandbytes quantizes QLoRA's.
    if method != "qlora":
        return tf.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
    quant = tf.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )
    return tf.AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=dtype, device_map=device)


model = load()
if checkpointing:
    # Frozen embeddings under (Q)LoRA: the checkpointed layers need inputs that require grad.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
if method in ("lora", "lora-masked", "qlora"):
    import peft

    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, config)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
torch.manual_seed(0)
ids = torch.randint(model.config.vocab_size, (batch, seq), device=device)
labels = ids.clone()
if method.endswith("-masked"):
    labels[:, : seq // 2] = -100


def step():
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def reset_peak():
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def synchronize():
    if device == "cuda":
        torch.cuda.synchronize()


reset_peak()
step()  # warm-up: allocates the optimizer state
synchronize()
start = time.perf_counter()
for _ in range(steps):
    step()
synchronize()
seconds = (time.perf_counter() - start) / steps
print(json.dumps({"tokens_per_s": batch * seq / seconds, "step_s": seconds, "peak_mib": peak_mib()}))
