//! Every model family against transformers, as users bring them: tiny random configs of each
//! family saved by transformers (GQA, tied and untied embeddings, biases where the family has
//! them), loaded from the Hugging Face folder and from GGUF files that llama.cpp's own
//! converter made of that folder (f32, f16, q8_0), with transformers reading the same files
//! (`gguf_file=`). Then LoRA, QLoRA and full fine-tuning lower the loss of each family, and a
//! LoRA saved by tunebook loads in Python peft with the same logits.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};
use tunebook::models::LoadOptions;
use tunebook::nn::Module;
use tunebook::peft::{self, FullFineTuning, LoraConfig, QuantType};
use tunebook::Model;
use tunebook_tests::{gguf_converter_dir, lm_loss, max_abs_diff, run_python, smollm2_gguf, train, tunebook_cli};

/// Every case of tests/python/family_reference.py.
const CASES: [&str; 10] = ["llama", "llama_tied", "llama3_rope", "mistral", "qwen2", "qwen3", "qwen3_tied", "phi3", "phi3_partial_rotary", "gemma3"];

/// The GGUF types the converter writes for each case.
const GGUF_TYPES: [&str; 3] = ["f32", "f16", "q8_0"];

/// Cases where transformers' GGUF reader drops what the file says (Llama 3's `rope_freqs`
/// tensor; Phi-3's `rope.dimension_count`: it rotates every dimension). tunebook is held to
/// the Hugging Face folder's logits on the f32 file there instead.
const TRANSFORMERS_GGUF_GAPS: [&str; 2] = ["llama3_rope", "phi3_partial_rotary"];

/// The models and transformers' logits, made once per test run (about four minutes); a
/// failure is kept too, so that every test reports it instead of running the script again.
fn references() -> &'static Path {
    static DIR: OnceLock<Result<tempfile::TempDir, String>> = OnceLock::new();
    let made = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (out, smollm2, converter) = (dir.path().to_str().unwrap().to_string(), smollm2_gguf(), gguf_converter_dir());
        let run = || run_python("family_reference.py", &[&out, smollm2.to_str().unwrap(), converter.to_str().unwrap()]);
        match std::panic::catch_unwind(run) {
            Ok(_) => Ok(dir),
            Err(panic) => Err(panic.downcast_ref::<String>().cloned().unwrap_or_else(|| "family_reference.py failed".into())),
        }
    });
    match made {
        Ok(dir) => dir.path(),
        Err(message) => panic!("{message}"),
    }
}

fn cpu() -> LoadOptions {
    LoadOptions::default().device(Device::Cpu).kind(Kind::Float)
}

