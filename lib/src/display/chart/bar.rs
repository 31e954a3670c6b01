//! Bar charts: one value per category, e.g. a label distribution.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    draw_axes, draw_header, finite_range, fit_text, format_value, text_style, text_width, Axes, Chart, DrawResult,
    Frame, Number, Ticks, PALETTE, TICK_SIZE,
};

/// One bar per category with its value written on it, e.g. how many examples carry each
/// label. Long or crowded category names are cut and turned vertical.
///
/// ```
/// use tunebook::display::BarChart;
///
/// let chart = BarChart::new("Labels")
///     .x_label("label")
///     .y_label("examples")
///     .bars([("positive", 812), ("negative", 640), ("neutral", 97)]);
/// assert!(chart.to_svg().unwrap().contains("neutral"));
/// ```
#[derive(Clone, Debug)]
pub struct BarChart {
    frame: Frame,
    bars: Vec<(String, f64)>,
}

/// Category names longer than this (in pixels, when drawn vertically) are cut.
const MAX_LABEL_LENGTH: u32 = 140;

impl BarChart {
    pub fn new(title: impl Into<String>) -> Self {
        BarChart { frame: Frame::new(title, (760, 420)), bars: Vec::new() }
    }

    pub fn bar(mut self, label: impl std::fmt::Display, value: impl Number) -> Self {
        self.bars.push((label.to_string(), value.to_f64()));
        self
    }

    /// Adds `(label, value)` pairs, e.g. from a `HashMap<String, usize>` of label counts.
    pub fn bars<L: std::fmt::Display, V: Number>(mut self, bars: impl IntoIterator<Item = (L, V)>) -> Self {
        for (label, value) in bars {
            self = self.bar(label, value);
        }
        self
    }

    /// Orders bars from the largest value to the smallest (ties keep their order).
    pub fn sort_by_value(mut self) -> Self {
        self.bars.sort_by(|a, b| b.1.total_cmp(&a.1));
        self
    }
}

impl Chart for BarChart {
    const KIND: &'static str = "bar chart";

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
        let count = self.bars.len().max(1);
        let label_style = text_style(TICK_SIZE);
        // The plot is narrower than the area by the y-axis labels; 90 px is a close guess and
        // only decides whether names turn vertical.
        let slot = (area.dim_in_pixel().0.saturating_sub(90)) / count as u32;
        let widest = self.bars.iter().map(|(label, _)| text_width(&area, label, &label_style)).max().unwrap_or(0);
        let vertical = widest + 6 > slot;
        let label_space = if vertical { widest.min(MAX_LABEL_LENGTH).saturating_sub(12) } else { 0 };

        let (lo, hi) = finite_range(self.bars.iter().map(|(_, v)| *v).chain([0.0])).unwrap_or((0.0, 1.0));
        let hi = if hi == lo { lo + 1.0 } else { hi };
        // Headroom for the values written above (or below) the bars.
        let y = lo - (hi - lo) * if lo < 0.0 { 0.1 } else { 0.0 }..hi + (hi - lo) * 0.1;
        let axes = Axes {
            x: -0.5..count as f64 - 0.5,
            y: y.clone(),
            x_ticks: Ticks::Hidden,
            y_ticks: Ticks::Linear,
            x_label_space: label_space,
            x_grid: false,
        };
        let mut plot = draw_axes(&area, &self.frame, &axes)?;

        let color = PALETTE[0];
        let finite = self.bars.iter().enumerate().filter(|(_, (_, v))| v.is_finite());
        plot.draw_series(finite.clone().map(|(i, (_, value))| {
            Rectangle::new([(i as f64 - 0.38, 0.0), (i as f64 + 0.38, *value)], color.mix(0.85).filled())
        }))?;

        let value_style = text_style(TICK_SIZE);
        for (i, (_, value)) in finite {
            let text = format_value(*value);
            if text_width(&area, &text, &value_style) <= slot {
                let (dy, v_pos) = if *value >= 0.0 { (-3, VPos::Bottom) } else { (3, VPos::Top) };
                let element = EmptyElement::at((i as f64, *value))
                    + Text::new(text, (0, dy), value_style.pos(Pos::new(HPos::Center, v_pos)));
                plot.plotting_area().draw(&element)?;
            }
        }
        for (i, (label, _)) in self.bars.iter().enumerate() {
            let (text, style) = if vertical {
                let style = label_style.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
                (fit_text(&area, label, &label_style, MAX_LABEL_LENGTH), style)
            } else {
                (label.clone(), label_style.pos(Pos::new(HPos::Center, VPos::Top)))
            };
            let element = EmptyElement::at((i as f64, y.start)) + Text::new(text, (0, 8), style);
            plot.plotting_area().draw(&element)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut text = format!("{} (bar chart", self.frame.title);
        if !self.frame.y_label.is_empty() {
            text.push_str(&format!(" of {}", self.frame.y_label));
        }
        text.push(')');
        let width = self.bars.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0).min(40);
        for (label, value) in &self.bars {
            text.push_str(&format!("\n  {label:<width$}  {}", format_value(*value)));
        }
        text
    }
}
