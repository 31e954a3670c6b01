//! What every method shares: freezing, the trainable-parameter report, `modules_to_save`,
//! and switching injected layers on and off.
use super::adapter::AdapterLayer;
use super::lora::LoraLayer;
use crate::models::Model;
use crate::nn::{linear, Linear, LinearHook, Module};
use crate::{Error, Result};
use std::fmt;
use tch::{Kind, Tensor};

/// Marks every parameter of the model frozen (`requires_grad = false`).
pub fn freeze(model: &Model) {
    model.visit_params("", &mut |_, t| {
        let _ = t.set_requires_grad(false);
    });
}

/// Marks parameters whose name satisfies `pick` trainable.
pub(crate) fn unfreeze_where(model: &Model, pick: impl Fn(&str) -> bool) {
    model.visit_params("", &mut |name, t| {
        if pick(name) {
            let _ = t.set_requires_grad(true);
        }
    });
}

/// One parameter tensor of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParameterRow {
    pub name: String,
    pub shape: Vec<i64>,
    pub numel: i64,
    pub trainable: bool,
}

/// Trainable vs total parameters, like PEFT's `print_trainable_parameters`; `Display`
/// prints the one-line summary, [`listing`](Self::listing) one line per tensor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainableParameters {
    pub trainable: i64,
    /// All parameters, counting 4-bit quantized base weights by their element count
    /// (two per stored byte), as PEFT does.
    pub total: i64,
    pub rows: Vec<ParameterRow>,
}

impl TrainableParameters {
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.trainable as f64 / self.total as f64
        }
    }

    /// One line per parameter tensor (only trainable ones when `trainable_only`).
    pub fn listing(&self, trainable_only: bool) -> String {
        let width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for row in self.rows.iter().filter(|r| r.trainable || !trainable_only) {
            let flag = if row.trainable { "trainable" } else { "frozen" };
            out.push_str(&format!("{:width$}  {:>16}  {:>12}  {flag}\n", row.name, format!("{:?}", row.shape), group_digits(row.numel)));
        }
        out
    }
}

impl fmt::Display for TrainableParameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            group_digits(self.trainable),
            group_digits(self.total),
            self.percent()
        )
    }
}

