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
    let pred = logits.reshape([b * t, v]).to_kind(Kind::Float);
    let target = shifted_labels(labels).reshape([b * t]);
    let sum = pred.cross_entropy_loss::<Tensor>(&target, None, Reduction::Sum, IGNORE_INDEX, 0.0);
    let count = target.ne(IGNORE_INDEX).sum(Kind::Float);
    (sum, count)
}

/// [`causal_lm_loss_sum`] computed from the final hidden states `[batch, seq, hidden]` and the
/// LM head (`weight` `[vocab, hidden]`, optional `bias`), a slice of positions at a time.
///
/// The `[tokens, vocab]` logits are never kept, nor their gradient: the gradients are worked
/// out in the forward pass, slice by slice, and handed back by the backward pass (a fused
/// linear cross-entropy). For SmolLM2 at 4 × 256 tokens that is ~600 MB of activations less
/// and less memory traffic, for the same matrix products the usual backward pass does.
/// Positions whose label is [`IGNORE_INDEX`] (prompt, padding) get no logits at all: in
/// instruction data that is often half the LM head's work. The hidden states may require
/// grad; so may the head (full fine-tuning, tied embeddings included: its gradient then
/// adds to the embedding's).
pub fn fused_causal_lm_loss_sum(hidden: &Tensor, weight: &Tensor, bias: Option<&Tensor>, labels: &Tensor) -> (Tensor, Tensor) {
    let (b, t, d) = (hidden.size()[0], hidden.size()[1], hidden.size()[2]);
    let target = shifted_labels(labels).reshape([b * t]);
    let scored = target.ne(IGNORE_INDEX);
    let count = scored.sum(Kind::Float);
    let scored_rows = scored.nonzero().squeeze_dim(1);
    let target = target.index_select(0, &scored_rows);
    let train_weight = weight.requires_grad();
    let train_bias = bias.is_some_and(Tensor::requires_grad);
    let (head, head_bias) = (weight.detach().to_kind(Kind::Float), bias.map(|b| b.detach().to_kind(Kind::Float)));
    // Rows per slice: about 8M logits (32 MB in fp32) at a time.
    let rows_per_slice = (8 * 1024 * 1024 / head.size()[0].max(1)).max(1);
    let grads = std::sync::Arc::new(std::sync::Mutex::new(HeadGrads::default()));
    let stash = grads.clone();
    let sum = crate::autograd::function(
        &hidden.reshape([b * t, d]),
        move |all| {
            let h = all.index_select(0, &scored_rows).to_kind(Kind::Float);
            let n_scored = h.size()[0];
            let mut total = Tensor::zeros([], (Kind::Float, h.device()));
            let mut grad_rows = Vec::new();
            let mut grad_weight = train_weight.then(|| head.zeros_like());
            let mut grad_bias = head_bias.as_ref().filter(|_| train_bias).map(Tensor::zeros_like);
            for start in (0..n_scored).step_by(rows_per_slice as usize) {
                let n = rows_per_slice.min(n_scored - start);
                let rows = h.narrow(0, start, n);
                let logits = crate::nn::linear(&rows, &head, head_bias.as_ref());
                let index = target.narrow(0, start, n).unsqueeze(1);
                let log_norm = logits.logsumexp([1], true);
                total += (&log_norm - logits.gather(1, &index, false)).sum(Kind::Float);
                // d(loss)/d(logits) = softmax − one-hot.
                let grad_logits = (logits - log_norm).exp_().scatter_add(1, &index, &index.ones_like().to_kind(Kind::Float).neg());
                grad_rows.push(crate::nn::mm(&grad_logits, &head).to_kind(all.kind()));
                if let Some(grad) = &mut grad_weight {
                    crate::nn::addmm_(grad, &grad_logits.tr(), &rows);
                }
                if let Some(grad) = &mut grad_bias {
                    *grad += grad_logits.sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
                }
            }
            let grad = all.zeros_like();
            let grad = if grad_rows.is_empty() { grad } else { grad.index_copy(0, &scored_rows, &Tensor::cat(&grad_rows, 0)) };
            *stash.lock().unwrap_or_else(|e| e.into_inner()) = HeadGrads { hidden: Some(grad), weight: grad_weight, bias: grad_bias };
            total
        },
        {
            let grads = grads.clone();
            move |grad_output| take_grad(&grads, |g| &mut g.hidden) * grad_output.to_kind(Kind::Float)
        },
    );
    // The head's gradients reach autograd through nodes of their own whose value is zero:
    // the loss's gradient arrives at each unchanged.
    let mut sum = sum;
    for (tensor, trained, pick) in [
        (Some(weight), train_weight, (|g: &mut HeadGrads| &mut g.weight) as fn(&mut HeadGrads) -> &mut Option<Tensor>),
        (bias, train_bias, |g: &mut HeadGrads| &mut g.bias),
    ] {
        if let (Some(tensor), true) = (tensor, trained) {
            let (grads, kind) = (grads.clone(), tensor.kind());
            sum = sum
                + crate::autograd::function(
                    tensor,
                    |t| Tensor::zeros([], (Kind::Float, t.device())),
                    move |grad_output| (take_grad(&grads, pick) * grad_output.to_kind(Kind::Float)).to_kind(kind),
                );
        }
    }
    (sum, count)
}

