//! Histograms: distributions of lengths, scores, … with optional labelled marker lines.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    draw_axes, draw_header, draw_no_data, finite_range, padded, series_color, text_style, Axes, Chart, DrawResult,
    Frame, LegendEntry, Number, Swatch, Ticks, FOREGROUND, LEGEND_SIZE,
};
use crate::display::progress::format_metric;

/// One or more overlaid distributions over shared bins, e.g. token lengths per split, with
/// optional vertical markers such as the truncation length.
///
/// Integer data (lengths, counts) gets bins aligned to whole numbers. Non-finite values are
/// left out and counted in the text form.
///
/// ```
/// use tunebook::display::Histogram;
///
/// let train_lengths: Vec<usize> = vec![12, 40, 41, 90, 300];
/// let chart = Histogram::new("Prompt lengths")
///     .x_label("length (tokens)")
///     .y_label("examples")
///     .series("train", &train_lengths)
///     .series("test", [35, 80, 120])
///     .bins(20)
///     .marker(256, "max_len = 256");
/// assert!(chart.to_svg().unwrap().contains("max_len = 256"));
/// ```
#[derive(Clone, Debug)]
pub struct Histogram {
    frame: Frame,
    series: Vec<(String, Vec<f64>)>,
    bins: usize,
    markers: Vec<(f64, String)>,
}

/// Equal-width bins `[start + i·width, start + (i+1)·width)`, the last one closed.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bins {
    start: f64,
    width: f64,
    count: usize,
}

impl Bins {
    /// About `requested` bins over `[lo, hi]`; one bin per whole number (or per run of them)
    /// for integer data so that no bin straddles two integers unevenly.
    fn new(lo: f64, hi: f64, requested: usize, integers: bool) -> Bins {
        let requested = requested.max(1);
        if integers {
            let span = hi - lo + 1.0;
            let width = (span / requested as f64).ceil().max(1.0);
            return Bins { start: lo - 0.5, width, count: (span / width).ceil() as usize };
        }
        if hi <= lo {
            return Bins { start: lo - 0.5, width: 1.0, count: 1 };
        }
        Bins { start: lo, width: (hi - lo) / requested as f64, count: requested }
    }

    fn end(&self) -> f64 {
        self.start + self.width * self.count as f64
    }

    fn counts(&self, values: &[f64]) -> Vec<u64> {
        let mut counts = vec![0; self.count];
        for value in values.iter().filter(|v| v.is_finite()) {
            let index = ((value - self.start) / self.width).floor().clamp(0.0, (self.count - 1) as f64);
            counts[index as usize] += 1;
        }
        counts
    }
}

impl Histogram {
    pub fn new(title: impl Into<String>) -> Self {
        Histogram { frame: Frame::new(title, (760, 420)), series: Vec::new(), bins: 30, markers: Vec::new() }
    }

    /// Adds a distribution; all series share the same bins and are drawn translucent on top of
    /// each other.
    pub fn series<T: Number>(mut self, name: impl Into<String>, values: impl IntoIterator<Item = T>) -> Self {
        self.series.push((name.into(), values.into_iter().map(Number::to_f64).collect()));
        self
    }

    /// About how many bins to use (default 30).
    pub fn bins(mut self, bins: usize) -> Self {
        self.bins = bins.clamp(1, 1000);
        self
    }

    /// A dashed vertical line at `x` with a label, e.g. `marker(256, "max_len = 256")`.
    pub fn marker(mut self, x: impl Number, label: impl Into<String>) -> Self {
        self.markers.push((x.to_f64(), label.into()));
        self
    }

    fn layout(&self) -> Option<Bins> {
        let values = || self.series.iter().flat_map(|(_, values)| values.iter().copied());
        let (lo, hi) = finite_range(values())?;
        let integers = values().filter(|v| v.is_finite()).all(|v| v.fract() == 0.0);
        Some(Bins::new(lo, hi, self.bins, integers))
    }

    /// Bar heights per series, for the bins of [`Histogram::layout`].
    fn counts(&self, bins: &Bins) -> Vec<Vec<u64>> {
        self.series.iter().map(|(_, values)| bins.counts(values)).collect()
    }
}