fn group_digits(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub(crate) use crate::nn::PACKED_4BIT_SUFFIX;

/// Counts trainable and total parameters of `model`, with a row per tensor.
///
/// ```no_run
/// # let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
/// let report = tunebook::peft::trainable_parameters(&model);
/// println!("{report}\n{}", report.listing(true));
/// # Ok::<(), tunebook::Error>(())
/// ```
pub fn trainable_parameters(model: &Model) -> TrainableParameters {
    let mut rows = Vec::new();
    model.visit_params("", &mut |name, t| {
        if t.is_floating_point() || name.ends_with(PACKED_4BIT_SUFFIX) {
            rows.push(ParameterRow { name: name.to_string(), shape: t.size(), numel: t.numel() as i64, trainable: t.requires_grad() })
        }
    });
    let trainable = rows.iter().filter(|r| r.trainable).map(|r| r.numel).sum();
    let total = rows.iter().map(|r| if r.name.ends_with(PACKED_4BIT_SUFFIX) { 2 * r.numel } else { r.numel }).sum();
    TrainableParameters { trainable, total, rows }
}

/// Calls `f` with every installed hook, mutably.
pub(crate) fn visit_hooks_mut(model: &mut Model, mut f: impl FnMut(&str, &mut Linear)) {
    model.visit_linears_mut("", &mut |name, linear| {
        if linear.hook.is_some() {
            f(name, linear);
        }
    });
}

fn set_enabled(model: &mut Model, enabled: bool) {
    visit_hooks_mut(model, |_, linear| {
        let weight = linear.weight.shallow_clone();
        let Some(hook) = linear.hook.as_mut() else { return };
        let any = hook.as_any_mut();
        if let Some(lora) = any.downcast_mut::<LoraLayer>() {
            if !enabled && lora.merged {
                lora.unmerge_from(&weight);
            }
            lora.enabled = enabled;
        } else if let Some(adapter) = any.downcast_mut::<AdapterLayer>() {
            adapter.enabled = enabled;
        } else if let Some(saved) = any.downcast_mut::<ModulesToSave>() {
            saved.enabled = enabled;
        }
    });
}

/// Turns every injected layer (LoRA, adapters, `modules_to_save` copies) off: the model
/// computes as the base model. Merged LoRA weights are unmerged first.
pub fn disable_adapters(model: &mut Model) {
    set_enabled(model, false)
}

/// Turns injected layers back on after [`disable_adapters`].
pub fn enable_adapters(model: &mut Model) {
    set_enabled(model, true)
}

/// Runs `f` on the base model (adapters off), then turns adapters back on: a
/// before/after comparison in one cell.
///
/// ```no_run
/// # let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
/// # let ids = tch::Tensor::from_slice(&[1i64, 2, 3]).unsqueeze(0);
/// let before = tunebook::peft::with_adapters_disabled(&mut model, |m| m.forward(&ids, None));
/// # Ok::<(), tunebook::Error>(())
/// ```
pub fn with_adapters_disabled<T>(model: &mut Model, f: impl FnOnce(&Model) -> T) -> T {
    disable_adapters(model);
    let out = f(model);
    enable_adapters(model);
    out
}

/// Adds every LoRA update into its base weight (`W += B·A·scale`): inference then costs
/// exactly the base model's. Quantized (QLoRA) weights are dequantized into a dense weight.
/// Returns the number of merged layers.
pub fn merge(model: &mut Model) -> usize {
    let mut merged = 0;
    visit_hooks_mut(model, |_, linear| {
        let Some(lora) = linear.hook.as_mut().and_then(|h| h.as_any_mut().downcast_mut::<LoraLayer>()) else { return };
        if lora.merged {
            return;
        }
        if let Some(q) = lora.quantized.take() {
            linear.weight = q.dequantize(lora.a.kind());
        }
        let lora = linear.hook.as_mut().and_then(|h| h.as_any_mut().downcast_mut::<LoraLayer>()).expect("checked above");
        lora.merge_into(&linear.weight);
        merged += 1;
    });
    merged
}

/// Takes merged LoRA updates back out of the base weights. Returns the number of layers.
pub fn unmerge(model: &mut Model) -> usize {
    let mut unmerged = 0;
    visit_hooks_mut(model, |_, linear| {
        let weight = linear.weight.shallow_clone();
        if let Some(lora) = linear.hook.as_mut().and_then(|h| h.as_any_mut().downcast_mut::<LoraLayer>()) {
            if lora.merged {
                lora.unmerge_from(&weight);
                unmerged += 1;
            }
        }
    });
    unmerged
}

/// Removes every injected method — LoRA (unmerged first), adapters, `modules_to_save`
/// copies, the soft prompt — and gives back the plain base model, so another adapter can be
/// loaded in its place: `peft::unload(&mut model)?; peft::load(&mut model, "other")?;`.
/// Returns the number of layers restored. A model with 4-bit (QLoRA) base weights is an
/// error and stays as it was: its full-precision weights are gone, reload the base model.
///
/// ```no_run
/// use tunebook::{peft, Model};
/// let mut model = Model::from_pretrained("smollm2-135m-instruct")?;
/// peft::load(&mut model, "runs/support-bot/adapter")?;
/// // ... compare, then switch to another adapter on the same base:
/// peft::unload(&mut model)?;
/// peft::load(&mut model, "runs/sql-bot/adapter")?;
/// # Ok::<(), tunebook::Error>(())
/// ```
pub fn unload(model: &mut Model) -> Result<usize> {
    let mut quantized = None;
    visit_hooks_mut(model, |name, linear| {
        let any = linear.hook.as_ref().expect("visit_hooks_mut visits hooked layers").as_any();
        let four_bit = any.downcast_ref::<LoraLayer>().is_some_and(|l| l.quantized.is_some())
            || any.downcast_ref::<super::qlora::Quantized4bit>().is_some();
        if four_bit && quantized.is_none() {
            quantized = Some(name.to_string());
        }
    });
    if let Some(layer) = quantized {
        return Err(Error::InvalidArgument(format!(
            "layer `{layer}` holds 4-bit base weights (QLoRA), which cannot be turned back into the original: load the base model again"
        )));
    }
    unmerge(model);
    let mut restored = 0;
    visit_hooks_mut(model, |_, linear| {
        linear.hook = None;
        restored += 1;
    });
    model.soft_prompt = None;
    Ok(restored)
}

/// A trainable copy of a linear layer (typically the classification head), as PEFT's
/// `modules_to_save`: the original stays frozen and comes back when adapters are disabled.
pub struct ModulesToSave {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub enabled: bool,
}

impl LinearHook for ModulesToSave {
    fn forward(&self, base: &Linear, x: &Tensor) -> Tensor {
        if self.enabled {
            linear(x, &self.weight, self.bias.as_ref())
        } else {
            base.base_forward(x)
        }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&crate::nn::join(prefix, "modules_to_save.weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&crate::nn::join(prefix, "modules_to_save.bias"), b);
        }
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Checks, before anything is changed, that every `modules_to_save` name (exact name or
/// `.name` suffix) is a linear layer and not one of the method's `targets`.
pub(crate) fn check_modules_to_save(model: &mut Model, names: &[String], targets: &[String]) -> Result<()> {
    let linears = linear_names(model);
    for wanted in names {
        let matched: Vec<&String> = linears.iter().filter(|n| name_matches(n, wanted)).collect();
        if matched.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "modules_to_save: no linear layer named {wanted} (linear layers: {})",
                linears.join(", ")
            )));
        }
        if let Some(name) = matched.iter().find(|n| targets.contains(n)) {
            return Err(Error::InvalidArgument(format!(
                "modules_to_save: {name} is also a target of the method; a layer can be either adapted or saved whole, not both"
            )));
        }
    }
    Ok(())
}

/// Installs trainable copies of the linears named in `names` (checked beforehand by
/// [`check_modules_to_save`]).
pub(crate) fn install_modules_to_save(model: &mut Model, names: &[String]) {
    model.visit_linears_mut("", &mut |name, linear| {
        if linear.hook.is_some() || !names.iter().any(|wanted| name_matches(name, wanted)) {
            return;
        }
        let copy = |t: &Tensor| t.detach().copy().set_requires_grad(true);
        linear.hook = Some(Box::new(ModulesToSave { weight: copy(&linear.weight), bias: linear.bias.as_ref().map(copy), enabled: true }));
    });
}

/// PEFT's name rule: a key matches a module when it is its full name or its last dotted part(s).
pub(crate) fn name_matches(name: &str, key: &str) -> bool {
    name == key || name.ends_with(&format!(".{key}"))
}

/// Names of every linear layer, for error messages and `all-linear`.
pub(crate) fn linear_names(model: &mut Model) -> Vec<String> {
    let mut names = Vec::new();
    model.visit_linears_mut("", &mut |name, _| names.push(name.to_string()));
    names
}


/// `nn.Linear`'s default init (kaiming uniform, a = √5): U(−1/√fan_in, 1/√fan_in), as PEFT
/// initialises LoRA A.
pub(crate) fn kaiming_uniform(rows: i64, fan_in: i64, like: &Tensor) -> Tensor {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::empty([rows, fan_in], (Kind::Float, like.device())).uniform_(-bound, bound).to_kind(like.kind())
}
