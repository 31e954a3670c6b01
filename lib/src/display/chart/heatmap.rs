//! Heatmaps with the value written in each cell, e.g. a confusion matrix.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    draw_header, fit_text, format_value, text_style, text_width, Chart, DrawResult, Frame, Number, FOREGROUND,
    LABEL_SIZE, TICK_SIZE,
};
use crate::{Error, Result};

/// A matrix of values drawn as coloured cells with the value written in each, rows and columns
/// labelled.
///
/// Zero cells stay uncoloured; others go from light to dark blue with the value. Cells carry
/// their own colour and a matching text colour, so they read the same on any background.
///
/// ```
/// use tunebook::display::Heatmap;
///
/// let labels = ["negative", "positive"];
/// let counts = [[50, 3], [7, 40]];
/// let chart = Heatmap::confusion_matrix("Confusion matrix (test)", labels, counts)?;
/// chart.save_svg(std::env::temp_dir().join("confusion.svg"))?;
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Heatmap {
    frame: Frame,
    rows: Vec<String>,
    columns: Vec<String>,
    values: Vec<Vec<f64>>,
}

/// Cells never grow beyond this, so a 2×2 matrix does not fill the whole chart.
const MAX_CELL: i32 = 100;
const MAX_LABEL_LENGTH: u32 = 150;
/// Light and dark ends of the cell colour ramp.
const LOW: (f64, f64, f64) = (198.0, 219.0, 239.0);
const HIGH: (f64, f64, f64) = (8.0, 48.0, 107.0);

impl Heatmap {
    /// `values[row][column]`; there must be one row per row label and one value per column
    /// label in each row.
    pub fn new<R, C, Row, V>(
        title: impl Into<String>,
        row_labels: impl IntoIterator<Item = R>,
        column_labels: impl IntoIterator<Item = C>,
        values: impl IntoIterator<Item = Row>,
    ) -> Result<Self>
    where
        R: std::fmt::Display,
        C: std::fmt::Display,
        Row: IntoIterator<Item = V>,
        V: Number,
    {
        let rows: Vec<String> = row_labels.into_iter().map(|label| label.to_string()).collect();
        let columns: Vec<String> = column_labels.into_iter().map(|label| label.to_string()).collect();
        let values: Vec<Vec<f64>> =
            values.into_iter().map(|row| row.into_iter().map(Number::to_f64).collect()).collect();
        if values.len() != rows.len() {
            return Err(Error::InvalidArgument(format!(
                "heatmap: {} rows of values for {} row labels",
                values.len(),
                rows.len()
            )));
        }
        if let Some((index, row)) = values.iter().enumerate().find(|(_, row)| row.len() != columns.len()) {
            return Err(Error::InvalidArgument(format!(
                "heatmap: row {index} ({}) has {} values, expected one per column label ({})",
                rows[index],
                row.len(),
                columns.len()
            )));
        }
        Ok(Heatmap { frame: Frame::new(title, (640, 480)), rows, columns, values })
    }

    /// A confusion matrix: `counts[actual][predicted]` over the same labels, axes named
    /// "predicted" and "actual".
    pub fn confusion_matrix<L, Row, V>(
        title: impl Into<String>,
        labels: impl IntoIterator<Item = L>,
        counts: impl IntoIterator<Item = Row>,
    ) -> Result<Self>
    where
        L: std::fmt::Display,
        Row: IntoIterator<Item = V>,
        V: Number,
    {
        let labels: Vec<String> = labels.into_iter().map(|label| label.to_string()).collect();
        Ok(Heatmap::new(title, &labels, &labels, counts)?.x_label("predicted").y_label("actual"))
    }

    fn largest(&self) -> f64 {
        self.values.iter().flatten().copied().filter(|v| v.is_finite()).fold(0.0, f64::max)
    }

