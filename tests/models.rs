//! Models against Hugging Face transformers: tiny random configs of every family
//! (logits within 1e-4), the real SmolLM2 and MiniLM, generation, and bad input.
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use tch::{Device, Kind, Tensor};
use tunebook::models::{LoadOptions, Task};
use tunebook::{GenerationConfig, Model};
use tunebook_tests::{max_abs_diff, minilm_dir, run_python, smollm2_gguf};

/// Tiny random models and transformers' outputs for them, made once per test run.
fn references() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_python("model_reference.py", &[dir.path().to_str().unwrap()]);
        dir
    })
    .path()
}

fn cpu() -> LoadOptions {
    LoadOptions::default().device(Device::Cpu).kind(Kind::Float)
}

fn reference(name: &str) -> (PathBuf, Tensor, Tensor, Tensor) {
    let dir = references().join(name);
    let tensors: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("reference.safetensors")).unwrap().into_iter().collect();
    (dir, tensors["input_ids"].shallow_clone(), tensors["attention_mask"].shallow_clone(), tensors["output"].shallow_clone())
}

/// Loads reference `name` with tunebook and compares its output with transformers' on
/// the real (unpadded) tokens.
fn assert_matches_transformers(name: &str) {
    let (dir, ids, mask, expected) = reference(name);
    let model = Model::from_pretrained_with(dir.to_str().unwrap(), cpu()).unwrap();
    let got = tch::no_grad(|| model.forward(&ids, Some(&mask)));
    assert_eq!(got.size(), expected.size(), "{name}: output shape");
    let diff = if got.dim() == 3 {
        let keep = mask.unsqueeze(-1).to_kind(Kind::Float);
        max_abs_diff(&(&got * &keep), &(&expected * &keep))
    } else {
        max_abs_diff(&got, &expected)
    };
    assert!(diff <= 1e-4, "{name}: max abs diff {diff} vs transformers");
}

#[test]
fn llama_matches_transformers() {
    assert_matches_transformers("llama");
}

#[test]
fn llama3_rope_scaling_and_tied_embeddings_match_transformers() {
    assert_matches_transformers("llama3_rope");
}

#[test]
fn mistral_matches_transformers() {
    assert_matches_transformers("mistral");
}

#[test]
fn qwen2_with_qkv_bias_matches_transformers() {
    assert_matches_transformers("qwen2");
}

#[test]
fn llama_sequence_classification_matches_transformers() {
    assert_matches_transformers("llama_classifier");
}

#[test]
fn gpt2_matches_transformers() {
    assert_matches_transformers("gpt2");
}

#[test]
fn bert_mean_pooled_embeddings_match_transformers() {
    assert_matches_transformers("bert");
}

#[test]
fn bert_sequence_classification_matches_transformers() {
    assert_matches_transformers("bert_classifier");
}

#[test]
fn kv_cache_gives_the_same_logits_as_a_full_pass() {
    let (dir, ids, _, _) = reference("llama");
    let model = Model::from_pretrained_with(dir.to_str().unwrap(), cpu()).unwrap();
    let _g = tch::no_grad_guard();
    let full = model.forward(&ids, None);
    let mut cache = model.new_cache();
    let first = model.forward_with(&ids.narrow(1, 0, 5), None, None, Some(&mut cache));
    let mut steps = vec![first];
    for t in 5..ids.size()[1] {
        steps.push(model.forward_with(&ids.narrow(1, t, 1), None, None, Some(&mut cache)));
    }
    let incremental = Tensor::cat(&steps, 1);
    assert!(max_abs_diff(&full, &incremental) < 1e-4);
}

#[test]
fn packed_segments_equal_separate_examples() {
    let (dir, ids, _, _) = reference("llama");
    let model = Model::from_pretrained_with(dir.to_str().unwrap(), cpu()).unwrap();
    let _g = tch::no_grad_guard();
    let (a, b) = (ids.get(0).narrow(0, 0, 4), ids.get(1).narrow(0, 0, 5));
    let packed = Tensor::cat(&[&a, &b], 0).unsqueeze(0);
    let segments = Tensor::from_slice(&[0i64, 0, 0, 0, 1, 1, 1, 1, 1]).unsqueeze(0);
    let out = model.forward_with(&packed, None, Some(&segments), None);
    let alone_a = model.forward(&a.unsqueeze(0), None);
    let alone_b = model.forward(&b.unsqueeze(0), None);
    assert!(max_abs_diff(&out.narrow(1, 0, 4), &alone_a) < 1e-4);
    assert!(max_abs_diff(&out.narrow(1, 4, 5), &alone_b) < 1e-4);
}

