//! Charts drawn with plotters to SVG (notebooks, files) and PNG.
//!
//! Text, axes and grid use one neutral grey ([`FOREGROUND`]) that reads on light and dark
//! backgrounds; the HTML form swaps it for `currentColor` so that inline SVG takes the notebook
//! theme's text colour. Backgrounds are transparent.

mod bar;
mod heatmap;
mod histogram;
mod line;

use std::error::Error as StdError;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub use bar::BarChart;
pub use heatmap::Heatmap;
pub use histogram::Histogram;
pub use line::LineChart;

use super::html::escape;
use super::MimeBundle;
use crate::{Error, Result};

/// Errors from plotters differ per backend; charts only need their message.
type DrawResult<T = ()> = std::result::Result<T, Box<dyn StdError>>;

/// Text, axes and grid colour in SVG/PNG. Nothing else in a chart may use this exact colour:
/// the HTML form replaces it by `currentColor`.
const FOREGROUND: RGBColor = RGBColor(0x80, 0x80, 0x80);
const FOREGROUND_HEX: &str = "#808080";
const FONT: &str = "sans-serif";

/// Series colours: mid-tone hues that keep contrast on white and on near-black backgrounds.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x3b, 0x82, 0xf6), // blue
    RGBColor(0xf9, 0x73, 0x16), // orange
    RGBColor(0x10, 0xb9, 0x81), // green
    RGBColor(0xef, 0x44, 0x44), // red
    RGBColor(0xa8, 0x55, 0xf7), // purple
    RGBColor(0x06, 0xb6, 0xd4), // cyan
    RGBColor(0xec, 0x48, 0x99), // pink
    RGBColor(0x84, 0xcc, 0x16), // lime
    RGBColor(0xd9, 0x77, 0x06), // amber
    RGBColor(0x63, 0x66, 0xf1), // indigo
];

/// Colour of series `index` out of `count`: the palette, or evenly spaced hues for sweeps with
/// more series than it has.
fn series_color(index: usize, count: usize) -> RGBColor {
    if count <= PALETTE.len() {
        return PALETTE[index % PALETTE.len()];
    }
    // Stop short of the full circle so that the last hue is not the first one again.
    let hue = 0.85 * index as f64 / (count - 1) as f64;
    let (r, g, b) = HSLColor(hue, 0.7, 0.55).rgb();
    RGBColor(r, g, b)
}

/// Anything that converts to `f64` without ceremony, so that charts take `&[usize]` token
/// lengths, `f32` losses or `(step, loss)` pairs directly.
pub trait Number: Copy {
    fn to_f64(self) -> f64;
}