    /// Fill and text colour of a cell; `None` fill for zero (and non-finite) cells.
    fn cell_colors(&self, value: f64, largest: f64) -> (Option<RGBColor>, RGBColor) {
        if !value.is_finite() || value <= 0.0 || largest <= 0.0 {
            return (None, FOREGROUND);
        }
        let t = (value / largest).clamp(0.0, 1.0);
        let mix = |low: f64, high: f64| (low + (high - low) * t).round() as u8;
        let fill = RGBColor(mix(LOW.0, HIGH.0), mix(LOW.1, HIGH.1), mix(LOW.2, HIGH.2));
        let text = if t < 0.45 { RGBColor(0x1f, 0x29, 0x37) } else { RGBColor(0xff, 0xff, 0xff) };
        (Some(fill), text)
    }
}

impl Chart for Heatmap {
    const KIND: &'static str = "heatmap";

    fn frame(&self) -> &Frame {
        &self.frame
    }

    fn frame_mut(&mut self) -> &mut Frame {
        &mut self.frame
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let area = draw_header(root, &self.frame.title, &[])?;
        let (width, height) = area.dim_in_pixel();
        let (width, height) = (width as i32, height as i32);
        let (n_rows, n_columns) = (self.rows.len().max(1) as i32, self.columns.len().max(1) as i32);
        let label_style = text_style(TICK_SIZE);
        let desc_style = text_style(LABEL_SIZE);

        let row_label_width =
            self.rows.iter().map(|l| text_width(&area, l, &label_style)).max().unwrap_or(0).min(MAX_LABEL_LENGTH)
                as i32;
        let column_label_width =
            self.columns.iter().map(|l| text_width(&area, l, &label_style)).max().unwrap_or(0).min(MAX_LABEL_LENGTH)
                as i32;
        let y_desc_space = if self.frame.y_label.is_empty() { 0 } else { 28 };
        let x_desc_space = if self.frame.x_label.is_empty() { 0 } else { 28 };
        // Left of the grid: axis description, row labels, gap. Below: column labels, description.
        let left_block = y_desc_space + row_label_width + 8;
        let available_width = width - left_block - 20;
        let cell_for = |label_space: i32| {
            (available_width / n_columns).min((height - label_space - x_desc_space - 16) / n_rows).min(MAX_CELL)
        };
        let mut column_label_space = 22;
        let mut cell = cell_for(column_label_space);
        let vertical = column_label_width + 6 > cell;
        if vertical {
            column_label_space = column_label_width + 12;
            cell = cell_for(column_label_space);
        }
        if cell < 4 {
            return Err(format!("{} × {} cells do not fit in {width} × {height} pixels", n_rows, n_columns).into());
        }
        // The whole block (labels and grid) is centred in the area.
        let block_width = left_block + cell * n_columns;
        let block_height = cell * n_rows + column_label_space + x_desc_space;
        let block_left = ((width - block_width) / 2).max(0);
        let grid_left = block_left + left_block;
        let grid_top = ((height - block_height) / 2).max(4);
        let grid_bottom = grid_top + cell * n_rows;

        let largest = self.largest();
        let value_size = (cell as f64 * 0.32).min(18.0);
        for (r, row) in self.values.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                let (x, y) = (grid_left + c as i32 * cell, grid_top + r as i32 * cell);
                let corners = [(x + 1, y + 1), (x + cell - 1, y + cell - 1)];
                let (fill, text_color) = self.cell_colors(*value, largest);
                match fill {
                    Some(fill) => area.draw(&Rectangle::new(corners, fill.filled()))?,
                    None => area.draw(&Rectangle::new(corners, FOREGROUND.mix(0.35).stroke_width(1)))?,
                }
                let text = format_value(*value);
                let style = text_style(value_size).color(&text_color).pos(Pos::new(HPos::Center, VPos::Center));
                if value_size >= 7.0 && text_width(&area, &text, &style) as i32 <= cell - 4 {
                    area.draw(&Text::new(text, (x + cell / 2, y + cell / 2), style))?;
                }
            }
        }
        for (r, label) in self.rows.iter().enumerate() {
            let text = fit_text(&area, label, &label_style, MAX_LABEL_LENGTH);
            let position = (grid_left - 8, grid_top + r as i32 * cell + cell / 2);
            area.draw(&Text::new(text, position, label_style.pos(Pos::new(HPos::Right, VPos::Center))))?;
        }
        for (c, label) in self.columns.iter().enumerate() {
            let text = fit_text(&area, label, &label_style, MAX_LABEL_LENGTH);
            let position = (grid_left + c as i32 * cell + cell / 2, grid_bottom + 6);
            let style = if vertical {
                label_style.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center))
            } else {
                label_style.pos(Pos::new(HPos::Center, VPos::Top))
            };
            area.draw(&Text::new(text, position, style))?;
        }
        let labels_bottom = grid_bottom + column_label_space;
        if !self.frame.x_label.is_empty() {
            let position = (grid_left + cell * n_columns / 2, labels_bottom + 4);
            area.draw(&Text::new(
                self.frame.x_label.clone(),
                position,
                desc_style.pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        if !self.frame.y_label.is_empty() {
            let style = desc_style.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Center));
            area.draw(&Text::new(
                self.frame.y_label.clone(),
                (block_left + y_desc_space / 2, (grid_top + grid_bottom) / 2),
                style,
            ))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut text = format!("{} (heatmap", self.frame.title);
        if !self.frame.y_label.is_empty() || !self.frame.x_label.is_empty() {
            text.push_str(&format!(", rows: {}, columns: {}", self.frame.y_label, self.frame.x_label));
        }
        text.push(')');
        let cells: Vec<Vec<String>> =
            self.values.iter().map(|row| row.iter().map(|v| format_value(*v)).collect()).collect();
        let row_width = self.rows.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let column_width = self
            .columns
            .iter()
            .map(|l| l.chars().count())
            .chain(cells.iter().flatten().map(|c| c.chars().count()))
            .max()
            .unwrap_or(0);
        text.push_str(&format!("\n  {:row_width$}", ""));
        for column in &self.columns {
            text.push_str(&format!("  {column:>column_width$}"));
        }
        for (label, row) in self.rows.iter().zip(&cells) {
            text.push_str(&format!("\n  {label:<row_width$}"));
            for cell in row {
                text.push_str(&format!("  {cell:>column_width$}"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_mismatches_are_errors_naming_the_row() {
        let error = Heatmap::new("m", ["a", "b"], ["x", "y"], [vec![1, 2], vec![3]]).unwrap_err();
        assert!(error.to_string().contains("row 1 (b) has 1 values"), "{error}");
        assert!(Heatmap::new("m", ["a"], ["x"], Vec::<Vec<f64>>::new()).is_err());
    }

    #[test]
    fn text_form_is_an_aligned_matrix() {
        let chart = Heatmap::confusion_matrix("cm", ["neg", "pos"], [[50, 3], [7, 1200]]).unwrap();
        let text = chart.describe();
        assert!(text.contains("rows: actual, columns: predicted"), "{text}");
        assert!(text.contains("\n  neg     50      3"), "{text}");
        assert!(text.contains("\n  pos      7  1,200"), "{text}");
    }

    #[test]
    fn dark_cells_get_light_text() {
        let chart = Heatmap::new("m", ["a"], ["x", "y"], [[1.0, 100.0]]).unwrap();
        let (_, light_cell_text) = chart.cell_colors(1.0, 100.0);
        let (_, dark_cell_text) = chart.cell_colors(100.0, 100.0);
        assert_eq!(dark_cell_text, RGBColor(255, 255, 255));
        assert_ne!(light_cell_text, dark_cell_text);
        assert_eq!(chart.cell_colors(0.0, 100.0).0, None);
    }
}