fn load(path: &Path) -> Model {
    Model::from_pretrained_with(path.to_str().unwrap(), cpu()).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

struct Reference {
    dir: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Reference {
    fn of(case: &str) -> Self {
        let dir = references().join(case);
        let tensors = Tensor::read_safetensors(dir.join("reference.safetensors")).unwrap().into_iter().collect();
        Reference { dir, tensors }
    }
    fn ids(&self) -> &Tensor {
        &self.tensors["input_ids"]
    }
    fn mask(&self) -> &Tensor {
        &self.tensors["attention_mask"]
    }
    fn gguf(&self, case: &str, ty: &str) -> PathBuf {
        self.dir.join(format!("{case}.{ty}.gguf"))
    }

    /// Largest difference from `expected` on real (unpadded) tokens.
    fn diff(&self, model: &Model, expected: &str) -> f64 {
        let got = tch::no_grad(|| model.forward(self.ids(), Some(self.mask())));
        let keep = self.mask().unsqueeze(-1).to_kind(Kind::Float);
        max_abs_diff(&(&got * &keep), &(&self.tensors[expected] * &keep))
    }
}

/// tunebook's logits from the folder and from every GGUF of `case` against transformers'.
fn assert_family_matches_transformers(case: &str) {
    let reference = Reference::of(case);
    let diff = reference.diff(&load(&reference.dir), "hf");
    assert!(diff <= 1e-4, "{case}: HF folder, max abs diff {diff} vs transformers");
    for ty in GGUF_TYPES {
        let model = load(&reference.gguf(case, ty));
        let expected = match (TRANSFORMERS_GGUF_GAPS.contains(&case), ty) {
            (false, _) => format!("gguf_{ty}"),
            (true, "f32") => "hf".to_string(),
            (true, _) => continue,
        };
        let diff = reference.diff(&model, &expected);
        assert!(diff <= 1e-4, "{case}: {ty} GGUF, max abs diff {diff} vs transformers ({expected})");
    }
}

#[test]
fn llama_matches_transformers_from_folder_and_gguf() {
    assert_family_matches_transformers("llama");
}

#[test]
fn llama_with_tied_embeddings_matches_transformers_from_folder_and_gguf() {
    assert_family_matches_transformers("llama_tied");
}

#[test]
fn llama3_rope_scaling_matches_transformers_from_folder_and_gguf() {
    assert_family_matches_transformers("llama3_rope");
}

#[test]
fn mistral_with_sliding_window_matches_transformers_from_folder_and_gguf() {
    assert_family_matches_transformers("mistral");
}

#[test]
fn qwen2_matches_transformers_from_folder_and_gguf() {
    assert_family_matches_transformers("qwen2");
}

#[test]
fn qwen3_matches_transformers_from_folder_and_gguf() {
    assert_family_matches_transformers("qwen3");
    assert_family_matches_transformers("qwen3_tied");
}

#[test]
fn phi3_matches_transformers_from_folder_and_gguf() {
    assert_family_matches_transformers("phi3");
    assert_family_matches_transformers("phi3_partial_rotary");
}

#[test]
fn gemma3_matches_transformers_from_folder_and_gguf() {
    assert_family_matches_transformers("gemma3");
}

/// Before the q/k permutation was made per family, Qwen2 GGUFs were "un-permuted" as if they
/// were Llama's: logits far off while a chat answer could still look right.
#[test]
fn only_llama_ggufs_have_their_q_k_rows_permuted() {
    for case in ["llama", "qwen2"] {
        let reference = Reference::of(case);
        let file = tunebook::gguf::GgufFile::open(reference.gguf(case, "f32")).unwrap();
        let (_, stored) = file.dequantize("blk.0.attn_q.weight").unwrap();
        let model = load(&reference.gguf(case, "f32"));
        let loaded: Vec<f32> = Vec::try_from(model.named_parameters().into_iter().find(|(n, _)| n == "model.layers.0.self_attn.q_proj.weight").unwrap().1.flatten(0, -1)).unwrap();
        assert_eq!(loaded != stored, case == "llama", "{case}: q rows reordered on load = {}", loaded != stored);
    }
}

// ---- fine-tuning every family ----

fn assert_loss_drops(what: &str, model: &Model, ids: &Tensor, lr: f64) {
    let losses = train(model, lr, 8, lm_loss(ids));
    let last = tch::no_grad(|| lm_loss(ids)(model)).double_value(&[]);
    assert!(last < losses[0] * 0.95, "{what}: loss {} -> {last} ({losses:?})", losses[0]);
}

#[test]
fn lora_qlora_and_full_fine_tuning_lower_the_loss_of_every_family() {
    for case in CASES {
        let reference = Reference::of(case);
        // The unpadded first row, repeated: a batch the model can learn in a few steps.
        let ids = reference.ids().narrow(0, 0, 1).repeat([2, 1]);
        let mut model = load(&reference.dir);
        LoraConfig::new(8).alpha(16.0).all_linear().apply(&mut model).unwrap();
        assert_loss_drops(&format!("{case} LoRA"), &model, &ids, 1e-2);

        let mut model = load(&reference.dir);
        LoraConfig::new(8).alpha(16.0).all_linear().quantize(QuantType::Nf4).apply(&mut model).unwrap();
        assert_loss_drops(&format!("{case} QLoRA"), &model, &ids, 1e-2);

        let mut model = load(&reference.dir);
        FullFineTuning::new().apply(&mut model).unwrap();
        assert_loss_drops(&format!("{case} full"), &model, &ids, 1e-3);
    }
}

#[test]
fn lora_on_default_targets_uses_peft_names_of_each_family() {
    let expected = [("llama", "q_proj"), ("qwen3", "q_proj"), ("phi3", "qkv_proj"), ("gemma3", "q_proj")];
    for (case, first_target) in expected {
        let mut model = load(&references().join(case));
        let targets = LoraConfig::new(4).resolve_targets(&mut model).unwrap();
        assert!(targets[0].ends_with(first_target), "{case}: default targets {targets:?}");
        assert!(targets.iter().all(|t| !t.ends_with("o_proj")), "{case}: default targets {targets:?}");
    }
}

/// A trained LoRA of each family, saved by tunebook, gives the same logits in Python peft
/// (the fused Phi-3 linears under PEFT's names).
#[test]
fn lora_saved_for_each_family_loads_in_peft_with_the_same_logits() {
    for case in ["llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3"] {
        let reference = Reference::of(case);
        let mut model = load(&reference.dir);
        LoraConfig::new(4).alpha(8.0).all_linear().init_lora_weights(false).apply(&mut model).unwrap();
        let ids = reference.ids().narrow(0, 0, 1).shallow_clone();
        let expected = tch::no_grad(|| model.forward(&ids, None));
        let dir = tempfile::tempdir().unwrap();
        let (adapter, ids_file, out) = (dir.path().join("adapter"), dir.path().join("ids.safetensors"), dir.path().join("out.safetensors"));
        peft::save(&mut model, &adapter).unwrap();
        Tensor::write_safetensors(&[("input_ids", &ids)], &ids_file).unwrap();
        let args = ["logits", reference.dir.to_str().unwrap(), adapter.to_str().unwrap(), ids_file.to_str().unwrap(), out.to_str().unwrap()];
        run_python("peft_reference.py", &args);
        let got: HashMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
        let diff = max_abs_diff(&got["logits"], &expected);
        assert!(diff <= 1e-4, "{case}: peft's logits differ by {diff}");
    }
}

// ---- base models without a chat template ----

/// A copy of the tiny Llama with its chat template removed, as base models come.
fn base_model_without_template(dir: &Path) -> PathBuf {
    let source = references().join("llama");
    let copy = dir.join("base-llama");
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(source.join(name), copy.join(name)).unwrap();
    }
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(source.join("tokenizer_config.json")).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(copy.join("tokenizer_config.json"), config.to_string()).unwrap();
    copy
}

#[test]
fn a_model_without_chat_template_says_so_and_takes_the_plain_format_or_one_given() {
    let dir = tempfile::tempdir().unwrap();
    let with_template = load(&references().join("llama"));
    let template = with_template.tokenizer().unwrap().chat_template().map(str::to_string);
    assert!(template.is_some_and(|t| t.contains("<|im_start|>")), "chat_template.jinja beside the folder is read");

    let base = base_model_without_template(dir.path());
    let mut model = load(&base);
    let config = tunebook::GenerationConfig::default().max_new_tokens(3);
    let error = model.chat("Hi!", &config).unwrap_err().to_string();
    for part in ["no chat template", "set_chat_template(\"plain\")", "--chat-template plain"] {
        assert!(error.contains(part), "{part} missing from: {error}");
    }
    // Chat-format training data is refused with the same advice, naming the row.
    let data = tunebook::data::Dataset::from_examples(vec![tunebook::data::Example::pair("Hi", "Hello")]).unwrap();
    let error = data.tokenize(model.tokenizer().unwrap(), &Default::default()).unwrap_err().to_string();
    assert!(error.contains("no chat template") && error.contains("plain"), "{error}");

    model.set_chat_template("plain").unwrap();
    let text = model.tokenizer().unwrap().apply_chat_template(&[tunebook::ChatMessage::user("Hi!")], true).unwrap();
    assert_eq!(text, "### User:\nHi!\n\n### Assistant:\n");
    let eos = model.tokenizer().unwrap().id_to_token(model.tokenizer().unwrap().eos_token_ids()[0]).unwrap();
    let reply = model.tokenizer().unwrap().apply_chat_template(&[tunebook::ChatMessage::user("Hi"), tunebook::ChatMessage::assistant("Hello")], false).unwrap();
    assert!(reply.contains(&format!("Hello{eos}")), "replies end with the end-of-sequence token: {reply:?}");
    assert!(model.chat("Hi!", &config).is_ok());

    let own = dir.path().join("mine.jinja");
    std::fs::write(&own, "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}").unwrap();
    model.set_chat_template(own.to_str().unwrap()).unwrap();
    let text = model.tokenizer().unwrap().apply_chat_template(&[tunebook::ChatMessage::user("Hi!")], true).unwrap();
    assert_eq!(text, "<user>Hi!<assistant>");
    let error = model.set_chat_template("no/such/template.jinja").unwrap_err().to_string();
    assert!(error.contains("no/such/template.jinja") && error.contains("plain"), "{error}");

    // The command line: refused with the advice, then answered with --chat-template plain.
    let run = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", base.to_str().unwrap(), "--device", "cpu", "--chat", "--prompt", "Hi!", "--max-new-tokens", "2"];
        args.extend_from_slice(extra);
        tunebook_cli().args(&args).output().unwrap()
    };
    let refused = run(&[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--chat-template plain"), "{}", String::from_utf8_lossy(&refused.stderr));
    let answered = run(&["--chat-template", "plain"]);
    assert!(answered.status.success(), "{}", String::from_utf8_lossy(&answered.stderr));
}

#[test]
fn info_prints_what_a_person_reads_and_stable_json() {
    let gguf = references().join("gemma3").join("gemma3.q8_0.gguf");
    let out = tunebook_cli().args(["info", "--model", gguf.to_str().unwrap(), "--device", "cpu", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["family"], "Gemma 3");
    assert_eq!(json["architecture"], "gemma3_text");
    assert_eq!(json["task"], "causal_lm");
    assert_eq!(json["dtype"], "float32");
    assert_eq!(json["device"], "cpu");
    assert_eq!(json["layers"], 6);

    let out = tunebook_cli().args(["info", "--model", gguf.to_str().unwrap(), "--device", "cpu"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for part in ["Gemma 3", "causal LM", "float32", "cpu"] {
        assert!(text.contains(part), "{part} missing from:\n{text}");
    }
    for debug_name in ["CausalLm", "Float", "Cpu"] {
        assert!(!text.contains(debug_name), "Rust debug name {debug_name} in:\n{text}");
    }
}

// ---- GGUF out ----

/// transformers' logits for `ids` from a GGUF file (`gguf_file=`).
fn transformers_gguf_logits(file: &Path, ids: &Tensor) -> Tensor {
    let dir = tempfile::tempdir().unwrap();
    let (ids_file, out) = (dir.path().join("ids.safetensors"), dir.path().join("out.safetensors"));
    Tensor::write_safetensors(&[("input_ids", ids)], &ids_file).unwrap();
    run_python("gguf_logits.py", &[file.to_str().unwrap(), ids_file.to_str().unwrap(), out.to_str().unwrap()]);
    let got: HashMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    got["logits"].shallow_clone()
}

/// Mean next-token negative log-likelihood of `ids` under `logits`.
fn nll(logits: &Tensor, ids: &Tensor) -> f64 {
    tunebook::loss::causal_lm_loss(logits, ids).double_value(&[])
}

/// A model exported as GGUF (f16, q8_0, q4_0) loads in transformers and in tunebook with the
/// same logits, close to the original's; its metadata carries the tokenizer, chat template
/// and end-of-sequence token.
#[test]
fn exported_gguf_loads_in_transformers_and_tunebook_with_the_same_logits() {
    use tunebook::models::GgufQuant;
    let dir = tempfile::tempdir().unwrap();
    for case in ["llama", "llama3_rope", "qwen2", "qwen3", "phi3_partial_rotary", "gemma3"] {
        let reference = Reference::of(case);
        let mut model = load(&reference.dir);
        let ids = reference.ids().narrow(0, 0, 1).shallow_clone();
        let original = tch::no_grad(|| model.forward(&ids, None));
        for (quant, max_nll_change) in [(GgufQuant::F16, 1e-3), (GgufQuant::Q8_0, 1e-2), (GgufQuant::Q4_0, 0.2)] {
            let file = dir.path().join(format!("{case}-{quant:?}.gguf"));
            model.save_gguf(&file, quant).unwrap();
            let reloaded = load(&file);
            let ours = tch::no_grad(|| reloaded.forward(&ids, None));
            let theirs = transformers_gguf_logits(&file, &ids);
            // transformers reads neither Llama 3's rope_freqs nor Phi-3's rotary dimensions.
            if !TRANSFORMERS_GGUF_GAPS.contains(&case) {
                let diff = max_abs_diff(&ours, &theirs);
                assert!(diff <= 1e-3, "{case} {quant:?}: transformers' logits of the export differ from tunebook's by {diff}");
            }
            let change = (nll(&ours, &ids) - nll(&original, &ids)).abs();
            assert!(change <= max_nll_change, "{case} {quant:?}: NLL moved by {change} on export");
            if quant == GgufQuant::F16 {
                let diff = max_abs_diff(&ours, &original);
                assert!(diff <= 1e-2, "{case}: f16 export's logits differ by {diff} from the model's");
            }
        }
        let file = tunebook::gguf::GgufFile::open(dir.path().join(format!("{case}-F16.gguf"))).unwrap();
        let tokenizer = model.tokenizer().unwrap();
        assert_eq!(file.special_token("eos"), tokenizer.eos_token_ids().first().copied(), "{case}: eos in the metadata");
        assert_eq!(file.chat_template(), tokenizer.chat_template(), "{case}: chat template in the metadata");
        let text = "Hello world! 12345 <|im_start|>user\ncafé";
        let exported = file.tokenizer().unwrap().encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(exported, tokenizer.encode(text, false).unwrap(), "{case}: the exported tokenizer splits text as the model's");
    }
}

/// The shipped SmolLM2, exported to q8_0 through the command line: the file keeps its
/// tokenizer and chat template, and a chat answer from it stops at the end of the turn.
#[test]
fn export_command_writes_a_gguf_whose_chat_answers_stop_at_end_of_turn() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2-q8_0.gguf");
    let run = tunebook_cli().args(["export", "--model", "smollm2-135m-instruct", "--device", "cpu", "--to", "gguf", "--quant", "q8_0", "--out", out.to_str().unwrap()]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("MiB"));
    let model = load(&out);
    let config = tunebook::GenerationConfig::default().max_new_tokens(48);
    let ids = model.tokenizer().unwrap().encode(&model.tokenizer().unwrap().apply_chat_template(&[tunebook::ChatMessage::user("What is the capital of France?")], true).unwrap(), false).unwrap();
    let answer = model.generate_ids(&[ids], &config).unwrap().remove(0);
    assert!(answer.contains("Paris"), "{answer}");
    let tokens = model.tokenizer().unwrap().encode(&answer, false).unwrap();
    assert!(tokens.len() < 47, "the answer ran to the token limit instead of ending its turn: {answer:?}");
}
