//! A training progress bar: step/total, epoch, elapsed, ETA, throughput and live metrics.

use std::time::{Duration, Instant};

use super::html::escape;
use super::{group_thousands, Display, MimeBundle};

/// Progress of a long loop, rendered as an HTML bar in notebooks and one text line elsewhere.
///
/// Time runs from [`ProgressBar::new`]; ETA and tokens/s are derived from it.
///
/// ```no_run
/// use tunebook::display::{DisplayHandle, ProgressBar};
///
/// let mut bar = ProgressBar::new(1000).label("Training");
/// let live = DisplayHandle::show(&bar);
/// for step in 1..=1000 {
///     // … one optimizer step over 4096 tokens …
///     bar.set_step(step).add_tokens(4096).set_metric("loss", 2.0);
///     if step % 20 == 0 {
///         live.update(&bar);
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ProgressBar {
    label: String,
    step: u64,
    total: u64,
    epoch: Option<(u64, u64)>,
    tokens: u64,
    metrics: Vec<(String, f64)>,
    started: Instant,
    elapsed: Option<Duration>,
}

impl ProgressBar {
    /// A bar at step 0 of `total`, with its clock started now.
    pub fn new(total: u64) -> Self {
        ProgressBar {
            label: String::new(),
            step: 0,
            total,
            epoch: None,
            tokens: 0,
            metrics: Vec::new(),
            started: Instant::now(),
            elapsed: None,
        }
    }

    /// Text in front of the bar, e.g. `"Training"`.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Steps done so far.
    pub fn set_step(&mut self, step: u64) -> &mut Self {
        self.step = step;
        self
    }

    /// The current epoch, counting from 1, out of `total_epochs`.
    pub fn set_epoch(&mut self, epoch: u64, total_epochs: u64) -> &mut Self {
        self.epoch = Some((epoch, total_epochs));
        self
    }

    /// Counts tokens processed, for the tokens/s figure.
    pub fn add_tokens(&mut self, tokens: u64) -> &mut Self {
        self.tokens += tokens;
        self
    }

    /// Shows `name value` after the timing figures (replacing an earlier value of `name`).
    pub fn set_metric(&mut self, name: &str, value: f64) -> &mut Self {
        match self.metrics.iter_mut().find(|(existing, _)| existing == name) {
            Some((_, old)) => *old = value,
            None => self.metrics.push((name.to_owned(), value)),
        }
        self
    }

    /// Overrides the clock, for callers that measure time themselves (e.g. without evaluation).
    pub fn set_elapsed(&mut self, elapsed: Duration) -> &mut Self {
        self.elapsed = Some(elapsed);
        self
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed.unwrap_or_else(|| self.started.elapsed())
    }

    /// Done fraction in `[0, 1]`; `None` when the total is 0 (unknown).
    pub fn fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| (self.step as f64 / self.total as f64).min(1.0))
    }

    /// Estimated time left, from the average time per step so far.
    pub fn eta(&self) -> Option<Duration> {
        if self.step == 0 || self.total == 0 {
            return None;
        }
        let remaining = self.total.saturating_sub(self.step) as f64;
        Some(self.elapsed().mul_f64(remaining / self.step as f64))
    }

    pub fn tokens_per_second(&self) -> Option<f64> {
        let seconds = self.elapsed().as_secs_f64();
        (self.tokens > 0 && seconds > 0.0).then(|| self.tokens as f64 / seconds)
    }

    fn is_done(&self) -> bool {
        self.total > 0 && self.step >= self.total
    }

    /// Epoch, timing, throughput and metrics, joined with ` · `.
    fn details(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if let Some((epoch, total)) = self.epoch {
            parts.push(format!("epoch {epoch}/{total}"));
        }
        parts.push(format!("elapsed {}", format_duration(self.elapsed())));
        if let Some(eta) = self.eta().filter(|_| !self.is_done()) {
            parts.push(format!("ETA {}", format_duration(eta)));
        }
        if let Some(rate) = self.tokens_per_second() {
            parts.push(format!("{} tok/s", group_thousands(rate.round() as u64)));
        }
        for (name, value) in &self.metrics {
            parts.push(format!("{name} {}", format_metric(*value)));
        }
        parts
    }

    fn counter(&self) -> String {
        if self.total > 0 {
            format!("{}/{}", group_thousands(self.step), group_thousands(self.total))
        } else {
            group_thousands(self.step)
        }
    }

    pub fn to_html(&self) -> String {
        let percent = self.fraction().map_or(0.0, |f| f * 100.0);
        let fill = if self.is_done() { "var(--jp-success-color1,#22c55e)" } else { "var(--jp-brand-color1,#3b82f6)" };
        let label = if self.label.is_empty() { String::new() } else { format!("<b>{}</b> ", escape(&self.label)) };
        let percent_text = self.fraction().map_or(String::new(), |_| format!("{percent:.0}%"));
        format!(
            "<div class=\"tunebook-progress\" style=\"color:var(--jp-ui-font-color1,inherit);\
             font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:var(--jp-ui-font-size1,13px);\
             max-width:760px;margin:4px 0;font-variant-numeric:tabular-nums\">\
             <div style=\"display:flex;justify-content:space-between\"><span>{label}step {counter}</span><span>{percent_text}</span></div>\
             <div role=\"progressbar\" aria-valuemin=\"0\" aria-valuemax=\"{total}\" aria-valuenow=\"{step}\" \
             style=\"height:8px;margin:3px 0;border-radius:4px;overflow:hidden;background:rgba(128,128,128,.25)\">\
             <div style=\"width:{percent:.1}%;height:100%;background:{fill}\"></div></div>\
             <div style=\"color:var(--jp-ui-font-color2,#888)\">{details}</div></div>",
            counter = self.counter(),
            total = self.total,
            step = self.step,
            details = escape(&self.details().join(" · ")),
        )
    }

    pub fn to_text(&self) -> String {
        const WIDTH: usize = 30;
        let mut line = String::new();
        if !self.label.is_empty() {
            line.push_str(&self.label);
            line.push(' ');
        }
        if let Some(fraction) = self.fraction() {
            let filled = (fraction * WIDTH as f64).round() as usize;
            line.push_str(&format!("[{}{}] {:.0}% ", "#".repeat(filled), ".".repeat(WIDTH - filled), fraction * 100.0));
        }
        line.push_str(&format!("step {} · {}", self.counter(), self.details().join(" · ")));
        line
    }
}

