//! Line charts: loss, learning-rate and metric curves, one line per named series.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    draw_axes, draw_header, draw_no_data, finite_range, padded, series_color, Axes, Chart, DrawResult, Frame,
    LegendEntry, Number, Swatch, Ticks,
};
use crate::display::progress::format_metric;

/// Named series of `(x, y)` points drawn as lines, e.g. train and eval loss per step, or one
/// curve per run of a sweep.
///
/// Non-finite points (a NaN loss) break the line and are counted in the text form; on log axes
/// so are values ≤ 0. Series with few points also get a dot per point.
///
/// ```
/// use tunebook::display::LineChart;
///
/// let losses = [2.9_f32, 2.4, 2.1, 1.95];
/// let chart = LineChart::new("Loss")
///     .x_label("step")
///     .y_label("loss (nats)")
///     .series("train", losses.iter().enumerate())
///     .series("eval", [(0, 3.0), (3, 2.2)]);
/// let svg = chart.to_svg().unwrap();
/// assert!(svg.contains("eval"));
/// ```
#[derive(Clone, Debug)]
pub struct LineChart {
    frame: Frame,
    series: Vec<Series>,
    log_x: bool,
    log_y: bool,
}

#[derive(Clone, Debug)]
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Series with at most this many points get a dot per point, unless there are so many series
/// (a sweep) that dots would clutter.
const DOTS_UP_TO: usize = 40;
const DOTS_UP_TO_SERIES: usize = 6;
/// Longer series are thinned to about this many points (keeping each stretch's extremes), so
/// that a live chart of a long run stays fast to send and draw.
const MAX_DRAWN_POINTS: usize = 2000;

impl LineChart {
    pub fn new(title: impl Into<String>) -> Self {
        LineChart { frame: Frame::new(title, (760, 420)), series: Vec::new(), log_x: false, log_y: false }
    }

    /// Adds points to the series called `name`, creating it (with the next colour) if needed.
    pub fn series<X: Number, Y: Number>(
        mut self,
        name: impl Into<String>,
        points: impl IntoIterator<Item = (X, Y)>,
    ) -> Self {
        let name = name.into();
        let index = self.series_index(&name);
        self.series[index].points.extend(points.into_iter().map(|(x, y)| (x.to_f64(), y.to_f64())));
        self
    }

    /// Appends one point to the series called `name`, for live training curves.
    pub fn push(&mut self, name: &str, x: impl Number, y: impl Number) -> &mut Self {
        let index = self.series_index(name);
        self.series[index].points.push((x.to_f64(), y.to_f64()));
        self
    }

    /// Logarithmic x axis, e.g. for a learning-rate range test.
    pub fn log_x(mut self) -> Self {
        self.log_x = true;
        self
    }

    /// Logarithmic y axis, e.g. for losses spanning orders of magnitude.
    pub fn log_y(mut self) -> Self {
        self.log_y = true;
        self
    }

    /// Series names in drawing order.
    pub fn series_names(&self) -> Vec<&str> {
        self.series.iter().map(|series| series.name.as_str()).collect()
    }

    /// The points of series `name`, as given.
    pub fn points(&self, name: &str) -> Option<&[(f64, f64)]> {
        self.series.iter().find(|series| series.name == name).map(|series| series.points.as_slice())
    }

    fn series_index(&mut self, name: &str) -> usize {
        match self.series.iter().position(|series| series.name == name) {
            Some(index) => index,
            None => {
                self.series.push(Series { name: name.to_owned(), points: Vec::new() });
                self.series.len() - 1
            }
        }
    }

    /// A point in axis space (log10 on log axes); `None` if it cannot be drawn there.
    fn to_axis_space(&self, (x, y): (f64, f64)) -> Option<(f64, f64)> {
        let x = if self.log_x { (x > 0.0).then(|| x.log10())? } else { x };
        let y = if self.log_y { (y > 0.0).then(|| y.log10())? } else { y };
        (x.is_finite() && y.is_finite()).then_some((x, y))
    }

    /// Runs of drawable points of one series; an undrawable point ends a run.
    fn segments(&self, series: &Series) -> Vec<Vec<(f64, f64)>> {
        let mut segments = vec![Vec::new()];
        for point in &series.points {
            match self.to_axis_space(*point) {
                Some(point) => segments.last_mut().expect("starts non-empty").push(point),
                None if segments.last().is_some_and(|s| !s.is_empty()) => segments.push(Vec::new()),
                None => {}
            }
        }
        segments.retain(|segment| !segment.is_empty());
        segments
    }
}