macro_rules! impl_number {
    ($($type:ty),*) => {$(
        impl Number for $type {
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
impl_number!(f32, f64, i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl<T: Number> Number for &T {
    fn to_f64(self) -> f64 {
        (*self).to_f64()
    }
}

/// Title, axis descriptions and size shared by every chart.
#[derive(Clone, Debug)]
struct Frame {
    title: String,
    x_label: String,
    y_label: String,
    width: u32,
    height: u32,
}

impl Frame {
    fn new(title: impl Into<String>, (width, height): (u32, u32)) -> Self {
        Frame { title: title.into(), x_label: String::new(), y_label: String::new(), width, height }
    }
}

/// What each chart type implements; rendering and output formats are shared.
trait Chart {
    const KIND: &'static str;
    fn frame(&self) -> &Frame;
    fn frame_mut(&mut self) -> &mut Frame;
    /// Draws on a transparent area of `frame().width × frame().height` pixels.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
    /// The text/plain form: what the chart shows, in words and numbers.
    fn describe(&self) -> String;
}

/// Builder methods, output formats and [`super::Display`] for each chart type.
macro_rules! chart_api {
    ($($type:ty),*) => {$(
        impl $type {
            /// Describes the horizontal axis, units included, e.g. `"step"` or `"length (tokens)"`.
            pub fn x_label(mut self, label: impl Into<String>) -> Self {
                Chart::frame_mut(&mut self).x_label = label.into();
                self
            }

            /// Describes the vertical axis, units included, e.g. `"loss (nats)"`.
            pub fn y_label(mut self, label: impl Into<String>) -> Self {
                Chart::frame_mut(&mut self).y_label = label.into();
                self
            }

            /// Size in pixels (at least 240 × 180).
            pub fn size(mut self, width: u32, height: u32) -> Self {
                let frame = Chart::frame_mut(&mut self);
                frame.width = width.max(240);
                frame.height = height.max(180);
                self
            }

            /// Standalone SVG document (grey text, transparent background).
            pub fn to_svg(&self) -> Result<String> {
                render_svg(self)
            }

            /// PNG image with a transparent background.
            pub fn to_png(&self) -> Result<Vec<u8>> {
                render_png(self)
            }

            pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
                let path = path.as_ref();
                std::fs::write(path, render_svg(self)?).map_err(|e| Error::io(path, e))
            }

            pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
                let path = path.as_ref();
                std::fs::write(path, render_png(self)?).map_err(|e| Error::io(path, e))
            }
        }

        impl $crate::display::Display for $type {
            fn mime_bundle(&self) -> MimeBundle {
                chart_bundle(self)
            }
        }
    )*};
}
chart_api!(LineChart, Histogram, BarChart, Heatmap);

fn render_error(kind: &str, error: impl std::fmt::Display) -> Error {
    Error::Render { what: kind.to_owned(), message: error.to_string() }
}

/// plotters measures and rasterises text with fonts registered here, so charts look the same
/// on machines without any fonts installed.
fn register_fonts() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let fonts = [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())];
            for (style, bytes) in fonts {
                plotters::style::register_font(FONT, style, bytes)
                    .map_err(|_| format!("embedded DejaVu Sans ({}) is not a valid font", style.as_str()))?;
            }
            Ok(())
        })
        .clone()
        .map_err(|message| render_error("fonts", message))
}

fn render_svg<C: Chart>(chart: &C) -> Result<String> {
    register_fonts()?;
    let frame = chart.frame();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (frame.width, frame.height)).into_drawing_area();
        chart.draw(&root).map_err(|e| render_error(C::KIND, e))?;
        root.present().map_err(|e| render_error(C::KIND, e))?;
    }
    Ok(svg)
}

/// The SVG for inline HTML: theme text colour instead of grey, and scaled down to fit narrow
/// outputs.
fn svg_for_html(svg: &str) -> String {
    svg.replacen("<svg ", "<svg style=\"max-width:100%;height:auto\" ", 1)
        .replace(&format!("\"{FOREGROUND_HEX}\""), "\"currentColor\"")
}

/// Renders on black and on white and recovers each pixel's alpha from the difference, since
/// plotters' bitmap backend has no alpha channel.
fn render_png<C: Chart>(chart: &C) -> Result<Vec<u8>> {
    register_fonts()?;
    let frame = chart.frame();
    let (width, height) = (frame.width, frame.height);
    let pixels = width as usize * height as usize;
    let mut on_black = vec![0u8; pixels * 3];
    let mut on_white = vec![255u8; pixels * 3];
    for buffer in [&mut on_black, &mut on_white] {
        let root = BitMapBackend::with_buffer(buffer, (width, height)).into_drawing_area();
        chart.draw(&root).map_err(|e| render_error(C::KIND, e))?;
        root.present().map_err(|e| render_error(C::KIND, e))?;
    }
    let mut rgba = Vec::with_capacity(pixels * 4);
    for (black, white) in on_black.chunks_exact(3).zip(on_white.chunks_exact(3)) {
        let coverage: u32 = (0..3).map(|c| 255 - (white[c] as u32).saturating_sub(black[c] as u32)).sum::<u32>() / 3;
        for channel in black {
            let color = (*channel as u32 * 255).checked_div(coverage).unwrap_or(0).min(255);
            rgba.push(color as u8);
        }
        rgba.push(coverage as u8);
    }
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| render_error("PNG", e))?;
        writer.write_image_data(&rgba).map_err(|e| render_error("PNG", e))?;
    }
    Ok(png)
}

