//! Training objectives, with Hugging Face's conventions (labels of -100 are ignored).
use tch::{Kind, Reduction, Tensor};

/// The label value that takes no part in the loss (prompt tokens, padding).
pub const IGNORE_INDEX: i64 = -100;

/// Next-token cross-entropy: position t predicts label t+1 (the shift is done here, as in
/// transformers), averaged over labels that are not [`IGNORE_INDEX`].
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    let (sum, count) = causal_lm_loss_sum(logits, labels);
    sum / count.clamp_min(1.0)
}

/// Sum of next-token losses and the number of predicted tokens, for exact averaging over
/// gradient-accumulation steps and evaluation batches.
pub fn causal_lm_loss_sum(logits: &Tensor, labels: &Tensor) -> (Tensor, Tensor) {
    let (b, t, v) = (logits.size()[0], logits.size()[1], logits.size()[2]);
    let pred = logits.narrow(1, 0, t - 1).reshape([b * (t - 1), v]).to_kind(Kind::Float);
    let target = labels.narrow(1, 1, t - 1).reshape([b * (t - 1)]);
    let sum = pred.cross_entropy_loss::<Tensor>(&target, None, Reduction::Sum, IGNORE_INDEX, 0.0);
    let count = target.ne(IGNORE_INDEX).sum(Kind::Float);
    (sum, count)
}

/// Cross-entropy of class logits `[batch, classes]` against labels `[batch]`.
pub fn classification_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, IGNORE_INDEX, 0.0)
}