/// Keeps the first and last point and, per bucket of consecutive points, its lowest and highest
/// (in order), so spikes survive thinning.
fn thin(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    if points.len() <= max_points {
        return points.to_vec();
    }
    let bucket = points.len().div_ceil(max_points / 2);
    let mut kept = Vec::with_capacity(max_points + 2);
    for chunk in points.chunks(bucket) {
        let by_y = |a: &(usize, &(f64, f64)), b: &(usize, &(f64, f64))| a.1 .1.total_cmp(&b.1 .1);
        let lowest = chunk.iter().enumerate().min_by(by_y).map_or(0, |(i, _)| i);
        let highest = chunk.iter().enumerate().max_by(by_y).map_or(0, |(i, _)| i);
        kept.push(chunk[lowest.min(highest)]);
        if lowest != highest {
            kept.push(chunk[lowest.max(highest)]);
        }
    }
    if kept.first() != points.first() {
        kept.insert(0, points[0]);
    }
    if kept.last() != points.last() {
        kept.push(points[points.len() - 1]);
    }
    kept
}

impl Chart for LineChart {
    const KIND: &'static str = "line chart";

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
            .map(|(i, series)| LegendEntry {
                name: series.name.clone(),
                color: series_color(i, count),
                swatch: Swatch::Line,
            })
            .collect();
        let area = draw_header(root, &self.frame.title, &legend)?;

        let segments: Vec<Vec<Vec<(f64, f64)>>> = self.series.iter().map(|series| self.segments(series)).collect();
        let drawable = || segments.iter().flatten().flatten();
        let x = finite_range(drawable().map(|p| p.0)).map_or(0.0..1.0, |(lo, hi)| padded(lo, hi, 0.0));
        let y = finite_range(drawable().map(|p| p.1)).map_or(0.0..1.0, |(lo, hi)| padded(lo, hi, 0.05));
        let axes = Axes {
            x,
            y,
            x_ticks: if self.log_x { Ticks::Log10 } else { Ticks::Linear },
            y_ticks: if self.log_y { Ticks::Log10 } else { Ticks::Linear },
            x_label_space: 0,
            x_grid: true,
        };
        let mut plot = draw_axes(&area, &self.frame, &axes)?;
        if drawable().next().is_none() {
            return draw_no_data(&plot);
        }
        for (index, series_segments) in segments.iter().enumerate() {
            let color = series_color(index, count);
            let points: usize = series_segments.iter().map(Vec::len).sum();
            for segment in series_segments {
                plot.draw_series(LineSeries::new(thin(segment, MAX_DRAWN_POINTS), color.stroke_width(2)))?;
            }
            if points <= DOTS_UP_TO && count <= DOTS_UP_TO_SERIES {
                plot.draw_series(series_segments.iter().flatten().map(|p| Circle::new(*p, 3, color.filled())))?;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut text = format!("{} (line chart", self.frame.title);
        if !self.frame.x_label.is_empty() || !self.frame.y_label.is_empty() {
            text.push_str(&format!(", x: {}, y: {}", self.frame.x_label, self.frame.y_label));
        }
        text.push(')');
        for series in &self.series {
            let drawable: Vec<(f64, f64)> =
                series.points.iter().filter_map(|p| self.to_axis_space(*p).map(|_| *p)).collect();
            text.push_str(&format!("\n  {}: {} points", series.name, series.points.len()));
            if let Some((x, y)) = drawable.last() {
                let lowest = drawable.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
                text.push_str(&format!(
                    ", last ({}, {}), min y {}",
                    format_metric(*x),
                    format_metric(*y),
                    format_metric(lowest)
                ));
            }
            let skipped = series.points.len() - drawable.len();
            if skipped > 0 {
                text.push_str(&format!(", {skipped} not drawable (non-finite or ≤ 0 on a log axis)"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_extends_existing_series_in_order() {
        let mut chart = LineChart::new("loss").series("train", [(0, 1.0)]);
        chart.push("train", 1, 0.5).push("eval", 1, 0.7);
        assert_eq!(chart.series_names(), ["train", "eval"]);
        assert_eq!(chart.points("train").unwrap(), [(0.0, 1.0), (1.0, 0.5)]);
    }

    #[test]
    fn non_finite_points_split_lines_and_are_reported() {
        let chart = LineChart::new("loss").series("train", [(0.0, 1.0), (1.0, f64::NAN), (2.0, 0.8), (3.0, 0.7)]);
        assert_eq!(chart.segments(&chart.series[0]).len(), 2);
        assert!(chart.describe().contains("1 not drawable"), "{}", chart.describe());
    }

    #[test]
    fn log_axes_drop_non_positive_values() {
        let chart = LineChart::new("lr").log_x().series("loss", [(0.0, 1.0), (1e-4, 2.0), (1e-3, 1.5)]);
        assert_eq!(chart.segments(&chart.series[0]), vec![vec![(-4.0, 2.0), (-3.0, 1.5)]]);
    }

    #[test]
    fn thinning_keeps_ends_and_spikes() {
        let mut points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 1.0)).collect();
        points[5_000].1 = 50.0;
        let kept = thin(&points, 200);
        assert!(kept.len() <= 204, "{}", kept.len());
        assert_eq!(kept.first(), points.first());
        assert_eq!(kept.last(), points.last());
        assert!(kept.contains(&(5_000.0, 50.0)));
        assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