#[test]
fn left_padded_batch_generates_like_single_prompts() {
    let model = smollm2();
    let config = GenerationConfig::default().max_new_tokens(8);
    let prompts = ["The capital of France is", "One, two, three, four,"];
    let batched = model.generate_batch(&prompts, &config).unwrap();
    for (prompt, together) in prompts.iter().zip(&batched) {
        assert_eq!(&model.generate(prompt, &config).unwrap(), together, "prompt {prompt:?}");
    }
}

/// The real SmolLM2, loaded once and shared (tensors are not `Sync`, hence the lock).
fn smollm2() -> MutexGuard<'static, Model> {
    static MODEL: OnceLock<Mutex<Model>> = OnceLock::new();
    let lock = MODEL.get_or_init(|| Mutex::new(Model::from_pretrained_with("smollm2-135m-instruct", cpu()).unwrap()));
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn smollm2_scores_like_transformers_on_the_same_weights() {
    let text = "The quick brown fox jumps over the lazy dog. Paris is the capital and largest city of France.";
    let reference: serde_json::Value =
        serde_json::from_str(&run_python("real_model_reference.py", &["smollm2", smollm2_gguf().to_str().unwrap(), text])).unwrap();
    let model = smollm2();
    let ids: Vec<u64> = model.tokenizer().unwrap().encode(text, true).unwrap().into_iter().map(u64::from).collect();
    let expected_ids: Vec<u64> = serde_json::from_value(reference["ids"].clone()).unwrap();
    assert_eq!(ids, expected_ids, "tokenization differs from transformers");
    let score = model.score(text).unwrap();
    let expected = reference["mean_nll"].as_f64().unwrap();
    assert!((score.mean_nll - expected).abs() < 0.01, "mean NLL {} vs transformers {expected}", score.mean_nll);
    assert!((score.perplexity - score.mean_nll.exp()).abs() < 1e-9);
}

#[test]
fn smollm2_chat_answers_paris() {
    let answer = smollm2().chat("What is the capital of France?", &GenerationConfig::default().max_new_tokens(24)).unwrap();
    assert!(answer.contains("Paris"), "answer: {answer}");
}

#[test]
fn stop_strings_end_generation_before_them() {
    let config = GenerationConfig::default().max_new_tokens(30).stop(",");
    let text = smollm2().generate("Monday, Tuesday, Wednesday", &config).unwrap();
    assert!(!text.contains(','), "{text:?}");
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let config = GenerationConfig::default().max_new_tokens(12).temperature(0.9).top_p(0.9).top_k(40).seed(7);
    let model = smollm2();
    let a = model.generate("Once upon a time", &config).unwrap();
    let b = model.generate("Once upon a time", &config).unwrap();
    assert_eq!(a, b);
    let greedy = model.generate("Once upon a time", &GenerationConfig::default().max_new_tokens(12)).unwrap();
    let other_seed = model.generate("Once upon a time", &config.clone().seed(8)).unwrap();
    assert!(a != greedy || a != other_seed, "sampling never departed from greedy decoding");
}

#[test]
fn minilm_embeddings_match_sentence_transformers_pooling() {
    let sentences = ["A man is playing a guitar.", "The weather is lovely today, isn't it?"];
    let dir = minilm_dir();
    let mut args = vec!["minilm", dir.to_str().unwrap()];
    args.extend(sentences);
    let reference: serde_json::Value = serde_json::from_str(&run_python("real_model_reference.py", &args)).unwrap();
    let model = Model::from_pretrained_with("all-minilm-l6-v2", cpu()).unwrap();
    assert_eq!(model.task, Task::Embedding);
    let tok = model.tokenizer().unwrap();
    for (i, sentence) in sentences.iter().enumerate() {
        let ids: Vec<i64> = tok.encode(sentence, true).unwrap().into_iter().map(i64::from).collect();
        let expected_ids: Vec<i64> = serde_json::from_value(reference["ids"][i].clone()).unwrap();
        assert_eq!(ids, expected_ids[..ids.len()], "ids of {sentence:?}");
        let got = tch::no_grad(|| model.forward(&Tensor::from_slice(&ids).unsqueeze(0), None)).squeeze_dim(0);
        let expected: Vec<f32> = serde_json::from_value(reference["embeddings"][i].clone()).unwrap();
        let expected = Tensor::from_slice(&expected);
        let cosine = got.dot(&expected).double_value(&[]) / (got.norm().double_value(&[]) * expected.norm().double_value(&[]));
        assert!(cosine >= 0.9999, "{sentence:?}: cosine {cosine}");
    }
}