fn chart_bundle<C: Chart>(chart: &C) -> MimeBundle {
    let text = chart.describe();
    match render_svg(chart) {
        Ok(svg) => {
            let html = format!(
                "<div class=\"tunebook-chart\" style=\"color:var(--jp-ui-font-color1,var(--vscode-editor-foreground,{FOREGROUND_HEX}))\">{}</div>",
                svg_for_html(&svg)
            );
            MimeBundle::plain(text).with_html(html).with_svg(svg)
        }
        Err(error) => {
            let message = format!("{text}\n(could not draw the chart: {error})");
            MimeBundle::plain(&message).with_html(format!("<pre>{}</pre>", escape(&message)))
        }
    }
}

fn text_style(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&FOREGROUND)
}

fn bold_text_style(size: f64) -> TextStyle<'static> {
    TextStyle::from(FontDesc::new(FontFamily::Name(FONT), size, FontStyle::Bold)).color(&FOREGROUND)
}

// plotters sizes; SVG text comes out at size / 1.24 px.
const TITLE_SIZE: f64 = 22.0;
const LABEL_SIZE: f64 = 17.0;
const TICK_SIZE: f64 = 15.0;
const LEGEND_SIZE: f64 = 16.0;

fn text_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, style: &TextStyle) -> u32 {
    area.estimate_text_size(text, style).map_or(text.chars().count() as u32 * 8, |(width, _)| width)
}

/// Cuts `text` with `…` until it is at most `max_width` pixels wide.
fn fit_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
    max_width: u32,
) -> String {
    if text_width(area, text, style) <= max_width {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (1..chars.len()).rev() {
        let candidate: String = chars[..keep].iter().chain(['…'].iter()).collect();
        if text_width(area, &candidate, style) <= max_width {
            return candidate;
        }
    }
    "…".to_owned()
}

/// How a legend entry draws its colour sample.
#[derive(Clone, Copy)]
enum Swatch {
    Line,
    Box,
}

struct LegendEntry {
    name: String,
    color: RGBColor,
    swatch: Swatch,
}

/// Entries after this many rows are summarised as `+N more`.
const LEGEND_MAX_ROWS: usize = 4;
const LEGEND_ROW_HEIGHT: i32 = 20;

/// Draws the title and, below it, the legend flowing in centred rows; returns the area left
/// for the plot.
fn draw_header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    legend: &[LegendEntry],
) -> DrawResult<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let area =
        if title.is_empty() { root.margin(8, 0, 0, 0) } else { root.titled(title, bold_text_style(TITLE_SIZE))? };
    if legend.is_empty() {
        return Ok(area);
    }
    let style = text_style(LEGEND_SIZE);
    let (width, _) = area.dim_in_pixel();
    let max_row_width = width.saturating_sub(40) as i32;
    const SWATCH: i32 = 18;
    const GAP: i32 = 6;
    const SPACING: i32 = 20;
    let item_width = |name: &str| SWATCH + GAP + text_width(&area, name, &style) as i32;

    // Lay out rows of (sample to draw, name as shown); `None` marks the "+N more" summary.
    let mut rows: Vec<Vec<(Option<&LegendEntry>, String)>> = vec![Vec::new()];
    let mut row_width = 0;
    let mut shown = 0;
    for entry in legend {
        let name = fit_text(&area, &entry.name, &style, (max_row_width - SWATCH - GAP).max(20) as u32);
        let needed = item_width(&name) + if row_width > 0 { SPACING } else { 0 };
        if row_width > 0 && row_width + needed > max_row_width {
            if rows.len() == LEGEND_MAX_ROWS {
                break;
            }
            rows.push(Vec::new());
            row_width = 0;
        }
        row_width += item_width(&name) + if row_width > 0 { SPACING } else { 0 };
        rows.last_mut().expect("rows starts non-empty").push((Some(entry), name));
        shown += 1;
    }
    if shown < legend.len() {
        let last_row = rows.last_mut().expect("rows starts non-empty");
        let dropped = usize::from(last_row.pop().is_some());
        last_row.push((None, format!("+{} more", legend.len() - shown + dropped)));
    }

    for (row_index, row) in rows.iter().enumerate() {
        let total: i32 = row.iter().map(|(_, name)| item_width(name)).sum::<i32>() + SPACING * (row.len() as i32 - 1);
        let mut x = (width as i32 - total) / 2;
        let y = row_index as i32 * LEGEND_ROW_HEIGHT + LEGEND_ROW_HEIGHT / 2 + 2;
        for (entry, name) in row {
            match entry.map(|entry| (entry.swatch, entry.color)) {
                Some((Swatch::Line, color)) => {
                    area.draw(&PathElement::new(vec![(x, y), (x + SWATCH, y)], color.stroke_width(3)))?
                }
                Some((Swatch::Box, color)) => {
                    area.draw(&Rectangle::new([(x + 2, y - 6), (x + SWATCH - 2, y + 6)], color.mix(0.6).filled()))?
                }
                None => {}
            }
            area.draw(&Text::new(name.clone(), (x + SWATCH + GAP, y), style.pos(Pos::new(HPos::Left, VPos::Center))))?;
            x += item_width(name) + SPACING;
        }
    }
    let used = rows.len() as u32 * LEGEND_ROW_HEIGHT as u32 + 6;
    Ok(area.margin(used, 0, 0, 0))
}

