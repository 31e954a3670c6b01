//! Recipes: one TOML file that describes a whole fine-tuning run — model, data, method and
//! training arguments — as torchtune's recipes do. What `tunebook train` and `tunebook
//! sweep` run; the pieces it wires (models, data, peft, train) stay usable on their own.
//!
//! A recipe file has four sections; the examples in `notebooks/configs/` show each method.
//!
//! ```toml
//! [model]
//! name = "smollm2-135m-instruct"   # shipped short name, path (relative to this file) or hub id
//! task = "causal_lm"               # or "classification" (default: from the data)
//! device = "auto"                  # auto, cpu, cuda, cuda:N
//! # chat_template = "plain"        # for base models: "plain", a Jinja template or a .jinja file
//!
//! [data]
//! path = "../data/quickstart_qa.jsonl"
//! max_len = 256
//! validation = 0.125
//!
//! [method]
//! kind = "lora"
//! r = 8
//! alpha = 16
//! target_modules = ["q_proj", "v_proj"]
//!
//! [training]                       # TrainingArgs, field for field
//! output_dir = "../runs/quickstart-lora"
//! learning_rate = 1e-3
//! max_steps = 20
//! ```
mod data_section;
mod method_section;
mod sweep;
mod toml_file;

pub use data_section::{DataSection, ShippedData, TrainOnSetting};
pub use method_section::{ActivationSetting, BiasSetting, MethodKind, MethodSection, PlacementSetting, QuantSetting, TargetModules};
pub use sweep::{SweepRecipe, SweepSettings, SweepStrategy};
pub use toml_file::Override;

use crate::data::LabelMap;
use crate::device::parse_device;
use crate::models::{LoadOptions, Model, Task};
use crate::train::{latest_checkpoint, IntervalStrategy, TrainSummary, Trainer, TrainingArgs};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the model is trained for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskSetting {
    CausalLm,
    Classification,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A shipped short name (`smollm2-135m-instruct`, `all-minilm-l6-v2`), a Hugging Face
    /// folder or `.gguf` file (relative to the recipe's folder), or a hub id.
    pub name: String,
    /// Default: classification for labelled data, causal LM otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskSetting>,
    /// Classification only; default: the number of labels in the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<i64>,
    /// auto, cpu, cuda or cuda:N.
    #[serde(default = "auto")]
    pub device: String,
    /// For models without one (base models): `"plain"`, a Jinja template, or a `.jinja`
    /// file relative to the recipe's folder. Replaces the model's own when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
}

fn auto() -> String {
    "auto".into()
}

/// Where a run continues from.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// The newest complete checkpoint in `output_dir`.
    Latest,
    /// A `checkpoint-STEP` folder.
    From(PathBuf),
}

/// A whole fine-tuning run from one TOML file (see the [module docs](self) for the format).
/// Unknown fields are errors, and every error names the file and the dotted field.
///
/// ```no_run
/// use tunebook::recipe::{Override, Recipe, Resume};
/// let recipe = Recipe::from_toml_file_with(
///     "notebooks/configs/quickstart-lora.toml",
///     &["training.max_steps=5".parse::<Override>()?],
/// )?;
/// let summary = recipe.run(None)?; // or Some(Resume::Latest) to continue a stopped run
/// println!("{} steps; adapter in {}", summary.global_step, recipe.final_dir().display());
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub model: ModelSection,
    pub data: DataSection,
    pub method: MethodSection,
    /// [`TrainingArgs`] field for field (transformers' names and defaults).
    #[serde(default)]
    pub training: TrainingArgs,
    /// The file the recipe was read from, for error messages.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

