//! What a fine-tuning method trains, and generations side by side.
//!
//! [`ModelSummary`](crate::models::Model::summary) shows itself in models/model.rs, where
//! its type lives.

use super::{count, with_text, Table};
use crate::display::{Display, MimeBundle};
use crate::peft::TrainableParameters;

impl Display for TrainableParameters {
    /// The totals as the title (PEFT's `print_trainable_parameters` line), then one row per
    /// trainable tensor: where the method injected or unfroze weights.
    fn mime_bundle(&self) -> MimeBundle {
        let rows = self.rows.iter().filter(|row| row.trainable).map(|row| {
            let shape: Vec<String> = row.shape.iter().map(i64::to_string).collect();
            [row.name.clone(), format!("[{}]", shape.join(", ")), count(row.numel)]
        });
        let table = Table::new()
            .title(self.to_string())
            .column("trainable parameter", "str")
            .column("shape", "")
            .column("parameters", "u64")
            .rows(rows)
            .max_cell_chars(120);
        with_text(&table, format!("{self}\n{}", self.listing(true).trim_end()))
    }
}

/// Generations before and after fine-tuning, one row per prompt. Lists of different
/// lengths leave the missing cells empty.
///
/// ```
/// use tunebook::display::compare_generations;
/// let before = vec!["I am not sure.".to_string()];
/// let after = vec!["Paris.".to_string()];
/// let table = compare_generations(&["What is the capital of France?"], &before, &after);
/// assert!(table.to_html().contains("Paris."));
/// ```
pub fn compare_generations(prompts: &[&str], before: &[String], after: &[String]) -> Table {
    let rows = prompts.len().max(before.len()).max(after.len());
    let cell = |texts: &[String], row: usize| texts.get(row).cloned().unwrap_or_default();
    Table::new()
        .title("Generations before and after fine-tuning")
        .column("prompt", "str")
        .column("before", "str")
        .column("after", "str")
        // Generations are what is being compared: show them whole, not cut at 80 characters.
        .max_cell_chars(2000)
        .rows((0..rows).map(|row| {
            [prompts.get(row).map(|p| p.to_string()).unwrap_or_default(), cell(before, row), cell(after, row)]
        }))
}
