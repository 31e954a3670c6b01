// Operations written as one autograd node each, so the backward pass keeps less than the
// chain of elementary operations would (and makes fewer passes over memory).
//
// SwiGLU, silu(gate) · up: written as two operations, autograd keeps gate (for silu's
// backward), silu(gate) and up (for the product's): three [tokens, intermediate] tensors
// per MLP layer. The node here keeps gate and up and recomputes silu(gate) (~190 MB less
// for SmolLM2-135M at 4 × 256 tokens).
//
// RMSNorm as Llama defines it (transformers' LlamaRMSNorm): x / rms(x) computed in fp32,
// cast back to x's dtype, times the weight. libtorch's rms_norm is a chain of operations
// on the CPU that keeps x and, when the weight is trained, the normalized x as well; the
// node here keeps x and the per-row 1/rms only.
#include <torch/torch.h>

#include "common.h"

#include <numeric>
#include <vector>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using tunebook_shim::guarded;
using tunebook_shim::tracked;

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

// 1 / sqrt(mean(x²) + eps) per row, in fp32, shaped [..., 1].
at::Tensor inverse_rms(const at::Tensor& x_float, double eps) {
  return x_float.pow(2).mean(-1, /*keepdim=*/true).add_(eps).rsqrt_();
}

// x_float is x in fp32 (x itself when it is fp32): cast once, used twice.
at::Tensor rms_norm_forward(const at::Tensor& x, const at::Tensor& x_float, const at::Tensor& weight, double eps,
                            at::Tensor* inv_rms_out) {
  auto inv_rms = inverse_rms(x_float, eps);
  if (inv_rms_out) *inv_rms_out = inv_rms;
  return (x_float * inv_rms).to(x.scalar_type()) * weight;
}

struct RmsNorm : torch::autograd::Function<RmsNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    at::Tensor inv_rms;
    auto y = rms_norm_forward(x, x.to(at::kFloat), weight, eps, &inv_rms);
    ctx->save_for_backward({x, weight, inv_rms});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& inv_rms = saved[2];
    auto normalized = x.to(at::kFloat) * inv_rms;
    auto grad = grad_outputs[0].to(at::kFloat);
    at::Tensor grad_x, grad_weight;
    if (ctx->needs_input_grad(1)) {
      std::vector<int64_t> rows(grad.dim() - 1);
      std::iota(rows.begin(), rows.end(), 0);
      grad_weight = (grad * normalized).sum(rows).to(weight.scalar_type());
    }
    if (ctx->needs_input_grad(0)) {
      // d/dx of x·r·w with r = 1/rms(x): r·(g − x̂·mean(g·x̂)), g = grad·w, x̂ = x·r.
      // Not in place: the incoming gradient may be shared with the residual branch.
      auto g = grad * weight.to(at::kFloat);
      auto projection = (g * normalized).mean(-1, /*keepdim=*/true);
      grad_x = g.sub_(normalized.mul_(projection)).mul_(inv_rms).to(x.scalar_type());
    }
    return {grad_x, grad_weight, at::Tensor()};
  }
};

}  // namespace

extern "C" {

// silu(gate) · up as a new tensor, recorded for autograd when grad mode is on; or null with
// a message in err.
at::Tensor* tunebook_swiglu(const at::Tensor* gate, const at::Tensor* up, char* err, size_t cap) {
  return guarded(
      [&] { return tracked({gate, up}) ? SwiGlu::apply(*gate, *up) : at::silu(*gate).mul_(*up); }, err, cap);
}

// RMSNorm over the last dimension with a weight of that size; recorded for autograd when
// grad mode is on. Null with a message in err on failure.
at::Tensor* tunebook_rms_norm(const at::Tensor* x, const at::Tensor* weight, double eps, char* err, size_t cap) {
  return guarded(
      [&] {
        if (tracked({x, weight})) return RmsNorm::apply(*x, *weight, eps);
        return rms_norm_forward(*x, x->to(at::kFloat), *weight, eps, nullptr);
      },
      err, cap);
}

}  // extern "C"