/// A Cartesian plot with linear `f64` axes (log axes are drawn in log10 space).
type Plot<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// How tick values are written on an axis.
#[derive(Clone, Copy, PartialEq)]
enum Ticks {
    Linear,
    /// Values are log10 of the data; ticks show the data value.
    Log10,
    /// The chart draws its own category labels.
    Hidden,
}

impl Ticks {
    fn label(self, value: f64) -> String {
        match self {
            Ticks::Linear => format_tick(value),
            Ticks::Log10 => format_tick(10f64.powf(value)),
            Ticks::Hidden => String::new(),
        }
    }

    /// Label count hint: on log axes, about one per decade so ticks land on powers of ten.
    fn count(self, range: &std::ops::Range<f64>, default: usize) -> usize {
        match self {
            Ticks::Linear => default,
            Ticks::Log10 => ((range.end - range.start).ceil() as usize + 1).clamp(3, default),
            Ticks::Hidden => 0,
        }
    }
}

struct Axes {
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_ticks: Ticks,
    y_ticks: Ticks,
    /// Extra pixels below the x axis for category labels.
    x_label_space: u32,
    /// Vertical grid lines (off for bar charts and histograms).
    x_grid: bool,
}

/// Builds the plot with axes, grid and axis descriptions in the theme-neutral style.
fn draw_axes<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    frame: &Frame,
    axes: &Axes,
) -> DrawResult<Plot<'a, DB>>
where
    DB::ErrorType: 'static,
{
    let tick_style = text_style(TICK_SIZE);
    let y_tick_width = [axes.y.start, axes.y.end, (axes.y.start + axes.y.end) / 2.0]
        .iter()
        .map(|value| text_width(area, &axes.y_ticks.label(*value), &tick_style))
        .max()
        .unwrap_or(0)
        + 4;
    let y_desc_space = if frame.y_label.is_empty() { 0 } else { 24 };
    let x_desc_space = if frame.x_label.is_empty() { 0 } else { 24 };
    let mut plot = ChartBuilder::on(area)
        .margin_top(8)
        .margin_right(24)
        .margin_left(8)
        .margin_bottom(6)
        .x_label_area_size(24 + axes.x_label_space + x_desc_space)
        .y_label_area_size(y_tick_width + 8 + y_desc_space)
        .build_cartesian_2d(axes.x.clone(), axes.y.clone())?;
    let x_format = |value: &f64| axes.x_ticks.label(*value);
    let y_format = |value: &f64| axes.y_ticks.label(*value);
    let mut mesh = plot.configure_mesh();
    mesh.axis_style(FOREGROUND.mix(0.8))
        .bold_line_style(FOREGROUND.mix(0.18))
        .light_line_style(TRANSPARENT)
        .label_style(tick_style.clone())
        .axis_desc_style(text_style(LABEL_SIZE))
        .x_labels(axes.x_ticks.count(&axes.x, 8))
        .y_labels(axes.y_ticks.count(&axes.y, 7))
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .x_desc(frame.x_label.clone())
        .y_desc(frame.y_label.clone());
    if !axes.x_grid {
        mesh.disable_x_mesh();
    }
    mesh.draw()?;
    Ok(plot)
}

