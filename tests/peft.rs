//! Fine-tuning methods: zero-init methods start from the base model, merge == unmerged,
//! training touches only the method's tensors, NF4 error bounds, losses go down on real
//! text, and LoRA adapters round-trip with Hugging Face PEFT (logits within 1e-4).
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};
use tunebook::loss::classification_loss;
use tunebook::models::{LoadOptions, Task};
use tunebook::nn::Module;
use tunebook::peft::{
    self, qlora, AdapterConfig, FullFineTuning, LoraBias, LoraConfig, PromptTuningConfig, QuantType, QuantizedWeight,
};
use tunebook::Model;
use tunebook_tests::{lm_loss, max_abs_diff, minilm_dir, run_python, smollm2_gguf, train, trainable};

/// A tiny random Llama saved by transformers, a PEFT-made adapter for it, and PEFT's logits.
fn references() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_python("peft_reference.py", &["make", dir.path().to_str().unwrap()]);
        dir
    })
    .path()
}

fn cpu() -> LoadOptions {
    LoadOptions::default().device(Device::Cpu).kind(Kind::Float)
}

fn tiny_llama() -> Model {
    Model::from_pretrained_with(references().join("base").to_str().unwrap(), cpu()).unwrap()
}

fn reference_ids() -> Tensor {
    let tensors: HashMap<String, Tensor> =
        Tensor::read_safetensors(references().join("reference.safetensors")).unwrap().into_iter().collect();
    tensors["input_ids"].shallow_clone()
}

fn logits(model: &Model, ids: &Tensor) -> Tensor {
    tch::no_grad(|| model.forward(ids, None))
}

/// Content fingerprint of every parameter, to prove frozen tensors did not move.
fn fingerprints(model: &Model) -> HashMap<String, u64> {
    use std::hash::{Hash, Hasher};
    let mut out = HashMap::new();
    model.visit_params("", &mut |name, t| {
        let bytes: Vec<u8> = Vec::try_from(t.detach().contiguous().flatten(0, -1).view_dtype(Kind::Uint8)).unwrap();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        out.insert(name.to_string(), h.finish());
    });
    out
}

/// Trains a few steps and checks frozen tensors are bit-identical and every trainable
/// tensor moved.
fn assert_only_method_parameters_change(model: &Model, lr: f64) {
    let ids = reference_ids();
    let before = fingerprints(model);
    let trainable_names: Vec<String> = trainable(model).into_iter().map(|(n, _)| n).collect();
    train(model, lr, 3, lm_loss(&ids));
    let after = fingerprints(model);
    for (name, hash) in &before {
        let changed = after[name] != *hash;
        let trains = trainable_names.contains(name);
        assert_eq!(changed, trains, "{name}: trainable = {trains} but changed = {changed}");
    }
}

#[test]
fn fresh_lora_and_adapters_leave_logits_identical_to_base() {
    let ids = reference_ids();
    let base = logits(&tiny_llama(), &ids);
    type Apply = Box<dyn Fn(&mut Model)>;
    let methods: Vec<(&str, Apply)> = vec![
        ("lora all-linear", Box::new(|m| drop(LoraConfig::new(8).all_linear().rslora(true).bias(LoraBias::All).apply(m).unwrap()))),
        ("lora + lm_head saved", Box::new(|m| drop(LoraConfig::new(4).modules_to_save(["lm_head"]).apply(m).unwrap()))),
        ("houlsby", Box::new(|m| drop(AdapterConfig::houlsby(8).apply(m).unwrap()))),
        ("pfeiffer", Box::new(|m| drop(AdapterConfig::pfeiffer(8).apply(m).unwrap()))),
    ];
    for (name, apply) in methods {
        let mut model = tiny_llama();
        apply(&mut model);
        assert!(peft::trainable_parameters(&model).trainable > 0, "{name}: nothing trainable");
        assert_eq!(max_abs_diff(&logits(&model, &ids), &base), 0.0, "{name}: fresh method changed the logits");
    }
}