impl Chart for Histogram {
    const KIND: &'static str = "histogram";

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
        let count = self.series.len();
        let legend: Vec<LegendEntry> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, (name, _))| LegendEntry {
                name: name.clone(),
                color: series_color(i, count),
                swatch: Swatch::Box,
            })
            .collect();
        let area = draw_header(root, &self.frame.title, &legend)?;
        let bins = self.layout();
        let counts = bins.map(|bins| self.counts(&bins)).unwrap_or_default();
        let tallest = counts.iter().flatten().copied().max().unwrap_or(0);

        let marker_xs = self.markers.iter().map(|(x, _)| *x);
        let bin_edges = bins.iter().flat_map(|bins| [bins.start, bins.end()]);
        let x = finite_range(bin_edges.chain(marker_xs)).map_or(0.0..1.0, |(lo, hi)| padded(lo, hi, 0.02));
        // Headroom above the tallest bar for marker labels.
        let y = 0.0..(tallest.max(1) as f64 * 1.12);
        let axes =
            Axes { x, y: y.clone(), x_ticks: Ticks::Linear, y_ticks: Ticks::Linear, x_label_space: 0, x_grid: false };
        let mut plot = draw_axes(&area, &self.frame, &axes)?;

        if let Some(bins) = bins {
            let alpha = if count > 1 { 0.45 } else { 0.75 };
            for (index, series_counts) in counts.iter().enumerate() {
                let color = series_color(index, count);
                let bars = series_counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(bin, &c)| {
                    let left = bins.start + bin as f64 * bins.width;
                    Rectangle::new([(left, 0.0), (left + bins.width, c as f64)], color.mix(alpha).filled())
                });
                plot.draw_series(bars)?;
            }
        } else {
            draw_no_data(&plot)?;
        }

        let plot_width = plot.plotting_area().dim_in_pixel().0 as i32;
        let (plot_left, _) = plot.backend_coord(&(axes.x.start, y.end));
        for (index, (marker, label)) in self.markers.iter().enumerate().filter(|(_, (x, _))| x.is_finite()) {
            plot.draw_series(DashedLineSeries::new(
                [(*marker, 0.0), (*marker, y.end)],
                6,
                4,
                FOREGROUND.stroke_width(2),
            ))?;
            // Labels go right of the line unless that runs past the plot; several stack down.
            let (line_x, _) = plot.backend_coord(&(*marker, y.end));
            let on_right_half = line_x - plot_left > plot_width * 2 / 3;
            let (dx, h_pos) = if on_right_half { (-6, HPos::Right) } else { (6, HPos::Left) };
            let style = text_style(LEGEND_SIZE).pos(Pos::new(h_pos, VPos::Top));
            let label_element =
                EmptyElement::at((*marker, y.end)) + Text::new(label.clone(), (dx, 4 + 18 * index as i32), style);
            plot.plotting_area().draw(&label_element)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut text = format!("{} (histogram", self.frame.title);
        if !self.frame.x_label.is_empty() {
            text.push_str(&format!(" of {}", self.frame.x_label));
        }
        text.push(')');
        for (name, values) in &self.series {
            let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            text.push_str(&format!("\n  {name}: {} values", values.len()));
            if let Some((lo, hi)) = finite_range(finite.iter().copied()) {
                let mean = finite.iter().sum::<f64>() / finite.len() as f64;
                text.push_str(&format!(
                    ", min {}, mean {}, max {}",
                    format_metric(lo),
                    format_metric(mean),
                    format_metric(hi)
                ));
            }
            if finite.len() < values.len() {
                text.push_str(&format!(", {} non-finite left out", values.len() - finite.len()));
            }
            for (marker, label) in &self.markers {
                let above = finite.iter().filter(|v| *v > marker).count();
                text.push_str(&format!(", {above} above {label}"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_data_gets_whole_number_bins() {
        let bins = Bins::new(1.0, 10.0, 30, true);
        assert_eq!(bins, Bins { start: 0.5, width: 1.0, count: 10 });
        assert_eq!(bins.counts(&[1.0, 1.0, 10.0]), [2, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let wide = Bins::new(0.0, 999.0, 10, true);
        assert_eq!(wide.width, 100.0);
        assert_eq!(wide.count, 10);
    }

    #[test]
    fn every_finite_value_lands_in_a_bin() {
        let values = [0.1, 0.25, 0.9, 1.0, f64::NAN];
        let bins = Bins::new(0.1, 1.0, 3, false);
        assert_eq!(bins.counts(&values).iter().sum::<u64>(), 4);
        assert_eq!(Bins::new(5.5, 5.5, 10, false).counts(&[5.5, 5.5]), [2]);
    }

    #[test]
    fn text_counts_values_beyond_markers() {
        let chart = Histogram::new("lengths").series("train", [10, 300, 500]).marker(256, "max_len = 256");
        assert!(chart.describe().contains("2 above max_len = 256"), "{}", chart.describe());
    }
}