impl Display for ProgressBar {
    fn mime_bundle(&self) -> MimeBundle {
        MimeBundle::plain(self.to_text()).with_html(self.to_html())
    }
}

/// `M:SS`, or `H:MM:SS` from an hour on.
fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

/// Four significant digits, scientific notation for very small or large values (learning rates).
pub(crate) fn format_metric(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || !value.is_finite() {
        value.to_string()
    } else if !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.2e}")
    } else {
        let decimals = (3 - magnitude.log10().floor() as i32).max(0) as usize;
        format!("{value:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halfway() -> ProgressBar {
        let mut bar = ProgressBar::new(1000).label("Training");
        bar.set_step(250).set_epoch(1, 3).add_tokens(50_000).set_elapsed(Duration::from_secs(100));
        bar.set_metric("loss", 2.31456).set_metric("lr", 3e-4).set_metric("loss", 2.0);
        bar
    }

    #[test]
    fn eta_and_throughput_follow_from_elapsed_time() {
        let bar = halfway();
        assert_eq!(bar.eta(), Some(Duration::from_secs(300)));
        assert_eq!(bar.tokens_per_second(), Some(500.0));
        let text = bar.to_text();
        assert!(text.contains("step 250/1,000"), "{text}");
        assert!(text.contains("25%"), "{text}");
        assert!(text.contains("epoch 1/3 · elapsed 1:40 · ETA 5:00 · 500 tok/s · loss 2.000 · lr 3.00e-4"), "{text}");
    }

    #[test]
    fn html_bar_width_matches_progress() {
        let html = halfway().to_html();
        assert!(html.contains("width:25.0%"), "{html}");
        assert!(html.contains("<b>Training</b>"));
    }

    #[test]
    fn finished_bar_has_no_eta_and_unknown_total_has_no_percentage() {
        let mut bar = ProgressBar::new(10);
        bar.set_step(10).set_elapsed(Duration::from_secs(3700));
        assert!(!bar.to_text().contains("ETA"));
        assert!(bar.to_text().contains("elapsed 1:01:40"));
        let mut open_ended = ProgressBar::new(0);
        open_ended.set_step(7);
        assert_eq!(open_ended.fraction(), None);
        assert!(!open_ended.to_text().contains('%'));
    }

    #[test]
    fn metrics_use_significant_digits() {
        assert_eq!(format_metric(2.31456), "2.315");
        assert_eq!(format_metric(123.456), "123.5");
        assert_eq!(format_metric(0.0123456), "0.01235");
        assert_eq!(format_metric(3e-5), "3.00e-5");
        assert_eq!(format_metric(0.0), "0");
        assert_eq!(format_metric(f64::NAN), "NaN");
    }
}