#[test]
fn merged_lora_matches_unmerged_and_disabling_gives_the_base_model() {
    let ids = reference_ids();
    let mut model = tiny_llama();
    let base = logits(&model, &ids);
    let weight_before = model.named_parameters().into_iter().find(|(n, _)| n.ends_with("layers.0.self_attn.q_proj.weight")).unwrap().1.copy();
    LoraConfig::new(4).alpha(16.0).all_linear().init_lora_weights(false).apply(&mut model).unwrap();
    let adapted = logits(&model, &ids);
    assert!(max_abs_diff(&adapted, &base) > 1e-3, "a random LoRA must change the logits");

    assert_eq!(peft::merge(&mut model), 14, "2 layers × 7 linears");
    assert!(max_abs_diff(&logits(&model, &ids), &adapted) <= 1e-5, "merged differs from unmerged");
    assert_eq!(peft::unmerge(&mut model), 14);
    let weight_after = model.named_parameters().into_iter().find(|(n, _)| n.ends_with("layers.0.self_attn.q_proj.weight")).unwrap().1;
    assert!(max_abs_diff(&weight_after, &weight_before) <= 1e-6, "unmerge did not restore the base weight");

    let before = peft::with_adapters_disabled(&mut model, |m| logits(m, &ids));
    assert!(max_abs_diff(&before, &base) <= 1e-6, "disabled adapters must give the base model");
    assert!(max_abs_diff(&logits(&model, &ids), &adapted) <= 1e-6, "re-enabled adapters must give the adapted model");
}

#[test]
fn training_changes_only_the_methods_parameters() {
    let mut full = tiny_llama();
    let report = FullFineTuning::new().freeze_embeddings(true).freeze_layers([0]).apply(&mut full).unwrap();
    assert!(report.trainable > 0 && report.trainable < report.total);
    assert_only_method_parameters_change(&full, 1e-3);

    let mut lora = tiny_llama();
    LoraConfig::new(4).targets(["q_proj", "v_proj"]).bias(LoraBias::LoraOnly).apply(&mut lora).unwrap();
    assert_only_method_parameters_change(&lora, 1e-2);

    let mut qlora_model = tiny_llama();
    LoraConfig::new(4).all_linear().quantize(QuantType::Nf4).apply(&mut qlora_model).unwrap();
    assert_only_method_parameters_change(&qlora_model, 1e-2);

    let mut adapters = tiny_llama();
    AdapterConfig::houlsby(4).modules_to_save(["lm_head"]).apply(&mut adapters).unwrap();
    assert_only_method_parameters_change(&adapters, 1e-2);

    let mut prompt = tiny_llama();
    PromptTuningConfig::new(3).apply(&mut prompt).unwrap();
    assert_eq!(peft::trainable_parameters(&prompt).trainable, 3 * 32);
    assert_only_method_parameters_change(&prompt, 1e-2);
}

#[test]
fn report_counts_trainable_parameters_like_peft() {
    let mut model = tiny_llama();
    let total = model.num_parameters();
    let report = LoraConfig::new(4).targets(["q_proj", "v_proj"]).apply(&mut model).unwrap();
    // q_proj: 32→32, v_proj: 32→16 (2 KV heads of 8); A is r×in, B is out×r; 2 layers.
    let expected = 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4);
    assert_eq!(report.trainable, expected);
    assert_eq!(report.total, total + expected);
    assert!(report.to_string().starts_with(&format!("trainable params: {expected} || all params: ")), "{report}");
    assert!(report.listing(true).contains("model.layers.1.self_attn.v_proj.lora_B.weight"));
}