/// "no data" in the middle of an empty plot, so an empty chart is not mistaken for a bug.
fn draw_no_data<DB: DrawingBackend>(plot: &Plot<DB>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let x = plot.x_range();
    let y = plot.y_range();
    let center = ((x.start + x.end) / 2.0, (y.start + y.end) / 2.0);
    plot.plotting_area().draw(&Text::new(
        "no data",
        center,
        text_style(LABEL_SIZE).pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    Ok(())
}

/// Tick labels: short, no float noise (`0.30000000000000004` → `0.3`), `k`/`M` for large
/// values, scientific for tiny ones (learning rates).
fn format_tick(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude < 1e-12 {
        return "0".to_owned();
    }
    if magnitude >= 1e6 {
        return format!("{}M", trim_number(value / 1e6, 3));
    }
    if magnitude >= 1e4 {
        return format!("{}k", trim_number(value / 1e3, 3));
    }
    if magnitude < 1e-3 {
        let exponent = magnitude.log10().floor() as i32;
        let mantissa = value / 10f64.powi(exponent);
        return format!("{}e{exponent}", trim_number(mantissa, 2));
    }
    trim_number(value, 4)
}

/// `value` with `significant` digits, trailing zeros removed.
fn trim_number(value: f64, significant: i32) -> String {
    let magnitude = value.abs();
    let decimals = (significant - 1 - magnitude.log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Numbers written on bars and cells: integers as integers, others with 3 significant digits.
fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        let sign = if value < 0.0 { "-" } else { "" };
        format!("{sign}{}", super::group_thousands(value.abs() as u64))
    } else {
        trim_number(value, 3)
    }
}

/// `[lo, hi]` of finite values, widened when degenerate so that a range always has extent.
fn finite_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo <= hi).then_some((lo, hi))
}

/// Pads a data range by `fraction` of its extent on each side; a single value gets ±0.5 (or
/// ±10% of itself when large).
fn padded(lo: f64, hi: f64, fraction: f64) -> std::ops::Range<f64> {
    if hi > lo {
        let pad = (hi - lo) * fraction;
        lo - pad..hi + pad
    } else {
        let pad = (lo.abs() * 0.1).max(0.5);
        lo - pad..hi + pad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short_and_free_of_float_noise() {
        assert_eq!(format_tick(0.1 + 0.2), "0.3");
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(2.5), "2.5");
        assert_eq!(format_tick(1200.0), "1200");
        assert_eq!(format_tick(25_000.0), "25k");
        assert_eq!(format_tick(1_500_000.0), "1.5M");
        assert_eq!(format_tick(3e-4), "3e-4");
        assert_eq!(format_tick(2.5e-5), "2.5e-5");
        assert_eq!(format_tick(-0.5), "-0.5");
    }

    #[test]
    fn values_on_bars_keep_integers_whole() {
        assert_eq!(format_value(1234.0), "1,234");
        assert_eq!(format_value(-7.0), "-7");
        assert_eq!(format_value(0.4567), "0.457");
    }

    #[test]
    fn html_svg_follows_the_theme_text_colour() {
        let svg = r##"<svg width="10" height="10"><text fill="#808080">a</text><rect fill="#3B82F6"/></svg>"##;
        let html = svg_for_html(svg);
        assert!(html.contains(r#"fill="currentColor""#));
        assert!(html.contains("#3B82F6"));
        assert!(html.starts_with("<svg style=\"max-width:100%;height:auto\" "));
    }

    #[test]
    fn many_series_get_distinct_colours() {
        let colors: std::collections::HashSet<_> = (0..25).map(|i| series_color(i, 25).rgb()).collect();
        assert_eq!(colors.len(), 25);
        assert!(!colors.contains(&FOREGROUND.rgb()));
    }
}
