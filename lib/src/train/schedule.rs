//! Learning-rate schedules as pure functions of the step, so resuming needs only the step.
use super::args::SchedulerType;
use std::f64::consts::PI;

/// The learning rate of optimizer step `step` (0-based) out of `total` steps.
pub fn learning_rate(kind: SchedulerType, peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if kind != SchedulerType::Constant && step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup.min(step)) as f64 / total.saturating_sub(warmup).max(1) as f64;
    match kind {
        SchedulerType::Constant | SchedulerType::ConstantWithWarmup => peak,
        SchedulerType::Linear => peak * (1.0 - progress).max(0.0),
        SchedulerType::Cosine => peak * 0.5 * (1.0 + (PI * progress.min(1.0)).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay_matches_transformers() {
        // get_linear_schedule_with_warmup(warmup=2, total=10): 0, .5, 1, 7/8, ...
        let lr = |s| learning_rate(SchedulerType::Linear, 1.0, s, 2, 10);
        assert_eq!([lr(0), lr(1), lr(2), lr(3)], [0.0, 0.5, 1.0, 0.875]);
        assert_eq!(lr(10), 0.0);
        let cos = |s| learning_rate(SchedulerType::Cosine, 1.0, s, 0, 10);
        assert!((cos(5) - 0.5).abs() < 1e-12 && cos(0) == 1.0);
        assert_eq!(learning_rate(SchedulerType::ConstantWithWarmup, 2.0, 1, 4, 10), 0.5);
        assert_eq!(learning_rate(SchedulerType::Constant, 2.0, 0, 4, 10), 2.0);
    }
}