#[test]
fn bad_configs_are_errors_naming_the_field() {
    let mut model = tiny_llama();
    let err = LoraConfig::new(4).targets(["no_such_proj"]).apply(&mut model).unwrap_err().to_string();
    assert!(err.contains("target_modules") && err.contains("q_proj"), "{err}");
    let err = LoraConfig::new(0).apply(&mut model).unwrap_err().to_string();
    assert!(err.contains("r"), "{err}");
    let err = LoraConfig::new(4).target_pattern("(").apply(&mut model).unwrap_err().to_string();
    assert!(err.contains("regular expression"), "{err}");
    let err = FullFineTuning::new().freeze_layers([7]).apply(&mut model).unwrap_err().to_string();
    assert!(err.contains("layer 7"), "{err}");
    let err = LoraConfig::new(4).targets(["q_proj"]).modules_to_save(["q_proj"]).apply(&mut model).unwrap_err().to_string();
    assert!(err.contains("modules_to_save") && err.contains("q_proj"), "{err}");
    let err = AdapterConfig::pfeiffer(4).modules_to_save(["classifier"]).apply(&mut model).unwrap_err().to_string();
    assert!(err.contains("no linear layer named classifier"), "{err}");
    // A rejected config leaves the model as loaded: nothing trainable, no layer injected.
    assert_eq!(peft::trainable_parameters(&model).trainable, 0);
    let err = peft::save(&mut model, tempfile::tempdir().unwrap().path()).unwrap_err().to_string();
    assert!(err.contains("no LoRA layers"), "{err}");
}

#[test]
fn lora_saved_by_peft_loads_in_tunebook_with_the_same_logits() {
    let tensors: HashMap<String, Tensor> =
        Tensor::read_safetensors(references().join("reference.safetensors")).unwrap().into_iter().collect();
    let mut model = tiny_llama();
    let report = peft::load(&mut model, references().join("peft_lora")).unwrap();
    assert!(report.trainable > 0);
    let diff = max_abs_diff(&logits(&model, &tensors["input_ids"]), &tensors["logits"]);
    assert!(diff <= 1e-4, "max abs diff {diff} vs PEFT");
}

/// Saves `model`'s adapter, has Python PEFT load it on `base`, and compares logits.
fn assert_peft_reads_tunebook_adapter(model: &mut Model, base: &str) {
    let ids = reference_ids();
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    peft::save(model, &adapter).unwrap();
    let ids_file = dir.path().join("ids.safetensors");
    Tensor::write_safetensors(&[("input_ids", &ids)], &ids_file).unwrap();
    let out = dir.path().join("logits.safetensors");
    let base = references().join(base);
    run_python("peft_reference.py", &["logits", base.to_str().unwrap(), adapter.to_str().unwrap(), ids_file.to_str().unwrap(), out.to_str().unwrap()]);
    let theirs = Tensor::read_safetensors(&out).unwrap().remove(0).1;
    let diff = max_abs_diff(&logits(model, &ids), &theirs);
    assert!(diff <= 1e-4, "max abs diff {diff} vs PEFT");
}

#[test]
fn unloading_gives_the_base_model_back_and_another_adapter_loads_in_its_place() {
    let ids = reference_ids();
    let dir = tempfile::tempdir().unwrap();
    let mut adapters = Vec::new();
    for (i, targets) in [["q_proj", "v_proj"], ["k_proj", "o_proj"]].into_iter().enumerate() {
        let mut adapted = tiny_llama();
        tch::manual_seed(i as i64);
        LoraConfig::new(4).targets(targets).init_lora_weights(false).apply(&mut adapted).unwrap();
        let path = dir.path().join(format!("adapter-{i}"));
        peft::save(&mut adapted, &path).unwrap();
        adapters.push((path, logits(&adapted, &ids)));
    }
    let mut model = tiny_llama();
    let base = logits(&model, &ids);
    peft::load(&mut model, &adapters[0].0).unwrap();
    assert!(max_abs_diff(&logits(&model, &ids), &adapters[0].1) <= 1e-5, "first adapter loaded");
    peft::merge(&mut model);
    assert_eq!(peft::unload(&mut model).unwrap(), 2 * 2, "2 layers × 2 targets restored");
    assert!(max_abs_diff(&logits(&model, &ids), &base) <= 1e-5, "unload gives the base model back, merged or not");
    peft::load(&mut model, &adapters[1].0).unwrap();
    assert!(max_abs_diff(&logits(&model, &ids), &adapters[1].1) <= 1e-5, "the second adapter in place of the first");

    let mut quantized = tiny_llama();
    LoraConfig::new(4).targets(["q_proj"]).quantize(QuantType::Nf4).apply(&mut quantized).unwrap();
    let refused = peft::unload(&mut quantized).unwrap_err().to_string();
    assert!(refused.contains("4-bit") && refused.contains("load the base model again"), "{refused}");
}