impl Recipe {
    /// Reads a recipe file; relative paths in it are relative to its folder.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Recipe> {
        Self::from_toml_file_with(path, &[])
    }

    /// Reads a recipe file with some settings replaced (`--set` on the command line, a
    /// sweep's trial values). Relative paths in `overrides` are taken as they are: make
    /// them absolute first (see [`Override::relative_to`]).
    pub fn from_toml_file_with(path: impl AsRef<Path>, overrides: &[Override]) -> Result<Recipe> {
        let path = path.as_ref();
        let (text, table) = toml_file::read(path)?;
        let mut recipe: Recipe = toml_file::deserialize(path, &text, table, overrides)?;
        recipe.file = Some(path.to_path_buf());
        recipe.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        recipe.check()?;
        Ok(recipe)
    }

    /// Reads a recipe from TOML text; relative paths are relative to `dir`.
    pub fn from_toml_str(text: &str, dir: impl AsRef<Path>) -> Result<Recipe> {
        let origin = Path::new("recipe");
        let table = toml::from_str(text).map_err(|e| Error::bad_file(origin, e.to_string()))?;
        let mut recipe: Recipe = toml_file::deserialize(origin, text, table, &[])?;
        recipe.resolve_paths(dir.as_ref());
        recipe.check()?;
        Ok(recipe)
    }

    /// The TOML text of this recipe (paths as resolved).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a recipe is plain values")
    }

    fn resolve_paths(&mut self, dir: &Path) {
        if let Some(p) = toml_file::resolve_path("model.name", &self.model.name, dir) {
            self.model.name = p.to_string_lossy().into_owned();
        }
        if let Some(p) = self.model.chat_template.as_ref().and_then(|t| toml_file::resolve_path("model.chat_template", t, dir)) {
            self.model.chat_template = Some(p.to_string_lossy().into_owned());
        }
        if let Some(p) = self.data.path.as_ref().and_then(|p| toml_file::resolve_path("data.path", &p.to_string_lossy(), dir)) {
            self.data.path = Some(p);
        }
        if let Some(p) = toml_file::resolve_path("training.output_dir", &self.training.output_dir.to_string_lossy(), dir) {
            self.training.output_dir = p;
        }
    }

    fn origin(&self) -> &Path {
        self.file.as_deref().unwrap_or(Path::new("recipe"))
    }

    /// A library error, as a problem with the recipe's `section`.
    fn in_section<'a>(&'a self, section: &'a str) -> impl Fn(Error) -> Error + 'a {
        move |e| toml_file::in_section(self.origin(), section, e)
    }

    /// Checks everything that needs no model or data loaded, so a bad recipe fails in
    /// milliseconds rather than after loading a model.
    pub fn check(&self) -> Result<()> {
        parse_device(&self.model.device).map_err(|e| toml_file::field_error(self.origin(), "model.device", e))?;
        if self.model.num_labels.is_some() && self.model.task == Some(TaskSetting::CausalLm) {
            return Err(toml_file::field_error(self.origin(), "model.num_labels", "only applies to task = \"classification\""));
        }
        self.data.check().map_err(self.in_section("data"))?;
        self.method.check_settings().map_err(self.in_section("method"))?;
        self.training.validate().map_err(self.in_section("training"))?;
        if self.training.eval_strategy != IntervalStrategy::No && self.data.validation == 0.0 {
            let message = "evaluation needs a validation split: set data.validation above 0 or eval_strategy = \"no\"";
            return Err(toml_file::field_error(self.origin(), "training.eval_strategy", message));
        }
        Ok(())
    }

    /// Where the trained weights go after a finished run: `output_dir/final`.
    pub fn final_dir(&self) -> PathBuf {
        self.training.output_dir.join("final")
    }

    /// Loads and prepares the data, loads the model, applies the method and returns a
    /// [`Trainer`] with training and (if the split has one) evaluation data.
    pub fn build(&self) -> Result<Trainer> {
        Ok(self.prepare()?.0)
    }

    /// The trainer and the data's class names (classification).
    fn prepare(&self) -> Result<(Trainer, Option<LabelMap>)> {
        // Data first: a bad file should fail before a model takes seconds to load.
        let dataset = self.data.load().map_err(self.in_section("data"))?;
        let classification = match self.model.task {
            Some(task) => task == TaskSetting::Classification,
            None => dataset.labels().is_some(),
        };
        let labels = dataset.labels().cloned();
        let task = match (classification, &labels) {
            (false, _) => Task::CausalLm,
            (true, Some(labels)) => Task::SequenceClassification { num_labels: self.model.num_labels.unwrap_or(labels.len() as i64) },
            (true, None) => {
                let message = format!("task = \"classification\" needs labelled data; {} is {} data", dataset.name(), dataset.kind());
                return Err(toml_file::field_error(self.origin(), "model.task", message));
            }
        };
        if let (Task::SequenceClassification { num_labels }, Some(labels)) = (&task, &labels) {
            if (*num_labels as usize) < labels.len() {
                let message = format!("{num_labels} is fewer than the data's {} labels ({labels})", labels.len());
                return Err(toml_file::field_error(self.origin(), "model.num_labels", message));
            }
        }
        let splits = self.data.split(&dataset).map_err(self.in_section("data"))?;
        // The seed also fixes a new classification head and the method's random init.
        tch::manual_seed(self.training.seed as i64);
        let options = LoadOptions::default().device(parse_device(&self.model.device)?).task(task);
        let mut model = Model::from_pretrained_with(&self.model.name, options)?;
        if let Some(template) = &self.model.chat_template {
            model.set_chat_template(template).map_err(self.in_section("model"))?;
        }
        self.method.apply(&mut model).map_err(self.in_section("method"))?;
        let tokenizer = model.tokenizer()?.clone();
        let prepared = self.data.prepare(&splits, &tokenizer).map_err(self.in_section("data"))?;
        let mut trainer = Trainer::new(model, self.training.clone()).train_data(prepared.train);
        if let Some(validation) = prepared.validation {
            trainer = trainer.eval_data(validation);
        }
        Ok((trainer, labels.filter(|_| classification)))
    }

    /// Builds the trainer, trains (or continues a run) and, unless interrupted, saves the
    /// trained weights to [`final_dir`](Self::final_dir). An interrupt (SIGINT,
    /// [`request_stop`](crate::train::request_stop)) returns after a checkpoint, with
    /// `interrupted` set.
    pub fn run(&self, resume: Option<Resume>) -> Result<TrainSummary> {
        self.run_with(resume, |_| {})
    }

    /// [`run`](Self::run), with `prepare` called on the trainer before training (e.g. to
    /// subscribe to its events).
    pub fn run_with(&self, resume: Option<Resume>, prepare: impl FnOnce(&mut Trainer)) -> Result<TrainSummary> {
        let output_dir = &self.training.output_dir;
        let checkpoint = match resume {
            None => {
                if let Some(found) = latest_checkpoint(output_dir) {
                    let message = format!(
                        "{} already holds a run ({}): resume it (--resume), or choose another output_dir",
                        output_dir.display(),
                        found.file_name().unwrap_or_default().to_string_lossy()
                    );
                    return Err(toml_file::field_error(self.origin(), "training.output_dir", message));
                }
                None
            }
            Some(Resume::Latest) => Some(latest_checkpoint(output_dir).ok_or_else(|| {
                Error::InvalidArgument(format!("nothing to resume: {} has no complete checkpoint", output_dir.display()))
            })?),
            Some(Resume::From(dir)) => Some(dir),
        };
        let (mut trainer, labels) = self.prepare()?;
        prepare(&mut trainer);
        let summary = match checkpoint {
            Some(dir) => trainer.resume_from_checkpoint(dir)?,
            None => trainer.train()?,
        };
        if !summary.interrupted && trainer.is_main_process() {
            self.save_final(&mut trainer, labels.as_ref(), &summary)?;
        }
        Ok(summary)
    }

    /// Writes the trained weights, this recipe, the class names and the run's summary into
    /// `output_dir/final`, replacing an earlier one.
    fn save_final(&self, trainer: &mut Trainer, labels: Option<&LabelMap>, summary: &TrainSummary) -> Result<()> {
        let dir = self.final_dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        self.method.save(trainer, &dir)?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
        };
        write("recipe.toml", self.to_toml())?;
        write("summary.json", serde_json::to_string_pretty(summary).expect("a summary is plain values"))?;
        if let Some(labels) = labels {
            // transformers' config.json names, so the file can be merged into one.
            let id2label: serde_json::Map<String, serde_json::Value> =
                labels.names().iter().enumerate().map(|(i, n)| (i.to_string(), n.clone().into())).collect();
            let label2id: serde_json::Map<String, serde_json::Value> = labels.names().iter().enumerate().map(|(i, n)| (n.clone(), i.into())).collect();
            write("labels.json", serde_json::to_string_pretty(&serde_json::json!({ "id2label": id2label, "label2id": label2id })).expect("labels are plain values"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const BASE: &str = r#"
[model]
name = "smollm2-135m-instruct"

[data]
path = "qa.jsonl"
max_len = 64

[method]
kind = "lora"
r = 4
target_modules = "all-linear"

[training]
output_dir = "runs/a"
max_steps = 3
"#;

    fn recipe_dir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "qa.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n");
        tmp
    }

    #[test]
    fn relative_paths_are_read_against_the_recipe_folder() {
        let tmp = recipe_dir();
        let recipe = Recipe::from_toml_file(write(tmp.path(), "r.toml", BASE)).unwrap();
        assert_eq!(recipe.data.path.as_deref(), Some(tmp.path().join("qa.jsonl").as_path()));
        assert_eq!(recipe.training.output_dir, tmp.path().join("runs/a"));
        assert_eq!(recipe.final_dir(), tmp.path().join("runs/a/final"));
        assert_eq!(recipe.model.name, "smollm2-135m-instruct");
        assert_eq!(recipe.method.target_modules, Some(TargetModules::Pattern("all-linear".into())));
        assert_eq!(recipe.training.learning_rate, TrainingArgs::default().learning_rate);
        // What final/recipe.toml holds reads back to the same recipe.
        let again = Recipe::from_toml_str(&recipe.to_toml(), "/elsewhere").unwrap();
        assert_eq!(again, Recipe { file: None, ..recipe });
    }

    #[test]
    fn overrides_replace_settings_and_bad_ones_name_the_field() {
        let tmp = recipe_dir();
        let path = write(tmp.path(), "r.toml", BASE);
        let overrides: Vec<Override> = ["training.max_steps=7", "method.r=16"].iter().map(|s| s.parse().unwrap()).collect();
        let recipe = Recipe::from_toml_file_with(&path, &overrides).unwrap();
        assert_eq!((recipe.training.max_steps, recipe.method.r), (7, Some(16)));
        let err = Recipe::from_toml_file_with(&path, &["training.learning_rat=1".parse().unwrap()]).unwrap_err().to_string();
        assert!(err.contains("r.toml") && err.contains("field training.learning_rat") && err.contains("unknown field"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_file_and_the_field() {
        let tmp = recipe_dir();
        let cases: [(&[(&str, &str)], &str); 9] = [
            (&[("r = 4\n", "r = 4\nsize = 8\n")], "field method.size: does not apply to kind = \"lora\""),
            (&[("max_steps = 3\n", "max_steps = 3\nper_device_train_batch_size = 0\n")], "field training.per_device_train_batch_size: must be at least 1"),
            (&[("path = \"qa.jsonl\"", "path = \"missing.jsonl\"")], "field data.path:"),
            (&[("path = \"qa.jsonl\"", "path = \"qa.jsonl\"\nshipped = \"quickstart\"")], "field data.shipped: give either"),
            (&[("max_steps = 3\n", "max_steps = 3\neval_strategy = \"steps\"\n"), ("max_len = 64", "max_len = 64\nvalidation = 0.0")], "field training.eval_strategy"),
            (&[("max_len = 64", "max_len = 64\nvalidation = 0.0\ntest = 1.0")], "field data.test"),
            (&[("kind = \"lora\"", "kind = \"loraa\"")], "field method.kind (line 10): unknown variant `loraa`"),
            (&[("target_modules = \"all-linear\"", "target_modules = 3")], "field method.target_modules (line 12): a list of module names"),
            (&[("name = \"smollm2-135m-instruct\"", "name = \"smollm2-135m-instruct\"\ndevice = \"tpu\"")], "field model.device: device `tpu`"),
        ];
        for (edits, expected) in cases {
            let text = edits.iter().fold(BASE.to_string(), |text, (from, to)| text.replacen(from, to, 1));
            let path = write(tmp.path(), "bad.toml", &text);
            let err = Recipe::from_toml_file(&path).unwrap_err().to_string();
            assert!(err.starts_with(&path.display().to_string()) && err.contains(expected), "{edits:?}: {err}");
        }
    }

    #[test]
    fn a_fresh_run_refuses_an_output_dir_with_checkpoints_and_resume_needs_one() {
        let tmp = recipe_dir();
        let recipe = Recipe::from_toml_file(write(tmp.path(), "r.toml", BASE)).unwrap();
        let err = recipe.run(Some(Resume::Latest)).unwrap_err().to_string();
        assert!(err.contains("nothing to resume"), "{err}");
        let checkpoint = recipe.training.output_dir.join("checkpoint-2");
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("trainer_state.json"), "{}").unwrap();
        let err = recipe.run(None).unwrap_err().to_string();
        assert!(err.contains("field training.output_dir") && err.contains("checkpoint-2") && err.contains("--resume"), "{err}");
    }
}
