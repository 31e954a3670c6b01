// SwiGLU, silu(gate) · up, as one autograd node that keeps only its two inputs.
//
// Written as two operations, autograd keeps gate (for silu's backward), silu(gate) and up
// (for the product's backward): three [tokens, intermediate] tensors per MLP layer. The
// backward here recomputes silu(gate) from gate, so one of the three is never kept
// (~190 MB of activations for SmolLM2-135M at 4 × 256 tokens).
#include <torch/torch.h>

#include "common.h"

#include <exception>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SwiGlu : torch::autograd::Function<SwiGlu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return at::silu(gate).mul_(up);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& gate = saved[0];
    const at::Tensor& up = saved[1];
    const at::Tensor& grad = grad_outputs[0];
    at::Tensor grad_gate, grad_up;
    if (ctx->needs_input_grad(1)) grad_up = at::silu(gate).mul_(grad);
    if (ctx->needs_input_grad(0)) grad_gate = at::silu_backward(grad * up, gate);
    return {grad_gate, grad_up};
  }
};

}  // namespace

extern "C" {

// silu(gate) · up as a new tensor, recorded for autograd when grad mode is on; or null with
// a message in err.
at::Tensor* tunebook_swiglu(const at::Tensor* gate, const at::Tensor* up, char* err, size_t cap) {
  try {
    bool tracked = at::GradMode::is_enabled() && (gate->requires_grad() || up->requires_grad());
    if (!tracked) return new at::Tensor(at::silu(*gate).mul_(*up));
    return new at::Tensor(SwiGlu::apply(*gate, *up));
  } catch (const std::exception& e) {
    tunebook_shim::write_error(e.what(), err, cap);
    return nullptr;
  }
}

}  // extern "C"