#[test]
fn merged_lora_exports_a_hugging_face_folder_that_transformers_and_tunebook_load() {
    let ids = reference_ids();
    let mut model = tiny_llama();
    LoraConfig::new(4).alpha(8.0).targets(["q_proj", "v_proj", "down_proj"]).init_lora_weights(false).apply(&mut model).unwrap();
    let adapted = logits(&model, &ids);
    let dir = tempfile::tempdir().unwrap();
    let refused = model.save_pretrained(dir.path().join("unmerged")).unwrap_err().to_string();
    assert!(refused.contains("peft::merge"), "an unmerged LoRA is refused with the fix: {refused}");

    peft::merge(&mut model);
    let folder = dir.path().join("merged");
    model.save_pretrained(&folder).unwrap();
    let reloaded = Model::from_pretrained_with(folder.to_str().unwrap(), cpu()).unwrap();
    assert!(max_abs_diff(&logits(&reloaded, &ids), &adapted) <= 1e-5, "reloaded export differs from the adapted model");

    let ids_file = dir.path().join("ids.safetensors");
    Tensor::write_safetensors(&[("input_ids", &ids)], &ids_file).unwrap();
    let out = dir.path().join("logits.safetensors");
    run_python("peft_reference.py", &["logits", folder.to_str().unwrap(), "-", ids_file.to_str().unwrap(), out.to_str().unwrap()]);
    let theirs = Tensor::read_safetensors(&out).unwrap().remove(0).1;
    let diff = max_abs_diff(&adapted, &theirs);
    assert!(diff <= 1e-4, "transformers reads the export with max abs diff {diff}");
}

#[test]
fn lora_saved_by_tunebook_loads_in_peft_with_the_same_logits() {
    let mut model = tiny_llama();
    LoraConfig::new(4).alpha(8.0).targets(["q_proj", "k_proj", "gate_proj"]).rslora(true).init_lora_weights(false).apply(&mut model).unwrap();
    assert_peft_reads_tunebook_adapter(&mut model, "base");

    // Classification: a trained LoRA with biases-free Llama, plus the head saved whole.
    let path = references().join("base_classifier");
    let mut clf = Model::from_pretrained_with(path.to_str().unwrap(), cpu().task(Task::SequenceClassification { num_labels: 3 })).unwrap();
    LoraConfig::new(2).all_linear().modules_to_save(["score"]).apply(&mut clf).unwrap();
    let ids = reference_ids();
    let labels = Tensor::from_slice(&[0i64, 2]);
    train(&clf, 1e-2, 2, |m| classification_loss(&m.forward(&ids, None), &labels));
    assert_peft_reads_tunebook_adapter(&mut clf, "base_classifier");
}

#[test]
fn prompt_tuning_saves_and_loads_in_peft_format() {
    let mut model = tiny_llama();
    PromptTuningConfig::new(4).apply(&mut model).unwrap();
    let ids = reference_ids();
    let expected = logits(&model, &ids);
    let dir = tempfile::tempdir().unwrap();
    peft::save(&mut model, dir.path()).unwrap();
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "PROMPT_TUNING");
    assert_eq!(config["num_virtual_tokens"], 4);
    let mut reloaded = tiny_llama();
    peft::load(&mut reloaded, dir.path()).unwrap();
    assert_eq!(max_abs_diff(&logits(&reloaded, &ids), &expected), 0.0);
}