fn load_error(path: &Path) -> String {
    match Model::from_pretrained_with(path.to_str().unwrap(), cpu()) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

/// A copy of a reference model folder to break.
fn broken_copy(name: &str) -> tempfile::TempDir {
    let (src, ..) = reference(name);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn missing_truncated_and_mismatched_files_are_clear_errors() {
    let dir = broken_copy("llama");
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_error(dir.path());
    assert!(msg.contains("model.safetensors"), "{msg}");

    std::fs::remove_file(&weights).unwrap();
    let msg = load_error(dir.path());
    assert!(msg.contains("model.safetensors") && msg.contains("missing"), "{msg}");

    let dir = broken_copy("llama");
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap().replace("\"intermediate_size\": 64", "\"intermediate_size\": 65");
    std::fs::write(&config, text).unwrap();
    let msg = load_error(dir.path());
    assert!(msg.contains("gate_proj.weight") && msg.contains("[65, 32]") && msg.contains("[64, 32]"), "{msg}");

    let text = std::fs::read_to_string(&config).unwrap().replace("\"model_type\": \"llama\"", "\"model_type\": \"falcon\"");
    std::fs::write(&config, text).unwrap();
    let msg = load_error(dir.path());
    assert!(msg.contains("falcon") && msg.contains("llama"), "{msg}");

    std::fs::write(&config, "{ not json").unwrap();
    let msg = load_error(dir.path());
    assert!(msg.contains("config.json") && msg.contains("JSON"), "{msg}");
}

#[test]
fn a_tokenizer_from_another_model_is_rejected() {
    let dir = broken_copy("llama");
    std::fs::copy(minilm_dir().join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let msg = load_error(dir.path());
    assert!(msg.contains("tokenizer") && msg.contains("30522") && msg.contains("97"), "{msg}");
}

#[test]
fn unknown_names_and_corrupt_gguf_are_clear_errors() {
    let msg = Model::from_pretrained("no-such-model").err().unwrap().to_string();
    assert!(msg.contains("no-such-model") && msg.contains("smollm2-135m-instruct"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("broken.gguf");
    std::fs::write(&gguf, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let msg = load_error(&gguf);
    assert!(msg.contains("broken.gguf"), "{msg}");
}

#[test]
fn offline_hub_miss_says_how_to_fix_it() {
    let home = tempfile::tempdir().unwrap();
    // Set for the process; no other test in this binary reads the hub.
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let msg = Model::from_pretrained("someorg/some-model").err().unwrap().to_string();
    assert!(msg.contains("HF_HUB_OFFLINE") && msg.contains(home.path().to_str().unwrap()), "{msg}");
}

#[test]
fn info_reports_the_real_smollm2_size() {
    let s = smollm2().summary();
    assert_eq!((s.layers, s.hidden_size, s.vocab_size), (30, 576, Some(49152)));
    assert_eq!(s.parameters, 134_515_008);
    assert_eq!(s.memory_bytes, 4 * 134_515_008);
}

/// GPT-2 keeps its projections as `[in, out]` Conv1D weights: an exported folder has them so
/// again, and transformers reads it with the same logits.
#[test]
fn gpt2_exports_a_folder_transformers_reads_with_the_same_logits() {
    let (dir, ids, _, _) = reference("gpt2");
    let mut model = Model::from_pretrained_with(dir.to_str().unwrap(), cpu()).unwrap();
    let expected = tch::no_grad(|| model.forward(&ids, None));
    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("exported");
    model.save_pretrained(&folder).unwrap();
    let reloaded = Model::from_pretrained_with(folder.to_str().unwrap(), cpu()).unwrap();
    assert_eq!(max_abs_diff(&tch::no_grad(|| reloaded.forward(&ids, None)), &expected), 0.0);
    let (ids_file, logits_file) = (out.path().join("ids.safetensors"), out.path().join("logits.safetensors"));
    Tensor::write_safetensors(&[("input_ids", &ids)], &ids_file).unwrap();
    run_python("peft_reference.py", &["logits", folder.to_str().unwrap(), "-", ids_file.to_str().unwrap(), logits_file.to_str().unwrap()]);
    let theirs: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&logits_file).unwrap().into_iter().collect();
    let diff = max_abs_diff(&theirs["logits"], &expected);
    assert!(diff <= 1e-4, "transformers' logits of the exported GPT-2 differ by {diff}");
}