/// Gradients [`fused_causal_lm_loss_sum`] works out in its forward pass.
#[derive(Default)]
struct HeadGrads {
    hidden: Option<Tensor>,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
}

fn take_grad(grads: &std::sync::Mutex<HeadGrads>, pick: fn(&mut HeadGrads) -> &mut Option<Tensor>) -> Tensor {
    pick(&mut grads.lock().unwrap_or_else(|e| e.into_inner())).take().expect("backward runs once per forward")
}

/// Labels moved one position left (position t is scored against token t+1); the last
/// position gets [`IGNORE_INDEX`]. Shifting labels instead of slicing logits avoids copying
/// the logits (and their gradient).
fn shifted_labels(labels: &Tensor) -> Tensor {
    let (b, t) = (labels.size()[0], labels.size()[1]);
    let ignored = Tensor::full([b, 1], IGNORE_INDEX, (labels.kind(), labels.device()));
    Tensor::cat(&[&labels.narrow(1, 1, t - 1), &ignored], 1)
}

/// Cross-entropy of class logits `[batch, classes]` against labels `[batch]`.
pub fn classification_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, IGNORE_INDEX, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn fused_loss_matches_logits_then_cross_entropy_in_value_and_gradient() {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        let weight = Tensor::randn([50, 16], opts);
        let bias = Tensor::randn([50], opts);
        let hidden = Tensor::randn([3, 7, 16], opts).set_requires_grad(true);
        let labels = Tensor::randint(50, [3, 7], (Kind::Int64, Device::Cpu));
        let _ = labels.narrow(1, 0, 2).fill_(IGNORE_INDEX);
        let (sum, count) = causal_lm_loss_sum(&hidden.linear(&weight, Some(&bias)), &labels);
        (&sum / &count * 2.0).backward();
        let expected = hidden.grad().copy();
        let _ = hidden.grad().zero_();
        let (fused, fused_count) = fused_causal_lm_loss_sum(&hidden, &weight, Some(&bias), &labels);
        assert!((fused.double_value(&[]) - sum.double_value(&[])).abs() < 1e-4);
        assert_eq!(fused_count.double_value(&[]), 3.0 * 5.0, "labels 2..6 of each row are scored");
        (&fused / &fused_count * 2.0).backward();
        assert!(hidden.grad().allclose(&expected, 1e-5, 1e-6, false), "{}", (hidden.grad() - expected).abs().max());
        assert_eq!(hidden.grad().narrow(1, 0, 1).abs().sum(Kind::Float).double_value(&[]), 0.0, "unscored positions get no gradient");

        // A trained head (full fine-tuning): its gradients match too.
        let (weight, bias) = (weight.set_requires_grad(true), bias.set_requires_grad(true));
        let _ = hidden.grad().zero_();
        let (sum, count) = causal_lm_loss_sum(&hidden.linear(&weight, Some(&bias)), &labels);
        (&sum / &count * 2.0).backward();
        let expected = [hidden.grad().copy(), weight.grad().copy(), bias.grad().copy()];
        for t in [&hidden, &weight, &bias] {
            let _ = t.grad().zero_();
        }
        let (fused, fused_count) = fused_causal_lm_loss_sum(&hidden, &weight, Some(&bias), &labels);
        assert!((fused.double_value(&[]) - sum.double_value(&[])).abs() < 1e-4);
        (&fused / &fused_count * 2.0).backward();
        for (got, expected) in [hidden.grad(), weight.grad(), bias.grad()].iter().zip(&expected) {
            assert!(got.allclose(expected, 1e-5, 1e-6, false), "{}", (got - expected).abs().max());
        }
        let (weight, bias) = (weight.detach(), bias.detach());

        // No prompt masking (only the last position goes unscored), and nothing scored.
        for labels in [Tensor::randint(50, [3, 7], (Kind::Int64, Device::Cpu)), Tensor::full([3, 7], IGNORE_INDEX, (Kind::Int64, Device::Cpu))] {
            let _ = hidden.grad().zero_();
            let (sum, count) = causal_lm_loss_sum(&hidden.linear(&weight, Some(&bias)), &labels);
            (&sum / count.clamp_min(1.0) * 3.0).backward();
            let expected = hidden.grad().copy();
            let _ = hidden.grad().zero_();
            let (fused, fused_count) = fused_causal_lm_loss_sum(&hidden, &weight, Some(&bias), &labels);
            assert_eq!(fused_count.double_value(&[]), count.double_value(&[]));
            assert!((fused.double_value(&[]) - sum.double_value(&[])).abs() < 1e-4);
            (&fused / fused_count.clamp_min(1.0) * 3.0).backward();
            assert!(hidden.grad().allclose(&expected, 1e-5, 1e-6, false), "{}", (hidden.grad() - expected).abs().max());
        }
    }
}