#[test]
fn nf4_and_fp4_round_trip_within_half_a_code_step() {
    tch::manual_seed(0);
    let weight = Tensor::randn([96, 200], (Kind::Float, Device::Cpu)) * 0.02;
    for quant_type in [QuantType::Nf4, QuantType::Fp4] {
        let q = QuantizedWeight::quantize(&weight, quant_type, false).unwrap();
        let back = q.dequantize(Kind::Float);
        assert_eq!(back.size(), weight.size());
        // Every element is off by at most half the widest code gap times its block's absmax.
        let absmax = q.absmax().repeat_interleave_self_int(64, 0, None).narrow(0, 0, 96 * 200).view([96, 200]);
        let bound = absmax * quant_type.max_rounding_error() + 1e-7;
        let excess = ((&back - &weight).abs() - bound).max().double_value(&[]);
        assert!(excess <= 0.0, "{quant_type:?}: error exceeds the bound by {excess}");
        let relative = ((&back - &weight).norm().double_value(&[])) / weight.norm().double_value(&[]);
        assert!(relative < 0.15, "{quant_type:?}: relative error {relative}");
        // Values on the code book come back exactly.
        let again = QuantizedWeight::quantize(&back, quant_type, false).unwrap().dequantize(Kind::Float);
        assert!(max_abs_diff(&again, &back) <= 1e-7, "{quant_type:?}: re-quantizing dequantized weights is not exact");
    }
}

#[test]
fn double_quantization_round_trips_scales_and_stays_under_4_2_bits() {
    tch::manual_seed(1);
    let weight = Tensor::randn([576, 1536], (Kind::Float, Device::Cpu)) * 0.05;
    let plain = QuantizedWeight::quantize(&weight, QuantType::Nf4, false).unwrap();
    let double = QuantizedWeight::quantize(&weight, QuantType::Nf4, true).unwrap();
    let (exact, approx) = (plain.absmax(), double.absmax());
    // 8-bit symmetric codes per block of 256 around the mean: error ≤ half a step.
    let step = (&exact - exact.mean(Kind::Float)).abs().max().double_value(&[]) / 127.0;
    assert!(max_abs_diff(&exact, &approx) <= step / 2.0 + 1e-7, "double-quantized absmax off by more than half a step");
    assert!(double.bits_per_parameter() <= 4.2, "{} bits per parameter", double.bits_per_parameter());
    assert!(plain.bits_per_parameter() > double.bits_per_parameter());
    let relative = (double.dequantize(Kind::Float) - &weight).norm().double_value(&[]) / weight.norm().double_value(&[]);
    assert!(relative < 0.15, "relative error {relative}");
}

#[test]
fn qlora_matches_lora_on_dequantized_weights() {
    let ids = reference_ids();
    let mut model = tiny_llama();
    let base = logits(&model, &ids);
    LoraConfig::new(4).all_linear().init_lora_weights(false).quantize(QuantType::Nf4).apply(&mut model).unwrap();
    let storage = qlora::storage(&mut model);
    assert_eq!(storage.layers, 14);
    let quantized = logits(&model, &ids);
    // Merging dequantizes each weight and adds B·A: the LoRA-on-dequantized-weights model.
    peft::merge(&mut model);
    assert!(max_abs_diff(&logits(&model, &ids), &quantized) <= 1e-4, "QLoRA differs from LoRA on the dequantized weights");
    assert_eq!(qlora::storage(&mut model).layers, 0, "merge leaves no quantized weight");
    let base_adapted = peft::with_adapters_disabled(&mut model, |m| logits(m, &ids));
    assert!(max_abs_diff(&base_adapted, &base) < 0.5 * base.abs().max().double_value(&[]), "4-bit base drifted too far");
}

// ---- real text: each method lowers the loss ----

const SENTENCES: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Rust programs are compiled ahead of time into fast native machine code.",
    "Paris is the capital of France and is famous for the Eiffel Tower.",
    "Water boils at one hundred degrees Celsius at sea level pressure.",
];

fn smollm2() -> Model {
    Model::from_pretrained_with(smollm2_gguf().to_str().unwrap(), cpu()).unwrap()
}

