//! Gradient checkpointing for a stack of layers: with it on, a layer's activations are
//! recomputed in the backward pass instead of kept, trading one extra forward pass for
//! memory that no longer grows with depth × batch × sequence.
use crate::autograd;
use std::sync::{Arc, Weak};
use tch::Tensor;

/// Held by a backbone; `run` wraps each layer call (transformers' `gradient_checkpointing`).
#[derive(Debug, Default)]
pub struct Checkpointing {
    enabled: bool,
    /// Outlives every graph node that may call back into the layers only while the
    /// backbone does; a backward pass after the model was dropped fails cleanly.
    alive: Arc<()>,
}

impl Checkpointing {
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// `forward(layer, x)`; checkpointed when enabled and gradients are being recorded
    /// (evaluation and generation run as usual).
    pub fn run<L: 'static>(&self, layer: &L, x: &Tensor, forward: impl Fn(&L, &Tensor) -> Tensor + Send + 'static) -> Tensor {
        if !self.enabled || !autograd::grad_enabled() {
            return forward(layer, x);
        }
        let layer = LayerRef { layer, alive: Arc::downgrade(&self.alive) };
        autograd::checkpoint(x, move |x| layer.with(|layer| forward(layer, x)))
    }
}

/// A layer the backward pass calls back into: the graph cannot borrow it, so it holds a
/// pointer checked against the backbone's liveness token.
struct LayerRef<L> {
    layer: *const L,
    alive: Weak<()>,
}

impl<L> LayerRef<L> {
    fn with<T>(&self, f: impl FnOnce(&L) -> T) -> T {
        let _alive = self.alive.upgrade().expect("the model was dropped before backward() reached its checkpointed layers");
        // SAFETY: layers live in the backbone's Vec, which is not resized after loading;
        // `alive` proves the backbone still exists.
        f(unsafe { &*self.layer })
    }
}

// SAFETY: the recomputation runs while the thread that called backward() waits for it, so
// the layer is never used from two threads at once.
unsafe impl<L> Send for LayerRef<L> {}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    struct Scale(Tensor);

    fn checkpointed() -> Checkpointing {
        let mut c = Checkpointing::default();
        c.set_enabled(true);
        c
    }

    #[test]
    fn recomputed_layer_gets_the_same_gradients() {
        let layer = Scale(Tensor::from_slice(&[0.5f32, -2.0]).set_requires_grad(true));
        let x = Tensor::from_slice(&[1.0f32, 3.0]).set_requires_grad(true);
        let forward = |l: &Scale, x: &Tensor| (x * &l.0).sin() * &l.0;
        forward(&layer, &x).sum(Kind::Float).backward();
        let (expected_w, expected_x) = (layer.0.grad().copy(), x.grad().copy());
        let _ = layer.0.grad().zero_();
        let _ = x.grad().zero_();
        checkpointed().run(&layer, &x, forward).sum(Kind::Float).backward();
        assert!(layer.0.grad().allclose(&expected_w, 1e-6, 1e-6, false));
        assert!(x.grad().allclose(&expected_x, 1e-6, 1e-6, false));
    }

    #[test]
    fn backward_after_the_model_is_gone_fails_with_a_message() {
        let layer = Scale(Tensor::from_slice(&[0.5f32]).set_requires_grad(true));
        let x = Tensor::from_slice(&[1.0f32]);
        let checkpointing = checkpointed();
        let y = checkpointing.run(&layer, &x, |l: &Scale, x: &Tensor| x * &l.0);
        drop(checkpointing);
        let err = y.sum(Kind::Float).f_backward().unwrap_err().to_string();
        assert!(err.contains("the model was dropped"), "{err}");
    }
}
