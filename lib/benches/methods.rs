//! Cost of each fine-tuning method on SmolLM2-135M (CPU, fp32), side by side in one run.
//!
//! `cargo bench -p tunebook --bench methods` prints a markdown table: trainable parameters,
//! bytes of model weights in memory, peak process memory (VmHWM, reset before each method)
//! during AdamW training steps, and mean step time (batch 4 × 64 tokens). Rows marked
//! "+ checkpointing" recompute each layer in the backward pass instead of keeping it.
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use tunebook::loss::causal_lm_loss;
use tunebook::models::LoadOptions;
use tunebook::nn::Module;
use tunebook::peft::{self, qlora, AdapterConfig, FullFineTuning, LoraConfig, PromptTuningConfig, QuantType};
use tunebook::train::AdamW;
use tunebook::device::{process_memory, reset_peak_memory};
use tunebook::{Model, Result};

const BATCH: i64 = 4;
const SEQ: i64 = 64;
const STEPS: usize = 3;

type Apply = fn(&mut Model) -> Result<peft::TrainableParameters>;

/// Name, how to apply the method, and whether gradient checkpointing is on.
fn methods() -> Vec<(&'static str, Apply, bool)> {
    let lora: Apply = |m| LoraConfig::new(8).alpha(16.0).targets(["q_proj", "v_proj"]).apply(m);
    let qlora: Apply = |m| LoraConfig::new(8).alpha(16.0).targets(["q_proj", "v_proj"]).quantize(QuantType::Nf4).apply(m);
    vec![
        ("full", |m| FullFineTuning::new().apply(m), false),
        ("LoRA r=8 q,v", lora, false),
        ("LoRA r=8 q,v + checkpointing", lora, true),
        ("QLoRA NF4 r=8 q,v", qlora, false),
        ("QLoRA NF4 r=8 q,v + checkpointing", qlora, true),
        ("Pfeiffer adapters 64", |m| AdapterConfig::pfeiffer(64).apply(m), false),
        ("Houlsby adapters 64", |m| AdapterConfig::houlsby(64).apply(m), false),
        ("prompt tuning 20", |m| PromptTuningConfig::new(20).apply(m), false),
    ]
}

/// Bytes of every tensor the model holds, 4-bit weights and their scales included.
fn weight_bytes(model: &mut Model) -> i64 {
    let mut bytes = 0;
    model.visit_params("", &mut |name, t| {
        if !name.ends_with("weight_4bit") {
            bytes += t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        }
    });
    bytes + qlora::storage(model).bytes
}

fn main() {
    let options = LoadOptions::default().device(Device::Cpu).kind(Kind::Float);
    println!("| method | trainable params | trainable % | weight MiB | peak RSS MiB (train step) | step s |");
    println!("|---|---|---|---|---|---|");
    for (name, apply, checkpointing) in methods() {
        let mut model = Model::from_pretrained_with("smollm2-135m-instruct", options.clone()).expect("run scripts/setup.sh first");
        let report = apply(&mut model).expect("method applies to SmolLM2");
        model.set_gradient_checkpointing(checkpointing);
        let bytes = weight_bytes(&mut model);
        tch::manual_seed(0);
        let ids = Tensor::randint(model.tokenizer().unwrap().vocab_size() as i64, [BATCH, SEQ], (Kind::Int64, Device::Cpu));
        let params = model.named_parameters().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let mut optimizer = AdamW::new(params, (0.9, 0.999), 1e-8, 0.0);
        let mut step = || {
            let loss = causal_lm_loss(&model.forward(&ids, None), &ids);
            loss.backward();
            optimizer.step(1e-4);
            optimizer.zero_grad();
        };
        reset_peak_memory();
        step(); // warm-up: allocates optimizer state
        let start = Instant::now();
        for _ in 0..STEPS {
            step();
        }
        let seconds = start.elapsed().as_secs_f64() / STEPS as f64;
        let mib = |b: f64| b / (1024.0 * 1024.0);
        println!(
            "| {name} | {} | {:.3} | {:.1} | {:.0} | {seconds:.2} |",
            report.trainable,
            report.percent(),
            mib(bytes as f64),
            process_memory().peak_mib()
        );
        let storage = qlora::storage(&mut model);
        if storage.layers > 0 {
            println!("|  ↳ {storage} | | | | | |");
        }
    }
}