fn sentence_batch(model: &Model) -> Tensor {
    let encoded = model.tokenizer().unwrap().encode_batch(&SENTENCES, false).unwrap();
    let len = encoded.iter().map(Vec::len).min().unwrap();
    let rows: Vec<Tensor> = encoded.iter().map(|e| Tensor::from_slice(&e[..len].iter().map(|&i| i as i64).collect::<Vec<_>>())).collect();
    Tensor::stack(&rows, 0)
}

fn assert_loss_drops(name: &str, model: &Model, lr: f64) {
    let ids = sentence_batch(model);
    let losses = train(model, lr, 4, lm_loss(&ids));
    let last = tch::no_grad(|| lm_loss(&ids)(model)).double_value(&[]);
    assert!(last < losses[0] * 0.95, "{name}: loss {} → {last} ({losses:?})", losses[0]);
}

#[test]
fn lora_and_qlora_lower_the_loss_of_smollm2_on_real_text() {
    let mut model = smollm2();
    LoraConfig::new(8).alpha(16.0).targets(["q_proj", "v_proj"]).apply(&mut model).unwrap();
    assert_loss_drops("lora", &model, 3e-3);

    let mut model = smollm2();
    LoraConfig::new(8).alpha(16.0).targets(["q_proj", "v_proj"]).quantize(QuantType::Nf4).apply(&mut model).unwrap();
    let storage = qlora::storage(&mut model);
    println!("QLoRA storage: {storage}");
    assert!(storage.bits_per_parameter() <= 4.2, "{storage}");
    assert_loss_drops("qlora", &model, 3e-3);
}

#[test]
fn adapters_prompt_tuning_and_full_lower_the_loss_of_smollm2_on_real_text() {
    let mut model = smollm2();
    AdapterConfig::pfeiffer(16).apply(&mut model).unwrap();
    assert_loss_drops("pfeiffer adapters", &model, 3e-3);

    let mut model = smollm2();
    PromptTuningConfig::new(8).init_text("Write a simple true sentence:").apply(&mut model).unwrap();
    assert_loss_drops("prompt tuning", &model, 3e-2);

    let mut model = smollm2();
    FullFineTuning::new().freeze_embeddings(true).apply(&mut model).unwrap();
    assert_loss_drops("full", &model, 1e-4);
}

#[test]
fn lora_with_saved_head_lowers_classification_loss_of_minilm() {
    let task = Task::SequenceClassification { num_labels: 2 };
    let mut model = Model::from_pretrained_with(minilm_dir().to_str().unwrap(), cpu().task(task)).unwrap();
    LoraConfig::new(8).alpha(16.0).modules_to_save(["classifier"]).apply(&mut model).unwrap();
    let texts = ["I loved this film, it was wonderful.", "A dull, boring and far too long movie.", "Great acting and a moving story.", "Terrible script, I walked out."];
    let labels = Tensor::from_slice(&[1i64, 0, 1, 0]);
    let tok = model.tokenizer().unwrap();
    let encoded = tok.encode_batch(&texts, true).unwrap();
    let len = encoded.iter().map(Vec::len).max().unwrap();
    let pad = |e: &Vec<u32>, fill: i64, real: Option<i64>| {
        let row: Vec<i64> = (0..len).map(|i| e.get(i).map(|&t| real.unwrap_or(t as i64)).unwrap_or(fill)).collect();
        Tensor::from_slice(&row)
    };
    let ids = Tensor::stack(&encoded.iter().map(|e| pad(e, tok.pad_token_id() as i64, None)).collect::<Vec<_>>(), 0);
    let mask = Tensor::stack(&encoded.iter().map(|e| pad(e, 0, Some(1))).collect::<Vec<_>>(), 0);
    let loss = |m: &Model| classification_loss(&m.forward(&ids, Some(&mask)), &labels);
    let losses = train(&model, 1e-2, 5, loss);
    let last = tch::no_grad(|| loss(&model)).double_value(&[]);
    assert!(last < losses[0] * 0.8, "loss {} → {last}", losses[0]);
}
