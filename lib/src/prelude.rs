//! What a notebook cell needs without typing paths: the kernel runs
//! `use tunebook::prelude::*;` before the first cell.
//!
//! ```no_run
//! use tunebook::prelude::*;
//! let mut model = Model::from_pretrained("smollm2-135m-instruct")?;
//! let data = data::quickstart()?;
//! LoraConfig::new(8).targets(["q_proj", "v_proj"]).apply(&mut model)?;
//! let args = TrainingArgs { max_steps: 20, ..TrainingArgs::new("runs/prelude") };
//! # let _ = (data, args);
//! # Ok::<(), tunebook::Error>(())
//! ```
//!
//! Modules come in by name (`data::`, `peft::`, `train::`, `display::`) so longer paths
//! stay one word away; the most used types come in directly. `Result` is not re-exported:
//! it would shadow the standard one in users' own functions.
pub use crate::data::{self, BatchOptions, CleanOptions, Dataset, SplitOptions, TokenizeOptions, TrainOn, Truncation};
pub use crate::display::{self, display, BarChart, DisplayHandle, Heatmap, Histogram, LineChart, Table};
pub use crate::peft::{self, AdapterConfig, FullFineTuning, LoraConfig, PromptTuningConfig, QuantType};
pub use crate::train::{self, IntervalStrategy, SchedulerType, Sweep, Trainer, TrainingArgs};
pub use crate::tch::{self, Kind, Tensor};
pub use crate::{ChatMessage, Device, Error, GenerationConfig, LoadOptions, Model, Task, Tokenizer};
